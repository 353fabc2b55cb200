import * as core from '@actions/core'
import {parse as parseChallenge} from 'auth-header'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {
  DOCKER_HUB,
  parseReference,
  registryKey,
  registryPath
} from './reference.js'

// The few registry requests the mirror phase makes itself, where a buildx
// process per request costs more than the request: reading a tag's manifest
// and writing a manifest whose blobs the repository already holds. Each
// answers only what it is sure of (a manifest, "not there", "written");
// anything else (TLS trouble, an auth scheme it does not know, a status it
// did not expect) comes back as undefined, and the caller asks buildx,
// which knows the daemon's certificates and insecure-registry settings.

export const MANIFEST_TYPES = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json'
]

export interface Manifest {
  bytes: Buffer
  digest: string
  mediaType: string
}

export type ReadResult = {manifest: Manifest} | {missing: true}

export interface Target {
  host: string // as written in the reference ('' for Docker Hub)
  repository: string // path on the registry, library/ added for Hub
  reference: string // tag or digest
}

export function target(ref: string): Target {
  const parsed = parseReference(ref)
  return {
    host: parsed.domain,
    repository: registryPath(parsed),
    reference: parsed.digest ?? parsed.tag ?? 'latest'
  }
}

// Docker treats loopback registries as plain HTTP; everything else is TLS.
export function baseUrl(host: string): string {
  if (registryKey(host) === DOCKER_HUB) return 'https://registry-1.docker.io'
  const name = host.replace(/:\d+$/, '')
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(name)
  return `${loopback ? 'http' : 'https'}://${host}`
}

export const sha256 = (bytes: Buffer): string =>
  `sha256:${createHash('sha256').update(bytes).digest('hex')}`

// The `auth` of the run's Docker config that docker login wrote: user and
// password, base64. Hub's entry is keyed by its old index URL.
export function credentialFor(
  host: string,
  auths: Record<string, {auth?: string}>
): string | undefined {
  const key = registryKey(host)
  return Object.entries(auths).find(
    ([name, entry]) => registryKey(name) === key && entry.auth
  )?.[1].auth
}

function runAuths(): Record<string, {auth?: string}> {
  const dir = process.env.DOCKER_CONFIG
  const file = dir ? join(dir, 'config.json') : ''
  if (!file || !existsSync(file)) return {}
  try {
    const config = JSON.parse(readFileSync(file, 'utf8')) as {
      auths?: Record<string, {auth?: string}>
    }
    return config.auths ?? {}
  } catch {
    return {}
  }
}

// The Authorization header a challenge asks for, or undefined when this
// client cannot meet it (then buildx is asked instead).
export async function answerChallenge(
  header: string | null,
  credential: string | undefined,
  scope: string,
  request: typeof fetch = fetch
): Promise<string | undefined> {
  if (!header) return undefined
  let challenge
  try {
    challenge = parseChallenge(header)
  } catch {
    return undefined
  }
  const scheme = challenge.scheme.toLowerCase()
  if (scheme === 'basic') {
    return credential ? `Basic ${credential}` : undefined
  }
  if (scheme !== 'bearer') return undefined
  const param = (name: string): string | undefined => {
    const value = challenge.params[name]
    return Array.isArray(value) ? value[0] : value
  }
  const realm = param('realm')
  if (!realm) return undefined
  const url = new URL(realm)
  // Credentials go to a token service over TLS only (loopback aside).
  if (url.protocol !== 'https:' && !baseUrl(url.host).startsWith('http:')) {
    return undefined
  }
  const service = param('service')
  if (service) url.searchParams.set('service', service)
  url.searchParams.set('scope', scope)
  const response = await request(url, {
    headers: credential ? {Authorization: `Basic ${credential}`} : {},
    redirect: 'manual',
    signal: AbortSignal.timeout(20_000)
  })
  if (!response.ok) return undefined
  const body = (await response.json()) as {
    token?: string
    access_token?: string
  }
  const token = body.token ?? body.access_token
  return token ? `Bearer ${token}` : undefined
}

// A proxy in the environment is for buildx to honour: Node's fetch would
// ignore it and wait for a connection that never comes. Loopback is never
// proxied.
export function proxied(
  url: string,
  env: NodeJS.ProcessEnv = process.env
): boolean {
  const {protocol, host} = new URL(url)
  if (baseUrl(host).startsWith('http:') && protocol === 'http:') return false
  const names =
    protocol === 'https:'
      ? ['HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy']
      : ['HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy']
  return names.some(name => Boolean(env[name]))
}

interface Answer {
  status: number
  headers: Headers
  bytes: Buffer
  authenticated: boolean
}

