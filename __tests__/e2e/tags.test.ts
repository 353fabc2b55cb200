import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  authYaml,
  manifest,
  passwordEnv,
  runAction,
  tagList,
  uniqueRepo,
  type Run
} from './harness.js'

// C04 on the real registries: a release candidate adds only its own tags; a
// stable release moves the major tags on the image and the mirror; latest
// moves only when asked; re-running an older release moves nothing back.

const repo = uniqueRepo('tags')

function release(ref: string, latest = false): Run {
  return runAction(
    {
      image: `${REG.hub}/${repo}`,
      // Two platforms: an index. (One platform is a single manifest, which
      // buildx 0.13 cannot copy unchanged; see mirrors.test.ts.)
      platforms: 'linux/amd64,linux/arm64',
      context: join(FIXTURES, 'busybox'),
      mirrors: `${REG.m1}/${repo}`,
      'registry-auth': authYaml('hub', 'm1'),
      latest: String(latest),
      driver: 'docker',
      network: 'host'
    },
    {
      env: {
        ...passwordEnv(),
        GITHUB_REF: `refs/tags/${ref}`,
        GITHUB_SHA: 'f'.repeat(40)
      }
    }
  )
}

async function digests(
  registry: string,
  auth: {username: string; password: string}
): Promise<Record<string, string>> {
  const tags = await tagList(registry, repo, auth)
  const found: Record<string, string> = {}
  for (const tag of tags)
    found[tag] = (await manifest(registry, repo, tag, auth)).digest
  return found
}

const both = [
  [REG.hub, USERS.hub],
  [REG.m1, USERS.m1]
] as const

describe('floating tags across releases (C04)', () => {
  let d0 = ''
  let d1 = ''

  it('v2.2.9 with latest writes its own tags, the major tags and latest', async () => {
    const run = release('v2.2.9', true)
    expect(run.status).toBe(0)
    d0 = run.outputs.digest
    for (const [registry, auth] of both) {
      expect(await digests(registry, auth)).toEqual({
        '2': d0,
        '2.2.9': d0,
        latest: d0,
        v2: d0,
        'v2.2.9': d0
      })
    }
  })

  it('a release candidate adds only its own two tags and says why', async () => {
    const run = release('v2.3.0-rc.12', true)
    expect(run.status).toBe(0)
    const rc = run.outputs.digest
    expect(rc).not.toBe(d0)
    for (const [registry, auth] of both) {
      expect(await digests(registry, auth)).toEqual({
        '2': d0,
        '2.2.9': d0,
        latest: d0,
        v2: d0,
        'v2.2.9': d0,
        '2.3.0-rc.12': rc,
        'v2.3.0-rc.12': rc
      })
    }
    expect(run.summary).toContain(
      'not a stable release; the major tags and latest stay where they are'
    )
  })

  it('a stable release moves 2 and v2, and latest only when asked', async () => {
    const run = release('v2.3.0')
    expect(run.status).toBe(0)
    d1 = run.outputs.digest
    for (const [registry, auth] of both) {
      const found = await digests(registry, auth)
      expect([found['2'], found.v2, found['2.3.0'], found['v2.3.0']]).toEqual([
        d1,
        d1,
        d1,
        d1
      ])
      expect(found.latest).toBe(d0)
    }
  })

  it('re-running an older release leaves the major tags on the newer one', async () => {
    const run = release('v2.2.10')
    expect(run.status).toBe(0)
    for (const [registry, auth] of both) {
      const found = await digests(registry, auth)
      expect([found['2'], found.v2]).toEqual([d1, d1])
      expect(found['v2.2.10']).toBe(run.outputs.digest)
    }
    expect(run.stdout).toMatch(
      /::notice::.*:2 holds 2\.3\.0, newer than 2\.2\.10; leaving 2 where it is/
    )
    expect(run.summary).toContain('newer than 2.2.10')
  })
})
