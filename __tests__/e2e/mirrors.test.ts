import {createServer} from 'node:net'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'
import {startFaultProxy, type FaultProxy} from './fault-proxy.mjs'
import {
  attestationsOf,
  directWrites,
  FIXTURES,
  REG,
  USERS,
  authYaml,
  commandsOf,
  expectCopiedOnce,
  manifest,
  passwordEnv,
  runAction,
  tagList,
  uniqueRepo,
  type Run
} from './harness.js'

// The mirror phase against real registries, some behind the fault proxy.
// buildx 0.13 retries a failed request up to four times on its own (about
// seven seconds for a 5xx or a reset, six quick tries for a 429): a fault
// reaches the action only when it outlasts those, so the rules below fail
// more requests than buildx retries.

const M2 = USERS.m2
const MANIFEST_PUT = {method: 'PUT', path: '/manifests/'}

function release(
  repo: string,
  mirrors: string[],
  auth: string,
  more: Record<string, string> = {}
): Run {
  return runAction(
    {
      image: `${REG.hub}/${repo}`,
      tags: 'v1',
      platforms: 'linux/amd64,linux/arm64',
      context: join(FIXTURES, 'busybox'),
      mirrors: mirrors.join('\n'),
      'registry-auth': auth,
      driver: 'docker',
      network: 'host',
      'mirror-retry-wait': '1',
      ...more
    },
    {env: {...passwordEnv(), PW_PROXY: M2.password}}
  )
}

const proxyAuth = (proxy: FaultProxy): string =>
  `- registry: "${proxy.address}"\n  username: ${M2.username}\n  password-env: PW_PROXY`

interface Result {
  mirror: string
  status: string
  digest: string
  attempts: number
  reason?: string
}
const results = (run: Run): Result[] =>
  JSON.parse(run.outputs.mirrors) as Result[]

