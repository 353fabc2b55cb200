import {readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  authYaml,
  blobExists,
  commandsOf,
  docker,
  expectCopiedOnce,
  expectNoSecret,
  manifest,
  passwordEnv,
  runAction,
  tagList,
  uniqueRepo,
  buildersAfter,
  type Run
} from './harness.js'

// The whole release on the real stack: emulators from the stand-in
// installer image, the engine's own builder, logins, one three-platform
// build, a copy into two mirrors, verification and the post step.

const STANDIN = `${REG.base}/test/binfmt-standin:1`
const PLATFORMS = 'linux/amd64,linux/arm64/v8,linux/arm/v7'

describe('a three-platform release', () => {
  const repo = uniqueRepo('release')
  let run: Run

  beforeAll(() => {
    run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v6.0.145\n6',
        platforms: PLATFORMS,
        context: join(FIXTURES, 'busybox'),
        'build-args': 'JOBS=10',
        mirrors: `${REG.m1}/${repo}, ${REG.m3}/${repo}`,
        'registry-auth': authYaml('hub', 'm1'),
        driver: 'docker',
        network: 'host',
        'qemu-image': STANDIN
      },
      {env: passwordEnv()}
    )
  })

  it('succeeds', () => {
    expect(run.stdout).not.toMatch(/::error/)
    expect(run.status).toBe(0)
    expect(run.post.status).toBe(0)
  })

  it('pushes an index with exactly the three platforms', async () => {
    const pushed = await manifest(REG.hub, repo, 'v6.0.145', USERS.hub)
    expect(pushed.status).toBe(200)
    expect(pushed.digest).toBe(run.outputs.digest)
    const entries = pushed.body.manifests as {
      platform: {architecture: string; variant?: string}
    }[]
    const platforms = entries.map(e =>
      [e.platform.architecture, e.platform.variant ?? ''].join('/')
    )
    // arm64/v8 and arm64 are one platform: compare normalised.
    expect(platforms.map(p => p.replace('arm64/v8', 'arm64/')).sort()).toEqual([
      'amd64/',
      'arm/v7',
      'arm64/'
    ])
    expect(run.outputs.platforms).toBe('linux/amd64,linux/arm64,linux/arm/v7')
  })

  it('copies the same digest, every tag, to both mirrors with blobs copied once each', async () => {
    for (const [registry, auth] of [
      [REG.m1, USERS.m1],
      [REG.m3, undefined]
    ] as const) {
      expect(await tagList(registry, repo, auth)).toEqual(['6', 'v6.0.145'])
      for (const tag of ['6', 'v6.0.145']) {
        expect((await manifest(registry, repo, tag, auth)).digest).toBe(
          run.outputs.digest
        )
      }
      const index = await manifest(registry, repo, 'v6.0.145', auth)
      for (const entry of index.body.manifests as {digest: string}[]) {
        const child = await manifest(registry, repo, entry.digest, auth)
        expect(child.status).toBe(200)
        const layers = child.body.layers as {digest: string}[]
        for (const blob of [
          (child.body.config as {digest: string}).digest,
          ...layers.map(l => l.digest)
        ]) {
          expect(await blobExists(registry, repo, blob, auth)).toBe(true)
        }
      }
    }
    // Blobs cross once per mirror; the second tag is written from the
    // mirror's own copy.
    const source = `${REG.hub}/${repo}@${run.outputs.digest}`
    for (const registry of [REG.m1, REG.m3]) {
      expect(expectCopiedOnce(run, `${registry}/${repo}`, source)).toEqual([
        'v6.0.145',
        '6'
      ])
    }
    // Registry to registry: nothing goes through the runner's image store.
    for (const verb of ['pull', 'tag', 'push'])
      expect(commandsOf(run, verb)).toEqual([])
    const mirrors = JSON.parse(run.outputs.mirrors) as {
      status: string
      digest: string
    }[]
    expect(mirrors.map(m => [m.status, m.digest])).toEqual([
      ['done', run.outputs.digest],
      ['done', run.outputs.digest]
    ])
  })

  it('builds each platform so that it runs under QEMU as its own architecture', () => {
    for (const [platform, machine] of [
      ['linux/amd64', 'x86_64'],
      ['linux/arm64', 'aarch64'],
      ['linux/arm/v7', 'armv7l']
    ]) {
      const out = docker(
        'run',
        '--rm',
        '--pull',
        'always',
        '--platform',
        platform,
        `${REG.m3}/${repo}:v6.0.145`,
        'sh',
        '-c',
        // busybox cat prints nothing under Debian 12's qemu-user (its
        // sendfile path); the shell's own read works on every platform.
        'read built < /built; echo "$built"; uname -m'
      )
      expect(out.stdout).toContain(`jobs=10 arch=${machine}`)
      expect(out.stdout.trim().endsWith(machine)).toBe(true)
    }
  })

  it('runs one build for all platforms, reading the digest from the metadata file', () => {
    const builds = commandsOf(run, 'buildx', 'build')
    expect(builds).toHaveLength(1)
    expect(builds[0]).toContain('--metadata-file')
    expect(builds[0][builds[0].indexOf('--platform') + 1]).toBe(
      'linux/amd64,linux/arm64,linux/arm/v7'
    )
    const logins = commandsOf(run, 'login')
    expect(logins.map(l => l[1])).toEqual([REG.hub, REG.m1])
    for (const login of logins) expect(login).toContain('--password-stdin')
  })

  it('keeps every password out of argv, logs, outputs, summary and RUNNER_TEMP', () => {
    expectNoSecret(run)
    expect(run.stdout).toContain(`::add-mask::${USERS.m1.password}`)
  })

  it('writes outputs and a summary', () => {
    expect(run.outputs.tags.split('\n')).toEqual(
      ['v6.0.145', '6']
        .flatMap(tag =>
          [REG.hub, REG.m1, REG.m3].map(r => `${r}/${repo}:${tag}`)
        )
        .sort((a, b) => order(a) - order(b))
    )
    expect(run.summary).toContain('copied, verified')
    expect(run.summary).toContain(run.outputs.digest.slice(0, 19))
  })

  it('leaves no credential behind after the post step', () => {
    expect(readdirSync(run.runnerTemp)).toEqual([])
    const config = join(run.dir, 'user-docker-config', 'config.json')
    const text = (() => {
      try {
        return readFileSync(config, 'utf8')
      } catch {
        return '{}'
      }
    })()
    expect(text).not.toContain(REG.hub)
  })
})

