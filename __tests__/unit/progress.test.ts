import {jest} from '@jest/globals'
import {chmodSync, mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {checkGuards, debugInputs, explain, guardsFor} from '../../src/build.js'
import {start} from '../../src/exec.js'
import type {Inputs} from '../../src/inputs.js'
import {
  BuildProgress,
  crashedAndSilent,
  dockerfileLine,
  failures,
  finalError,
  isQemuFatal,
  lineSplitter,
  splitName,
  type ProgressMode
} from '../../src/progress.js'

// Progress parsing against buildx's real output, captured on the test stack
// (see __tests__/fixtures/progress/README.md).

const CAPTURED = join(import.meta.dirname, '../fixtures/progress')
const THREE = ['linux/amd64', 'linux/arm64', 'linux/arm/v7']
const QEMU_LINE =
  'qemu: uncaught target signal 11 (Segmentation fault) - core dumped'

const captured = (name: string): string[] =>
  readFileSync(join(CAPTURED, name), 'utf8').split('\n')

// Feeds a capture line by line with a clock the test controls; stops early
// once `until` holds, as a guard would look at a build still running.
function feed(
  name: string,
  platforms: string[],
  options: {until?: (p: BuildProgress) => boolean; clock?: {now: number}} = {}
): {progress: BuildProgress; printed: string[]} {
  const mode: ProgressMode = name.endsWith('.plain') ? 'plain' : 'rawjson'
  const printed: string[] = []
  const clock = options.clock ?? {now: 0}
  const progress = new BuildProgress(
    mode,
    platforms,
    line => printed.push(line),
    () => clock.now
  )
  for (const line of captured(name)) {
    progress.line(line)
    if (options.until?.(progress)) return {progress, printed}
  }
  progress.end()
  return {progress, printed}
}

const inputs = (changes: Partial<Inputs> = {}): Inputs =>
  ({
    platforms: THREE,
    driver: 'docker',
    debugPlatform: '',
    buildTimeout: 300,
    stallTimeout: 60,
    digests: [],
    nodes: [],
    ...changes
  }) as Inputs

describe('step names', () => {
  it.each([
    [
      '[linux/arm/v7 3/4] RUN make',
      {platform: 'linux/arm/v7', label: '[3/4] RUN make'}
    ],
    [
      '[linux/amd64 internal] load metadata for 127.0.0.1:5000/base/busybox:1',
      {
        platform: 'linux/amd64',
        label: '[internal] load metadata for 127.0.0.1:5000/base/busybox:1'
      }
    ],
    [
      '[linux/arm64 builder 2/5] RUN make -j10',
      {platform: 'linux/arm64', label: '[builder 2/5] RUN make -j10'}
    ],
    ['[3/4] RUN make', {platform: '', label: '[3/4] RUN make'}],
    [
      '[internal] load .dockerignore',
      {platform: '', label: '[internal] load .dockerignore'}
    ],
    ['exporting to image', {platform: '', label: 'exporting to image'}],
    [
      '[linux/arm64/v8 1/2] FROM x',
      {platform: 'linux/arm64', label: '[1/2] FROM x'}
    ]
  ])('%s', (name, expected) => {
    expect(splitName(name)).toEqual(expected)
  })
})

describe('a platform that crashes under QEMU and exits 139', () => {
  it.each(['segv-child.rawjson', 'segv-child.plain'])(
    '%s: names linux/arm/v7, the step, the signal line and the status',
    name => {
      const {progress} = feed(name, THREE)
      const found = failures(progress)
      // arm64's last step was cancelled because arm/v7 failed: not a cause.
      expect(found).toHaveLength(1)
      const [failure] = found
      expect(failure.platform).toBe('linux/arm/v7')
      expect(failure.step).toMatch(/^\[3\/4\] RUN if \[ "\$\(uname -m\)"/)
      expect(failure.exitCode).toBe(139)
      expect(failure.signal).toBe('SIGSEGV')
      expect(failure.qemuLine).toBe(QEMU_LINE)
      expect(failure.dockerfile).toEqual({file: 'Dockerfile', line: 15})
      expect(progress.running()).toEqual([])
      expect(finalError(progress.text)).toMatch(
        /^ERROR: failed to solve: .*exit code: 139$/
      )
    }
  )

  it('fills in the platform of a one-platform build, whose steps name none', () => {
    const {progress} = feed('segv-child-arm-v7-only.plain', ['linux/arm/v7'])
    expect(failures(progress).map(f => [f.platform, f.exitCode])).toEqual([
      ['linux/arm/v7', 139]
    ])
    // buildx's "#0 building with ..." line is not a step.
    expect(progress.running()).toEqual([])
  })

  it('explains it as a QEMU crash, with both hints', () => {
    const [failure] = failures(feed('segv-child.rawjson', THREE).progress)
    const {title, message} = explain(failure, inputs())
    expect(title).toMatch(/^linux\/arm\/v7: \[3\/4\] RUN if/)
    expect(message).toContain('linux/arm/v7 failed at [3/4] RUN if')
    expect(message).toContain('exit code 139 (SIGSEGV)')
    expect(message).toContain(`QEMU said: "${QEMU_LINE}"`)
    expect(message).toMatch(/another base image.*qemu-image/s)
    expect(message).toContain('re-run with debug-platform: linux/arm/v7')
    // Already debugging: no advice to do what the user is doing.
    expect(
      explain(failure, inputs({debugPlatform: 'linux/arm/v7'})).message
    ).not.toContain('re-run with debug-platform')
  })
})

describe('a step that hangs after QEMU crashed', () => {
  it.each([
    ['segv-self-cancelled.rawjson', THREE],
    ['segv-self-cancelled.plain', THREE],
    ['segv-self-arm-v7-only.plain', ['linux/arm/v7']]
  ])(
    '%s: is caught once it stays silent for the grace period',
    (name, platforms) => {
      const clock = {now: 1000}
      const {progress} = feed(name, platforms, {
        clock,
        until: p => p.running().some(s => s.logs.some(isQemuFatal))
      })
      expect(crashedAndSilent(progress, 60_000, 60_999)).toEqual([])
      const [step] = crashedAndSilent(progress, 60_000, 61_000)
      expect(step.platform).toBe('linux/arm/v7')
      expect(step.label).toMatch(/^\[3\/4\] RUN /)
      const guards = {buildMs: 0, stallMs: 600_000, crashGraceMs: 60_000}
      expect(checkGuards(progress, guards, 0, 61_000)).toMatchObject({
        kind: 'crash',
        silentMs: 60_000
      })
    }
  )

  it('is no failure of its own once cancelled: buildx reports "Canceled"', () => {
    const {progress} = feed('segv-self-cancelled.rawjson', THREE)
    expect(failures(progress)).toEqual([])
    expect(progress.running()).toEqual([])
    expect(finalError(progress.text)).toBe(
      'ERROR: failed to solve: Canceled: context canceled'
    )
  })
})

describe('a build that stalls', () => {
  it.each(['stall-cancelled.rawjson', 'stall-cancelled.plain'])(
    '%s: the stall guard names the silent arm/v7 step',
    name => {
      const clock = {now: 0}
      const {progress} = feed(name, THREE, {
        clock,
        until: p =>
          p.steps().some(s => s.logs.includes('going quiet on armv7l'))
      })
      const guards = {buildMs: 0, stallMs: 6000, crashGraceMs: 6000}
      expect(checkGuards(progress, guards, 0, 5999)).toBeUndefined()
      const stop = checkGuards(progress, guards, 0, 6000)
      expect(stop?.kind).toBe('stall')
      if (stop?.kind !== 'stall') return
      const arm = stop.running.find(s => s.platform === 'linux/arm/v7')
      expect(arm?.label).toMatch(/^\[3\/3\] RUN if/)
      expect(arm?.logs).toEqual(['going quiet on armv7l'])
    }
  )

  it('build-timeout fires on its own clock, whatever the output', () => {
    const clock = {now: 0}
    const {progress} = feed('stall-cancelled.rawjson', THREE, {
      clock,
      until: p => p.steps().some(s => s.logs.includes('going quiet on armv7l'))
    })
    const guards = {buildMs: 10_000, stallMs: 0, crashGraceMs: 0}
    expect(checkGuards(progress, guards, -9_999, 0)).toBeUndefined()
    expect(checkGuards(progress, guards, -10_000, 0)?.kind).toBe('timeout')
    // Both off: nothing ever fires.
    const off = {buildMs: 0, stallMs: 0, crashGraceMs: 0}
    expect(checkGuards(progress, off, -1e9, 1e9)).toBeUndefined()
  })

  it('reads fractional minutes; the crash grace never outlasts stall-timeout', () => {
    expect(guardsFor(inputs({stallTimeout: 0.1, buildTimeout: 0.5}))).toEqual({
      buildMs: 30_000,
      stallMs: 6000,
      crashGraceMs: 6000
    })
    expect(guardsFor(inputs())).toEqual({
      buildMs: 300 * 60_000,
      stallMs: 60 * 60_000,
      crashGraceMs: 60_000
    })
    expect(guardsFor(inputs({stallTimeout: 0})).crashGraceMs).toBe(0)
  })
})

describe('a build that succeeds', () => {
  it('has no failure and nothing running, and prints like plain progress', () => {
    const {progress, printed} = feed('busybox-ok.rawjson', THREE)
    expect(failures(progress)).toEqual([])
    expect(progress.running()).toEqual([])
    const log = printed.join('\n')
    expect(log).not.toMatch(/^\s*[{}"]/m) // no JSON reaches the log
    expect(log).toMatch(/^#\d+ \[linux\/arm\/v7 2\/2\] RUN echo "jobs=1 arch/m)
    expect(log).toMatch(/^#\d+ DONE \d+\.\ds$/m)
    expect(log).toMatch(/^#\d+ exporting to image$/m)
  })

  it('parses the same whatever the chunk boundaries', () => {
    const whole = readFileSync(join(CAPTURED, 'segv-child.rawjson'), 'utf8')
    const progress = new BuildProgress('rawjson', THREE)
    const splitter = lineSplitter(line => progress.line(line))
    for (let at = 0; at < whole.length; at += 7) {
      splitter.write(whole.slice(at, at + 7))
    }
    splitter.end()
    expect(failures(progress).map(f => [f.platform, f.exitCode])).toEqual([
      ['linux/arm/v7', 139]
    ])
  })
})

describe('text around the progress', () => {
  it('finds the Dockerfile line buildx quotes', () => {
    expect(
      dockerfileLine(['x', 'trunk/Dockerfile:42', '--------------------'])
    ).toEqual({file: 'trunk/Dockerfile', line: 42})
    expect(dockerfileLine(['Dockerfile:42', 'no dashes'])).toBeUndefined()
  })

  it.each([
    [QEMU_LINE, true],
    ['qemu-arm: uncaught target signal 4 (Illegal instruction)', true],
    ['qemu: unhandled CPU exception 0x8 - aborting', true],
    ['Segmentation fault', false],
    ['checking for qemu: yes', false]
  ])('%s is QEMU fatal: %s', (line, fatal) => {
    expect(isQemuFatal(line)).toBe(fatal)
  })
})

describe('debug-platform', () => {
  it('narrows the run to one platform that writes to no registry', () => {
    const stdout: string[] = []
    const spy = jest
      .spyOn(process.stdout, 'write')
      .mockImplementation((chunk: string | Uint8Array) => {
        stdout.push(chunk.toString())
        return true
      })
    try {
      const debug = debugInputs(
        inputs({
          debugPlatform: 'linux/arm/v7',
          push: true,
          mirrors: ['127.0.0.1:5004/x'],
          cacheTo: ['type=registry,ref=127.0.0.1:5004/x:cache'],
          source: ''
        })
      )
      expect(debug).toMatchObject({
        platforms: ['linux/arm/v7'],
        push: false,
        mirrors: [],
        cacheTo: []
      })
    } finally {
      spy.mockRestore()
    }
    expect(stdout.join('')).toContain(
      '::notice::debug-platform: building only linux/arm/v7, with plain progress; skipping push, mirrors, cache-to.'
    )
  })

  it('changes nothing without it', () => {
    const plain = inputs()
    expect(debugInputs(plain)).toBe(plain)
  })
})

describe('stopping a command', () => {
  // A stand-in for docker that ignores SIGINT and SIGTERM, as a wedged
  // client would; only SIGKILL ends it.
  function stubborn(): string {
    const dir = mkdtempSync(join(tmpdir(), 'multiarch-stop-'))
    const script = join(dir, 'docker')
    writeFileSync(
      script,
      "#!/bin/sh\ntrap '' INT TERM\necho ready\nwhile :; do sleep 0.1; done\n"
    )
    chmodSync(script, 0o755)
    return script
  }

  const waitFor = async (check: () => boolean): Promise<void> => {
    while (!check()) await new Promise(resolve => setTimeout(resolve, 20))
  }

  it('escalates SIGINT, SIGTERM, SIGKILL when the command ignores them', async () => {
    process.env.MULTIARCH_DOCKER = stubborn()
    try {
      let output = ''
      const child = start({phase: 'Test', args: []}, text => (output += text), {
        termAfterMs: 200,
        killAfterMs: 200
      })
      await waitFor(() => output.includes('ready'))
      child.stop()
      const ended = await child.done
      expect(child.signalsSent()).toEqual(['SIGINT', 'SIGTERM', 'SIGKILL'])
      expect(ended).toEqual({exitCode: 137, signal: 'SIGKILL'})
    } finally {
      delete process.env.MULTIARCH_DOCKER
    }
  })

  it('stops at SIGINT when that is enough', async () => {
    process.env.MULTIARCH_DOCKER = 'sleep'
    try {
      const child = start({phase: 'Test', args: ['30']}, () => undefined, {
        termAfterMs: 5000,
        killAfterMs: 5000
      })
      child.stop()
      expect(await child.done).toEqual({exitCode: 130, signal: 'SIGINT'})
      expect(child.signalsSent()).toEqual(['SIGINT'])
    } finally {
      delete process.env.MULTIARCH_DOCKER
    }
  })
})
