import {jest} from '@jest/globals'
import {createHash} from 'node:crypto'
import {mkdtempSync, readFileSync, rmSync} from 'node:fs'
import {createServer, type Server, type ServerResponse} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  HttpStatusError,
  LATEST_API,
  RETRY_WAITS,
  assetName,
  atLeast,
  describe as describeError,
  downloadFile,
  expectedDigest,
  fetchText,
  isTransient,
  jittered,
  latestSource,
  mismatchMessage,
  parseChecksums,
  parseLatest,
  parseVersionOutput,
  releaseUrls,
  runnerDirs,
  sameVersion,
  tagOf,
  withRetries
} from '../../src/buildx.js'
import {PhaseError} from '../../src/exec.js'
import {DEFAULT_BUILDX_URL} from '../../src/inputs.js'

const A = 'a'.repeat(64)
const B = 'B'.repeat(64)
const C = 'c'.repeat(64)

describe('buildx release names', () => {
  it('normalises versions to release tags', () => {
    expect(tagOf('v0.28.0')).toBe('v0.28.0')
    expect(tagOf('0.28.0')).toBe('v0.28.0')
    expect(tagOf(' 0.29.0-rc1 ')).toBe('v0.29.0-rc1')
  })

  it('names the asset buildx publishes for each runner CPU', () => {
    expect(assetName('v0.28.0', 'x64', 'linux')).toBe(
      'buildx-v0.28.0.linux-amd64'
    )
    expect(assetName('v0.28.0', 'arm64', 'linux')).toBe(
      'buildx-v0.28.0.linux-arm64'
    )
    expect(assetName('v0.28.0', 'arm', 'linux')).toBe(
      'buildx-v0.28.0.linux-arm-v7'
    )
  })

  it('refuses runners it has no asset for', () => {
    expect(() => assetName('v0.28.0', 'ia32', 'linux')).toThrow(
      'Buildx: no buildx release for linux/ia32'
    )
    expect(() => assetName('v0.28.0', 'x64', 'win32')).toThrow(
      'no buildx release for win32/x64'
    )
  })

  it('builds the asset and checksums URLs under the base', () => {
    const asset = 'buildx-v0.28.0.linux-amd64'
    expect(releaseUrls(DEFAULT_BUILDX_URL, 'v0.28.0', asset)).toEqual({
      asset:
        'https://github.com/docker/buildx/releases/download/v0.28.0/buildx-v0.28.0.linux-amd64',
      checksums:
        'https://github.com/docker/buildx/releases/download/v0.28.0/checksums.txt'
    })
    // A trailing slash on a mirror's URL makes no double slash.
    expect(
      releaseUrls('https://mirror.example.cn/buildx//', 'v0.28.0', asset)
    ).toEqual({
      asset: `https://mirror.example.cn/buildx/v0.28.0/${asset}`,
      checksums: 'https://mirror.example.cn/buildx/v0.28.0/checksums.txt'
    })
  })
})

describe('latest', () => {
  it('asks the GitHub API for GitHub releases, <base>/latest elsewhere', () => {
    expect(latestSource(DEFAULT_BUILDX_URL)).toEqual({
      url: LATEST_API,
      kind: 'github'
    })
    expect(latestSource(`${DEFAULT_BUILDX_URL}/`).kind).toBe('github')
    expect(latestSource('http://127.0.0.1:8080/buildx/')).toEqual({
      url: 'http://127.0.0.1:8080/buildx/latest',
      kind: 'text'
    })
  })

  it('reads tag_name from the API and the first line of a text file', () => {
    const api = JSON.stringify({tag_name: 'v0.28.0', name: 'v0.28.0'})
    expect(parseLatest('github', api, LATEST_API)).toBe('v0.28.0')
    expect(parseLatest('text', 'v0.27.1\n', 'u')).toBe('v0.27.1')
    expect(parseLatest('text', '# mirror of buildx\n\n  0.27.1  \n', 'u')).toBe(
      'v0.27.1'
    )
  })

  it('refuses an answer that holds no version, naming the URL', () => {
    expect(() =>
      parseLatest('text', '<html>Not here</html>', 'http://m/latest')
    ).toThrow(
      'Buildx: http://m/latest did not answer a version such as v0.28.0 on its first line (got "<html>Not here</html>")'
    )
    expect(() => parseLatest('github', '{"message":"x"}', LATEST_API)).toThrow(
      `${LATEST_API} did not answer a release with a tag_name`
    )
    expect(() => parseLatest('github', 'not json', LATEST_API)).toThrow(
      PhaseError
    )
  })
})

