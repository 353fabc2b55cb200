import * as core from '@actions/core'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {PhaseError, attempt, run} from './exec.js'
import type {Inputs} from './inputs.js'
import {
  emulatorFor,
  formatPlatform,
  nativePlatforms,
  parsePlatform
} from './platforms.js'

// Emulators: every requested platform the runner cannot execute natively
// needs a QEMU handler in the kernel's binfmt_misc table before the build.
// The installer's word is not enough (tonistiigi/binfmt exits 0 even when a
// handler failed to register), so its JSON status and the kernel's own
// entries are both read back, and a platform that still cannot run stops
// the release here, by name, instead of as an "exec format error" deep in
// the build log.

const PHASE = 'Emulators'

export interface Need {
  platform: string
  handler: string // binfmt_misc entry, e.g. qemu-aarch64
  installName: string // the installer's name for it, e.g. arm64
}

// Tests point this at a directory of their own so they never change the
// machine's real handlers.
export const binfmtDir = (): string =>
  process.env.MULTIARCH_BINFMT_DIR || '/proc/sys/fs/binfmt_misc'

export function emulatedPlatforms(
  platforms: string[],
  native: string[] = nativePlatforms()
): Need[] {
  return platforms
    .filter(platform => !native.includes(platform))
    .map(platform => ({platform, ...emulatorFor(platform)}))
}

export function isRegistered(handler: string, dir = binfmtDir()): boolean {
  const entry = join(dir, handler)
  if (!existsSync(entry)) return false
  return readFileSync(entry, 'utf8').split('\n')[0].trim() === 'enabled'
}

export function installArgs(image: string, names: string[]): string[] {
  return ['run', '--rm', '--privileged', image, '--install', names.join(',')]
}

// What the installer prints on stdout when it is done:
// {"supported": ["linux/amd64", ...], "emulators": ["qemu-arm", ...]}
// ("emulators" is null when there is none).
export interface InstallerStatus {
  supported: string[]
  emulators: string[]
}

export function parseInstallerStatus(stdout: string): InstallerStatus | null {
  const from = stdout.indexOf('{')
  const to = stdout.lastIndexOf('}')
  if (from < 0 || to < from) return null
  let parsed: unknown
  try {
    parsed = JSON.parse(stdout.slice(from, to + 1))
  } catch {
    return null
  }
  if (typeof parsed !== 'object' || parsed === null) return null
  const fields = parsed as Record<string, unknown>
  const list = (value: unknown): string[] | undefined =>
    value === null || value === undefined
      ? []
      : Array.isArray(value) && value.every(v => typeof v === 'string')
        ? value
        : undefined
  const supported = list(fields.supported)
  const emulators = list(fields.emulators)
  if (!supported || !emulators || !('supported' in fields)) return null
  return {supported: supported.map(normalise), emulators}
}

const normalise = (platform: string): string => {
  try {
    return formatPlatform(parsePlatform(platform))
  } catch {
    return platform
  }
}

// For each need still unmet, why: the kernel has no enabled entry, or the
// installer says it has no such emulator or cannot run the platform.
export function unmet(
  needs: Need[],
  status: InstallerStatus | null,
  registered: (handler: string) => boolean
): {need: Need; kernel: boolean; why: string[]}[] {
  return needs
    .map(need => {
      const why: string[] = []
      const kernel = registered(need.handler)
      if (!kernel) why.push(`no ${need.handler} in ${binfmtDir()}`)
      if (status && !status.emulators.includes(need.handler)) {
        why.push(`the installer lists no ${need.handler} emulator`)
      }
      if (status && !status.supported.includes(need.platform)) {
        why.push(`the installer does not list ${need.platform} as supported`)
      }
      return {need, kernel, why}
    })
    .filter(entry => entry.why.length > 0)
}

// Platforms that appended nodes (nodes) build natively need no emulator
// here: buildx sends each platform to the node declared for it.
export function localPlatforms(inputs: Inputs): string[] {
  return inputs.platforms.filter(
    platform => !inputs.nodes.some(node => node.platforms.includes(platform))
  )
}

