import * as core from '@actions/core'
import {notice} from './notes.js'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {build, debugInputs} from './build.js'
import {prepareBuilder} from './builder.js'
import {setupBuildx} from './buildx.js'
import {ensureEmulators} from './emulators.js'
import {PhaseError} from './exec.js'
import {getInputs, type Inputs} from './inputs.js'
import {login, mirrorOnlyRegistries, useRunConfig} from './logins.js'
import {
  checkMirrorSupport,
  checkPushed,
  copyToMirrors,
  isIndex,
  keepsManifest,
  readSource,
  sourceRepository,
  type MirrorResult,
  type Published
} from './mirrors.js'
import {merge} from './merge.js'
import {printPlan} from './plan.js'
import {setOutputs, writeFailure, writeSummary, type Timing} from './report.js'
import * as state from './state.js'
import {keepFloatingForward} from './tags.js'

// The release recipe: one call per phase, each in its own log group.

export async function main(): Promise<void> {
  state.markMain()
  const timings: Timing[] = []
  const phase = async <T>(
    title: string,
    work: () => Promise<T> | T
  ): Promise<T> => {
    const started = Date.now()
    try {
      return await core.group(title, async () => work())
    } finally {
      timings.push({
        phase: title,
        seconds: Math.round((Date.now() - started) / 100) / 10
      })
    }
  }

  try {
    // binfmt_misc, privileged containers and the engine's image store are
    // Linux things: say so at once on a Windows or macOS runner.
    if (process.platform !== 'linux') {
      throw new Error(
        `multiarch-action runs on Linux runners only, not ${process.platform}; ` +
          'use runs-on: ubuntu-24.04 (or ubuntu-24.04-arm)'
      )
    }
    // debug-platform narrows the run to one platform that is never pushed.
    const inputs = await phase('Reading inputs', () => debugInputs(getInputs()))
    if (inputs.dryRun) {
      await phase('Planning (dry run)', () => printPlan(inputs))
      return
    }
    const tempDir = workDir()
    const dockerConfigDir = useRunConfig(tempDir)
    await phase('Setting up buildx', () => setupBuildx(inputs, dockerConfigDir))
    // Mirror-only (source) and merge (digests) modes build nothing.
    const merging = inputs.digests.length > 0
    const copying = inputs.source !== '' || merging
    if (!copying) {
      await phase('Installing emulators', () => ensureEmulators(inputs))
    }
    const builder = copying
      ? ''
      : await phase('Preparing the builder', () => prepareBuilder(inputs))
    await phase('Logging in', () =>
      login(inputs.credentials, mirrorOnlyRegistries(inputs))
    )
    if (!copying) await checkMirrorSupport(inputs)
    const release = await phase('Checking floating tags', () =>
      floatingTags(inputs, builder)
    )
    const built = merging
      ? await phase('Merging digests', () => merge(release))
      : copying
        ? await phase('Reading the source', () => readSource(inputs))
        : await phase('Building', async () =>
            checkPushed(
              release,
              builder,
              await build(release, builder, tempDir)
            )
          )
    const mirrors = await phase('Copying to mirrors', () =>
      mirror(release, builder, built)
    )
    await phase('Reporting', async () => {
      const outcome = {inputs: release, builder, built, mirrors, timings}
      setOutputs(outcome)
      await writeSummary(outcome)
    })
    const failed = mirrors.filter(m => m.status === 'failed')
    if (failed.length > 0) {
      const text =
        `${failed.length} of ${mirrors.length} mirrors failed:\n` +
        failed.map(m => `- ${m.mirror}: ${m.reason ?? ''}`).join('\n')
      if (inputs.mirrorFailure === 'warn') core.warning(text)
      else core.setFailed(text)
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    core.setFailed(message)
    // A failed build writes its own summary, naming platforms and steps.
    if (!(error instanceof PhaseError && error.phase === 'Build')) {
      await writeFailure(message)
    }
  }
}

async function mirror(
  inputs: Inputs,
  builder: string,
  built: Published
): Promise<MirrorResult[]> {
  if (inputs.mirrors.length === 0) return []
  if (!built.digest || !inputs.push) {
    notice('Mirrors skipped: nothing is pushed (push: false)')
    return []
  }
  const repository = inputs.source
    ? sourceRepository(inputs.source)
    : inputs.image
  // A single manifest stays one only with --prefer-index=false; builds are
  // refused earlier (checkMirrorSupport), a copied source is refused here.
  const keepManifest = !isIndex(built.mediaType)
  if (keepManifest && !(await keepsManifest())) {
    throw new PhaseError(
      'Mirrors',
      `${repository}@${built.digest} is a single-platform manifest, and this ` +
        'buildx has no imagetools create --prefer-index=false to copy it ' +
        'unchanged: its mirrors would hold another digest. Nothing was ' +
        'written. Set buildx-version to a newer buildx.'
    )
  }
  return copyToMirrors(inputs.mirrors, {
    builder,
    source: `${repository}@${built.digest}`,
    digest: built.digest,
    mediaType: built.mediaType,
    platforms: built.platforms,
    tags: inputs.tags,
    attempts: inputs.mirrorAttempts,
    waitSeconds: inputs.mirrorRetryWait,
    concurrency: inputs.mirrorConcurrency,
    timeoutMinutes: inputs.mirrorTimeout,
    warnOnly: inputs.mirrorFailure === 'warn',
    keepManifest,
    bytes: built.bytes
  })
}

// The tags to write after leaving newer floating tags where they are.
async function floatingTags(inputs: Inputs, builder: string): Promise<Inputs> {
  if (!inputs.push || inputs.floatingTags.length === 0 || !inputs.version) {
    return inputs
  }
  const {tags} = await keepFloatingForward(
    [inputs.image, ...inputs.mirrors].filter(Boolean),
    inputs.tags,
    inputs.floatingTags,
    inputs.version,
    builder
  )
  return {...inputs, tags}
}

function workDir(): string {
  const dir = mkdtempSync(
    join(process.env.RUNNER_TEMP || tmpdir(), 'multiarch-')
  )
  state.record({tempDir: dir})
  return dir
}
