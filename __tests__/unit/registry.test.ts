import {jest} from '@jest/globals'
import {mkdtempSync, writeFileSync} from 'node:fs'
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse
} from 'node:http'
import type {AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  RegistryClient,
  answerChallenge,
  baseUrl,
  credentialFor,
  proxied,
  sha256,
  target
} from '../../src/registry.js'

describe('target', () => {
  it.each([
    ['127.0.0.1:5002/a/b:v1', '127.0.0.1:5002', 'a/b', 'v1'],
    [
      'registry.cn-hangzhou.aliyuncs.com/ossrs/srs:6',
      'registry.cn-hangzhou.aliyuncs.com',
      'ossrs/srs',
      '6'
    ],
    ['ossrs/srs:v6.0.1', '', 'ossrs/srs', 'v6.0.1'],
    ['busybox', '', 'library/busybox', 'latest'],
    [
      'docker.io/busybox@sha256:' + 'a'.repeat(64),
      'docker.io',
      'library/busybox',
      'sha256:' + 'a'.repeat(64)
    ]
  ])('%s', (ref, host, repository, reference) => {
    expect(target(ref)).toEqual({host, repository, reference})
  })
})

describe('baseUrl', () => {
  it.each([
    ['127.0.0.1:5002', 'http://127.0.0.1:5002'],
    ['localhost:5000', 'http://localhost:5000'],
    ['[::1]:5000', 'http://[::1]:5000'],
    [
      'registry.cn-hangzhou.aliyuncs.com',
      'https://registry.cn-hangzhou.aliyuncs.com'
    ],
    ['ghcr.io', 'https://ghcr.io'],
    ['127.0.0.1.example.com', 'https://127.0.0.1.example.com'],
    ['', 'https://registry-1.docker.io'],
    ['docker.io', 'https://registry-1.docker.io']
  ])('%s is reached at %s', (host, url) => {
    expect(baseUrl(host)).toBe(url)
  })
})

describe('credentialFor', () => {
  const auths = {
    'https://index.docker.io/v1/': {auth: 'aHViOnB3'},
    '127.0.0.1:5002': {auth: 'bTE6cHc='},
    'ghcr.io': {}
  }
  it('finds Hub under its index URL, whatever spelling the mirror used', () => {
    expect(credentialFor('', auths)).toBe('aHViOnB3')
    expect(credentialFor('docker.io', auths)).toBe('aHViOnB3')
    expect(credentialFor('registry-1.docker.io', auths)).toBe('aHViOnB3')
  })
  it('matches other hosts exactly, port included', () => {
    expect(credentialFor('127.0.0.1:5002', auths)).toBe('bTE6cHc=')
    expect(credentialFor('127.0.0.1:5003', auths)).toBeUndefined()
    expect(credentialFor('ghcr.io', auths)).toBeUndefined()
  })
})

describe('answerChallenge', () => {
  const never = (() => {
    throw new Error('no request expected')
  }) as unknown as typeof fetch
  it('answers Basic with the stored credential, and not without one', async () => {
    expect(await answerChallenge('Basic realm="r"', 'dTpw', 's', never)).toBe(
      'Basic dTpw'
    )
    expect(
      await answerChallenge('Basic realm="r"', undefined, 's', never)
    ).toBeUndefined()
  })
  it('sends credentials to a token service over TLS only, loopback aside', async () => {
    expect(
      await answerChallenge(
        'Bearer realm="http://auth.example.com/token",service="r"',
        'dTpw',
        's',
        never
      )
    ).toBeUndefined()
    const seen: string[] = []
    const request = ((url: URL) => {
      seen.push(url.toString())
      return Promise.resolve(Response.json({token: 't'}))
    }) as unknown as typeof fetch
    expect(
      await answerChallenge(
        'Bearer realm="https://auth.example.com/token",service="r"',
        'dTpw',
        'repository:a/b:pull,push',
        request
      )
    ).toBe('Bearer t')
    expect(
      await answerChallenge(
        'Bearer realm="http://127.0.0.1:5001/token"',
        'dTpw',
        's',
        request
      )
    ).toBe('Bearer t')
    expect(seen).toEqual([
      'https://auth.example.com/token?service=r&scope=repository%3Aa%2Fb%3Apull%2Cpush',
      'http://127.0.0.1:5001/token?scope=s'
    ])
  })

  it('leaves schemes it does not know, and garbage, to buildx', async () => {
    expect(
      await answerChallenge('Negotiate', 'dTpw', 's', never)
    ).toBeUndefined()
    expect(await answerChallenge('', 'dTpw', 's', never)).toBeUndefined()
    expect(await answerChallenge(null, 'dTpw', 's', never)).toBeUndefined()
    expect(
      await answerChallenge('Bearer service="x"', 'dTpw', 's', never)
    ).toBeUndefined()
  })
})

