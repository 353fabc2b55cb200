import * as core from '@actions/core'
import {
  PhaseError,
  attempt,
  errorLines,
  failure,
  type Command,
  type Result
} from './exec.js'
import {attestations} from './build.js'
import type {Inputs} from './inputs.js'
import {fromDescriptor} from './platforms.js'
import {parseReference, repositoryName} from './reference.js'
import {
  RegistryClient,
  baseUrl,
  sha256,
  target,
  type Manifest
} from './registry.js'

// Mirrors: copy the index this run pushed, named by digest so that no other
// run can move it meanwhile, into each mirror repository: the first tag by
// imagetools create, which carries the blobs, the others by writing the
// same manifest bytes; then read every tag back. Every mirror is tried, in
// parallel up to a bound; one failure neither hides nor blocks the others.

const PHASE = 'Mirrors'

export interface MirrorResult {
  mirror: string
  refs: string[]
  status: 'done' | 'up-to-date' | 'failed'
  digest: string
  // imagetools create commands run (direct tag writes are not counted),
  // and how many of them were retries.
  attempts: number
  retries: number
  seconds: number
  reason?: string
}

export interface Inspected {
  digest: string
  mediaType: string
  platforms: string[]
  // Each platform's own manifest digest, for the summary.
  children: Record<string, string>
  // The exact bytes read, which later writes repeat.
  bytes?: Buffer
}

export interface CopyPlan {
  builder: string // '' leaves buildx to pick
  source: string // repository@digest
  digest: string
  mediaType: string
  platforms: string[]
  tags: string[]
  attempts: number
  waitSeconds: number
  concurrency: number
  timeoutMinutes: number
  // mirror-failure: warn turns a failed mirror's annotation into a warning.
  warnOnly: boolean
  // Pass --prefer-index=false, so a single-platform manifest stays one.
  keepManifest: boolean
  // The source's manifest bytes, when they were read already.
  bytes?: Buffer
}

const withBuilder = (builder: string): string[] =>
  builder ? ['--builder', builder] : []

export function copyArgs(
  builder: string,
  mirror: string,
  tags: string[],
  source: string,
  keepManifest = false
): string[] {
  const args = ['buildx', 'imagetools', 'create', ...withBuilder(builder)]
  if (keepManifest) args.push('--prefer-index=false')
  for (const tag of tags) args.push('--tag', `${mirror}:${tag}`)
  args.push(source)
  return args
}

// --raw prints the manifest's bytes as the registry holds them: one request,
// and its sha256 is the digest. (`--format '{{json .Manifest}}'` fetched
// every child manifest and config too: ten round trips instead of one.)
export const inspectArgs = (builder: string, ref: string): string[] => [
  'buildx',
  'imagetools',
  'inspect',
  ...withBuilder(builder),
  '--raw',
  ref
]

// The raw manifest: its digest is the sha256 of exactly these bytes; an
// index lists its platforms, and attestation entries (unknown/unknown) are
// not platforms.
export function parseInspect(raw: string | Buffer): Inspected {
  const bytes = typeof raw === 'string' ? Buffer.from(raw, 'utf8') : raw
  const manifest = JSON.parse(bytes.toString('utf8')) as {
    mediaType?: string
    manifests?: {
      digest?: string
      platform?: {os?: string; architecture?: string; variant?: string}
    }[]
  }
  const entries = (manifest.manifests ?? [])
    .map((entry): [string, string] => [
      fromDescriptor(entry.platform ?? {}),
      entry.digest ?? ''
    ])
    .filter(([platform]) => platform !== 'unknown/unknown')
  const mediaType =
    manifest.mediaType ??
    (manifest.manifests
      ? 'application/vnd.oci.image.index.v1+json'
      : 'application/vnd.oci.image.manifest.v1+json')
  return {
    digest: sha256(bytes),
    mediaType,
    platforms: entries.map(([platform]) => platform),
    children: Object.fromEntries(entries),
    bytes
  }
}

// --- What a failure means -------------------------------------------------

export type Cause = 'transient' | 'permanent' | 'unauthorized' | 'missing'

