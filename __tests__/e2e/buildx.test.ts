import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  commandsOf,
  runAction,
  stackEnv,
  uniqueRepo,
  type Run
} from './harness.js'

// Pinned buildx against a release-shaped directory served from 127.0.0.1 by
// a separate process (runAction blocks this one). The served "release" is
// the runner's Debian-packaged buildx behind a small wrapper: it answers
// `buildx version` with a marker line, so the run's buildx is told apart
// from the runner's, and it logs every call it serves.

const RUNNER_PLUGIN = '/usr/local/lib/docker/cli-plugins/docker-buildx'
const TAG = 'v0.13.1'
const ASSET = `buildx-${TAG}.linux-amd64`
const MARKER = 'served-by: multiarch-action buildx e2e release'

const sha256 = (data: string | Buffer): string =>
  createHash('sha256').update(data).digest('hex')

let root = ''
let release = ''
let serverLog = ''
let wrapperCalls = ''
let base = ''
let server: ChildProcess | undefined
let wrapperDigest = ''

const runner = {link: '', target: '', digest: '', version: ''}

function hostBuildxVersion(): string {
  // Outside any run: the runner's own docker config and plugins.
  const out = spawnSync('docker', ['buildx', 'version'], {
    encoding: 'utf8',
    env: {...process.env, ...stackEnv()}
  })
  return `${out.status} ${out.stdout}`
}

const requests = (): string[] =>
  existsSync(serverLog)
    ? readFileSync(serverLog, 'utf8').split('\n').filter(Boolean)
    : []

// A run's requests: what the server logged while `work` ran.
function served(work: () => Run): {run: Run; requests: string[]} {
  const before = requests().length
  const run = work()
  return {run, requests: requests().slice(before)}
}

function runWith(
  inputs: Record<string, string>,
  env: Record<string, string>
): Run {
  return runAction(
    {
      image: `${REG.m3}/${uniqueRepo('buildx')}`,
      tags: 'v1',
      platforms: 'linux/amd64',
      context: join(FIXTURES, 'busybox'),
      driver: 'docker',
      network: 'host',
      'buildx-download-url': base,
      ...inputs
    },
    {env}
  )
}

const toolCache = (name: string): string => join(root, `tool-cache-${name}`)

function installedPlugin(run: Run): string {
  const match = /Installed buildx \S+ for this run: (\S+)/.exec(run.stdout)
  return match?.[1] ?? ''
}

async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>(resolve =>
    probe.listen(0, '127.0.0.1', () => resolve())
  )
  const address = probe.address()
  await new Promise(resolve => probe.close(resolve))
  return typeof address === 'object' && address ? address.port : 0
}

