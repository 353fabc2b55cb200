import * as core from '@actions/core'
import {atLeast, buildxInUse} from './buildx.js'
import {readFileSync} from 'node:fs'
import {isAbsolute, join, relative} from 'node:path'
import {checkBuilderPlatforms, emulatedPlatforms} from './emulators.js'
import {PhaseError, start, type Escalation} from './exec.js'
import type {Inputs} from './inputs.js'
import {notice} from './notes.js'
import {
  BuildProgress,
  crashedAndSilent,
  describeStep,
  failures,
  finalError,
  isQemuFatal,
  lineSplitter,
  type Failure,
  type ProgressMode,
  type Step
} from './progress.js'

// Build and push: one buildx build for every platform. The digest comes
// from buildx's metadata file, never from the log. buildx pushes only once
// every platform has built, so a failed or cancelled build writes nothing
// to any registry: no index with two of three platforms.
//
// The build's progress is read as it comes (`--progress rawjson`, or
// `plain` when debugging one platform) so that a failure names the platform
// and the Dockerfile step, a QEMU crash is recognised, and a build that
// hangs under emulation is cancelled instead of running into the job's
// six-hour limit.

const PHASE = 'Build'

// A step whose last output was QEMU's fatal line is given this long to end
// before it counts as hung (at most stall-timeout, and never with the
// stall guard off). A crashed child process ends at once and its parent
// carries on; a crashed first process of the step never ends.
export const CRASH_GRACE_MS = 60_000

export interface Built {
  digest: string // index digest, '' when nothing was pushed
  metadata: Record<string, unknown>
}

export function buildArgs(
  inputs: Inputs,
  builder: string,
  metadataFile: string,
  progress?: ProgressMode
): string[] {
  const args = ['buildx', 'build', '--builder', builder]
  if (progress) args.push('--progress', progress)
  args.push('--platform', inputs.platforms.join(','))
  if (inputs.file) args.push('--file', inputs.file)
  for (const tag of inputs.tags) args.push('--tag', `${inputs.image}:${tag}`)
  for (const arg of inputs.buildArgs) args.push('--build-arg', arg)
  for (const label of inputs.labels) args.push('--label', label)
  for (const note of inputs.annotations) args.push('--annotation', note)
  if (inputs.target) args.push('--target', inputs.target)
  inputs.secrets.forEach(({id}, index) =>
    args.push('--secret', `id=${id},env=${secretEnv(index)}`)
  )
  for (const {id, path} of inputs.secretFiles) {
    args.push('--secret', `id=${id},src=${path}`)
  }
  for (const cache of inputs.cacheFrom) args.push('--cache-from', cache)
  for (const cache of inputs.cacheTo) args.push('--cache-to', cache)
  if (inputs.network) args.push('--network', inputs.network)
  // `=` keeps a value such as `false` from being read as the build context.
  args.push(`--provenance=${inputs.provenance}`, `--sbom=${inputs.sbom}`)
  if (inputs.noCache) args.push('--no-cache')
  if (inputs.pull) args.push('--pull')
  // Attestations in BuildKit's legacy form: newer BuildKit stores them as
  // OCI artifacts by default, which Aliyun ACR refuses ("unknown manifest
  // class"). BuildKit before the option existed keeps unknown exporter
  // options to itself and writes the legacy form anyway.
  const legacy = attestations(inputs) ? ',oci-artifact=false' : ''
  if (inputs.pushByDigest) {
    // No tag: the image is reachable by its digest only, until the merge
    // job puts it in the tagged index.
    args.push(
      '--output',
      `type=image,name=${inputs.image},push-by-digest=true,name-canonical=true,push=true${legacy}`
    )
  } else if (inputs.push && legacy) {
    args.push('--output', `type=registry${legacy}`)
  } else if (inputs.push) {
    args.push('--push')
  }
  args.push('--metadata-file', metadataFile, inputs.context)
  return args
}

