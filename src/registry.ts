import {parse as parseChallenge} from 'auth-header'
import {createHash} from 'node:crypto'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {DOCKER_HUB, parseReference, registryKey} from './reference.js'

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
  const hub = registryKey(parsed.domain) === DOCKER_HUB
  return {
    host: parsed.domain,
    repository:
      hub && !parsed.path.includes('/')
        ? `library/${parsed.path}`
        : parsed.path,
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
  for (const [name, entry] of Object.entries(auths)) {
    const named =
      key === DOCKER_HUB
        ? registryKey(name) === DOCKER_HUB
        : registryKey(name) === key
    if (named && entry.auth) return entry.auth
  }
  return undefined
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
    signal: AbortSignal.timeout(30_000)
  })
  if (!response.ok) return undefined
  const body = (await response.json()) as {
    token?: string
    access_token?: string
  }
  const token = body.token ?? body.access_token
  return token ? `Bearer ${token}` : undefined
}

// One client per run: it remembers each repository's Authorization header,
// so parallel reads and writes pay the challenge once.
export class RegistryClient {
  private readonly headers = new Map<string, Promise<string | undefined>>()
  private auths?: Record<string, {auth?: string}>

  constructor(private readonly request: typeof fetch = fetch) {}

  async read(ref: string): Promise<ReadResult | undefined> {
    const where = target(ref)
    const response = await this.send(where, 'GET', {
      Accept: MANIFEST_TYPES.join(', ')
    })
    if (!response) return undefined
    if (response.status === 404) {
      await response.body?.cancel()
      return {missing: true}
    }
    if (response.status !== 200) {
      await response.body?.cancel()
      return undefined
    }
    const bytes = Buffer.from(await response.arrayBuffer())
    const digest = sha256(bytes)
    if (where.reference.includes(':') && where.reference !== digest) {
      return undefined
    }
    const mediaType =
      response.headers.get('content-type')?.split(';')[0].trim() ?? ''
    return {manifest: {bytes, digest, mediaType}}
  }

  // True once the registry answered 201 with the digest of these bytes.
  async write(ref: string, manifest: Manifest): Promise<boolean> {
    if (!MANIFEST_TYPES.includes(manifest.mediaType)) return false
    const response = await this.send(
      target(ref),
      'PUT',
      {'Content-Type': manifest.mediaType},
      manifest.bytes
    )
    if (!response) return false
    await response.body?.cancel()
    const digest = response.headers.get('docker-content-digest')
    return response.status === 201 && (!digest || digest === manifest.digest)
  }

  private async send(
    where: Target,
    method: string,
    headers: Record<string, string>,
    body?: Buffer
  ): Promise<Response | undefined> {
    const url = `${baseUrl(where.host)}/v2/${where.repository}/manifests/${where.reference}`
    const key = `${where.host}/${where.repository}`
    try {
      let authorization = await this.headers.get(key)
      const go = (): Promise<Response> =>
        this.request(url, {
          method,
          headers: authorization
            ? {...headers, Authorization: authorization}
            : headers,
          body: body ? new Uint8Array(body) : undefined,
          // A redirect is left to buildx: the Authorization header is for
          // this registry alone.
          redirect: 'manual',
          signal: AbortSignal.timeout(60_000)
        })
      let response = await go()
      if (response.status !== 401) return response
      await response.body?.cancel()
      // One challenge per repository; parallel requests wait for it.
      const challenge = response.headers.get('www-authenticate')
      if (!this.headers.has(key) || authorization) {
        this.auths ??= runAuths()
        this.headers.set(
          key,
          answerChallenge(
            challenge,
            credentialFor(where.host, this.auths),
            `repository:${where.repository}:pull,push`,
            this.request
          ).catch(() => undefined)
        )
      }
      const answered = await this.headers.get(key)
      if (!answered || answered === authorization) return undefined
      authorization = answered
      response = await go()
      if (response.status === 401) {
        await response.body?.cancel()
        return undefined
      }
      return response
    } catch {
      return undefined
    }
  }
}
