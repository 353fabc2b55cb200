import {mkdtempSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  authYaml,
  commandsOf,
  HANDLERS,
  STANDIN,
  docker,
  passwordEnv,
  registered,
  restoreHandlers,
  runAction,
  tagList,
  uniqueRepo,
  unregister,
  writesFor,
  type Run
} from './harness.js'

// The emulation guards on the real stack (issue 6): emulators checked
// before building (C12), a platform that crashes under QEMU (C13) or hangs,
// the build and stall timeouts, and debug-platform. Fixtures misbehave on
// linux/arm/v7 only, chosen by `uname -m` inside RUN. Every failure must
// leave the registries without a write and nothing running: no emulated
// process, no container, no builder.

const THREE = 'linux/amd64,linux/arm64/v8,linux/arm/v7'

// Processes still running a fixture's arm/v7 step: the engine runs on this
// machine, so its emulated processes are visible here as qemu-arm.
function fixtureProcesses(): string[] {
  const found: string[] = []
  for (const pid of readdirSync('/proc').filter(n => /^\d+$/.test(n))) {
    let cmdline: string
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      continue // gone meanwhile
    }
    const text = cmdline.split('\0').join(' ')
    if (
      text.includes('qemu-') &&
      /going quiet|crashing on purpose/.test(text)
    ) {
      found.push(`${pid} ${text}`)
    }
  }
  return found
}

// Builders and containers the run created and left behind.
function inventory(): {builders: string[]; containers: string[]} {
  const builders = docker('buildx', 'ls', '--format', '{{.Name}}')
    .stdout.split('\n')
    .filter(Boolean)
  const containers = docker('ps', '-a', '--format', '{{.Names}}')
    .stdout.split('\n')
    .filter(Boolean)
  return {builders, containers}
}

function expectNothingLeft(before: ReturnType<typeof inventory>): void {
  expect(fixtureProcesses()).toEqual([])
  const after = inventory()
  expect(after.builders.filter(b => !before.builders.includes(b))).toEqual([])
  expect(after.containers.filter(c => !before.containers.includes(c))).toEqual(
    []
  )
}

const errors = (run: Run): string[] =>
  run.stdout.split('\n').filter(line => line.startsWith('::error'))

function timed(work: () => Run): {run: Run; seconds: number} {
  const started = Date.now()
  const run = work()
  return {run, seconds: (Date.now() - started) / 1000}
}

function release(
  context: string,
  inputs: Record<string, string> = {},
  options: Parameters<typeof runAction>[1] = {}
): {run: Run; seconds: number; repo: string} {
  const repo = uniqueRepo('guards')
  const {run, seconds} = timed(() =>
    runAction(
      {
        image: `${REG.m3}/${repo}`,
        tags: 'v1',
        platforms: THREE,
        context: join(FIXTURES, context),
        driver: 'docker',
        network: 'host',
        'qemu-image': STANDIN,
        ...inputs
      },
      options
    )
  )
  return {run, seconds, repo}
}

beforeAll(() => {
  restoreHandlers()
  expect(HANDLERS.every(registered)).toBe(true)
})

afterAll(() => {
  // Whatever happened, the other suites need the handlers back.
  restoreHandlers()
  expect(HANDLERS.every(registered)).toBe(true)
})

describe('C13: a QEMU crash on one platform names that platform', () => {
  const repo = uniqueRepo('c13')
  let run: Run
  let before: ReturnType<typeof inventory>

  beforeAll(() => {
    before = inventory()
    run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1',
        platforms: THREE,
        context: join(FIXTURES, 'segv-armv7'),
        // A child shell crashes, so the step ends with its status, 139.
        'build-args': 'CRASH=child',
        mirrors: `${REG.m1}/${repo}`,
        'registry-auth': authYaml('hub', 'm1'),
        driver: 'docker',
        network: 'host',
        'qemu-image': STANDIN
      },
      {env: passwordEnv()}
    )
  })

  it('fails with an annotation naming the platform, the step and the crash', () => {
    expect(run.status).not.toBe(0)
    const [annotation] = errors(run)
    expect(annotation).toMatch(/^::error title=linux\/arm\/v7%3A \[3\/4\] RUN /)
    expect(annotation).toContain(
      'file=__tests__/fixtures/segv-armv7/Dockerfile'
    )
    expect(annotation).toContain('line=15')
    expect(annotation).toContain('linux/arm/v7 failed at [3/4] RUN if')
    expect(annotation).toContain('exit code 139 (SIGSEGV)')
    expect(annotation).toContain(
      'qemu: uncaught target signal 11 (Segmentation fault)'
    )
    expect(annotation).toMatch(/another base image.*qemu-image/)
    // The job's own failure line says it too, and that nothing was pushed.
    expect(run.stdout).toMatch(
      /^::error::Build \(linux\/arm\/v7\): linux\/arm\/v7 failed at \[3\/4\] RUN .*\(exit code 139, SIGSEGV\).*Nothing was pushed/m
    )
  })

  it('pushes nothing anywhere: no write to the image or the mirror', async () => {
    expect(writesFor('hub', repo)).toEqual([])
    expect(writesFor('m1', repo)).toEqual([])
    expect(await tagList(REG.hub, repo, USERS.hub)).toEqual([])
    expect(await tagList(REG.m1, repo, USERS.m1)).toEqual([])
    expect(commandsOf(run, 'buildx', 'imagetools', 'create')).toEqual([])
  })

  it('suggests building linux/arm/v7 alone in the summary', () => {
    expect(run.summary).toContain('Multi-platform build failed')
    expect(run.summary).toContain('debug-platform: linux/arm/v7')
  })

  it('reads the build from rawjson, yet shows a readable log', () => {
    const [build] = commandsOf(run, 'buildx', 'build')
    expect(build.slice(4, 6)).toEqual(['--progress', 'rawjson'])
    expect(run.stdout).not.toMatch(/^\s*"vertexes"/m)
    expect(run.stdout).toMatch(/^#\d+ \[linux\/arm\/v7 3\/4\] RUN if/m)
    expect(run.stdout).toMatch(/^#\d+ [\d.]+ crashing on purpose \(child\)$/m)
    expect(run.stdout).toMatch(
      /^#\d+ [\d.]+ qemu: uncaught target signal 11 \(Segmentation fault\) - core dumped$/m
    )
  })

  it('leaves nothing behind', () => {
    expect(run.post.status).toBe(0)
    expectNothingLeft(before)
  })
})

