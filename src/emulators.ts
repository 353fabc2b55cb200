import * as core from '@actions/core'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {PhaseError, run} from './exec.js'
import type {Inputs} from './inputs.js'
import {emulatorFor, nativePlatforms} from './platforms.js'

// Emulators: every requested platform the runner cannot execute natively
// needs a QEMU handler in the kernel's binfmt_misc table before the build.

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

export async function ensureEmulators(inputs: Inputs): Promise<string[]> {
  if (inputs.qemu === 'false') {
    core.info('qemu: false, leaving emulators as they are')
    return []
  }
  if (inputs.driver === 'remote' && inputs.qemu === 'auto') {
    core.info(
      'driver: remote builds on its own nodes; no local emulators needed'
    )
    return []
  }
  const needs = emulatedPlatforms(inputs.platforms)
  if (needs.length === 0) {
    core.info('Every platform runs natively; installing nothing')
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
  await run({
    phase: PHASE,
    args: installArgs(inputs.qemuImage, names),
    subject: missing.map(n => n.platform).join(', '),
    echo: true
  })
  const stillMissing = missing.filter(n => !isRegistered(n.handler))
  if (stillMissing.length > 0) {
    // TODO(#6): read the installer's JSON status as well.
    const list = stillMissing
      .map(n => `${n.platform} (no ${n.handler} in ${binfmtDir()})`)
      .join(', ')
    throw new PhaseError(
      PHASE,
      `no emulator is registered for ${list} after running ${inputs.qemuImage}`
    )
  }
  return missing.map(n => n.platform)
}