// provenance or sbom on: the pushed image is an index with attestations.
export const attestations = (inputs: Inputs): boolean =>
  inputs.provenance !== 'false' || inputs.sbom !== 'false'

// Secret values travel to buildx in its environment, never in argv.
export const secretEnv = (index: number): string => `MULTIARCH_SECRET_${index}`

export function secretsEnvironment(inputs: Inputs): Record<string, string> {
  return Object.fromEntries(
    inputs.secrets.map(({value}, index) => [secretEnv(index), value])
  )
}

export function readDigest(metadata: Record<string, unknown>): string {
  const digest = metadata['containerimage.digest']
  return typeof digest === 'string' ? digest : ''
}

// debug-platform: the maintainers' way to debug one platform, as one input.
// Only that platform is built, with plain progress, and nothing is written
// to any registry: no push, no mirrors, no cache export.
export function debugInputs(inputs: Inputs): Inputs {
  const platform = inputs.debugPlatform
  if (!platform) return inputs
  if (inputs.source || inputs.digests.length > 0) {
    const mode = inputs.source ? 'source' : 'digests'
    core.warning(`debug-platform: ignored with ${mode}, which builds nothing`)
    return {...inputs, debugPlatform: ''}
  }
  if (!inputs.platforms.includes(platform)) {
    core.warning(
      `debug-platform: ${platform} is not one of platforms (${inputs.platforms.join(', ')}); building it anyway`
    )
  }
  const skipped = [
    inputs.push ? 'push' : '',
    inputs.mirrors.length > 0 ? 'mirrors' : '',
    inputs.cacheTo.length > 0 ? 'cache-to' : ''
  ].filter(Boolean)
  notice(
    `debug-platform: building only ${platform}, with plain progress` +
      (skipped.length > 0 ? `; skipping ${skipped.join(', ')}` : '') +
      '. Nothing is written to any registry.'
  )
  return {
    ...inputs,
    platforms: [platform],
    push: false,
    pushByDigest: false,
    mirrors: [],
    cacheTo: []
  }
}

export interface Guards {
  buildMs: number // 0 = off
  stallMs: number // 0 = off
  crashGraceMs: number // 0 = off
}

export function guardsFor(inputs: Inputs): Guards {
  const stallMs = Math.round(inputs.stallTimeout * 60_000)
  return {
    buildMs: Math.round(inputs.buildTimeout * 60_000),
    stallMs,
    crashGraceMs: stallMs > 0 ? Math.min(CRASH_GRACE_MS, stallMs) : 0
  }
}

// Why the action stopped a build that was still running.
export type Stop =
  | {kind: 'timeout'; afterMs: number; running: Step[]}
  | {kind: 'stall'; silentMs: number; running: Step[]}
  | {kind: 'crash'; steps: Step[]; silentMs: number}
  | {kind: 'interrupted'; signal: string; running: Step[]}

export function checkGuards(
  progress: BuildProgress,
  guards: Guards,
  startedAt: number,
  now: number
): Stop | undefined {
  // Copies, so that the cancellation that follows does not change them.
  const running = (): Step[] =>
    progress.running().map(step => ({...step, logs: [...step.logs]}))
  if (guards.crashGraceMs > 0) {
    const steps = crashedAndSilent(progress, guards.crashGraceMs, now).map(
      step => ({...step, logs: [...step.logs]})
    )
    if (steps.length > 0) {
      const silentMs = now - Math.max(...steps.map(s => s.lastOutput))
      return {kind: 'crash', steps, silentMs}
    }
  }
  if (guards.buildMs > 0 && now - startedAt >= guards.buildMs) {
    return {kind: 'timeout', afterMs: now - startedAt, running: running()}
  }
  if (guards.stallMs > 0 && now - progress.lastOutput >= guards.stallMs) {
    return {
      kind: 'stall',
      silentMs: now - progress.lastOutput,
      running: running()
    }
  }
  return undefined
}

