import * as core from '@actions/core'
import {PhaseError, attempt, failure, type Command} from './exec.js'
import type {Inputs, PlatformDigest} from './inputs.js'
import {inspect, inspectArgs, parseInspect, type Published} from './mirrors.js'
import {fromDescriptor} from './platforms.js'

// Merge (#7): the per-platform images that push-by-digest jobs pushed
// become one tagged index, with one imagetools create. A dry run of the
// same create comes first, so that a digest that is not in the image's
// repository, or names another platform than its line says, fails before
// anything is written.

const PHASE = 'Merge'

export function mergeArgs(
  image: string,
  tags: string[],
  digests: PlatformDigest[],
  dryRun = false
): string[] {
  const args = ['buildx', 'imagetools', 'create']
  if (dryRun) args.push('--dry-run')
  for (const tag of tags) args.push('--tag', `${image}:${tag}`)
  for (const {digest} of digests) args.push(`${image}@${digest}`)
  return args
}

export interface Entry {
  platform: string
  digest: string
}

// The index's platform entries; attestation entries are not platforms.
export function indexEntries(text: string): Entry[] {
  const index = JSON.parse(text) as {
    manifests?: {
      digest?: string
      platform?: {os?: string; architecture?: string; variant?: string}
    }[]
  }
  return (index.manifests ?? [])
    .map(entry => ({
      platform: fromDescriptor(entry.platform ?? {}),
      digest: entry.digest ?? ''
    }))
    .filter(entry => entry.platform !== 'unknown/unknown')
}

// Every platform exactly once, each at the digest its line gave.
export function checkEntries(
  entries: Entry[],
  digests: PlatformDigest[]
): string[] {
  const problems: string[] = []
  for (const {platform, digest} of digests) {
    const found = entries.filter(entry => entry.platform === platform)
    if (found.length === 0) {
      problems.push(
        `${platform} is missing from the index (its digest ${digest} ` +
          `holds ${entries.find(e => e.digest === digest)?.platform ?? 'another platform'})`
      )
    } else if (found.length > 1) {
      problems.push(`${platform} is in the index ${found.length} times`)
    } else if (found[0].digest !== digest) {
      problems.push(`${platform} is ${found[0].digest}, expected ${digest}`)
    }
  }
  const extra = entries.filter(
    e => !digests.some(d => d.platform === e.platform)
  )
  for (const entry of extra) {
    problems.push(`${entry.platform} (${entry.digest}) is in no digests line`)
  }
  return problems
}

export async function merge(inputs: Inputs): Promise<Published> {
  const {image, tags, digests} = inputs
  for (const {platform, digest} of digests) {
    core.info(`${platform}: ${image}@${digest}`)
  }

  // The dry run prints the index that would be pushed.
  const command: Command = {
    phase: PHASE,
    args: mergeArgs(image, tags, digests, true),
    subject: image
  }
  const planned = await attempt(command)
  if (planned.exitCode !== 0) {
    throw new PhaseError(
      PHASE,
      `digests: cannot read every digest from ${image}` +
        `${await absent(image, digests)}; each line must name an image ` +
        `pushed to ${image} (by push-by-digest with the same image). ` +
        failure(command, planned)
    )
  }
  const problems = checkEntries(indexEntries(planned.stdout), digests)
  if (problems.length > 0) {
    throw new PhaseError(
      PHASE,
      `digests: the index for ${image} would be wrong: ${problems.join('; ')}. Nothing was written.`
    )
  }

  // The real create, then every tag read back.
  const create: Command = {
    phase: PHASE,
    args: mergeArgs(image, tags, digests),
    subject: image,
    echo: true
  }
  const created = await attempt(create)
  if (created.exitCode !== 0) {
    throw new PhaseError(PHASE, failure(create, created))
  }
  const read: Command = {
    phase: PHASE,
    args: inspectArgs('', `${image}:${tags[0]}`),
    subject: image
  }
  const written = await attempt(read)
  if (written.exitCode !== 0) {
    throw new PhaseError(PHASE, failure(read, written))
  }
  const first = parseInspect(written.stdout)
  const after = checkEntries(indexEntries(written.stdout), digests)
  for (const tag of tags.slice(1)) {
    const found = await inspect('', `${image}:${tag}`)
    if (found.digest !== first.digest) {
      after.push(
        `${image}:${tag} holds ${found.digest}, expected ${first.digest}`
      )
    }
  }
  if (after.length > 0) {
    throw new PhaseError(PHASE, `${image}: ${after.join('; ')}`)
  }
  const platforms = digests.map(entry => entry.platform)
  core.info(
    `${image}@${first.digest} holds ${platforms.join(', ')}, tagged ${tags.join(', ')}`
  )
  return {
    digest: first.digest,
    metadata: {},
    mediaType: first.mediaType,
    platforms,
    children: Object.fromEntries(
      digests.map(({platform, digest}) => [platform, digest])
    ),
    bytes: first.bytes
  }
}

// Which lines name a digest the image's repository does not hold.
async function absent(
  image: string,
  digests: PlatformDigest[]
): Promise<string> {
  const missing: string[] = []
  for (const {platform, digest} of digests) {
    const found = await attempt({
      phase: PHASE,
      args: inspectArgs('', `${image}@${digest}`),
      subject: image
    })
    if (found.exitCode !== 0) missing.push(`${platform}=${digest}`)
  }
  return missing.length > 0
    ? ` (${image} holds no ${missing.join(', no ')})`
    : ''
}