// Refs come out image first, then each mirror, tag by tag within each.
function order(ref: string): number {
  const registries = [REG.hub, REG.m1, REG.m3]
  const registry = registries.findIndex(r => ref.startsWith(r))
  return registry * 10 + (ref.endsWith(':6') ? 1 : 0)
}

describe('the docker-container driver', () => {
  it('creates a builder and removes it in the post step, even though it cannot boot here', () => {
    const run = runAction(
      {
        image: `${REG.hub}/${uniqueRepo('container')}`,
        tags: 'v1',
        platforms: 'linux/amd64',
        context: join(FIXTURES, 'busybox')
      },
      {env: {BUILDX_CONFIG: ''}}
    )
    const created = commandsOf(run, 'buildx', 'create')
    expect(created).toHaveLength(1)
    const name = created[0][created[0].indexOf('--name') + 1]
    expect(name).toMatch(/^multiarch-1-[0-9a-f]{8}$/)
    // No BuildKit image can be pulled here, so booting fails and says so.
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(/::error::Builder \(multiarch-1-/)
    expect(commandsOf(run, 'buildx', 'rm')).toEqual([['buildx', 'rm', name]])
    expect(run.post.status).toBe(0)
    const listed = buildersAfter(run)
    expect(listed.status).toBe(0)
    expect(listed.stdout).not.toContain(name)
    expect(docker('ps', '-a', '--format', '{{.Names}}').stdout).not.toContain(
      name
    )
  })
})