export async function build(
  inputs: Inputs,
  builder: string,
  tempDir: string,
  escalation?: Escalation
): Promise<Built> {
  if (inputs.driver === 'remote') {
    await checkBuilderPlatforms(builder, inputs.platforms)
  }
  if (inputs.annotations.length > 0 && !atLeast(buildxInUse(), '0.12.0')) {
    core.warning(
      `annotations: ignored, because buildx ${buildxInUse()} has no ` +
        '--annotation (0.12 and newer have it; set buildx-version)'
    )
    inputs = {...inputs, annotations: []}
  }
  const metadataFile = join(tempDir, 'metadata.json')
  // rawjson came with buildx 0.13; older ones are read in plain form.
  const mode: ProgressMode =
    inputs.debugPlatform || !atLeast(buildxInUse(), '0.13.0')
      ? 'plain'
      : 'rawjson'
  const progress = new BuildProgress(mode, inputs.platforms, line =>
    core.info(line)
  )
  const streams = {
    stdout: lineSplitter(line => progress.line(line)),
    stderr: lineSplitter(line => progress.line(line))
  }
  const guards = guardsFor(inputs)
  core.info(
    `Guards: build-timeout ${minutes(guards.buildMs)}, stall-timeout ` +
      `${minutes(guards.stallMs)}, QEMU crash grace ${minutes(guards.crashGraceMs)}`
  )

  const startedAt = Date.now()
  const child = start(
    {
      phase: PHASE,
      args: buildArgs(inputs, builder, metadataFile, mode),
      echo: true,
      env: secretsEnvironment(inputs)
    },
    (text, stream) => streams[stream].write(text),
    escalation
  )
  let stop: Stop | undefined
  const halt = (reason: Stop): void => {
    if (stop) return
    stop = reason
    core.info(`Stopping the build: ${stopHeadline(reason, inputs)}`)
    child.stop()
  }
  const watch = setInterval(() => {
    const reason = checkGuards(progress, guards, startedAt, Date.now())
    if (reason) halt(reason)
  }, 1000)
  // The runner cancels a job with SIGINT, then SIGTERM: pass it on, so
  // that BuildKit stops too instead of building for nobody.
  const onSignal = (signal: NodeJS.Signals): void =>
    halt({kind: 'interrupted', signal, running: progress.running()})
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  const ended = await child.done.finally(() => {
    clearInterval(watch)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  })
  streams.stdout.end()
  streams.stderr.end()
  progress.end()
  const seconds = Math.round((Date.now() - startedAt) / 1000)

  if (ended.exitCode !== 0 || stop) {
    if (ended.exitCode === 0 && stop) {
      core.warning('The build finished as it was being stopped; keeping it')
    } else {
      const sent = child.signalsSent()
      if (sent.length > 0) {
        core.info(`buildx ended after ${sent.join(', ')} (${seconds} s)`)
      }
      throw await failed(inputs, progress, stop, ended.exitCode)
    }
  }

  const metadata = JSON.parse(readFileSync(metadataFile, 'utf8')) as Record<
    string,
    unknown
  >
  const digest = readDigest(metadata)
  if (inputs.push && !digest) {
    throw new PhaseError(
      PHASE,
      `buildx wrote no containerimage.digest to ${metadataFile}`
    )
  }
  if (digest) core.info(`Pushed ${inputs.image}@${digest}`)
  return {digest, metadata}
}

// --- Saying what went wrong ------------------------------------------------

const NOTHING_PUSHED =
  'Nothing was pushed: buildx pushes only after every platform has built.'
const PERHAPS_PUSHED =
  'buildx had begun exporting, so some layers or manifests may have ' +
  'reached the registry; it writes the tags last.'

function minutes(ms: number): string {
  if (ms === 0) return 'off'
  return ms < 120_000 ? `${Math.round(ms / 1000)} s` : `${ms / 60_000} min`
}

// Step names keep a RUN's line continuations as runs of spaces.
function short(text: string, length = 100): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > length ? `${flat.slice(0, length - 3)}...` : flat
}