beforeAll(async () => {
  runner.link = readlinkSync(RUNNER_PLUGIN)
  runner.target = realpathSync(RUNNER_PLUGIN)
  runner.digest = sha256(readFileSync(runner.target))
  runner.version = hostBuildxVersion()

  root = mkdtempSync(join(tmpdir(), 'buildx-e2e-'))
  release = join(root, 'release')
  serverLog = join(root, 'server.log')
  wrapperCalls = join(root, 'wrapper-calls.log')

  // The Debian binary, copied, so the runner's own file is never executed
  // on behalf of the run.
  const debian = join(root, 'debian-buildx')
  copyFileSync(runner.target, debian)
  chmodSync(debian, 0o755)
  const wrapper = [
    '#!/bin/sh',
    `# buildx ${TAG} as served by the multiarch-action e2e tests`,
    `echo "$*" >> '${wrapperCalls}'`,
    'if [ "$1" = buildx ] && [ "$2" = version ]; then',
    `  '${debian}' "$@" || exit $?`,
    `  echo '${MARKER}'`,
    '  exit 0',
    'fi',
    `exec '${debian}' "$@"`,
    ''
  ].join('\n')
  wrapperDigest = sha256(wrapper)

  mkdirSync(join(release, TAG), {recursive: true})
  writeFileSync(join(release, TAG, ASSET), wrapper)
  writeFileSync(
    join(release, TAG, 'checksums.txt'),
    [
      `${sha256('not served')} *buildx-${TAG}.linux-arm64`,
      `${wrapperDigest} *${ASSET}`,
      ''
    ].join('\n')
  )
  writeFileSync(join(release, 'latest'), `${TAG}\n`)

  // A release whose asset arrives altered: checksums.txt holds the digest
  // of the real wrapper, the server sends it with one more line.
  const corrupt = `${TAG}-corrupt`
  mkdirSync(join(release, corrupt))
  writeFileSync(
    join(release, corrupt, `buildx-${corrupt}.linux-amd64`),
    `${wrapper}echo tampered\n`
  )
  writeFileSync(
    join(release, corrupt, 'checksums.txt'),
    `${wrapperDigest} *buildx-${corrupt}.linux-amd64\n`
  )

  const portFile = join(root, 'port')
  server = spawn(
    process.execPath,
    [
      join(import.meta.dirname, 'buildx-release-server.mjs'),
      release,
      serverLog,
      portFile
    ],
    {stdio: 'ignore'}
  )
  for (let i = 0; i < 100 && !existsSync(portFile); i++) {
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  base = `http://127.0.0.1:${readFileSync(portFile, 'utf8').trim()}`
})

afterAll(() => {
  if (server?.pid) process.kill(server.pid, 'SIGTERM')
  if (root) rmSync(root, {recursive: true, force: true})
})

describe('pinned buildx', () => {
  it('installs the release for this run, verified, and uses it', () => {
    const {run, requests} = served(() =>
      runWith({'buildx-version': TAG}, {RUNNER_TOOL_CACHE: toolCache('one')})
    )
    expect(run.status).toBe(0)
    expect(requests).toEqual([
      `GET /${TAG}/checksums.txt 200`,
      `GET /${TAG}/${ASSET} 200`
    ])
    expect(run.stdout).toContain(
      `${ASSET}: sha256 ${wrapperDigest} matches ${base}/${TAG}/checksums.txt`
    )
    // docker buildx version inside the run: the served one.
    expect(run.stdout).toMatch(
      new RegExp(
        `docker buildx version: github\\.com/docker/buildx 0\\.13\\.1\\S* .*\\n${MARKER}`
      )
    )
    expect(commandsOf(run, 'buildx', 'version')).toHaveLength(1)
    // Installed in the run's own Docker config, which the post step deletes.
    const plugin = installedPlugin(run)
    expect(plugin).toMatch(
      new RegExp(
        `^${run.runnerTemp}/multiarch-[^/]+/docker-config/cli-plugins/docker-buildx$`
      )
    )
    expect(existsSync(plugin)).toBe(false)
    expect(run.post.status).toBe(0)
    // The build itself went through the pinned plugin.
    const calls = readFileSync(wrapperCalls, 'utf8')
    expect(calls).toMatch(/^buildx build /m)
    // Cached under the tool cache, with the digest it was verified with.
    const cached = join(toolCache('one'), 'buildx', '0.13.1', process.arch)
    expect(existsSync(`${cached}.complete`)).toBe(true)
    expect(sha256(readFileSync(join(cached, 'docker-buildx')))).toBe(
      wrapperDigest
    )
  })

  it('takes it from the tool cache on the second run, without a request', () => {
    const {run, requests} = served(() =>
      runWith({'buildx-version': TAG}, {RUNNER_TOOL_CACHE: toolCache('one')})
    )
    expect(run.status).toBe(0)
    expect(requests).toEqual([])
    expect(run.stdout).toContain(`buildx ${TAG} found in the tool cache`)
    expect(run.stdout).toContain(MARKER)
  })

  it('resolves latest from <base>/latest on a custom base URL', () => {
    const {run, requests} = served(() =>
      runWith(
        {'buildx-version': 'latest'},
        {RUNNER_TOOL_CACHE: toolCache('one')}
      )
    )
    expect(run.status).toBe(0)
    expect(requests).toEqual(['GET /latest 200'])
    expect(run.stdout).toContain(
      `Latest buildx is ${TAG} (from ${base}/latest)`
    )
    expect(run.stdout).toContain(MARKER)
  })

  it('refuses latest when the base URL serves no latest file', () => {
    const bare = `${base}/${TAG}`
    const run = runWith(
      {'buildx-version': 'latest', 'buildx-download-url': bare},
      {RUNNER_TOOL_CACHE: toolCache('one')}
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(
      `::error::Buildx: buildx-version latest with buildx-download-url ${bare} reads ${bare}/latest`
    )
    expect(run.stdout).toContain('HTTP 404 Not Found')
    expect(commandsOf(run, 'buildx')).toEqual([])
  })

  it('retries a server that answers 503, logging each wait', () => {
    const rules = join(release, '.fail')
    writeFileSync(rules, `/${TAG}/checksums.txt 2 503\n`)
    try {
      const started = Date.now()
      const {run, requests} = served(() =>
        runWith({'buildx-version': TAG}, {RUNNER_TOOL_CACHE: toolCache('two')})
      )
      expect(run.status).toBe(0)
      expect(requests).toEqual([
        `GET /${TAG}/checksums.txt 503`,
        `GET /${TAG}/checksums.txt 503`,
        `GET /${TAG}/checksums.txt 200`,
        `GET /${TAG}/${ASSET} 200`
      ])
      const url = `${base}/${TAG}/checksums.txt`
      for (const attempt of [1, 2]) {
        expect(run.stdout).toMatch(
          new RegExp(
            `Attempt ${attempt} of 4 for ${url} failed: HTTP 503 Service Unavailable; retrying in \\d\\.\\ds`
          )
        )
      }
      // Waits of about 1s and 2s (within 25%).
      expect(Date.now() - started).toBeGreaterThan(2250)
      expect(run.stdout).toContain(MARKER)
    } finally {
      rmSync(rules)
    }
  })

  it('refuses an asset that does not match checksums.txt, before using it', () => {
    const corrupt = `${TAG}-corrupt`
    const asset = `buildx-${corrupt}.linux-amd64`
    const sent = sha256(readFileSync(join(release, corrupt, asset), 'utf8'))
    const {run, requests} = served(() =>
      runWith(
        {'buildx-version': corrupt},
        {RUNNER_TOOL_CACHE: toolCache('three')}
      )
    )
    expect(run.status).not.toBe(0)
    expect(requests).toEqual([
      `GET /${corrupt}/checksums.txt 200`,
      `GET /${corrupt}/${asset} 200`
    ])
    expect(run.stdout).toContain(
      `::error::Buildx: ${asset} downloaded from ${base}/${corrupt}/${asset} ` +
        `does not match checksums.txt: expected sha256 ${wrapperDigest}, ` +
        `got sha256 ${sent}; refusing to use it`
    )
    // Never run, never installed, never cached.
    expect(commandsOf(run, 'buildx')).toEqual([])
    expect(run.stdout).not.toContain('Installed buildx')
    expect(existsSync(join(toolCache('three'), 'buildx'))).toBe(false)
    expect(readFileSync(wrapperCalls, 'utf8')).not.toContain('tampered')
  })

  it('fails naming the URL when the base URL is unreachable, after the retries', async () => {
    const closed = `http://127.0.0.1:${await freePort()}`
    const started = Date.now()
    const run = runWith(
      {'buildx-version': TAG, 'buildx-download-url': closed},
      {RUNNER_TOOL_CACHE: toolCache('four')}
    )
    const seconds = (Date.now() - started) / 1000
    const url = `${closed}/${TAG}/checksums.txt`
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(
      `::error::Buildx: ${url} could not be reached after 4 attempts: ` +
        `connect ECONNREFUSED ${closed.slice('http://'.length)}`
    )
    const attempts = run.stdout
      .split('\n')
      .filter(line => line.startsWith(`Attempt `) && line.includes(url))
    expect(attempts).toHaveLength(3)
    expect(attempts[2]).toMatch(/^Attempt 3 of 4 .* retrying in \d\.\ds$/)
    // 1s + 2s + 4s, each within 25%.
    expect(seconds).toBeGreaterThan(5.25)
    expect(commandsOf(run, 'buildx')).toEqual([])
  })

  it('wins over a buildx in the user’s cli-plugins directory', () => {
    // A user config whose plugin directory holds an older buildx.
    const user = join(root, 'user-config')
    mkdirSync(join(user, 'cli-plugins'), {recursive: true})
    const debian = join(root, 'debian-buildx')
    writeFileSync(
      join(user, 'cli-plugins', 'docker-buildx'),
      [
        '#!/bin/sh',
        'if [ "$1" = buildx ] && [ "$2" = version ]; then',
        '  echo "github.com/docker/buildx v0.10.0 users-own"',
        '  exit 0',
        'fi',
        `exec '${debian}' "$@"`,
        ''
      ].join('\n'),
      {mode: 0o755}
    )
    const env = {RUNNER_TOOL_CACHE: toolCache('one'), DOCKER_CONFIG: user}
    const unpinned = runWith({'buildx-version': ''}, env)
    expect(unpinned.status).toBe(0)
    expect(unpinned.stdout).toContain(
      'docker buildx version: github.com/docker/buildx v0.10.0 users-own'
    )
    const pinned = runWith({'buildx-version': TAG}, env)
    expect(pinned.status).toBe(0)
    expect(pinned.stdout).toContain(MARKER)
    expect(pinned.stdout).not.toContain('users-own')
    // The user's config is left as it was.
    expect(existsSync(join(user, 'config.json'))).toBe(false)
  })

  it('leaves the runner’s own buildx untouched', () => {
    expect(readlinkSync(RUNNER_PLUGIN)).toBe(runner.link)
    expect(realpathSync(RUNNER_PLUGIN)).toBe(runner.target)
    expect(sha256(readFileSync(runner.target))).toBe(runner.digest)
    expect(hostBuildxVersion()).toBe(runner.version)
    expect(runner.version).not.toContain(MARKER)
  })
})