describe('a QEMU crash that then hangs the step', () => {
  it('is cancelled after the crash grace, quoting the signal line', () => {
    const before = inventory()
    // CRASH=self: the crashing shell is the step's first process, and QEMU
    // cannot die after printing its line: the step hangs, as in the SRS
    // write-up. Default timeouts: the crash grace is 60 s.
    const {run, seconds, repo} = release('segv-armv7')
    expect(run.status).not.toBe(0)
    const [annotation] = errors(run)
    expect(annotation).toMatch(/^::error title=linux\/arm\/v7%3A \[3\/4\] RUN /)
    expect(annotation).toContain(
      'QEMU said: "qemu: uncaught target signal 11 (Segmentation fault) - core dumped"'
    )
    expect(annotation).toMatch(/stayed silent for \d+ s and was cancelled/)
    expect(run.stdout).toMatch(/buildx ended after SIGINT/)
    // A hang bound, not a speed check: the grace plus a generous margin.
    expect(seconds).toBeLessThan(60 + 120)
    expect(writesFor('m3', repo)).toEqual([])
    expectNothingLeft(before)
  })
})

describe('a platform that stalls', () => {
  let before: ReturnType<typeof inventory>
  let result: ReturnType<typeof release>

  beforeAll(() => {
    before = inventory()
    // stall-timeout 0.1 minutes: 6 s without output.
    result = release('stall-armv7', {'stall-timeout': '0.1'})
  })

  it('is cancelled, naming the platform and the step still running', () => {
    const {run} = result
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(
      /^::error::Build \(linux\/arm\/v7\): no build output for \d+ s \(stall-timeout: 0\.1 min\); cancelled the build\. Still running: linux\/arm\/v7 \[3\/3\] RUN if .*last output: "going quiet on armv7l"/m
    )
    expect(run.stdout).toMatch(/buildx ended after SIGINT/)
    expect(run.summary).toContain('debug-platform: linux/arm/v7')
  })

  it('ends within the stall timeout plus a generous margin', () => {
    // The step itself would sleep for an hour.
    expect(result.seconds).toBeLessThan(6 + 90)
  })

  it('pushes nothing and leaves nothing running', () => {
    expect(writesFor('m3', result.repo)).toEqual([])
    expect(result.run.post.status).toBe(0)
    expectNothingLeft(before)
  })
})

describe('build-timeout', () => {
  it('cancels the whole build on its own clock', () => {
    const before = inventory()
    const {run, seconds, repo} = release('stall-armv7', {
      'build-timeout': '0.15',
      'stall-timeout': '0'
    })
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(
      /^::error::Build \(linux\/arm\/v7\): the build ran for \d+ s, past build-timeout \(0\.15 min\); cancelled the build\. Still running: linux\/arm\/v7 \[3\/3\] RUN /m
    )
    expect(seconds).toBeLessThan(9 + 90)
    expect(writesFor('m3', repo)).toEqual([])
    expectNothingLeft(before)
  })
})

