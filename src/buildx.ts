import * as core from '@actions/core'
import {HttpClient} from '@actions/http-client'
import * as tc from '@actions/tool-cache'
import {createHash} from 'node:crypto'
import {
  chmodSync,
  copyFileSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import * as semver from 'semver'
import {PhaseError, run} from './exec.js'
import {DEFAULT_BUILDX_URL, type Inputs} from './inputs.js'

// Pinned buildx (#8). With `buildx-version` empty the runner's own buildx is
// used and only its version is logged. Otherwise one release is installed for
// this run only, as the CLI plugin of the run's private Docker config:
//
//   <base>/<tag>/buildx-<tag>.linux-<arch>   the plugin binary
//   <base>/<tag>/checksums.txt               "<sha256> *<asset>" per line
//
// <base> is `buildx-download-url` (GitHub's release downloads by default).
// `latest` is asked from the GitHub API for the default base; a custom base
// (a mirror) must serve <base>/latest, a text file holding the version, such
// as "v0.28.0"; without it `latest` is refused and a version must be pinned.
//
// A verified download is kept in the runner's tool cache (tool `buildx`), so
// a second run in the same job, or on the same self-hosted runner, makes no
// request at all. Every request is retried on transient failures (HTTP 5xx,
// 408, 429, refused or reset connections, timeouts): RETRY_WAITS holds the
// waits, so a request is tried at most RETRY_WAITS.length + 1 times.

const PHASE = 'Buildx'
const TOOL = 'buildx'
const PLUGIN = 'docker-buildx'
export const LATEST_API =
  'https://api.github.com/repos/docker/buildx/releases/latest'
export const RETRY_WAITS = [1000, 2000, 4000]
// A request that sends nothing for this long is abandoned (and retried).
const IDLE_TIMEOUT = 30_000
const VERSION = /^v?\d+\.\d+\.\d+(-[\w.]+)?$/

let inUse = ''

// The buildx version this run uses, once setupBuildx has run ('' before).
export const buildxInUse = (): string => inUse

// --- Names and addresses ------------------------------------------------

// Release tags always carry the v; users may leave it out.
export const tagOf = (version: string): string =>
  `v${version.trim().replace(/^v/, '')}`

const ARCHES: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  // buildx publishes arm-v6 and arm-v7; 32-bit runners are ARMv7 or newer.
  arm: 'arm-v7'
}

export function assetName(
  tag: string,
  arch: string = process.arch,
  platform: string = process.platform
): string {
  const cpu = ARCHES[arch]
  if (platform !== 'linux' || !cpu) {
    throw new PhaseError(
      PHASE,
      `no buildx release for ${platform}/${arch}; buildx-version works on ` +
        'Linux runners with amd64, arm64 or arm/v7 CPUs'
    )
  }
  return `buildx-${tag}.linux-${cpu}`
}

export const trimBase = (base: string): string => base.replace(/\/+$/, '')

export function releaseUrls(
  base: string,
  tag: string,
  asset: string
): {asset: string; checksums: string} {
  const dir = `${trimBase(base)}/${tag}`
  return {asset: `${dir}/${asset}`, checksums: `${dir}/checksums.txt`}
}

// Where `latest` comes from: GitHub's API for GitHub's own releases, a text
// file next to the version directories for any other base.
export function latestSource(base: string): {
  url: string
  kind: 'github' | 'text'
} {
  return trimBase(base) === DEFAULT_BUILDX_URL
    ? {url: LATEST_API, kind: 'github'}
    : {url: `${trimBase(base)}/latest`, kind: 'text'}
}

export function parseLatest(
  kind: 'github' | 'text',
  body: string,
  url: string
): string {
  let version = ''
  if (kind === 'github') {
    try {
      const release = JSON.parse(body) as {tag_name?: unknown}
      if (typeof release.tag_name === 'string') version = release.tag_name
    } catch {
      // Reported below with the URL.
    }
  } else {
    version =
      body
        .split('\n')
        .map(line => line.trim())
        .find(line => line && !line.startsWith('#')) ?? ''
  }
  if (!VERSION.test(version)) {
    const what =
      kind === 'github'
        ? 'a release with a tag_name such as v0.28.0'
        : 'a version such as v0.28.0 on its first line'
    throw new PhaseError(
      PHASE,
      `${url} did not answer ${what} (got ${JSON.stringify(body.slice(0, 80))})`
    )
  }
  return tagOf(version)
}

// --- Checksums ----------------------------------------------------------

// buildx writes checksums.txt with `sha256sum -b`: "<sha256> *<asset>"; the
// text-mode form "<sha256>  <asset>" is read too.
export function parseChecksums(text: string): Map<string, string> {
  const digests = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^([0-9a-fA-F]{64})\s+\*?(\S.*?)\s*$/.exec(line.trim())
    if (match) digests.set(match[2], match[1].toLowerCase())
  }
  return digests
}