describe('checksums.txt', () => {
  // buildx's own file comes from `sha256sum -b`: "<digest> *<asset>".
  const file = [
    `${A} *buildx-v0.28.0.linux-amd64`,
    `${B}  buildx-v0.28.0.linux-arm64`,
    `${C} *buildx-v0.28.0.linux-arm-v7\r`,
    'not a checksum line',
    ''
  ].join('\n')

  it('reads binary-mode and text-mode lines, digests lower-cased', () => {
    expect(parseChecksums(file)).toEqual(
      new Map([
        ['buildx-v0.28.0.linux-amd64', A],
        ['buildx-v0.28.0.linux-arm64', B.toLowerCase()],
        ['buildx-v0.28.0.linux-arm-v7', C]
      ])
    )
  })

  it('finds the asset, or says the file does not list it', () => {
    expect(expectedDigest(file, 'buildx-v0.28.0.linux-amd64', 'u')).toBe(A)
    expect(() =>
      expectedDigest(file, 'buildx-v0.28.0.linux-riscv64', 'http://m/c.txt')
    ).toThrow(
      'Buildx: http://m/c.txt lists no sha256 for buildx-v0.28.0.linux-riscv64'
    )
  })

  it('names the file and both digests on a mismatch', () => {
    expect(mismatchMessage('buildx-v0.28.0.linux-amd64', 'http://m/x', A, C))
      .toBe(`buildx-v0.28.0.linux-amd64 downloaded from http://m/x does not match checksums.txt: \
expected sha256 ${A}, got sha256 ${C}; refusing to use it`)
  })
})

describe('versions', () => {
  it('reads the version from docker buildx version', () => {
    expect(
      parseVersionOutput(
        'github.com/docker/buildx v0.28.0 b1281b81bac9b7a6e5ef2ee1c1e1a4a1d4c4a0ab'
      )
    ).toBe('v0.28.0')
    expect(
      parseVersionOutput('github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3\n')
    ).toBe('0.13.1+ds1')
    expect(parseVersionOutput('')).toBe('')
  })

  it('compares versions for gating flags', () => {
    expect(atLeast('v0.28.0', 'v0.28.0')).toBe(true)
    expect(atLeast('0.28.1', 'v0.28.0')).toBe(true)
    expect(atLeast('v0.27.9', '0.28.0')).toBe(false)
    expect(atLeast('0.13.1+ds1', 'v0.13.0')).toBe(true)
    expect(atLeast('v0.29.0-rc1', 'v0.29.0')).toBe(false)
    expect(atLeast('v0.29.0-rc1', 'v0.28.0')).toBe(true)
    // A commit instead of a version counts as older than anything.
    expect(atLeast('b1281b8', 'v0.10.0')).toBe(false)
    expect(atLeast('', 'v0.10.0')).toBe(false)
  })

  it('matches the installed version against the tag', () => {
    expect(sameVersion('0.13.1+ds1', 'v0.13.1')).toBe(true)
    expect(sameVersion('v0.13.1', 'v0.13.2')).toBe(false)
    expect(sameVersion('', 'v0.13.1')).toBe(false)
  })
})