const PERMANENT =
  /denied|MANIFEST_INVALID|TAG_INVALID|NAME_INVALID|NAME_UNKNOWN|name unknown|unknown manifest class|unsupported media ?type|MANIFEST_BLOB_UNKNOWN|invalid reference format|\b40[03]\b/i
const TRANSIENT =
  /\b5\d\d\b|\b429\b|too many requests|toomanyrequests|connection reset|connection refused|broken pipe|\bEOF\b|i\/o timeout|timed? ?out|deadline exceeded|TLS handshake|no such host|temporary failure in name resolution|server misbehaving|network is unreachable/i

export function classify(stderr: string): Cause {
  if (
    /not found|manifest unknown/i.test(stderr) &&
    !/name unknown/i.test(stderr)
  ) {
    return 'missing'
  }
  if (/\b401\b|unauthorized|authentication required/i.test(stderr)) {
    return 'unauthorized'
  }
  if (TRANSIENT.test(stderr)) return 'transient'
  if (PERMANENT.test(stderr)) return 'permanent'
  return 'permanent'
}

// Exponential backoff with jitter: base, 2 base, 4 base... each scaled by
// a random factor in [0.5, 1.5), capped at five minutes.
export function backoff(
  attempt: number,
  baseSeconds: number,
  random: () => number = Math.random
): number {
  const wait = baseSeconds * 2 ** (attempt - 1) * (0.5 + random())
  return Math.min(300, Math.round(wait * 10) / 10)
}

// The registry's reason, with a hint when it refused the manifest's type.
export function explain(
  reason: string,
  mediaType: string,
  mirror = ''
): string {
  if (
    /no basic auth credentials|\b401\b|unauthorized|authentication required/i.test(
      reason
    )
  ) {
    const host = mirror ? parseReference(mirror).domain || 'docker.io' : 'it'
    return (
      `${reason}\nThe registry wants credentials that this run lacks or ` +
      `that it refused (401): check that registry-auth has an entry for ` +
      `${host} that may push there.`
    )
  }
  // buildx prints only the status line of a refused manifest PUT.
  const refused =
    /MANIFEST_INVALID|unknown manifest class|unsupported media ?type/i.test(
      reason
    ) || /PUT request to \S+\/manifests\/\S+: 4(00|15) /.test(reason)
  if (refused) {
    return (
      `${reason}\nThe registry refused a manifest of type ${mediaType || 'unknown'}. ` +
      'Attestations make buildx write OCI indexes and artifact manifests that ' +
      'some registries (Aliyun ACR, older Harbor and Artifactory) refuse: ' +
      'keep provenance: false and sbom: false (the defaults).'
    )
  }
  return reason
}

const sleep = (seconds: number): Promise<void> =>
  new Promise(resolve => setTimeout(resolve, seconds * 1000))

// --- Reading back ----------------------------------------------------------

// Reads go to the registry directly when it answers plainly (one request
// instead of a buildx process each); buildx answers the rest.
const registry = new RegistryClient()

// A registry that takes the connection and never answers must not hold
// the run: every read has a time limit (mirror-timeout for mirrors).
const READ_TIMEOUT_MS = 120_000

async function read(
  builder: string,
  ref: string,
  timeoutMs = READ_TIMEOUT_MS
): Promise<{found?: Inspected; cause?: Cause; reason?: string}> {
  const direct = await registry.read(ref, timeoutMs)
  if (direct && 'manifest' in direct) {
    try {
      return {found: parseInspect(direct.manifest.bytes)}
    } catch {
      // buildx reads it below, and says what is wrong with it
    }
  } else if (direct) {
    return {cause: 'missing', reason: `${ref}: not found`}
  }
  core.debug(`${ref}: read through buildx`)
  const command: Command = {
    phase: PHASE,
    args: inspectArgs(builder, ref),
    subject: ref,
    timeoutMs
  }
  const result = await attempt(command)
  if (result.exitCode === 0) return {found: parseInspect(result.stdout)}
  const cause = result.timedOut ? 'transient' : classify(result.stderr)
  return {cause, reason: failure(command, result)}
}

export async function inspect(
  builder: string,
  ref: string
): Promise<Inspected> {
  const {found, reason} = await read(builder, ref)
  if (!found) throw new Error(reason)
  return found
}

