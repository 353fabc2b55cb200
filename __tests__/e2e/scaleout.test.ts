import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  authYaml,
  commandsOf,
  manifest,
  passwordEnv,
  requestsFor,
  runAction,
  tagList,
  uniqueRepo,
  type Run
} from './harness.js'

// Scale-out (#7) on the real stack. buildx refuses push-by-digest with the
// docker driver, and no BuildKit image can be pulled here for a
// docker-container builder; so the per-platform jobs are stood in for by two
// one-platform runs of the action (arm64 under emulation stands in for a
// native arm64 runner) that push a throwaway tag each, and push-by-digest
// itself is checked up to buildx (its command line in the unit tests, the
// refusal of the docker driver here). The merge job then makes the tagged
// index from their digests and copies it to a mirror, as in GitHub.

const STANDIN = `${REG.base}/test/binfmt-standin:1`

function perPlatform(repo: string, platform: string): Run {
  return runAction(
    {
      image: `${REG.hub}/${repo}`,
      platforms: platform,
      tags: `standin-${platform.split('/')[1]}`,
      context: join(FIXTURES, 'busybox'),
      'registry-auth': authYaml('hub'),
      driver: 'docker',
      network: 'host',
      'qemu-image': STANDIN
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

  beforeAll(() => {
    amd = perPlatform(repo, 'linux/amd64')
    arm = perPlatform(repo, 'linux/arm64')
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

  it('has two one-platform images to merge', () => {
    for (const run of [amd, arm]) {
      expect(run.stdout).not.toMatch(/::error/)
      expect(run.status).toBe(0)
      expect(run.outputs['platform-digest']).toBe('')
    }
    expect(amd.outputs.platforms).toBe('linux/amd64')
    expect(arm.outputs.platforms).toBe('linux/arm64')
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

    expect(await tagList(REG.hub, repo, USERS.hub)).toEqual([
      'standin-amd64',
      'standin-arm64',
      'v1',
      'v1.2.3'
    ])
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