describe('mirrors behind faults', () => {
  let proxy: FaultProxy | undefined
  afterEach(async () => {
    await proxy?.stop()
    proxy = undefined
  })

  it('survives 5xx beyond buildx own retries and verifies the copy', async () => {
    const repo = uniqueRepo('transient')
    proxy = await startFaultProxy({
      target: REG.m3,
      rules: [{...MANIFEST_PUT, times: 5, action: 'status', status: 503}]
    })
    const run = release(repo, [`${proxy.address}/${repo}`], authYaml('hub'))
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(
      /attempt 1 failed \(transient: .*503 Service Unavailable\); retrying in [\d.]+ s/
    )
    expect(results(run)).toMatchObject([
      {status: 'done', attempts: 2, digest: run.outputs.digest}
    ])
    expect((await manifest(REG.m3, repo, 'v1')).digest).toBe(run.outputs.digest)
  })

  it('honours Retry-After on 429', async () => {
    const repo = uniqueRepo('ratelimit')
    proxy = await startFaultProxy({
      target: REG.m3,
      rules: [
        {
          ...MANIFEST_PUT,
          times: 6,
          action: 'status',
          status: 429,
          headers: {'Retry-After': '4'}
        },
        {
          method: 'GET',
          path: '^/v2/$',
          times: 1,
          action: 'status',
          status: 429,
          headers: {'Retry-After': '4'}
        }
      ]
    })
    const run = release(repo, [`${proxy.address}/${repo}`], authYaml('hub'))
    expect(run.status).toBe(0)
    const wait =
      /attempt 1 failed \(transient: [^)]*429[^)]*\); retrying in ([\d.]+) s/.exec(
        run.stdout
      )
    expect(Number(wait?.[1])).toBeGreaterThanOrEqual(4)
    expect((await manifest(REG.m3, repo, 'v1')).digest).toBe(run.outputs.digest)
  })

  it('fails fast on a permanent refusal, quoting the registry and naming the media type (C28)', async () => {
    const repo = uniqueRepo('refused')
    proxy = await startFaultProxy({
      target: REG.m2,
      rules: [
        {
          ...MANIFEST_PUT,
          contentType: 'application/vnd.oci.image.index.v1+json',
          action: 'status',
          status: 400,
          body: {
            errors: [
              {
                code: 'MANIFEST_INVALID',
                message: 'manifest invalid',
                detail: 'unsupported'
              }
            ]
          }
        }
      ]
    })
    // Attestations on: buildx writes an OCI index, which this mirror refuses.
    const run = release(
      repo,
      [`${REG.m1}/${repo}`, `${proxy.address}/${repo}`],
      `${authYaml('hub', 'm1')}\n${proxyAuth(proxy)}`,
      {
        provenance: 'true'
      }
    )
    expect(run.status).not.toBe(0)
    // The legacy attestation form was asked for, and is what landed: one
    // attestation manifest per platform (two), an image config, no subject.
    expect(commandsOf(run, 'buildx', 'build')[0].join(' ')).toContain(
      '--output type=registry,oci-artifact=false'
    )
    const attestations = await attestationsOf(REG.hub, repo, 'v1', USERS.hub)
    expect(attestations).toHaveLength(2)
    for (const attestation of attestations) {
      expect(attestation).toEqual({
        config: 'application/vnd.oci.image.config.v1+json',
        subject: false
      })
    }
    const [m1, m2] = results(run)
    expect(m1).toMatchObject({status: 'done', digest: run.outputs.digest})
    // A first write to a new repository gets one more attempt after a 400
    // (buildx's own tag pushes race there); then the refusal stands.
    expect(m2).toMatchObject({status: 'failed', attempts: 2})
    expect(m2.reason).toContain('400 Bad Request')
    expect(run.stdout).toMatch(
      /::error title=Mirror 127\.0\.0\.1%3A\d+.*refused a manifest of type application\/vnd\.oci\.image\.index\.v1\+json.*provenance: false/
    )

    // Without attestations the index is a Docker manifest list, which the
    // same mirror accepts.
    const again = release(
      repo,
      [`${REG.m1}/${repo}`, `${proxy.address}/${repo}`],
      `${authYaml('hub', 'm1')}\n${proxyAuth(proxy)}`,
      {
        provenance: 'false'
      }
    )
    expect(again.status).toBe(0)
    expect(commandsOf(again, 'buildx', 'build')[0]).toContain(
      '--provenance=false'
    )
    const pushed = await manifest(REG.hub, repo, 'v1', USERS.hub)
    expect(pushed.mediaType).toBe(
      'application/vnd.docker.distribution.manifest.list.v2+json'
    )
    for (const [registry, auth] of [
      [REG.m1, USERS.m1],
      [REG.m2, USERS.m2]
    ] as const) {
      expect((await manifest(registry, repo, 'v1', auth)).digest).toBe(
        again.outputs.digest
      )
    }
  })

  it('keeps one dead mirror from hiding or blocking the others (C23)', async () => {
    const repo = uniqueRepo('dead')
    proxy = await startFaultProxy({
      target: REG.m2,
      rules: [{path: `^/v2/${repo}/`, action: 'reset'}]
    })
    const run = release(
      repo,
      [`${REG.m1}/${repo}`, `${proxy.address}/${repo}`, `${REG.m3}/${repo}`],
      `${authYaml('hub', 'm1')}\n${proxyAuth(proxy)}`,
      {'mirror-attempts': '2'}
    )
    expect(run.status).not.toBe(0)
    expect(results(run).map(r => r.status)).toEqual(['done', 'failed', 'done'])
    expect((await manifest(REG.m1, repo, 'v1', USERS.m1)).digest).toBe(
      run.outputs.digest
    )
    expect((await manifest(REG.m3, repo, 'v1')).digest).toBe(run.outputs.digest)
    const annotations = run.stdout
      .split('\n')
      .filter(l => l.startsWith('::error title=Mirror'))
    expect(annotations).toHaveLength(1)
    expect(annotations[0]).toContain(proxy.address.replace(':', '%3A'))
    expect(annotations[0]).toMatch(/connection reset/)
    expect(run.summary.match(/FAILED/g)).toHaveLength(1)
    expect(run.summary.match(/copied, verified/g)).toHaveLength(2)
  })

  it('copies a tag the registry will not take directly with imagetools create', async () => {
    const repo = uniqueRepo('direct')
    proxy = await startFaultProxy({
      target: REG.m3,
      rules: [
        {method: 'PUT', path: '/manifests/v1\\.0$', action: 'status', times: 1}
      ]
    })
    const mirror = `${proxy.address}/${repo}`
    const run = release(repo, [mirror], authYaml('hub'), {
      tags: 'v1,v1.0,latest'
    })
    expect(run.stdout).not.toMatch(/::error/)
    expect(run.status).toBe(0)
    const digest = run.outputs.digest
    expect(directWrites(run, mirror, digest)).toEqual(['latest'])
    expect(run.stdout).toContain(
      `${mirror}: the registry did not take a direct write to v1.0; ` +
        'imagetools create copies them'
    )
    const creates = commandsOf(run, 'buildx', 'imagetools', 'create').filter(
      argv => argv.some(arg => arg.startsWith(`${mirror}:`))
    )
    expect(creates.map(argv => argv.slice(-3))).toEqual([
      ['--tag', `${mirror}:v1`, `${REG.hub}/${repo}@${digest}`],
      ['--tag', `${mirror}:v1.0`, `${mirror}@${digest}`]
    ])
    expect(results(run)[0]).toMatchObject({status: 'done', attempts: 2})
    for (const tag of ['v1', 'v1.0', 'latest']) {
      expect((await manifest(REG.m3, repo, tag)).digest).toBe(digest)
    }
  })

  it('catches a write that was acknowledged but never landed', async () => {
    const repo = uniqueRepo('lost')
    proxy = await startFaultProxy({
      target: REG.m3,
      rules: [{...MANIFEST_PUT, action: 'ack'}]
    })
    const run = release(repo, [`${proxy.address}/${repo}`], authYaml('hub'))
    expect(run.status).not.toBe(0)
    expect(results(run)[0].status).toBe('failed')
    expect(results(run)[0].reason).toMatch(/is not there after the copy/)
    expect(await tagList(REG.m3, repo)).toEqual([])
  })

  it('gives the first write to a new repository one more try after a 401 (C32)', async () => {
    const repo = uniqueRepo('firstwrite')
    proxy = await startFaultProxy({
      target: REG.m2,
      rules: [
        {
          method: 'POST',
          path: `^/v2/${repo}/blobs/uploads/`,
          times: 1,
          action: 'status',
          status: 401
        }
      ]
    })
    const run = release(
      repo,
      [`${proxy.address}/${repo}`],
      `${authYaml('hub')}\n${proxyAuth(proxy)}`
    )
    expect(run.status).toBe(0)
    expect((await manifest(REG.m2, repo, 'v1', M2)).digest).toBe(
      run.outputs.digest
    )
    // buildx re-sends a 401 on its own only to answer an auth challenge it
    // has not met yet; a 401 after credentials were sent reaches the action,
    // which tries the first write to a new repository once more.
    expect(
      proxy.requests().filter(r => r.status === 401 && r.method === 'POST')
    ).toHaveLength(1)
    expect(results(run)[0]).toMatchObject({status: 'done', attempts: 2})
    expect(run.stdout).toMatch(
      /attempt 1 failed \(first write to a new repository: .*401 Unauthorized\); retrying in/
    )
    expect(run.summary).toMatch(/copied, verified after 1 retry/)
  })

  it('reports a mirror that already holds the digest as up to date, writing nothing', async () => {
    const repo = uniqueRepo('rerun')
    const first = release(repo, [`${REG.m3}/${repo}`], authYaml('hub'))
    expect(first.status).toBe(0)
    proxy = await startFaultProxy({target: REG.m3})
    // The same source digest again, now through the proxy to count writes.
    const again = runAction(
      {
        source: `${REG.hub}/${repo}:v1`,
        tags: 'v1',
        mirrors: `${proxy.address}/${repo}`,
        'registry-auth': authYaml('hub')
      },
      {env: passwordEnv()}
    )
    expect(again.status).toBe(0)
    expect(results(again)).toMatchObject([
      {status: 'up-to-date', attempts: 0, digest: first.outputs.digest}
    ])
    expect(
      proxy.requests().filter(r => r.method === 'PUT' || r.method === 'POST')
    ).toEqual([])
    expect(commandsOf(again, 'buildx', 'imagetools', 'create')).toEqual([])
  })

  it('names the mirror and the registry reason when a mirror has no credentials (C20)', async () => {
    const repo = uniqueRepo('nocreds')
    const run = release(
      repo,
      [`${REG.m1}/${repo}`, `${REG.m2}/${repo}`],
      authYaml('hub', 'm1')
    )
    expect(run.status).not.toBe(0)
    expect((await manifest(REG.m1, repo, 'v1', USERS.m1)).digest).toBe(
      run.outputs.digest
    )
    const annotation = run.stdout
      .split('\n')
      .find(l =>
        l.startsWith(`::error title=Mirror ${REG.m2.replace(':', '%3A')}`)
      )
    expect(annotation).toMatch(/no basic auth credentials/)
    expect(annotation).toContain(`registry-auth has an entry for ${REG.m2}`)
    expect(annotation).not.toMatch(/^[^:]*failed after \d+ retries$/)
  })
})