// Registries can lag right after a write: a tag that reads as unknown is
// read again a few times before it counts as missing.
async function verify(
  plan: CopyPlan,
  ref: string
): Promise<string | undefined> {
  for (let tries = 1; ; tries++) {
    const {found, cause, reason} = await read(plan.builder, ref, limit(plan))
    if (found) {
      if (found.digest !== plan.digest) {
        return `${ref} holds ${found.digest}, expected ${plan.digest}`
      }
      const missing = plan.platforms.filter(p => !found.platforms.includes(p))
      if (found.platforms.length > 0 && missing.length > 0) {
        return `${ref} lacks ${missing.join(', ')}`
      }
      return undefined
    }
    if (cause !== 'missing' && cause !== 'transient') return reason
    if (tries >= 4) return `${ref} is not there after the copy: ${reason}`
    await sleep(tries)
  }
}

// --- Copying ----------------------------------------------------------------

// mirror-timeout in milliseconds; undefined when 0 turned it off (reads
// keep a limit of their own even then).
const limit = (plan: CopyPlan): number | undefined =>
  plan.timeoutMinutes > 0 ? plan.timeoutMinutes * 60_000 : undefined

export async function copyToMirrors(
  mirrors: string[],
  plan: CopyPlan
): Promise<MirrorResult[]> {
  const results: MirrorResult[] = new Array<MirrorResult>(mirrors.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < mirrors.length) {
      const index = next++
      results[index] = await copyOne(mirrors[index], plan)
    }
  }
  const workers = Math.max(1, Math.min(plan.concurrency, mirrors.length))
  await Promise.all(Array.from({length: workers}, worker))
  return results
}

async function copyOne(mirror: string, plan: CopyPlan): Promise<MirrorResult> {
  const started = Date.now()
  const refs = plan.tags.map(tag => `${mirror}:${tag}`)
  let attempts = 0
  let retries = 0
  const result = (
    status: MirrorResult['status'],
    reason?: string
  ): MirrorResult => {
    const seconds = Math.round((Date.now() - started) / 100) / 10
    if (status === 'failed') {
      const annotate = plan.warnOnly ? core.warning : core.error
      annotate(`Mirror ${mirror} failed: ${reason ?? ''}`, {
        title: `Mirror ${mirror}`
      })
    }
    return {
      mirror,
      refs,
      status,
      digest: status === 'failed' ? '' : plan.digest,
      attempts,
      retries,
      seconds,
      ...(reason ? {reason} : {})
    }
  }

  // A re-run of a half-failed release writes only what is missing.
  const current = await Promise.all(
    refs.map(ref => read(plan.builder, ref, limit(plan)))
  )
  const stale = plan.tags.filter(
    (_, i) => current[i].found?.digest !== plan.digest
  )
  if (stale.length === 0) {
    core.info(`${mirror}: every tag already holds ${plan.digest}`)
    return result('up-to-date')
  }
  const brandNew = current.every(read => read.cause === 'missing')

  // buildx pushes the tags of one create in parallel, each with its own
  // blob uploads: six tags sent the blobs six times (bench/mirrors.mjs). So
  // the first tag carries the blobs from the source, and the other tags get
  // the same manifest bytes written straight to the registry, all at once:
  // one request each instead of a create that pushes every child manifest
  // again. Whatever the registry does not take that way, imagetools create
  // copies from the mirror's own copy, by digest. When a tag there already
  // holds the digest, its blobs are there already too.
  const present = current.some(read => read.found?.digest === plan.digest)
  const rest = present ? stale : stale.slice(1)
  if (!present) {
    const outcome = await copyStep(
      mirror,
      stale.slice(0, 1),
      plan.source,
      plan,
      brandNew
    )
    attempts += outcome.attempts
    retries += outcome.attempts - 1
    if (outcome.reason) return result('failed', outcome.reason)
  }
  if (rest.length > 0) {
    const left = await writeTags(mirror, rest, plan)
    if (left.length > 0) {
      const outcome = await copyStep(
        mirror,
        left,
        `${mirror}@${plan.digest}`,
        plan,
        false
      )
      attempts += outcome.attempts
      retries += outcome.attempts - 1
      if (outcome.reason) return result('failed', outcome.reason)
    }
  }

  // Every tag is read back, all at once: each read is a round trip.
  const problems = await Promise.all(refs.map(ref => verify(plan, ref)))
  const problem = problems.find(Boolean)
  if (problem) return result('failed', problem)
  core.info(`Verified ${refs.join(', ')} at ${plan.digest}`)
  return result('done')
}