describe('retries', () => {
  const refused = (): Error =>
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), {
      code: 'ECONNREFUSED'
    })

  it('retries server errors, throttling, broken connections and timeouts', () => {
    for (const status of [500, 502, 503, 504, 408, 429]) {
      expect(isTransient(new HttpStatusError('u', status, ''))).toBe(true)
    }
    expect(isTransient(refused())).toBe(true)
    expect(
      isTransient(Object.assign(new Error('aborted'), {code: 'ECONNRESET'}))
    ).toBe(true)
    expect(isTransient(new Error('Request timeout: /v1/checksums.txt'))).toBe(
      true
    )
    expect(isTransient(new Error('wrapped', {cause: refused()}))).toBe(true)
    expect(isTransient(new DOMException('timed out', 'TimeoutError'))).toBe(
      true
    )
  })

  it('does not retry what another attempt cannot fix', () => {
    for (const status of [400, 401, 403, 404]) {
      expect(isTransient(new HttpStatusError('u', status, ''))).toBe(false)
    }
    expect(
      isTransient(Object.assign(new Error('EACCES'), {code: 'EACCES'}))
    ).toBe(false)
  })

  it('describes an error with its cause', () => {
    expect(describeError(new Error('wrapped', {cause: refused()}))).toBe(
      'wrapped (connect ECONNREFUSED 127.0.0.1:9)'
    )
    expect(describeError(new HttpStatusError('u', 503, 'Unavailable'))).toBe(
      'HTTP 503 Unavailable'
    )
  })

  it('waits 1s, 2s, 4s, each within 25%', () => {
    expect(RETRY_WAITS).toEqual([1000, 2000, 4000])
    expect(RETRY_WAITS.map(step => jittered(step, 0))).toEqual([
      750, 1500, 3000
    ])
    expect(RETRY_WAITS.map(step => jittered(step, 1))).toEqual([
      1250, 2500, 5000
    ])
  })

  it('logs each failed attempt with its cause and wait, then names the URL', async () => {
    const sleep = jest.fn<(ms: number) => Promise<void>>(async () =>
      Promise.resolve()
    )
    const log = jest.spyOn(process.stdout, 'write').mockReturnValue(true)
    try {
      const work = jest.fn(async (): Promise<string> => {
        await Promise.resolve()
        throw refused()
      })
      await expect(
        withRetries('http://127.0.0.1:9/v1/checksums.txt', work, {
          sleep,
          random: () => 0.5
        })
      ).rejects.toThrow(
        'Buildx: http://127.0.0.1:9/v1/checksums.txt could not be reached after 4 attempts: connect ECONNREFUSED 127.0.0.1:9'
      )
      expect(work).toHaveBeenCalledTimes(4)
      expect(sleep.mock.calls).toEqual([[1000], [2000], [4000]])
      const lines = log.mock.calls.map(call => String(call[0]))
      expect(lines).toContain(
        'Attempt 1 of 4 for http://127.0.0.1:9/v1/checksums.txt failed: connect ECONNREFUSED 127.0.0.1:9; retrying in 1.0s\n'
      )
      expect(lines.filter(line => line.startsWith('Attempt '))).toHaveLength(3)
    } finally {
      log.mockRestore()
    }
  })

  it('stops at once on a permanent failure', async () => {
    const sleep = jest.fn<(ms: number) => Promise<void>>(async () =>
      Promise.resolve()
    )
    const work = jest.fn(async (): Promise<string> => {
      await Promise.resolve()
      throw new HttpStatusError('u', 404, 'Not Found')
    })
    await expect(withRetries('http://m/v9/x', work, {sleep})).rejects.toThrow(
      'Buildx: http://m/v9/x: HTTP 404 Not Found; check buildx-version and buildx-download-url'
    )
    expect(work).toHaveBeenCalledTimes(1)
    expect(sleep).not.toHaveBeenCalled()
  })
})