// A registry of its own for the client: Bearer tokens from /token for one
// user, manifests kept in memory, and a log of every request.
interface Seen {
  method: string
  url: string
  authorization?: string
}

function tinyRegistry(): {
  start: () => Promise<string>
  stop: () => Promise<void>
  seen: Seen[]
  manifests: Map<string, {body: Buffer; type: string}>
  fail: Map<string, number>
  custom: Map<string, (res: ServerResponse) => void>
  tokens: {generation: number; down: number}
} {
  const seen: Seen[] = []
  const manifests = new Map<string, {body: Buffer; type: string}>()
  const fail = new Map<string, number>()
  // Answers of its own for some manifest keys; a token generation that
  // turns every earlier token stale; token answers that fail for a while.
  const custom = new Map<string, (res: ServerResponse) => void>()
  const tokens = {generation: 0, down: 0}
  let server: Server
  let address = ''
  const body = (req: IncomingMessage): Promise<Buffer> =>
    new Promise(done => {
      const chunks: Buffer[] = []
      req.on('data', (chunk: Buffer) => chunks.push(chunk))
      req.on('end', () => done(Buffer.concat(chunks)))
    })
  const start = (): Promise<string> =>
    new Promise(done => {
      server = createServer((req, res) => {
        void (async () => {
          const data = await body(req)
          const url = new URL(req.url ?? '/', 'http://x')
          seen.push({
            method: req.method ?? '',
            url: req.url ?? '',
            authorization: req.headers.authorization
          })
          if (url.pathname === '/token') {
            if (tokens.down > 0) {
              tokens.down--
              res.writeHead(503).end()
              return
            }
            const ok =
              req.headers.authorization ===
              `Basic ${Buffer.from('ci:pw').toString('base64')}`
            res.writeHead(ok ? 200 : 401, {'Content-Type': 'application/json'})
            res.end(
              ok
                ? JSON.stringify({
                    token: `t${tokens.generation}-${url.searchParams.get('scope')}`
                  })
                : '{}'
            )
            return
          }
          const match = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname)
          if (!match) {
            res.writeHead(404).end()
            return
          }
          const answer = custom.get(`${match[1]}:${match[2]}`)
          if (answer) {
            answer(res)
            return
          }
          const current = `Bearer t${tokens.generation}-repository:`
          if (!req.headers.authorization?.startsWith(current)) {
            res.writeHead(401, {
              'WWW-Authenticate': `Bearer realm="http://${address}/token",service="tiny"`
            })
            res.end()
            return
          }
          const key = `${match[1]}:${match[2]}`
          const status = fail.get(key)
          if (status) {
            const elsewhere = {Location: '/elsewhere'}
            res.writeHead(status, status === 307 ? elsewhere : {}).end()
            return
          }
          if (req.method === 'PUT') {
            const type = req.headers['content-type'] ?? ''
            manifests.set(key, {body: data, type})
            manifests.set(`${match[1]}:${sha256(data)}`, {body: data, type})
            res.writeHead(201, {'Docker-Content-Digest': sha256(data)})
            res.end()
            return
          }
          const found = manifests.get(key)
          if (!found) {
            res.writeHead(404).end()
            return
          }
          res.writeHead(200, {'Content-Type': found.type})
          res.end(found.body)
        })()
      })
      server.listen(0, '127.0.0.1', () => {
        address = `127.0.0.1:${(server.address() as AddressInfo).port}`
        done(address)
      })
    })
  const stop = (): Promise<void> =>
    new Promise(done => {
      server.closeAllConnections()
      server.close(() => done())
    })
  return {start, stop, seen, manifests, fail, custom, tokens}
}