// The manifest written to every tag after the first: the bytes read from
// the source, or else the mirror's own copy. Returns the tags not written.
async function writeTags(
  mirror: string,
  tags: string[],
  plan: CopyPlan
): Promise<string[]> {
  let manifest: Manifest | undefined
  if (plan.bytes && sha256(plan.bytes) === plan.digest) {
    manifest = {
      bytes: plan.bytes,
      digest: plan.digest,
      mediaType: plan.mediaType
    }
  } else {
    const read = await registry.read(`${mirror}@${plan.digest}`, limit(plan))
    if (read && 'manifest' in read) manifest = read.manifest
  }
  if (!manifest) {
    core.info(
      `${mirror}: could not read ${plan.digest} back directly; ` +
        'imagetools create copies the other tags'
    )
    return tags
  }
  const written = await Promise.all(
    tags.map(tag => registry.write(`${mirror}:${tag}`, manifest, limit(plan)))
  )
  const left = tags.filter((_, i) => !written[i])
  const done = tags.filter((_, i) => written[i])
  if (done.length > 0) {
    core.info(`${mirror}: wrote ${plan.digest} to ${done.join(', ')}`)
  }
  if (left.length > 0) {
    core.info(
      `${mirror}: the registry did not take a direct write to ` +
        `${left.join(', ')}; imagetools create copies them`
    )
  }
  return left
}

// One imagetools create, tried again for transient failures only.
async function copyStep(
  mirror: string,
  tags: string[],
  source: string,
  plan: CopyPlan,
  brandNew: boolean
): Promise<{attempts: number; reason?: string}> {
  const command: Command = {
    phase: PHASE,
    args: copyArgs(plan.builder, mirror, tags, source, plan.keepManifest),
    subject: mirror,
    timeoutMs: plan.timeoutMinutes * 60_000
  }
  let retriedFirstWrite = false
  for (let attempts = 1; ; attempts++) {
    core.info(
      `${mirror}: attempt ${attempts}, copying ${source} to ${tags.join(', ')}`
    )
    const copied: Result = await attempt(command)
    if (copied.exitCode === 0) return {attempts}
    const reason = explain(failure(command, copied), plan.mediaType, mirror)
    const cause = copied.timedOut ? 'transient' : classify(copied.stderr)
    // The first write to a repository that held none of these tags gets
    // one more attempt after a 401 or 400: some registries refuse the very
    // first write to a new repository (containers/image#1265), and buildx
    // 0.13 races its own parallel tag pushes there (a manifest PUT before
    // the blob it names has landed: 400 MANIFEST_BLOB_UNKNOWN).
    const firstWrite =
      brandNew &&
      !retriedFirstWrite &&
      (cause === 'unauthorized' || /\b400 Bad Request/.test(copied.stderr))
    if (!(cause === 'transient' || firstWrite) || attempts >= plan.attempts) {
      const after = attempts > 1 ? ` (after ${attempts} attempts)` : ''
      return {attempts, reason: `${reason}${after}`}
    }
    if (firstWrite) retriedFirstWrite = true
    const wait = Math.max(
      backoff(attempts, plan.waitSeconds),
      /\b429\b|too many requests/i.test(copied.stderr)
        ? await retryAfter(mirror)
        : 0
    )
    const why = firstWrite ? 'first write to a new repository' : cause
    core.warning(
      `${mirror}: attempt ${attempts} failed (${why}: ` +
        `${lastLine(errorLines(copied.stderr))}); retrying in ${wait} s`,
      {title: `Mirror ${mirror}`}
    )
    await sleep(wait)
  }
}

// buildx retries a 429 itself without reading Retry-After, and does not
// print it; so ask the registry once more and honour what it says.
export async function retryAfter(mirror: string): Promise<number> {
  try {
    const response = await fetch(`${baseUrl(target(mirror).host)}/v2/`, {
      signal: AbortSignal.timeout(10_000)
    })
    return parseRetryAfter(response.headers.get('retry-after'))
  } catch {
    return 0
  }
}