describe('downloads over HTTP', () => {
  // A server on 127.0.0.1 that fails the first requests of a path.
  let server: Server
  let base = ''
  const failures = new Map<string, number>()
  const requests: string[] = []
  const payload = Buffer.alloc(3 * 1024 * 1024, 7)
  let dir = ''
  const quick = {waits: [5, 5, 5]}
  const stalled: ServerResponse[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'buildx-unit-'))
    server = createServer((request, response) => {
      const path = request.url ?? ''
      requests.push(path)
      const left = failures.get(path) ?? 0
      if (left > 0) {
        failures.set(path, left - 1)
        response.writeHead(503).end('busy')
      } else if (path === '/v1/asset') {
        response.writeHead(200).end(payload)
      } else if (path === '/hangs') {
        stalled.push(response)
      } else if (path === '/stalls') {
        // Headers and a first chunk, then silence.
        response.writeHead(200, {'Content-Length': '100'})
        response.write('partial')
        stalled.push(response)
      } else if (path === '/latest') {
        response.writeHead(200).end('v0.13.1\n')
      } else {
        response.writeHead(404).end()
      }
    })
    await new Promise<void>(resolve =>
      server.listen(0, '127.0.0.1', () => resolve())
    )
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })

  afterAll(async () => {
    stalled.forEach(response => response.destroy())
    rmSync(dir, {recursive: true, force: true})
    await new Promise(resolve => server.close(resolve))
  })

  it('streams a file to disk and returns its sha256', async () => {
    const file = join(dir, 'asset')
    const digest = await downloadFile(`${base}/v1/asset`, file, quick)
    expect(digest).toBe(createHash('sha256').update(payload).digest('hex'))
    expect(readFileSync(file).equals(payload)).toBe(true)
  })

  it('gets through a server that answers 503 twice', async () => {
    const log = jest.spyOn(process.stdout, 'write').mockReturnValue(true)
    try {
      failures.set('/latest', 2)
      requests.length = 0
      expect(await fetchText(`${base}/latest`, {}, quick)).toBe('v0.13.1\n')
      expect(requests).toEqual(['/latest', '/latest', '/latest'])
      expect(
        log.mock.calls.filter(call =>
          String(call[0]).includes('failed: HTTP 503 Service Unavailable')
        )
      ).toHaveLength(2)
    } finally {
      log.mockRestore()
    }
  })

  it('abandons a response that goes silent, and retries it', async () => {
    const log = jest.spyOn(process.stdout, 'write').mockReturnValue(true)
    try {
      requests.length = 0
      await expect(
        downloadFile(`${base}/stalls`, join(dir, 'stalls'), {
          ...quick,
          idleTimeout: 200
        })
      ).rejects.toThrow(
        `Buildx: ${base}/stalls could not be reached after 4 attempts: no data for 0.2s`
      )
      expect(requests).toEqual(['/stalls', '/stalls', '/stalls', '/stalls'])
      expect(
        log.mock.calls.filter(call =>
          String(call[0]).includes('failed: no data for 0.2s; retrying in')
        )
      ).toHaveLength(3)
    } finally {
      log.mockRestore()
    }
  })

  it('abandons a server that never answers', async () => {
    const log = jest.spyOn(process.stdout, 'write').mockReturnValue(true)
    try {
      await expect(
        fetchText(`${base}/hangs`, {}, {...quick, idleTimeout: 200})
      ).rejects.toThrow(
        `Buildx: ${base}/hangs could not be reached after 4 attempts: Request timeout: /hangs`
      )
    } finally {
      log.mockRestore()
    }
  })

  it('fails with the URL when nothing listens', async () => {
    const closed = createServer()
    await new Promise<void>(resolve =>
      closed.listen(0, '127.0.0.1', () => resolve())
    )
    const port = (closed.address() as AddressInfo).port
    await new Promise(resolve => closed.close(resolve))
    const log = jest.spyOn(process.stdout, 'write').mockReturnValue(true)
    try {
      await expect(
        fetchText(`http://127.0.0.1:${port}/latest`, {}, quick)
      ).rejects.toThrow(
        `http://127.0.0.1:${port}/latest could not be reached after 4 attempts: connect ECONNREFUSED 127.0.0.1:${port}`
      )
    } finally {
      log.mockRestore()
    }
  })
})

describe('runner directories', () => {
  it('uses the runner settings, or a cache beside RUNNER_TEMP', () => {
    expect(
      runnerDirs({RUNNER_TEMP: '/w/_temp', RUNNER_TOOL_CACHE: '/opt/tools'})
    ).toEqual({temp: '/w/_temp', toolCache: '/opt/tools'})
    expect(runnerDirs({RUNNER_TEMP: '/w/_temp'})).toEqual({
      temp: '/w/_temp',
      toolCache: '/w/_tool'
    })
    expect(runnerDirs({})).toEqual({
      temp: tmpdir(),
      toolCache: join(tmpdir(), 'multiarch-tool-cache')
    })
  })
})
