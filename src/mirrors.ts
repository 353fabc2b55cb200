import * as core from '@actions/core'
import {attempt, failure, run} from './exec.js'
import {fromDescriptor} from './platforms.js'

// Mirrors: copy the index this run pushed, named by digest so that no other
// run can move it underneath us, into each mirror repository with one
// imagetools create for all of its tags, then read every tag back.

const PHASE = 'Mirrors'

export interface MirrorResult {
  mirror: string
  refs: string[]
  status: 'done' | 'failed'
  digest: string
  reason?: string
  seconds: number
}

export interface Inspected {
  digest: string
  platforms: string[]
}

export function copyArgs(
  builder: string,
  mirror: string,
  tags: string[],
  source: string
): string[] {
  const args = ['buildx', 'imagetools', 'create', '--builder', builder]
  for (const tag of tags) args.push('--tag', `${mirror}:${tag}`)
  args.push(source)
  return args
}

export const inspectArgs = (builder: string, ref: string): string[] => [
  'buildx',
  'imagetools',
  'inspect',
  '--builder',
  builder,
  '--format',
  '{{json .Manifest}}',
  ref
]

// `{{json .Manifest}}` prints the descriptor of what the reference names,
// with the index's entries when it is an index.
export function parseInspect(stdout: string): Inspected {
  const manifest = JSON.parse(stdout) as {
    digest?: string
    manifests?: {
      platform?: {os?: string; architecture?: string; variant?: string}
    }[]
  }
  const platforms = (manifest.manifests ?? [])
    .map(entry => fromDescriptor(entry.platform ?? {}))
    .filter(platform => platform !== 'unknown/unknown')
  return {digest: manifest.digest ?? '', platforms}
}

export async function inspect(
  builder: string,
  ref: string
): Promise<Inspected> {
  const {stdout} = await run({
    phase: PHASE,
    args: inspectArgs(builder, ref),
    subject: ref
  })
  return parseInspect(stdout)
}

export async function copyToMirrors(
  builder: string,
  source: string,
  digest: string,
  mirrors: string[],
  tags: string[]
): Promise<MirrorResult[]> {
  const results: MirrorResult[] = []
  // Every mirror is tried; one failure never hides or blocks the others.
  for (const mirror of mirrors) {
    results.push(await copyOne(builder, source, digest, mirror, tags))
  }
  return results
}

async function copyOne(
  builder: string,
  source: string,
  digest: string,
  mirror: string,
  tags: string[]
): Promise<MirrorResult> {
  const started = Date.now()
  const refs = tags.map(tag => `${mirror}:${tag}`)
  const result = (
    status: MirrorResult['status'],
    reason?: string
  ): MirrorResult => ({
    mirror,
    refs,
    status,
    digest: status === 'done' ? digest : '',
    ...(reason ? {reason} : {}),
    seconds: Math.round((Date.now() - started) / 100) / 10
  })

  const command = {
    phase: PHASE,
    args: copyArgs(builder, mirror, tags, source),
    subject: mirror
  }
  core.info(`Copying ${source} to ${refs.join(', ')}`)
  const copied = await attempt(command)
  if (copied.exitCode !== 0) {
    const reason = failure(command, copied)
    core.error(`Mirror ${mirror} failed: ${reason}`, {
      title: `Mirror ${mirror}`
    })
    return result('failed', reason)
  }
  for (const ref of refs) {
    const found = await inspectOrReason(builder, ref)
    if (typeof found === 'string') {
      core.error(`Mirror ${mirror}: ${found}`, {title: `Mirror ${mirror}`})
      return result('failed', found)
    }
    if (found.digest !== digest) {
      const reason = `${ref} holds ${found.digest}, expected ${digest}`
      core.error(`Mirror ${mirror}: ${reason}`, {title: `Mirror ${mirror}`})
      return result('failed', reason)
    }
    core.info(`Verified ${ref} at ${digest}`)
  }
  return result('done')
}

async function inspectOrReason(
  builder: string,
  ref: string
): Promise<Inspected | string> {
  const command = {phase: PHASE, args: inspectArgs(builder, ref), subject: ref}
  const read = await attempt(command)
  if (read.exitCode !== 0)
    return `reading ${ref} back failed: ${failure(command, read)}`
  return parseInspect(read.stdout)
}
