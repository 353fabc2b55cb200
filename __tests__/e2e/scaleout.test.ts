import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  attestationsOf,
  authYaml,
  commandsOf,
  manifest,
  passwordEnv,
  requestsFor,
  restoreHandlers,
  runAction,
  stackEnv,
  tagList,
  uniqueRepo,
  buildersAfter,
  type Run
} from './harness.js'

// Scale-out (#7) on the real stack: two BuildKit daemons built from
// Debian's source (scripts/buildkitd-build.sh), started by stack.sh. One
// builds linux/amd64 on a unix socket; the other builds linux/arm64 (under
// QEMU, standing in for a native arm64 machine) behind TCP with mutual TLS.
// Each per-platform job is one run of the action with the remote driver
// pushing by digest; the merge job makes the tagged index from their
// digests and copies it to a mirror, as in GitHub. The same two daemons
// are one builder's two nodes for the fan-out test.

const stack = stackEnv()
const TLS = stack.MA_BUILDKIT_TLS
const tlsOpts = `cacert=${TLS}/ca.pem,cert=${TLS}/cert.pem,key=${TLS}/key.pem`

const leg = {
  'linux/amd64': {endpoint: stack.MA_BUILDKIT_AMD64, 'driver-opts': ''},
  'linux/arm64': {endpoint: stack.MA_BUILDKIT_ARM64, 'driver-opts': tlsOpts}
}

function perPlatform(repo: string, platform: keyof typeof leg): Run {
  return runAction(
    {
      image: `${REG.hub}/${repo}`,
      platforms: platform,
      'push-by-digest': 'true',
      context: join(FIXTURES, 'busybox'),
      'registry-auth': authYaml('hub'),
      driver: 'remote',
      ...leg[platform]
    },
    {env: passwordEnv()}
  )
}

// The line a push-by-digest job prints in its platform-digest output.
const line = (run: Run): string =>
  `${run.outputs.platforms}=${run.outputs.digest}`

function mergeRun(
  repo: string,
  digests: string,
  more: Record<string, string> = {}
): Run {
  return runAction(
    {
      image: `${REG.hub}/${repo}`,
      digests,
      tags: 'v1.2.3\nv1',
      mirrors: `${REG.m1}/${repo}`,
      'registry-auth': authYaml('hub', 'm1'),
      ...more
    },
    {env: passwordEnv()}
  )
}

interface Entry {
  digest: string
  platform: {architecture: string; os: string}
}

