// Benchmark: the action's mirror phase against the baseline SRS used (one
// imagetools create per tag, one after another), six tags into two mirror
// registries, each behind the fault proxy adding 150 ms to every request,
// as a runner in the US talking to Aliyun in Hangzhou would see. Both run
// in this process, once for the busybox image and once for the Debian +
// curl example. Prints times, the ratio, and what each mirror received.
//
//   node bench/mirrors.mjs            (after scripts/setup.sh)

import {spawnSync} from 'node:child_process'
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {startFaultProxy} from '../__tests__/e2e/fault-proxy.mjs'
import {ROOT, runAction, stackEnv} from '../scripts/runner.mjs'

const DELAY_MS = Number(process.env.BENCH_DELAY_MS ?? 150)
const HUB = '127.0.0.1:5001'
const M1 = '127.0.0.1:5002'
const M3 = '127.0.0.1:5004'
const HUB_AUTH = {username: 'main-ci', password: 'Main#Pa55 w0rd$'}
const M1_AUTH = {username: 'm1-ci', password: `M1'Pa55"w0rd`}
const TAGS = ['v6.0.145', '6.0.145', '6', 'v6', '6.0', 'latest']
const PLATFORMS = 'linux/amd64,linux/arm64/v8,linux/arm/v7'
const env = {...process.env, ...stackEnv()}
const stamp = Date.now().toString(36)

function auth(registry, {username}, variable) {
  return `- registry: "${registry}"\n  username: ${username}\n  password-env: ${variable}`
}
const passwords = {PW_HUB: HUB_AUTH.password, PW_M1: M1_AUTH.password}

function build(name, context) {
  const repo = `bench/${name}-${stamp}`
  const run = runAction(
    {
      image: `${HUB}/${repo}`,
      tags: 'source',
      platforms: PLATFORMS,
      context,
      'registry-auth': auth(HUB, HUB_AUTH, 'PW_HUB'),
      driver: 'docker',
      network: 'host',
      'qemu-image': '127.0.0.1:5000/test/binfmt-standin:1'
    },
    {env: passwords}
  )
  if (run.status !== 0)
    throw new Error(`build of ${name} failed:\n${run.stdout}`)
  return {repo, digest: run.outputs.digest}
}

async function proxies() {
  return Promise.all(
    [M1, M3].map(target => startFaultProxy({target, delayMs: DELAY_MS}))
  )
}

function received(proxy) {
  const requests = proxy.requests()
  return {
    requests: requests.length,
    bytes: requests.reduce((sum, r) => sum + (r.bytes ?? 0), 0)
  }
}

// (a) The action in mirror-only mode from the pushed digest: the whole run
// is timed here, and its mirror phase is read from the summary's timings.
// The baseline's time has no logins in it, like the mirror phase.
async function action(source, repo) {
  const [p1, p3] = await proxies()
  const started = performance.now()
  const run = runAction(
    {
      source,
      tags: TAGS.join(','),
      mirrors: `${p1.address}/${repo}\n${p3.address}/${repo}`,
      'registry-auth': [
        auth(HUB, HUB_AUTH, 'PW_HUB'),
        auth(p1.address, M1_AUTH, 'PW_M1')
      ].join('\n')
    },
    {env: passwords}
  )
  const seconds = (performance.now() - started) / 1000
  if (run.status !== 0) throw new Error(`action failed:\n${run.stdout}`)
  const timings = /Timings: (.*)/.exec(run.summary)?.[1] ?? ''
  const phase = Number(/Copying to mirrors ([\d.]+)s/.exec(timings)?.[1])
  const result = {seconds, phase, m1: received(p1), m3: received(p3), timings}
  await Promise.all([p1.stop(), p3.stop()])
  return result
}

// (b) The baseline: one imagetools create per tag per mirror, in turn.
async function baseline(source, repo) {
  const [p1, p3] = await proxies()
  const config = mkdtempSync(join(tmpdir(), 'bench-docker-'))
  const docker = (args, input) => {
    const out = spawnSync('docker', args, {
      env: {...env, DOCKER_CONFIG: config},
      input,
      encoding: 'utf8'
    })
    if (out.status !== 0)
      throw new Error(`docker ${args.join(' ')}: ${out.stderr}`)
  }
  docker(
    ['login', HUB, '-u', HUB_AUTH.username, '--password-stdin'],
    HUB_AUTH.password
  )
  docker(
    ['login', p1.address, '-u', M1_AUTH.username, '--password-stdin'],
    M1_AUTH.password
  )
  const started = performance.now()
  for (const mirror of [p1.address, p3.address]) {
    for (const tag of TAGS) {
      docker([
        'buildx',
        'imagetools',
        'create',
        '--tag',
        `${mirror}/${repo}:${tag}`,
        source
      ])
    }
  }
  const seconds = (performance.now() - started) / 1000
  rmSync(config, {recursive: true, force: true})
  const result = {seconds, m1: received(p1), m3: received(p3)}
  await Promise.all([p1.stop(), p3.stop()])
  return result
}

const row = (label, r) =>
  `  ${label.padEnd(30)} ${r.seconds.toFixed(1).padStart(6)} s   ` +
  `m1 ${String(r.m1.requests).padStart(4)} req ${String(r.m1.bytes).padStart(10)} B   ` +
  `m3 ${String(r.m3.requests).padStart(4)} req ${String(r.m3.bytes).padStart(10)} B`

console.log(
  `Mirroring ${TAGS.length} tags into 2 registries, ${DELAY_MS} ms added to every request`
)
for (const [name, context] of [
  ['busybox', join(ROOT, '__tests__/fixtures/busybox')],
  ['debian-curl', join(ROOT, 'examples/curl')]
].filter(
  ([name]) => !process.env.BENCH_ONLY || process.env.BENCH_ONLY === name
)) {
  const {repo, digest} = build(name, context)
  const source = `${HUB}/${repo}@${digest}`
  const a = await action(source, `${repo}-action`)
  const b = await baseline(`${HUB}/${repo}:source`, `${repo}-baseline`)
  console.log(`\n${name} (${digest.slice(0, 19)})`)
  console.log(row('(a) action, whole run', a))
  console.log(row('(b) one create per tag', b))
  console.log(`  action phases: ${a.timings}`)
  console.log(
    `  ratio a/b, mirror phase: ${(a.phase / b.seconds).toFixed(3)} ` +
      `(target <= 0.25); whole run (start, logins, post included): ` +
      `${(a.seconds / b.seconds).toFixed(3)}`
  )
}