// Retry-After is seconds or an HTTP date; at most five minutes are waited.
export function parseRetryAfter(
  value: string | null,
  now = Date.now()
): number {
  if (!value) return 0
  const seconds = /^\d+$/.test(value.trim())
    ? Number(value)
    : (Date.parse(value) - now) / 1000
  return Number.isFinite(seconds) ? Math.min(300, Math.max(0, seconds)) : 0
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop() ?? ''
}

// --- What is copied ---------------------------------------------------------

export interface Published {
  digest: string // '' when nothing was pushed
  metadata: Record<string, unknown>
  mediaType: string
  platforms: string[]
  children?: Record<string, string>
  bytes?: Buffer // the manifest as the registry holds it
}

const INDEX_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json'
]
export const isIndex = (mediaType: string): boolean =>
  INDEX_TYPES.includes(mediaType)

// After the push: what the registry holds must have every platform asked
// for, exactly once (arm64 without variant is linux/arm64/v8).
export async function checkPushed(
  inputs: Inputs,
  builder: string,
  built: {digest: string; metadata: Record<string, unknown>}
): Promise<Published> {
  // Without push, the docker driver still reports the digest of what it
  // kept in the engine's image store; no registry holds it.
  if (!built.digest || !inputs.push) {
    return {...built, digest: '', mediaType: '', platforms: inputs.platforms}
  }
  const found = await inspect(builder, `${inputs.image}@${built.digest}`)
  const platforms = isIndex(found.mediaType)
    ? found.platforms
    : inputs.platforms
  const missing = inputs.platforms.filter(p => !platforms.includes(p))
  const extra = platforms.filter(p => !inputs.platforms.includes(p))
  if (
    missing.length > 0 ||
    extra.length > 0 ||
    new Set(platforms).size !== platforms.length
  ) {
    throw new PhaseError(
      'Build',
      `${inputs.image}@${built.digest} holds ${platforms.join(', ')}; ` +
        `expected ${inputs.platforms.join(', ')}`
    )
  }
  core.info(`${inputs.image}@${built.digest} holds ${platforms.join(', ')}`)
  return {
    ...built,
    mediaType: found.mediaType,
    platforms,
    children: found.children,
    bytes: found.bytes
  }
}

// Mirror-only mode: the source named by tag is resolved to its digest once,
// and every copy reads that digest.
export async function readSource(inputs: Inputs): Promise<Published> {
  const found = await inspect('', inputs.source)
  core.info(
    `${inputs.source} is ${found.digest} (${found.platforms.join(', ') || found.mediaType})`
  )
  return {
    digest: found.digest,
    metadata: {},
    mediaType: found.mediaType,
    platforms: found.platforms,
    children: found.children,
    bytes: found.bytes
  }
}

export function sourceRepository(source: string): string {
  return repositoryName(parseReference(source))
}

// imagetools create turns a single manifest into a one-entry index (a new
// digest) unless --prefer-index=false is given, which older buildx lacks.
let preferIndexFlag: boolean | undefined
export async function keepsManifest(): Promise<boolean> {
  if (preferIndexFlag === undefined) {
    const help = await attempt({
      phase: PHASE,
      args: ['buildx', 'imagetools', 'create', '--help']
    })
    preferIndexFlag = help.stdout.includes('--prefer-index')
  }
  return preferIndexFlag
}

// A single-platform release without attestations is one manifest, not an
// index. Without --prefer-index its mirrors would get another digest, so
// say so before anything is built or pushed.
export async function checkMirrorSupport(inputs: Inputs): Promise<void> {
  const single = inputs.platforms.length === 1 && !attestations(inputs)
  if (!single || !inputs.push || inputs.mirrors.length === 0) return
  if (await keepsManifest()) return
  throw new PhaseError(
    PHASE,
    `${inputs.platforms[0]} alone is pushed as a single manifest, and this ` +
      'buildx has no imagetools create --prefer-index=false to copy it ' +
      'unchanged: its mirrors would hold a different digest. Set ' +
      'buildx-version to a newer buildx, or build more than one platform.'
  )
}