describe('per-platform builds merged by digest', () => {
  const repo = uniqueRepo('scaleout')
  let amd: Run
  let arm: Run
  let merged: Run

  let tagsBeforeMerge: string[]

  beforeAll(async () => {
    // The arm64 daemon runs arm64 code through this host's QEMU handlers,
    // as a native arm64 machine would without them.
    restoreHandlers()
    amd = perPlatform(repo, 'linux/amd64')
    arm = perPlatform(repo, 'linux/arm64')
    tagsBeforeMerge = await tagList(REG.hub, repo, USERS.hub)
    merged = mergeRun(repo, `${line(amd)}\n${line(arm)}`)
  })

  it('refuses push-by-digest with the docker driver before building', () => {
    const run = runAction({
      image: `${REG.hub}/${uniqueRepo('scaleout-docker')}`,
      'push-by-digest': 'true',
      platforms: 'linux/amd64',
      context: join(FIXTURES, 'busybox'),
      driver: 'docker'
    })
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(
      'driver: "docker" cannot push by digest (push-by-digest)'
    )
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
  })

  it('pushes each platform by digest alone, with no tag, on its own node', async () => {
    for (const [run, platform] of [
      [amd, 'linux/amd64'],
      [arm, 'linux/arm64']
    ] as const) {
      expect(run.stdout).not.toMatch(/::error/)
      expect(run.status).toBe(0)
      expect(run.post.status).toBe(0)
      const build = commandsOf(run, 'buildx', 'build')[0]
      expect(build.join(' ')).toContain(
        `--output type=image,name=${REG.hub}/${repo},push-by-digest=true,name-canonical=true,push=true`
      )
      expect(build).not.toContain('--tag')
      expect(run.outputs['platform-digest']).toBe(
        `${platform}=${run.outputs.digest}`
      )
      expect(run.outputs.digest).toMatch(/^sha256:[0-9a-f]{64}$/)
      // The registry holds it by digest: one manifest of that platform.
      const pushed = await manifest(
        REG.hub,
        repo,
        run.outputs.digest,
        USERS.hub
      )
      expect(pushed.status).toBe(200)
      expect(pushed.digest).toBe(run.outputs.digest)
      expect(pushed.mediaType).toMatch(/manifest\.v[12]\+json$/)
      const create = commandsOf(run, 'buildx', 'create')[0]
      expect(create).toContain('remote')
      expect(create[create.length - 1]).toBe(leg[platform].endpoint)
    }
    // No tag anywhere until the merge.
    expect(amd.outputs.digest).not.toBe(arm.outputs.digest)
    expect(tagsBeforeMerge).toEqual([])
  })

  it('merges both into one index, tagged on the hub and the mirror', async () => {
    expect(merged.stdout).not.toMatch(/::error/)
    expect(merged.status).toBe(0)
    expect(merged.post.status).toBe(0)
    // No build, no builder: one dry run, one create.
    expect(commandsOf(merged, 'buildx', 'build')).toEqual([])
    expect(commandsOf(merged, 'buildx', 'create')).toEqual([])
    const creates = commandsOf(merged, 'buildx', 'imagetools', 'create').filter(
      argv => argv.includes(`${REG.hub}/${repo}:v1.2.3`)
    )
    expect(creates.map(argv => argv.includes('--dry-run'))).toEqual([
      true,
      false
    ])

    expect(await tagList(REG.hub, repo, USERS.hub)).toEqual(['v1', 'v1.2.3'])
    const index = await manifest(REG.hub, repo, 'v1.2.3', USERS.hub)
    expect(index.digest).toBe(merged.outputs.digest)
    expect((await manifest(REG.hub, repo, 'v1', USERS.hub)).digest).toBe(
      merged.outputs.digest
    )
    const entries = (index.body.manifests as Entry[]).map(e => [
      e.platform.architecture,
      e.digest
    ])
    expect(entries.sort()).toEqual(
      [
        ['amd64', amd.outputs.digest],
        ['arm64', arm.outputs.digest]
      ].sort()
    )
    expect(merged.outputs.platforms).toBe('linux/amd64,linux/arm64')

    for (const tag of ['v1.2.3', 'v1']) {
      const copy = await manifest(REG.m1, repo, tag, USERS.m1)
      expect(copy.digest).toBe(merged.outputs.digest)
    }
    expect(JSON.parse(merged.outputs.mirrors)).toMatchObject([
      {mirror: `${REG.m1}/${repo}`, status: 'done'}
    ])
  })

  // Each failure stops before anything is written: no tag anywhere, and
  // no manifest PUT to the hub or the mirror for the repository.
  async function nothingWritten(target: string): Promise<void> {
    expect(await tagList(REG.hub, target, USERS.hub)).toEqual([])
    expect(await tagList(REG.m1, target, USERS.m1)).toEqual([])
    expect(
      requestsFor('hub', target).filter(line => /"PUT /.test(line))
    ).toEqual([])
  }

  it('fails on a digest from another repository, naming it', async () => {
    const other = uniqueRepo('scaleout-other')
    const run = mergeRun(other, `${line(amd)}\n${line(arm)}`)
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(
      `digests: cannot read every digest from ${REG.hub}/${other}`
    )
    expect(run.stdout).toContain(`linux/amd64=${amd.outputs.digest}`)
    await nothingWritten(other)
  })

  it('fails on a duplicated platform, naming it', async () => {
    const target = uniqueRepo('scaleout-dup')
    const run = mergeRun(
      target,
      `${line(amd)}\nlinux/x86_64=${arm.outputs.digest}`
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain('(line 2) repeats platform linux/amd64')
    expect(commandsOf(run, 'buildx', 'imagetools')).toEqual([])
    await nothingWritten(target)
  })

  it('fails on a missing platform, naming it', async () => {
    const target = uniqueRepo('scaleout-missing')
    const run = mergeRun(target, line(amd), {
      platforms: 'linux/amd64,linux/arm64'
    })
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain('digests: "linux/arm64" is missing')
    expect(commandsOf(run, 'buildx', 'imagetools')).toEqual([])
    await nothingWritten(target)
  })
})

// The daemon whose content store holds a blob: each BuildKit keeps the
// layers it built (and pulled), so the last layer of each platform's
// manifest shows which node built that platform.
function holders(blob: string): string[] {
  const root = join(stack.MA_STACK_STATE, 'buildkit')
  const found = spawnSync(
    'find',
    [root, '-path', `*/content/blobs/sha256/${blob.split(':')[1]}`],
    {encoding: 'utf8'}
  )
  return found.stdout
    .split('\n')
    .filter(Boolean)
    .map(path => path.slice(root.length + 1).split('/')[0])
    .sort()
}

describe('builder nodes', () => {
  beforeAll(restoreHandlers)

  it('fans one build out to two BuildKit nodes, and post removes them', async () => {
    const repo = uniqueRepo('nodes')
    const run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1',
        platforms: 'linux/amd64,linux/arm64',
        context: join(FIXTURES, 'busybox'),
        'registry-auth': authYaml('hub'),
        // Each node runs its step afresh, so its layer is its own.
        'no-cache': 'true',
        driver: 'remote',
        endpoint: stack.MA_BUILDKIT_AMD64,
        nodes: [
          '- name: arm',
          `  endpoint: ${stack.MA_BUILDKIT_ARM64}`,
          '  platforms: linux/arm64',
          `  driver-opts: [${tlsOpts.split(',').join(', ')}]`
        ].join('\n')
      },
      {env: passwordEnv()}
    )
    expect(run.stdout).not.toMatch(/::error/)
    expect(run.status).toBe(0)
    const [created, appended] = commandsOf(run, 'buildx', 'create')
    const name = created[created.indexOf('--name') + 1]
    // The first node keeps the platforms no appended node declares.
    expect(created.slice(-3)).toEqual([
      '--platform',
      'linux/amd64',
      stack.MA_BUILDKIT_AMD64
    ])
    expect(appended).toEqual([
      'buildx',
      'create',
      '--append',
      '--name',
      name,
      '--node',
      'arm',
      '--platform',
      'linux/arm64',
      ...tlsOpts.split(',').flatMap(opt => ['--driver-opt', opt]),
      stack.MA_BUILDKIT_ARM64
    ])

    const index = await manifest(REG.hub, repo, 'v1', USERS.hub)
    expect(index.digest).toBe(run.outputs.digest)
    const children = index.body.manifests as Entry[]
    expect(children.map(e => e.platform.architecture).sort()).toEqual([
      'amd64',
      'arm64'
    ])
    for (const child of children) {
      const image = await manifest(REG.hub, repo, child.digest, USERS.hub)
      const layers = image.body.layers as {digest: string}[]
      const built = layers[layers.length - 1].digest
      expect([child.platform.architecture, holders(built)]).toEqual([
        child.platform.architecture,
        [child.platform.architecture]
      ])
    }

    // Post removed the builder with both nodes.
    expect(run.post.status).toBe(0)
    expect(commandsOf(run, 'buildx', 'rm')).toEqual([['buildx', 'rm', name]])
    const listed = buildersAfter(run)
    expect(listed.status).toBe(0)
    expect(listed.stdout).not.toContain(name)
  })
})