export function expectedDigest(
  text: string,
  asset: string,
  url: string
): string {
  const digest = parseChecksums(text).get(asset)
  if (!digest) {
    throw new PhaseError(PHASE, `${url} lists no sha256 for ${asset}`)
  }
  return digest
}

export const mismatchMessage = (
  asset: string,
  url: string,
  expected: string,
  actual: string
): string =>
  `${asset} downloaded from ${url} does not match checksums.txt: ` +
  `expected sha256 ${expected}, got sha256 ${actual}; refusing to use it`

// --- Versions -----------------------------------------------------------

// The version from `docker buildx version`: "github.com/docker/buildx
// v0.28.0 <commit>" from buildx's releases, "0.13.1+ds1 ..." from Debian.
export function parseVersionOutput(stdout: string): string {
  const line =
    stdout.split('\n').find(l => /github\.com\/docker\/buildx\s/.test(l)) ??
    stdout.split('\n')[0] ??
    ''
  return line.trim().split(/\s+/)[1] ?? ''
}

const semverOf = (version: string): string | null => {
  const text = version.trim()
  if (!/^v?\d+\.\d+\.\d+/.test(text)) return null
  return semver.valid(semver.clean(text) ?? text)
}

// For gating flags on the buildx in use: true when `version` is `wanted` or
// newer. Versions that are not semver (builds reporting a commit) count as
// older, so the action stays with what every buildx understands.
export function atLeast(version: string, wanted: string): boolean {
  const have = semverOf(version)
  const need = semverOf(wanted)
  if (!have || !need) return false
  return semver.gte(have, need)
}

export const sameVersion = (a: string, b: string): boolean => {
  const left = semverOf(a)
  const right = semverOf(b)
  return left !== null && right !== null && semver.eq(left, right)
}

// --- Requests, retried --------------------------------------------------

export class HttpStatusError extends Error {
  constructor(
    readonly url: string,
    readonly status: number,
    statusText: string
  ) {
    super(`HTTP ${status}${statusText ? ` ${statusText}` : ''}`)
    this.name = 'HttpStatusError'
  }
}

class IdleTimeout extends Error {
  constructor(ms: number) {
    super(`no data for ${ms / 1000}s`)
    this.name = 'IdleTimeout'
  }
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND'
])

// The error and its causes, outermost first.
// Read by shape, not class: Node's own errors come from another realm under
// jest, where instanceof Error is false.
interface Link {
  name?: unknown
  message?: unknown
  code?: unknown
}

function chain(error: unknown): Link[] {
  const list: Link[] = []
  let current = error
  while (typeof current === 'object' && current !== null && list.length < 5) {
    list.push(current)
    current = (current as {cause?: unknown}).cause
  }
  if (list.length === 0) list.push({message: String(error)})
  return list
}

export function isTransient(error: unknown): boolean {
  if (error instanceof HttpStatusError) {
    return error.status >= 500 || error.status === 408 || error.status === 429
  }
  return chain(error).some(
    link =>
      ['IdleTimeout', 'TimeoutError'].includes(String(link.name)) ||
      // http-client's words when the socket timeout strikes.
      String(link.message).startsWith('Request timeout:') ||
      NETWORK_CODES.has(String(link.code)) ||
      // Node's words for a response cut off before its end.
      String(link.message) === 'aborted'
  )
}

// An error with its causes: "outer (inner: innermost)".
export function describe(error: unknown): string {
  const messages = chain(error)
    .map(link => (typeof link.message === 'string' ? link.message : ''))
    .filter(Boolean)
  const unique = messages.filter((m, i) => messages.indexOf(m) === i)
  return unique.length > 1
    ? `${unique[0]} (${unique.slice(1).join(': ')})`
    : (unique[0] ?? 'unknown error')
}

// Exponential waits with jitter: each within 25% of its step, so runners
// that failed together do not all come back at the same moment.
export const jittered = (step: number, random: number): number =>
  Math.round(step * (0.75 + random / 2))

export interface RetryOptions {
  // Milliseconds a response may stay silent before it is abandoned.
  idleTimeout?: number
  waits?: number[]
  sleep?: (ms: number) => Promise<void>
  random?: () => number
}

const pause = async (ms: number): Promise<void> =>
  new Promise(resolve => setTimeout(resolve, ms))