describe('mirror-only mode', () => {
  it('copies an existing image by digest into every mirror, with no build', async () => {
    const repo = uniqueRepo('source')
    const source = await manifest(REG.base, 'base/busybox', '1')
    const run = runAction(
      {
        source: `${REG.base}/base/busybox:1`,
        tags: 'v1,1',
        mirrors: `${REG.m3}/${repo}\n${REG.m1}/${repo}`,
        'registry-auth': authYaml('m1')
      },
      {env: passwordEnv()}
    )
    expect(run.status).toBe(0)
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
    expect(commandsOf(run, 'buildx', 'create')).toEqual([])
    for (const registry of [REG.m3, REG.m1]) {
      expect(
        expectCopiedOnce(
          run,
          `${registry}/${repo}`,
          `${REG.base}/base/busybox@${source.digest}`
        )
      ).toEqual(['v1', '1'])
    }
    for (const [registry, auth] of [
      [REG.m3, undefined],
      [REG.m1, USERS.m1]
    ] as const) {
      expect(await tagList(registry, repo, auth)).toEqual(['1', 'v1'])
      expect((await manifest(registry, repo, 'v1', auth)).digest).toBe(
        source.digest
      )
    }
    expect(run.outputs.digest).toBe(source.digest)
  })

  it('gives up on a mirror that takes the connection and never answers', async () => {
    // A listener that never answers: runAction blocks this process, so the
    // kernel completes each handshake and nothing is ever read or written.
    const silent = createServer(() => undefined)
    await new Promise<void>(done => silent.listen(0, '127.0.0.1', done))
    const hung = `127.0.0.1:${(silent.address() as AddressInfo).port}`
    try {
      const repo = uniqueRepo('hung')
      const run = runAction({
        source: `${REG.base}/base/busybox:1`,
        tags: 'v1',
        mirrors: `${hung}/${repo}\n${REG.m3}/${repo}`,
        'mirror-timeout': '0.1',
        'mirror-attempts': '2',
        'mirror-retry-wait': '1'
      })
      expect(run.status).not.toBe(0)
      const [dead, alive] = results(run)
      expect(dead).toMatchObject({mirror: `${hung}/${repo}`, status: 'failed'})
      expect(dead.reason).toMatch(/timed out after 6 s/)
      expect(alive).toMatchObject({status: 'done'})
      expect(run.stdout).toContain(
        `::error title=Mirror ${hung.replace(':', '%3A')}/${repo}::`
      )
    } finally {
      silent.close()
    }
  })

  it('goes on past a refused mirror login with mirror-failure: warn', async () => {
    const repo = uniqueRepo('warnlogin')
    const run = runAction(
      {
        source: `${REG.base}/base/busybox:1`,
        tags: 'v1',
        mirrors: `${REG.m1}/${repo}\n${REG.m3}/${repo}`,
        'registry-auth': authYaml('m1'),
        'mirror-failure': 'warn'
      },
      {env: {PW_M1: 'not-the-password'}}
    )
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(
      /::warning title=Login to 127\.0\.0\.1%3A5002::.*401.*mirror-failure: warn, so the release goes on/
    )
    const [m1, m3] = results(run)
    expect(m1).toMatchObject({status: 'failed'})
    expect(m1.reason).toMatch(/401|unauthorized|no basic auth/i)
    expect(m3).toMatchObject({status: 'done'})
    expect(await tagList(REG.m1, repo, USERS.m1)).toEqual([])
    expect(await tagList(REG.m3, repo)).toEqual(['v1'])
    // Without warn the same refusal stops the run at the login.
    const strict = runAction(
      {
        source: `${REG.base}/base/busybox:1`,
        tags: 'v1',
        mirrors: `${REG.m1}/${repo}\n${REG.m3}/${repo}`,
        'registry-auth': authYaml('m1')
      },
      {env: {PW_M1: 'not-the-password'}}
    )
    expect(strict.status).not.toBe(0)
    expect(strict.stdout).toMatch(/::error::Logins \(127\.0\.0\.1:5002\)/)
    expect(commandsOf(strict, 'buildx', 'imagetools', 'create')).toEqual([])
  })

  it('writes nothing when push is false, as on a pull request', async () => {
    const repo = uniqueRepo('sourcepr')
    const run = runAction(
      {
        source: `${REG.base}/base/busybox:1`,
        tags: 'pr-7',
        mirrors: `${REG.m3}/${repo}`
      },
      {
        env: {
          GITHUB_EVENT_NAME: 'pull_request',
          GITHUB_REF: 'refs/pull/7/merge'
        }
      }
    )
    expect(run.status).toBe(0)
    expect(commandsOf(run, 'buildx', 'imagetools', 'create')).toEqual([])
    expect(await tagList(REG.m3, repo)).toEqual([])
    expect(run.stdout).toMatch(
      /::notice::mirrors: skipped, because push is false/
    )
  })

  it('refuses a single-manifest source this buildx cannot copy unchanged, writing nothing', async () => {
    const repo = uniqueRepo('single')
    const one = runAction({
      image: `${REG.m3}/${repo}`,
      tags: 'one',
      platforms: 'linux/amd64',
      context: join(FIXTURES, 'busybox'),
      driver: 'docker',
      network: 'host'
    })
    expect(one.status).toBe(0)
    const run = runAction(
      {
        source: `${REG.m3}/${repo}:one`,
        tags: 's1,s2',
        mirrors: `${REG.m1}/${repo}`,
        'registry-auth': authYaml('m1')
      },
      {env: passwordEnv()}
    )
    if (run.argv.some(a => a.includes('--prefer-index=false'))) {
      // A newer buildx copies it unchanged instead.
      expect(run.status).toBe(0)
      return
    }
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(
      /::error::Mirrors: .*single-platform manifest.*--prefer-index=false.*Nothing was written/
    )
    // Only the feature check ran; no copy.
    expect(commandsOf(run, 'buildx', 'imagetools', 'create')).toEqual([
      ['buildx', 'imagetools', 'create', '--help']
    ])
    expect(await tagList(REG.m1, repo, USERS.m1)).toEqual([])
  })
})