// BuildKit v0.25 can write attestations either way; the action asks for
// the legacy form, and the option is what decides it there.
describe('attestations on a BuildKit that can choose their form', () => {
  it('writes the legacy form the action asks for, not the OCI artifact form', async () => {
    const repo = uniqueRepo('attest')
    const run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1',
        platforms: 'linux/amd64',
        provenance: 'mode=max',
        context: join(FIXTURES, 'busybox'),
        mirrors: `${REG.m1}/${repo}`,
        'registry-auth': authYaml('hub', 'm1'),
        driver: 'remote',
        endpoint: stack.MA_BUILDKIT_AMD64
      },
      {env: passwordEnv()}
    )
    expect(run.stdout).not.toMatch(/::error/)
    expect(run.status).toBe(0)
    expect(commandsOf(run, 'buildx', 'build')[0].join(' ')).toContain(
      '--output type=registry,oci-artifact=false'
    )
    for (const [registry, auth] of [
      [REG.hub, USERS.hub],
      [REG.m1, USERS.m1]
    ] as const) {
      expect(await attestationsOf(registry, repo, 'v1', auth)).toEqual([
        {config: 'application/vnd.oci.image.config.v1+json', subject: false}
      ])
    }

    // The same BuildKit asked for the other form writes it: the option
    // is honoured there, not ignored.
    const config = mkdtempSync(join(tmpdir(), 'attest-docker-'))
    const env = {...process.env, ...stack, DOCKER_CONFIG: config}
    const builder = `attest-${repo.split('-').pop()}`
    try {
      const dockerIn = (...args: string[]) =>
        spawnSync('docker', args, {encoding: 'utf8', env})
      expect(
        dockerIn(
          'buildx',
          'create',
          '--name',
          builder,
          '--driver',
          'remote',
          stack.MA_BUILDKIT_AMD64
        ).status
      ).toBe(0)
      const login = spawnSync(
        'docker',
        ['login', REG.hub, '-u', USERS.hub.username, '--password-stdin'],
        {encoding: 'utf8', env, input: USERS.hub.password}
      )
      expect(login.status).toBe(0)
      const built = dockerIn(
        'buildx',
        'build',
        '--builder',
        builder,
        '--platform',
        'linux/amd64',
        '--provenance=mode=max',
        '--tag',
        `${REG.hub}/${repo}:artifact`,
        '--output',
        'type=registry,oci-artifact=true',
        join(FIXTURES, 'busybox')
      )
      if (built.status !== 0) throw new Error(built.stderr)
      expect(
        await attestationsOf(REG.hub, repo, 'artifact', USERS.hub)
      ).toEqual([
        {
          config: 'application/vnd.oci.empty.v1+json',
          subject: true,
          artifactType: 'application/vnd.docker.attestation.manifest.v1+json'
        }
      ])
    } finally {
      spawnSync('docker', ['buildx', 'rm', builder], {env})
      rmSync(config, {recursive: true, force: true})
    }
  })
})