export async function withRetries<T>(
  url: string,
  work: () => Promise<T>,
  options: RetryOptions = {}
): Promise<T> {
  const waits = options.waits ?? RETRY_WAITS
  const sleep = options.sleep ?? pause
  const random = options.random ?? Math.random
  const attempts = waits.length + 1
  for (let attempt = 1; ; attempt++) {
    try {
      return await work()
    } catch (error) {
      if (error instanceof PhaseError) throw error
      const cause = describe(error)
      if (!isTransient(error)) {
        const hint =
          error instanceof HttpStatusError && error.status === 404
            ? '; check buildx-version and buildx-download-url'
            : ''
        throw new PhaseError(PHASE, `${url}: ${cause}${hint}`)
      }
      if (attempt === attempts) {
        throw new PhaseError(
          PHASE,
          `${url} could not be reached after ${attempts} attempts: ${cause}`
        )
      }
      const ms = jittered(waits[attempt - 1], random())
      core.info(
        `Attempt ${attempt} of ${attempts} for ${url} failed: ${cause}; ` +
          `retrying in ${(ms / 1000).toFixed(1)}s`
      )
      await sleep(ms)
    }
  }
}

// One GET, abandoned when the server goes quiet; `consume` reads the body.
// @actions/http-client, as in tool-cache: it follows redirects (GitHub sends
// downloads elsewhere) and honours the runner's https_proxy and no_proxy.
async function get<T>(
  idle: number,
  url: string,
  headers: Record<string, string>,
  consume: (body: Readable, alive: () => void) => Promise<T>
): Promise<T> {
  // The socket timeout covers connecting and waiting for the headers.
  const client = new HttpClient('multiarch-action', [], {
    allowRetries: false,
    socketTimeout: idle
  })
  const response = await client.get(url, headers)
  const body = response.message
  const status = body.statusCode ?? 0
  if (status !== 200) {
    body.resume()
    throw new HttpStatusError(url, status, body.statusMessage ?? '')
  }
  // From here on the body's own timer, reset by every chunk, says why.
  body.socket?.setTimeout(0)
  const timer = setTimeout(() => body.destroy(new IdleTimeout(idle)), idle)
  try {
    return await consume(body, () => timer.refresh())
  } finally {
    clearTimeout(timer)
    body.destroy()
  }
}

export async function fetchText(
  url: string,
  headers: Record<string, string> = {},
  options?: RetryOptions
): Promise<string> {
  return withRetries(
    url,
    async () =>
      get(
        options?.idleTimeout ?? IDLE_TIMEOUT,
        url,
        headers,
        async (body, alive) => {
          const chunks: Buffer[] = []
          for await (const chunk of body) {
            chunks.push(chunk as Buffer)
            alive()
          }
          return Buffer.concat(chunks).toString('utf8')
        }
      ),
    options
  )
}

// Streams `url` into `file`; returns the sha256 of what arrived.
export async function downloadFile(
  url: string,
  file: string,
  options?: RetryOptions
): Promise<string> {
  return withRetries(
    url,
    async () =>
      get(
        options?.idleTimeout ?? IDLE_TIMEOUT,
        url,
        {},
        async (body, alive) => {
          const hash = createHash('sha256')
          await pipeline(
            body,
            async function* (source: AsyncIterable<Buffer>) {
              for await (const chunk of source) {
                hash.update(chunk)
                alive()
                yield chunk
              }
            },
            createWriteStream(file)
          )
          return hash.digest('hex')
        }
      ),
    options
  )
}

const sha256File = (file: string): string =>
  createHash('sha256').update(readFileSync(file)).digest('hex')

// --- Setup --------------------------------------------------------------

// The runner sets both; outside it, keep the cache beside the temp dir.
export function runnerDirs(env: NodeJS.ProcessEnv = process.env): {
  temp: string
  toolCache: string
} {
  const temp = env.RUNNER_TEMP || tmpdir()
  const toolCache =
    env.RUNNER_TOOL_CACHE ||
    (env.RUNNER_TEMP
      ? join(dirname(env.RUNNER_TEMP), '_tool')
      : join(tmpdir(), 'multiarch-tool-cache'))
  return {temp, toolCache}
}

export async function setupBuildx(
  inputs: Inputs,
  dockerConfigDir: string
): Promise<string> {
  if (!inputs.buildxVersion) {
    const version = await reportVersion()
    inUse = version
    return version
  }
  const dirs = runnerDirs()
  process.env.RUNNER_TEMP = dirs.temp
  process.env.RUNNER_TOOL_CACHE = dirs.toolCache

  const base = trimBase(inputs.buildxDownloadUrl)
  const tag =
    inputs.buildxVersion === 'latest'
      ? await resolveLatest(base)
      : tagOf(inputs.buildxVersion)
  const binary = await cachedOrDownloaded(base, tag, dirs.temp)

  const pluginDir = join(dockerConfigDir, 'cli-plugins')
  mkdirSync(pluginDir, {recursive: true})
  const plugin = join(pluginDir, PLUGIN)
  copyFileSync(binary, plugin)
  chmodSync(plugin, 0o755)
  preferPluginDir(dockerConfigDir, pluginDir)
  core.info(`Installed buildx ${tag} for this run: ${plugin}`)

  const version = await reportVersion()
  if (!sameVersion(version, tag)) {
    throw new PhaseError(
      PHASE,
      `docker buildx version reports ${version || 'no version'} after ` +
        `installing ${tag} at ${plugin}; another docker-buildx is found first`
    )
  }
  inUse = version
  return version
}