// Annotations point at files relative to the workspace.
function annotationPath(inputs: Inputs): string {
  const file = inputs.file || join(inputs.context, 'Dockerfile')
  const workspace = process.env.GITHUB_WORKSPACE || process.cwd()
  return isAbsolute(file) ? relative(workspace, file) : file
}

function stopHeadline(stop: Stop, inputs: Inputs): string {
  switch (stop.kind) {
    case 'timeout':
      return `the build ran for ${minutes(stop.afterMs)}, past build-timeout (${inputs.buildTimeout} min)`
    case 'stall':
      return `no build output for ${minutes(stop.silentMs)} (stall-timeout: ${inputs.stallTimeout} min)`
    case 'crash':
      return `QEMU crashed in ${stop.steps.map(s => short(describeStep(s))).join(', ')} and the step did not end`
    case 'interrupted':
      return `the action received ${stop.signal}`
  }
}

function stepLine(step: Step, now: number): string {
  const last = step.logs[step.logs.length - 1]
  const silent = Math.round((now - step.lastOutput) / 1000)
  const said = last ? `, last output: "${short(last.trim(), 120)}"` : ''
  return `${step.platform || '(all platforms)'} ${short(step.label)} (silent for ${silent} s${said})`
}

// True when the platform runs under QEMU on this runner.
function emulated(inputs: Inputs, platform: string): boolean {
  if (!platform || inputs.driver === 'remote') return false
  return emulatedPlatforms([platform]).length > 0
}

export function explain(
  failure: Failure,
  inputs: Inputs,
  note = ''
): {title: string; message: string} {
  const where = failure.platform || 'the build'
  const parts: string[] = []
  if (failure.exitCode !== undefined) {
    parts.push(
      `exit code ${failure.exitCode}` +
        (failure.signal ? ` (${failure.signal})` : '')
    )
  }
  if (failure.qemuLine) parts.push(`QEMU said: "${failure.qemuLine}"`)
  const underQemu = emulated(inputs, failure.platform)
  const qemuCrash =
    failure.qemuLine !== undefined ||
    (underQemu &&
      ['SIGSEGV', 'SIGILL', 'SIGBUS'].includes(failure.signal ?? ''))
  const lines = [
    `${where} failed at ${short(failure.step, 200)}: ` +
      (parts.length > 0 ? parts.join('; ') : short(failure.reason, 300))
  ]
  if (note) lines.push(note)
  if (qemuCrash) {
    lines.push(
      `This looks like QEMU crashing while emulating ${where}, rather than ` +
        'a mistake in the Dockerfile. Try another base image (or another ' +
        'release of it), or another QEMU version through qemu-image.'
    )
  } else if (failure.execFormat) {
    lines.push(
      `The kernel could not run a ${where} program ("exec format error"): ` +
        'no emulator handled it. Check the Installing emulators group, or ' +
        'set qemu: true.'
    )
  }
  if (!inputs.debugPlatform && failure.platform) {
    lines.push(
      `To see this platform alone, re-run with debug-platform: ${failure.platform} (plain progress, nothing pushed).`
    )
  }
  const title = short(`${where}: ${failure.step} failed`, 120)
  return {title, message: lines.join('\n')}
}

