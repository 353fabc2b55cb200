// Platform strings, normalised the way containerd does, so that the
// spellings users copy from docs (`linux/arm64/v8`, `linux/aarch64`,
// `linux/x86_64`) compare equal to what BuildKit writes into the index.

export interface Platform {
  os: string
  arch: string
  variant?: string
}

const OSES = ['linux', 'windows', 'freebsd', 'darwin']

// Architecture aliases to their canonical name and default variant.
const ARCH_ALIASES: Record<string, [string, string?]> = {
  amd64: ['amd64'],
  x86_64: ['amd64'],
  'x86-64': ['amd64'],
  arm64: ['arm64'],
  aarch64: ['arm64'],
  arm: ['arm', 'v7'],
  armhf: ['arm', 'v7'],
  armel: ['arm', 'v6'],
  '386': ['386'],
  i386: ['386'],
  i686: ['386'],
  ppc64le: ['ppc64le'],
  s390x: ['s390x'],
  riscv64: ['riscv64'],
  mips64le: ['mips64le'],
  mips64: ['mips64'],
  loong64: ['loong64']
}

// Variants each architecture accepts; the first entry is the one containerd
// drops because it is the architecture's baseline.
const VARIANTS: Record<string, string[]> = {
  amd64: ['v1', 'v2', 'v3', 'v4'],
  arm64: ['v8', 'v8.1', 'v8.2', 'v9'],
  arm: ['', 'v5', 'v6', 'v7', 'v8']
}

// Common typos with the platform the user most likely meant.
const SUGGESTIONS: Record<string, string> = {
  'amd64/v8': 'linux/arm64',
  armv7: 'linux/arm/v7',
  armv7l: 'linux/arm/v7',
  armv6: 'linux/arm/v6',
  armv8: 'linux/arm64',
  arm64v8: 'linux/arm64',
  'arm/v8': 'linux/arm64 (32-bit arm/v8 images are rare; arm64 is meant)'
}

export class PlatformError extends Error {}

export function parsePlatform(text: string): Platform {
  const parts = text.trim().toLowerCase().split('/')
  const [os, arch, variant] = parts
  const suggestion = SUGGESTIONS[parts.slice(1).join('/')]
  const hint = suggestion ? `; did you mean ${suggestion}?` : ''
  if (parts.length < 2 || parts.length > 3 || parts.some(p => !p)) {
    throw new PlatformError(`expected os/arch[/variant]${hint}`)
  }
  if (!OSES.includes(os)) {
    const near = OSES.find(known => distance(known, os) <= 2)
    const guess = near ? `; did you mean ${near}/${arch}?` : hint
    throw new PlatformError(`unknown os "${os}"${guess}`)
  }
  const alias = ARCH_ALIASES[arch]
  if (!alias) {
    throw new PlatformError(`unknown architecture "${arch}"${hint}`)
  }
  const [canonical, defaultVariant] = alias
  const known = VARIANTS[canonical] ?? []
  if (variant !== undefined && !known.includes(variant)) {
    const accepted = known.filter(Boolean).join(', ') || 'none'
    throw new PlatformError(
      `"${canonical}" has no variant "${variant}" (accepted: ${accepted})${hint}`
    )
  }
  return normalise({os, arch: canonical, variant: variant ?? defaultVariant})
}

function normalise(platform: Platform): Platform {
  const {os, arch} = platform
  let variant = platform.variant
  if (arch === 'arm64' && variant === 'v8') variant = undefined
  if (arch === 'amd64' && variant === 'v1') variant = undefined
  if (arch === 'arm' && !variant) variant = 'v7'
  return variant ? {os, arch, variant} : {os, arch}
}

export function formatPlatform(platform: Platform): string {
  const {os, arch, variant} = platform
  return variant ? `${os}/${arch}/${variant}` : `${os}/${arch}`
}

// An index entry's platform, as BuildKit writes it, in canonical form.
export function fromDescriptor(platform: {
  os?: string
  architecture?: string
  variant?: string
}): string {
  const os = platform.os ?? 'unknown'
  const arch = platform.architecture ?? 'unknown'
  if (os === 'unknown' || arch === 'unknown') return `${os}/${arch}`
  return formatPlatform(
    normalise({os, arch, variant: platform.variant || undefined})
  )
}

// The platforms this machine runs without emulation.
export function nativePlatforms(hostArch: string = process.arch): string[] {
  switch (hostArch) {
    case 'x64':
      return ['linux/amd64', 'linux/386']
    case 'arm64':
      return ['linux/arm64', 'linux/arm/v7', 'linux/arm/v6']
    case 'arm':
      return ['linux/arm/v7', 'linux/arm/v6']
    default:
      return [`linux/${hostArch}`]
  }
}

// The binfmt_misc entry a platform needs, named as QEMU and binfmt name it,
// and the architecture name the binfmt installer image takes.
const EMULATORS: Record<string, [string, string]> = {
  amd64: ['qemu-x86_64', 'amd64'],
  arm64: ['qemu-aarch64', 'arm64'],
  arm: ['qemu-arm', 'arm'],
  '386': ['qemu-i386', '386'],
  ppc64le: ['qemu-ppc64le', 'ppc64le'],
  s390x: ['qemu-s390x', 's390x'],
  riscv64: ['qemu-riscv64', 'riscv64'],
  mips64le: ['qemu-mips64el', 'mips64le'],
  mips64: ['qemu-mips64', 'mips64'],
  loong64: ['qemu-loongarch64', 'loong64']
}

export function emulatorFor(platform: string): {
  handler: string
  installName: string
} {
  const [handler, installName] = EMULATORS[parsePlatform(platform).arch]
  return {handler, installName}
}

function distance(a: string, b: string): number {
  const row = Array.from({length: b.length + 1}, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, previous + cost)
      previous = current
    }
  }
  return row[b.length]
}