export async function ensureEmulators(inputs: Inputs): Promise<string[]> {
  if (inputs.driver === 'remote') {
    // Every node of a remote builder is a BuildKit elsewhere (appended
    // nodes take the builder's driver): this runner's binfmt_misc plays no
    // part, so nothing is installed here.
    core.info(
      'driver: remote builds on its own nodes; the platforms its BuildKit ' +
        'reports are checked before the build'
    )
    return []
  }
  const needs = emulatedPlatforms(localPlatforms(inputs))
  if (needs.length === 0) {
    core.info('Every platform runs natively; installing nothing')
    return []
  }
  if (inputs.qemu === 'false') {
    const missing = needs.filter(n => !isRegistered(n.handler))
    if (missing.length > 0) {
      throw new PhaseError(
        PHASE,
        `qemu: false, but ${missingList(missing)} cannot run on this runner ` +
          'without emulation. Emulation is missing and the action was told ' +
          'not to install it: set qemu: auto, install the handlers in an ' +
          'earlier step, or drop the platform.',
        missing.map(n => n.platform).join(', ')
      )
    }
    core.info('qemu: false; every handler needed is already registered')
    return []
  }
  const missing =
    inputs.qemu === 'true' ? needs : needs.filter(n => !isRegistered(n.handler))
  for (const need of needs.filter(n => !missing.includes(n))) {
    core.info(`${need.platform}: ${need.handler} is already registered`)
  }
  if (missing.length === 0) return []

  const names = [...new Set(missing.map(n => n.installName))]
  core.info(`Installing ${names.join(', ')} with ${inputs.qemuImage}`)
  const installed = await attempt({
    phase: PHASE,
    args: installArgs(inputs.qemuImage, names),
    echo: true
  })
  if (installed.exitCode !== 0) {
    const still = missing.filter(n => !isRegistered(n.handler))
    if (still.length > 0) {
      throw new PhaseError(
        PHASE,
        `emulation is missing and cannot be installed: ${missingList(still)}` +
          `; installing it with ${inputs.qemuImage} failed ` +
          `(docker run exited with ${installed.exitCode}` +
          `${lastLine(installed.stderr)}). ` +
          'A build for this platform would fail with "exec format error". ' +
          'Check that the runner can run privileged containers and pull ' +
          'qemu-image, or install the handlers in an earlier step.',
        still.map(n => n.platform).join(', ')
      )
    }
    core.warning(
      `${inputs.qemuImage} exited with ${installed.exitCode}, but every ` +
        'handler needed is registered now; going on'
    )
  }

  const status = parseInstallerStatus(installed.stdout)
  if (installed.exitCode === 0 && !status) {
    core.warning(
      `${inputs.qemuImage} printed no status JSON; relying on ${binfmtDir()} alone`
    )
  } else if (status) {
    core.info(
      `Installer status: supported ${status.supported.join(', ') || 'none'}; ` +
        `emulators ${status.emulators.join(', ') || 'none'}`
    )
  }
  const problems = unmet(needs, status, handler => isRegistered(handler))
  if (problems.length > 0) {
    const list = problems
      .map(({need, why}) => `${need.platform} (${why.join('; ')})`)
      .join(', ')
    const what = problems.some(p => !p.kernel)
      ? 'no emulator is registered for'
      : 'no working emulator for'
    // The platforms are in the message itself, so no subject.
    throw new PhaseError(
      PHASE,
      `${what} ${list} after running ${inputs.qemuImage}. The installer ` +
        'exits 0 even when a handler fails to register; a build would fail ' +
        'later with "exec format error". Try another qemu-image, or install ' +
        'the handlers in an earlier step.'
    )
  }
  for (const need of missing) {
    core.info(`${need.platform}: ${need.handler} registered and supported`)
  }
  return missing.map(n => n.platform)
}

function missingList(needs: Need[]): string {
  return needs
    .map(
      n =>
        `${n.platform} needs the ${n.handler} handler (not in ${binfmtDir()})`
    )
    .join(', ')
}

function lastLine(text: string): string {
  const lines = text
    .trim()
    .split('\n')
    .filter(line => line && !line.startsWith('WARNING:'))
  return lines.length > 0 ? `: ${lines[lines.length - 1]}` : ''
}

// --- Builders that are not on this runner ----------------------------------

export const inspectBuilderArgs = (builder: string): string[] => [
  'buildx',
  'inspect',
  '--builder',
  builder
]

// `docker buildx inspect` prints one "Platforms:" line per node; a `*`
// marks platforms set by hand. The union of every node's list.
export function builderPlatforms(inspect: string): string[] {
  const platforms = new Set<string>()
  for (const line of inspect.split('\n')) {
    const match = /^\s*Platforms:\s*(.*)$/.exec(line)
    if (!match) continue
    for (const entry of match[1].split(',')) {
      const name = entry.trim().replace(/\*$/, '')
      if (name) platforms.add(normalise(name))
    }
  }
  return [...platforms]
}

// A remote builder runs on its own nodes: what matters is what its BuildKit
// says it can build, not this runner's binfmt_misc.
export async function checkBuilderPlatforms(
  builder: string,
  platforms: string[]
): Promise<void> {
  const {stdout} = await run({
    phase: PHASE,
    args: inspectBuilderArgs(builder),
    subject: builder
  })
  const offered = builderPlatforms(stdout)
  if (offered.length === 0) {
    core.warning(
      `builder ${builder} reported no platforms; cannot check ${platforms.join(', ')} before building`
    )
    return
  }
  const missing = platforms.filter(p => !offered.includes(p))
  if (missing.length > 0) {
    throw new PhaseError(
      PHASE,
      `builder ${builder} cannot build ${missing.join(', ')}: its nodes ` +
        `report ${offered.join(', ')}. Register QEMU (binfmt) on the BuildKit ` +
        'host and restart it, or add a node of that architecture.',
      missing.join(', ')
    )
  }
  core.info(`builder ${builder} reports ${platforms.join(', ')}`)
}