async function reportVersion(): Promise<string> {
  const result = await run({phase: PHASE, args: ['buildx', 'version']})
  const text = result.stdout.trim()
  core.info(`docker buildx version: ${text}`)
  return parseVersionOutput(text)
}

async function resolveLatest(base: string): Promise<string> {
  const source = latestSource(base)
  let body: string
  try {
    body = await fetchText(
      source.url,
      source.kind === 'github' ? {Accept: 'application/vnd.github+json'} : {}
    )
  } catch (error) {
    if (source.kind === 'text') {
      throw new PhaseError(
        PHASE,
        `buildx-version latest with buildx-download-url ${base} reads ` +
          `${source.url}, a text file holding the version (e.g. v0.28.0), ` +
          `and that failed: ${message(error)}. Serve that file, or pin ` +
          'buildx-version to a version'
      )
    }
    throw new PhaseError(
      PHASE,
      `could not look up the latest buildx release: ${message(error)}. ` +
        'Pin buildx-version to a version to skip the lookup'
    )
  }
  const tag = parseLatest(source.kind, body, source.url)
  core.info(`Latest buildx is ${tag} (from ${source.url})`)
  return tag
}

// A cached copy is used when its recorded digest still matches; anything
// else is downloaded, verified against checksums.txt, then cached.
async function cachedOrDownloaded(
  base: string,
  tag: string,
  temp: string
): Promise<string> {
  const asset = assetName(tag)
  const cached = tc.find(TOOL, tag, process.arch)
  if (cached) {
    const binary = join(cached, PLUGIN)
    const recorded = join(cached, `${PLUGIN}.sha256`)
    const digest = existsSync(recorded)
      ? readFileSync(recorded, 'utf8').trim()
      : ''
    if (existsSync(binary) && digest && sha256File(binary) === digest) {
      core.info(`buildx ${tag} found in the tool cache: ${cached}`)
      return binary
    }
    core.warning(
      `buildx ${tag} in the tool cache (${cached}) does not match the ` +
        'digest recorded when it was cached; downloading it again'
    )
  }

  const urls = releaseUrls(base, tag, asset)
  const expected = expectedDigest(
    await fetchText(urls.checksums),
    asset,
    urls.checksums
  )
  const scratch = mkdtempSync(join(temp, 'buildx-'))
  try {
    const file = join(scratch, asset)
    core.info(`Downloading ${urls.asset}`)
    const actual = await downloadFile(urls.asset, file)
    if (actual !== expected) {
      throw new PhaseError(
        PHASE,
        mismatchMessage(asset, urls.asset, expected, actual)
      )
    }
    core.info(`${asset}: sha256 ${actual} matches ${urls.checksums}`)
    chmodSync(file, 0o755)
    const dir = await tc.cacheFile(file, PLUGIN, TOOL, tag, process.arch)
    writeFileSync(join(dir, `${PLUGIN}.sha256`), `${actual}\n`)
    core.info(`buildx ${tag} cached in the tool cache: ${dir}`)
    return join(dir, PLUGIN)
  } finally {
    rmSync(scratch, {recursive: true, force: true})
  }
}

// The docker CLI looks in config.json's cliPluginsExtraDirs before
// $DOCKER_CONFIG/cli-plugins (docker 28 does; older CLIs the other way
// round), and the run's config lists the user's plugin directory there. Put
// the run's own directory first so a buildx in ~/.docker/cli-plugins cannot
// shadow the pinned one.
function preferPluginDir(dockerConfigDir: string, pluginDir: string): void {
  const file = join(dockerConfigDir, 'config.json')
  const config = existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>)
    : {}
  const extra = Array.isArray(config.cliPluginsExtraDirs)
    ? (config.cliPluginsExtraDirs as string[])
    : []
  config.cliPluginsExtraDirs = [
    pluginDir,
    ...extra.filter(dir => dir !== pluginDir)
  ]
  writeFileSync(file, JSON.stringify(config), {mode: 0o600})
}

function message(error: unknown): string {
  return error instanceof PhaseError
    ? error.message.replace(/^Buildx: /, '')
    : describe(error)
}