describe('RegistryClient against a registry with Bearer tokens', () => {
  const registry = tinyRegistry()
  let host = ''
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: []
    })
  )
  const manifest = {
    bytes: index,
    digest: sha256(index),
    mediaType: 'application/vnd.oci.image.index.v1+json'
  }
  const previous = process.env.DOCKER_CONFIG
  beforeAll(async () => {
    host = await registry.start()
    const dir = mkdtempSync(join(tmpdir(), 'registry-test-'))
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        auths: {[host]: {auth: Buffer.from('ci:pw').toString('base64')}}
      })
    )
    process.env.DOCKER_CONFIG = dir
  })
  afterAll(async () => {
    process.env.DOCKER_CONFIG = previous
    await registry.stop()
  })
  beforeEach(() => {
    registry.seen.length = 0
  })

  it('writes six tags and reads them back, fetching one token', async () => {
    const printed: string[] = []
    const write = jest
      .spyOn(process.stdout, 'write')
      .mockImplementation((chunk: string | Uint8Array) => {
        printed.push(String(chunk))
        return true
      })
    const client = new RegistryClient()
    const tags = ['v6.0.1', '6.0.1', '6', 'v6', '6.0', 'latest']
    const written = await Promise.all(
      tags.map(tag => client.write(`${host}/ossrs/srs:${tag}`, manifest))
    )
    expect(written).toEqual(tags.map(() => true))
    const read = await Promise.all(
      tags.map(tag => client.read(`${host}/ossrs/srs:${tag}`))
    )
    for (const result of read) {
      expect(result).toEqual({manifest})
    }
    const tokens = registry.seen.filter(r => r.url.startsWith('/token'))
    expect(tokens).toHaveLength(1)
    expect(tokens[0].url).toContain(
      'scope=repository%3Aossrs%2Fsrs%3Apull%2Cpush'
    )
    // 6 challenged, 6 written, 6 read, and the token.
    expect(registry.seen).toHaveLength(19)
    write.mockRestore()
    // The token is masked, though nothing prints it.
    expect(printed.join('')).toContain(
      '::add-mask::t0-repository:ossrs/srs:pull,push'
    )
  })

  it('reads a digest back only when the bytes hash to it', async () => {
    const client = new RegistryClient()
    expect(await client.read(`${host}/ossrs/srs@${manifest.digest}`)).toEqual({
      manifest
    })
    const other = `sha256:${'0'.repeat(64)}`
    registry.manifests.set(`ossrs/srs:${other}`, {
      body: index,
      type: manifest.mediaType
    })
    expect(await client.read(`${host}/ossrs/srs@${other}`)).toBeUndefined()
  })

  it('says "missing" for 404 and leaves any other answer to buildx', async () => {
    const client = new RegistryClient()
    expect(await client.read(`${host}/ossrs/srs:nope`)).toEqual({
      missing: true
    })
    registry.fail.set('ossrs/srs:v7', 500)
    expect(await client.read(`${host}/ossrs/srs:v7`)).toBeUndefined()
    expect(await client.write(`${host}/ossrs/srs:v7`, manifest)).toBe(false)
    registry.fail.set('ossrs/srs:v8', 429)
    expect(await client.write(`${host}/ossrs/srs:v8`, manifest)).toBe(false)
    // A redirect is not followed with this registry's Authorization.
    registry.fail.set('ossrs/srs:v9', 307)
    expect(await client.read(`${host}/ossrs/srs:v9`)).toBeUndefined()
    expect(registry.seen.map(r => r.url)).not.toContain('/elsewhere')
  })

  it('does not write a media type that is no manifest', async () => {
    const client = new RegistryClient()
    expect(
      await client.write(`${host}/ossrs/srs:x`, {
        ...manifest,
        mediaType: 'text/plain'
      })
    ).toBe(false)
    expect(registry.seen).toHaveLength(0)
  })

  it('gives up, without looping, when the token is refused', async () => {
    const previousConfig = process.env.DOCKER_CONFIG
    process.env.DOCKER_CONFIG = '/nonexistent'
    try {
      const client = new RegistryClient()
      expect(await client.read(`${host}/ossrs/srs:v6`)).toBeUndefined()
      // challenged, token refused: two requests, then buildx's turn.
      expect(
        registry.seen.map(r => r.method + ' ' + r.url.split('?')[0])
      ).toEqual(['GET /v2/ossrs/srs/manifests/v6', 'GET /token'])
    } finally {
      process.env.DOCKER_CONFIG = previousConfig
    }
  })

  it('leaves a 200 that is no manifest, or a cut body, to buildx', async () => {
    const client = new RegistryClient()
    const answers: [string, (res: ServerResponse) => void][] = [
      [
        'html',
        res => res.writeHead(200, {'Content-Type': 'text/html'}).end('<html>')
      ],
      ['empty', res => res.writeHead(200).end()],
      [
        'schema1',
        res =>
          res
            .writeHead(200, {'Content-Type': manifest.mediaType})
            .end('{"schemaVersion":1}')
      ],
      [
        'cut',
        res => {
          res.writeHead(200, {
            'Content-Type': manifest.mediaType,
            'Content-Length': String(index.length)
          })
          res.write(index.subarray(0, 20))
          res.destroy()
        }
      ]
    ]
    for (const [tag, answer] of answers) {
      registry.custom.set(`ossrs/srs:${tag}`, answer)
      expect([tag, await client.read(`${host}/ossrs/srs:${tag}`)]).toEqual([
        tag,
        undefined
      ])
    }
  })

  it('counts a 201 as written only when it names the digest', async () => {
    const client = new RegistryClient()
    registry.custom.set('ossrs/srs:nodigest', res => res.writeHead(201).end())
    registry.custom.set('ossrs/srs:otherdigest', res =>
      res
        .writeHead(201, {'Docker-Content-Digest': `sha256:${'1'.repeat(64)}`})
        .end()
    )
    expect(await client.write(`${host}/ossrs/srs:nodigest`, manifest)).toBe(
      false
    )
    expect(await client.write(`${host}/ossrs/srs:otherdigest`, manifest)).toBe(
      false
    )
  })

  it('refreshes a stale token once for parallel requests', async () => {
    const client = new RegistryClient()
    await client.write(`${host}/ossrs/srs:v1`, manifest)
    registry.tokens.generation++
    registry.seen.length = 0
    const read = await Promise.all(
      ['v1', 'v1', 'v1', 'v1', 'v1', 'v1'].map(tag =>
        client.read(`${host}/ossrs/srs:${tag}`)
      )
    )
    expect(read).toEqual(read.map(() => ({manifest})))
    expect(registry.seen.filter(r => r.url.startsWith('/token'))).toHaveLength(
      1
    )
  })

  it('asks for a token again after the token service failed once', async () => {
    const client = new RegistryClient()
    registry.tokens.generation++
    registry.tokens.down = 1
    expect(await client.read(`${host}/ossrs/srs:v1`)).toBeUndefined()
    expect(await client.read(`${host}/ossrs/srs:v1`)).toEqual({manifest})
  })

  it('leaves an anonymous 404 to buildx when it holds credentials', async () => {
    const client = new RegistryClient()
    registry.custom.set('ossrs/srs:hidden', res => res.writeHead(404).end())
    expect(await client.read(`${host}/ossrs/srs:hidden`)).toBeUndefined()
  })

  it('stays out of the way of a proxy, except on loopback', () => {
    const env = {HTTPS_PROXY: 'http://proxy.example:3128'}
    expect(proxied('https://registry.example.com/v2/', env)).toBe(true)
    expect(proxied('https://registry.example.com/v2/', {})).toBe(false)
    expect(
      proxied('http://127.0.0.1:5002/v2/', {...env, HTTP_PROXY: 'x'})
    ).toBe(false)
    expect(proxied('http://registry.example.com/v2/', {http_proxy: 'x'})).toBe(
      true
    )
  })

  it('answers undefined when nothing listens', async () => {
    const client = new RegistryClient()
    expect(await client.read('127.0.0.1:1/ossrs/srs:v6')).toBeUndefined()
    expect(await client.write('127.0.0.1:1/ossrs/srs:v6', manifest)).toBe(false)
  })
})