// The parts of a manifest this client relies on: JSON, schema version 2,
// a media type it knows.
function manifestType(bytes: Buffer, contentType: string): string | undefined {
  let body: unknown
  try {
    body = JSON.parse(bytes.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof body !== 'object' || body === null) return undefined
  const {schemaVersion, mediaType} = body as {
    schemaVersion?: unknown
    mediaType?: unknown
  }
  if (schemaVersion !== 2) return undefined
  const type = typeof mediaType === 'string' ? mediaType : contentType
  return MANIFEST_TYPES.includes(type) ? type : undefined
}

const REQUEST_TIMEOUT_MS = 20_000

// One client per run: it remembers each repository's Authorization header,
// so parallel reads and writes pay the challenge once.
export class RegistryClient {
  private readonly headers = new Map<string, Promise<string | undefined>>()
  private auths?: Record<string, {auth?: string}>

  constructor(private readonly request: typeof fetch = fetch) {}

  // timeoutMs bounds each request (at most REQUEST_TIMEOUT_MS).
  async read(ref: string, timeoutMs?: number): Promise<ReadResult | undefined> {
    const where = target(ref)
    const answer = await this.exchange(
      where,
      'GET',
      {Accept: MANIFEST_TYPES.join(', ')},
      undefined,
      timeoutMs
    )
    if (!answer) return undefined
    if (answer.status === 404) {
      // A registry may hide a private repository from anonymous callers
      // behind 404: with credentials at hand, buildx decides.
      if (!answer.authenticated && this.credential(where.host)) {
        return undefined
      }
      return {missing: true}
    }
    if (answer.status !== 200) return undefined
    const contentType =
      answer.headers.get('content-type')?.split(';')[0].trim() ?? ''
    const mediaType = manifestType(answer.bytes, contentType)
    if (!mediaType) return undefined
    const digest = sha256(answer.bytes)
    if (where.reference.includes(':') && where.reference !== digest) {
      return undefined
    }
    return {manifest: {bytes: answer.bytes, digest, mediaType}}
  }

  // True once the registry answered 201 naming the digest of these bytes.
  async write(
    ref: string,
    manifest: Manifest,
    timeoutMs?: number
  ): Promise<boolean> {
    if (!MANIFEST_TYPES.includes(manifest.mediaType)) return false
    const answer = await this.exchange(
      target(ref),
      'PUT',
      {'Content-Type': manifest.mediaType},
      manifest.bytes,
      timeoutMs
    )
    return (
      answer?.status === 201 &&
      answer.headers.get('docker-content-digest') === manifest.digest
    )
  }

  private credential(host: string): string | undefined {
    this.auths ??= runAuths()
    return credentialFor(host, this.auths)
  }

  // A request and its whole answer; undefined for anything but an answer
  // from the registry itself (network, TLS, timeout, proxy, refused auth).
  private async exchange(
    where: Target,
    method: string,
    headers: Record<string, string>,
    body?: Buffer,
    timeoutMs = REQUEST_TIMEOUT_MS
  ): Promise<Answer | undefined> {
    const url = `${baseUrl(where.host)}/v2/${where.repository}/manifests/${where.reference}`
    if (proxied(url)) return undefined
    const key = `${registryKey(where.host)}/${where.repository}`
    const once = async (authorization?: string): Promise<Answer> => {
      const response = await this.request(url, {
        method,
        headers: authorization
          ? {...headers, Authorization: authorization}
          : headers,
        body: body ? new Uint8Array(body) : undefined,
        // A redirect is left to buildx: the Authorization header is for
        // this registry alone.
        redirect: 'manual',
        signal: AbortSignal.timeout(Math.min(timeoutMs, REQUEST_TIMEOUT_MS))
      })
      const bytes = Buffer.from(await response.arrayBuffer())
      return {
        status: response.status,
        headers: response.headers,
        bytes,
        authenticated: Boolean(authorization)
      }
    }
    try {
      const cached = await this.headers.get(key)
      const first = await once(cached)
      if (first.status !== 401) return first
      const fresh = await this.authorize(
        key,
        where,
        first.headers.get('www-authenticate'),
        cached
      )
      if (!fresh) return undefined
      const second = await once(fresh)
      return second.status === 401 ? undefined : second
    } catch {
      return undefined
    }
  }

  // One challenge answered per repository at a time: a request whose header
  // went stale replaces it only if no other request has done so already,
  // and a failed answer is forgotten, so a later request asks again.
  private async authorize(
    key: string,
    where: Target,
    challenge: string | null,
    stale: string | undefined
  ): Promise<string | undefined> {
    const pending = this.headers.get(key)
    if (pending) {
      const value = await pending
      const current = this.headers.get(key)
      if (current !== pending) return current
      if (value && value !== stale) return value
    }
    const fresh = answerChallenge(
      challenge,
      this.credential(where.host),
      `repository:${where.repository}:pull,push`,
      this.request
    ).catch(() => undefined)
    this.headers.set(key, fresh)
    const value = await fresh
    if (!value && this.headers.get(key) === fresh) this.headers.delete(key)
    // A token is never printed; masked all the same, like the passwords.
    if (value?.startsWith('Bearer ')) core.setSecret(value.slice(7))
    return value
  }
}