describe('C12: a missing emulator that cannot be installed', () => {
  afterEach(() => restoreHandlers())

  it('fails before building, naming linux/arm/v7 and qemu-arm', () => {
    if (registered('qemu-arm')) unregister('qemu-arm')
    expect(registered('qemu-arm')).toBe(false)
    const {run, repo} = release(
      'busybox',
      {platforms: 'linux/amd64,linux/arm/v7'},
      {wrapperHook: 'if [ "$1" = run ]; then exit 1; fi'}
    )
    expect(run.status).not.toBe(0)
    expect(commandsOf(run, 'run', '--rm', '--privileged')).toHaveLength(1)
    expect(errors(run)).toEqual([
      expect.stringMatching(
        /^::error::Emulators \(linux\/arm\/v7\): emulation is missing and cannot be installed: linux\/arm\/v7 needs the qemu-arm handler \(not in \/proc\/sys\/fs\/binfmt_misc\); installing it with .* failed \(docker run exited with 1\)/
      )
    ])
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
    expect(writesFor('m3', repo)).toEqual([])
  })
})

describe('emulator checks that never touch the real handlers', () => {
  // A binfmt_misc table of the test's own: qemu-aarch64 only.
  function fakeBinfmt(): string {
    const dir = mkdtempSync(join(tmpdir(), 'multiarch-binfmt-'))
    writeFileSync(join(dir, 'status'), 'enabled\n')
    writeFileSync(join(dir, 'register'), '')
    writeFileSync(
      join(dir, 'qemu-aarch64'),
      'enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: OCF\n'
    )
    return dir
  }

  it('qemu: false with a handler missing fails at once, naming both', () => {
    const {run} = release(
      'busybox',
      {qemu: 'false'},
      {env: {MULTIARCH_BINFMT_DIR: fakeBinfmt()}}
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(
      /^::error::Emulators \(linux\/arm\/v7\): qemu: false, but linux\/arm\/v7 needs the qemu-arm handler .*cannot run on this runner without emulation/m
    )
    expect(commandsOf(run, 'run')).toEqual([])
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
  })

  it('an installer that exits 0 but lists no qemu-arm is not believed', () => {
    const dir = fakeBinfmt()
    // What binfmt prints when registering failed: exit 0, and a status
    // without the emulator.
    const status =
      '{"supported":["linux/amd64","linux/386","linux/arm64"],"emulators":["qemu-aarch64"]}'
    const {run} = release(
      'busybox',
      {},
      {
        env: {MULTIARCH_BINFMT_DIR: dir},
        wrapperHook: `if [ "$1" = run ]; then echo '${status}'; exit 0; fi`
      }
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(
      `::error::Emulators: no emulator is registered for linux/arm/v7 (no qemu-arm in ${dir}; the installer lists no qemu-arm emulator; the installer does not list linux/arm/v7 as supported)`
    )
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
  })
})

describe('debug-platform', () => {
  it('builds only that platform with plain progress, and writes nothing', () => {
    const before = inventory()
    const repo = uniqueRepo('debug')
    const run = runAction({
      image: `${REG.m3}/${repo}`,
      tags: 'v1',
      platforms: THREE,
      context: join(FIXTURES, 'busybox'),
      mirrors: `${REG.m3}/${repo}-mirror`,
      'debug-platform': 'linux/arm/v7',
      driver: 'docker',
      network: 'host',
      'qemu-image': STANDIN
    })
    expect(run.status).toBe(0)
    expect(run.stdout).toContain(
      '::notice::debug-platform: building only linux/arm/v7, with plain progress; skipping push, mirrors. Nothing is written to any registry.'
    )
    const [build] = commandsOf(run, 'buildx', 'build')
    expect(build).toEqual(expect.arrayContaining(['--progress', 'plain']))
    expect(build[build.indexOf('--platform') + 1]).toBe('linux/arm/v7')
    expect(build).not.toContain('--push')
    expect(commandsOf(run, 'buildx', 'imagetools', 'create')).toEqual([])
    // buildx's own plain output, step names without a platform.
    expect(run.stdout).toMatch(/^#\d+ \[2\/2\] RUN echo "jobs=1 arch/m)
    expect(run.outputs.platforms).toBe('linux/arm/v7')
    expect(run.outputs.digest).toBe('')
    expect(run.outputs.builder).toBe('default')
    expect(writesFor('m3', repo)).toEqual([])
    expect(writesFor('m3', `${repo}-mirror`)).toEqual([])
    expectNothingLeft(before)
  })

  it('still names the platform of a crash, though plain step names omit it', () => {
    const {run} = release('segv-armv7', {
      'build-args': 'CRASH=child',
      'debug-platform': 'linux/arm/v7'
    })
    expect(run.status).not.toBe(0)
    const [annotation] = errors(run)
    expect(annotation).toMatch(/^::error title=linux\/arm\/v7%3A \[3\/4\] RUN /)
    expect(annotation).toContain('exit code 139 (SIGSEGV)')
    expect(annotation).not.toContain('re-run with debug-platform')
    expect(run.stdout).toMatch(/^#\d+ [\d.]+ qemu: uncaught target signal 11/m)
  })
})