async function failed(
  inputs: Inputs,
  progress: BuildProgress,
  stop: Stop | undefined,
  exitCode: number
): Promise<PhaseError> {
  const now = Date.now()
  const file = annotationPath(inputs)
  let headline: string
  let rows: string[][]
  let platforms: string[]

  if (stop && stop.kind !== 'crash') {
    const running = stop.running
    platforms = [...new Set(running.map(s => s.platform).filter(Boolean))]
    const advice = {
      stall:
        ' A step under QEMU can be silent for many minutes: if it is only ' +
        'slow, raise stall-timeout.',
      timeout: ' If the build is only slow, raise build-timeout.',
      interrupted: ''
    }[stop.kind]
    const debug =
      platforms.length > 0 &&
      !inputs.debugPlatform &&
      stop.kind !== 'interrupted'
        ? ` To watch one platform alone, re-run with debug-platform: ${platforms[0]}.`
        : ''
    headline =
      `${stopHeadline(stop, inputs)}; cancelled the build. ` +
      (running.length > 0
        ? `Still running: ${running.map(s => stepLine(s, now)).join('; ')}.`
        : 'No step was running.') +
      advice +
      debug
    rows = running.map(s => [
      s.platform,
      short(s.label),
      `still running when cancelled (${stop.kind})`
    ])
  } else {
    // A crash that hung, or a failure buildx reported itself.
    const found = failures(progress)
    const crashed =
      stop?.kind === 'crash'
        ? stop.steps.map((step): Failure => ({
            platform: step.platform,
            step: step.label,
            reason: 'QEMU crashed and the step hung',
            qemuLine: [...step.logs].reverse().find(isQemuFatal)?.trim(),
            execFormat: false,
            logs: step.logs.slice(-10)
          }))
        : []
    const all = crashed.length > 0 ? crashed : found
    const note =
      stop?.kind === 'crash'
        ? `The step then stayed silent for ${minutes(stop.silentMs)} and was ` +
          'cancelled: QEMU cannot exit when the crashed program is the ' +
          "step's first process, so the step would have hung."
        : ''
    for (const failure of all) {
      const {title, message} = explain(failure, inputs, note)
      const line =
        failure.dockerfile && all.length === 1 ? failure.dockerfile.line : 0
      core.error(message, {
        title,
        ...(line > 0 ? {file, startLine: line} : {})
      })
    }
    platforms = [...new Set(all.map(f => f.platform).filter(Boolean))]
    rows = all.map(f => [
      f.platform,
      short(f.step),
      [
        f.exitCode !== undefined
          ? `exit code ${f.exitCode}${f.signal ? ` (${f.signal})` : ''}`
          : f.reason,
        f.qemuLine ? `\`${f.qemuLine}\`` : ''
      ]
        .filter(Boolean)
        .join(', ')
    ])
    headline =
      all.length > 0
        ? all
            .map(
              f =>
                `${f.platform || 'the build'} failed at ${short(f.step)}` +
                (f.exitCode !== undefined
                  ? ` (exit code ${f.exitCode}${f.signal ? `, ${f.signal}` : ''})`
                  : '') +
                (f.qemuLine ? ` with "${f.qemuLine}"` : '')
            )
            .join('; ') +
          (stop?.kind === 'crash'
            ? '; the step then hung, and the build was cancelled.'
            : '.')
        : finalError(progress.text) ||
          `docker buildx build exited with ${exitCode}`
  }

  // The export (and push) step starts only once every platform has built.
  const exported = progress
    .steps()
    .some(step => step.started && /^exporting to /.test(step.label))
  const pushed = exported ? PERHAPS_PUSHED : NOTHING_PUSHED
  await failureSummary(inputs, rows, platforms, headline, pushed)
  return new PhaseError(
    PHASE,
    `${headline} ${pushed}`,
    platforms.join(', ') || undefined
  )
}

async function failureSummary(
  inputs: Inputs,
  rows: string[][],
  platforms: string[],
  headline: string,
  pushed: string
): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const header = ['Platform', 'Step', 'What happened'].map(data => ({
    data,
    header: true
  }))
  const summary = core.summary
    .addHeading('Multi-platform build failed', 2)
    .addRaw(headline, true)
  if (rows.length > 0) summary.addTable([header, ...rows])
  summary.addRaw(pushed, true)
  if (!inputs.debugPlatform) {
    for (const platform of platforms) {
      summary.addRaw(
        `To debug ${platform} alone (plain progress, nothing pushed), re-run with:`,
        true
      )
      summary.addCodeBlock(`debug-platform: ${platform}`, 'yaml')
    }
  }
  await summary.write()
}
