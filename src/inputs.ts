import * as core from '@actions/core'
import {statSync} from 'node:fs'
import {join} from 'node:path'
import {notice} from './notes.js'
import {parseDocument} from 'yaml'
import {parseList} from './lists.js'
import {formatPlatform, parsePlatform} from './platforms.js'
import {
  TAG,
  parseReference,
  registryKey,
  repositoryKey,
  repositoryName
} from './reference.js'
import {
  DEFAULT_VERSION_PATTERN,
  PLACEHOLDERS,
  defaultTags,
  isTemplate,
  parseVersion,
  readFileVersion,
  renderTemplate,
  type Release,
  type TagContext
} from './tags.js'

// The action's whole input contract, read once into one typed object and
// validated before anything on the runner or in a registry changes. Every
// problem is collected, so a run with three typos reports all three.

export type Driver = 'docker-container' | 'docker' | 'remote'

export interface Credential {
  registry: string // as the user wrote it, passed to docker login
  key: string // one key per registry (Docker Hub spellings folded)
  username: string
  password: string
}

export interface Inputs {
  image: string
  tags: string[]
  // Tags that move from release to release (5, v5, latest).
  floatingTags: string[]
  version: string
  platforms: string[]
  context: string
  file: string
  buildArgs: string[]
  labels: string[]
  annotations: string[]
  target: string
  // Build secrets: values reach buildx through the environment, never argv.
  secrets: {id: string; value: string}[]
  secretFiles: {id: string; path: string}[]
  cacheFrom: string[]
  cacheTo: string[]
  push: boolean
  mirrors: string[]
  credentials: Credential[]
  driver: Driver
  endpoint: string
  driverOpts: string[]
  buildkitdConfig: string
  builder: string
  network: string
  qemu: 'auto' | 'true' | 'false'
  qemuImage: string
  provenance: string
  sbom: string
  noCache: boolean
  pull: boolean
  dryRun: boolean
  // Mirror-only mode (#4): an existing image to copy instead of a build.
  source: string
  mirrorFailure: 'fail' | 'warn'
  mirrorAttempts: number
  mirrorRetryWait: number
  mirrorConcurrency: number
  mirrorTimeout: number
  // Emulation guards (#6): minutes; 0 turns a guard off.
  buildTimeout: number
  stallTimeout: number
  debugPlatform: string
  // Pinned buildx (#8): '' keeps the runner's own.
  buildxVersion: string
  buildxDownloadUrl: string
  // Scale-out (#7): one platform pushed by digest only, or a merge of such
  // digests into the tagged index (no build).
  pushByDigest: boolean
  digests: PlatformDigest[]
  // More BuildKit nodes appended to the builder this run creates.
  nodes: BuilderNode[]
}

export interface BuilderNode {
  name: string // '' lets the action name it after the builder
  endpoint: string
  platforms: string[]
  driverOpts: string[]
}

export interface PlatformDigest {
  platform: string // normalised
  digest: string
}

export const DIGEST = /^sha256:[a-f0-9]{64}$/

export const DEFAULT_PLATFORMS = 'linux/amd64,linux/arm64/v8,linux/arm/v7'
// Pinned to the release many projects fell back to when QEMU 9.2 in
// binfmt:latest broke arm builds (tonistiigi/binfmt#240); moving it is a
// deliberate change, tested, never a surprise on release day.
export const DEFAULT_QEMU_IMAGE = 'docker.io/tonistiigi/binfmt:qemu-v7.0.0-28'
export const DEFAULT_BUILDX_URL =
  'https://github.com/docker/buildx/releases/download'
const SECRET_NAME = /TOKEN|PASSW|SECRET|KEY|CREDENTIAL|AUTH/i
const DRIVERS: Driver[] = ['docker-container', 'docker', 'remote']

export class InputError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? `Invalid input: ${problems[0]}`
        : `Invalid inputs:\n- ${problems.join('\n- ')}`
    )
    this.name = 'InputError'
  }
}

class Problems {
  readonly list: string[] = []
  add(input: string, value: string, why: string): void {
    this.list.push(`${input}: ${JSON.stringify(value)} ${why}`)
  }
}

const read = (name: string): string => core.getInput(name)

export function getInputs(env: NodeJS.ProcessEnv = process.env): Inputs {
  const problems = new Problems()
  const pullRequest = (env.GITHUB_EVENT_NAME ?? '').startsWith('pull_request')

  // Credentials first: their passwords are masked before any other line
  // of this run can echo an input.
  const credentials = credentialList(
    read('registry-auth'),
    env,
    problems,
    pullRequest
  )
  const secrets = secretList(parseList(read('secrets'), true), problems)

  // Source: mirror-only mode copies an existing image instead of building.
  const source = read('source').trim()
  if (source) {
    try {
      const parsed = parseReference(source)
      if (parsed.lowered) {
        problems.add(
          'source',
          source,
          'must be lower-case in its repository path'
        )
      }
    } catch (error) {
      problems.add(
        'source',
        source,
        `is not an image reference: ${message(error)}`
      )
    }
  }

  // Image: a repository, tags come from `tags`.
  const image = repositoryInput('image', read('image'), problems, !source)
  if (source && image) {
    problems.add(
      'image',
      image,
      'is not used with source; list every destination in mirrors'
    )
  }

  // Scale-out: per-platform builds pushed by digest, merged by a last job.
  const pushByDigest = booleanInput(
    'push-by-digest',
    read('push-by-digest'),
    false,
    problems
  )
  const digests = digestList(read('digests'), problems)
  const merging = read('digests').trim() !== ''
  if (pushByDigest && (source || merging)) {
    problems.add(
      'push-by-digest',
      read('push-by-digest'),
      `cannot be combined with ${source ? 'source' : 'digests'}`
    )
  }
  if (merging && source) {
    problems.add('digests', read('digests'), 'cannot be combined with source')
  }

  // Tags: bare tags and templates, or the git tag of a tag push.
  const latest = booleanInput('latest', read('latest'), false, problems)
  const versionFile = read('version-file')
  let fileVersion: string | undefined
  if (versionFile) {
    try {
      fileVersion =
        readFileVersion(
          versionFile,
          read('version-pattern') || DEFAULT_VERSION_PATTERN
        ) || undefined
      if (!fileVersion) {
        problems.add(
          'version-pattern',
          read('version-pattern') || DEFAULT_VERSION_PATTERN,
          `matches nothing in ${versionFile}`
        )
      }
    } catch (error) {
      problems.add(
        'version-file',
        versionFile,
        `cannot be read: ${message(error)}`
      )
    }
  }
  const tagContext: TagContext = {
    ref: env.GITHUB_REF,
    sha: env.GITHUB_SHA,
    latest,
    fileVersion
  }
  // A push by digest writes no tag: the merge job tags the index. The
  // version still labels the image, as in a single-runner release.
  const release: Release = pushByDigest
    ? {
        version: parseVersion(env.GITHUB_REF),
        tags: [],
        floating: [],
        notices: []
      }
    : tagList(read('tags'), tagContext, problems)
  if (pushByDigest && read('tags').trim()) {
    notice('tags: ignored with push-by-digest; the merge job writes the tags')
  }
  release.notices.forEach(text => notice(text))
  const tags = release.tags
  const version = release.version
  if (fileVersion && version?.patch !== undefined) {
    const tagged = `${version.major}.${version.minor}.${version.patch}`
    if (tagged !== fileVersion) {
      problems.add(
        'version-file',
        versionFile,
        `says ${fileVersion}, but the git tag ${version.name} is ${tagged}`
      )
    }
  }

  // Platforms: normalised, duplicates in other spellings reported once.
  const platforms = merging
    ? mergedPlatforms(read('platforms'), digests, problems)
    : platformList(read('platforms') || DEFAULT_PLATFORMS, problems)
  if (pushByDigest && platforms.length !== 1) {
    problems.add(
      'platforms',
      read('platforms') || DEFAULT_PLATFORMS,
      'must name exactly one platform with push-by-digest (one job per platform)'
    )
  }

  // Build settings passed through to buildx.
  const context = read('context') || '.'
  const file = read('file')
  const buildArgs = parseList(read('build-args'), true)
  for (const arg of buildArgs) {
    const name = arg.split('=')[0]
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) {
      problems.add('build-args', arg, 'is not NAME=value (one per line)')
    } else if (/,\s*[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) {
      core.warning(
        `build-args: "${arg.split('=')[0]}=..." holds a comma followed by ` +
          'NAME=; build-args are split on newlines only, so this is one ' +
          'argument. Put each argument on its own line.'
      )
    }
    if (SECRET_NAME.test(name)) {
      core.warning(
        `build-args: ${name} looks like a secret; build arguments are ` +
          'recorded in the image history and provenance. Pass it with ' +
          '`secrets` and read it with RUN --mount=type=secret instead.'
      )
    }
  }
  const labels = withOciLabels(parseList(read('labels'), true), version, env)
  const annotations = parseList(read('annotations'), true)
  const target = read('target')
  if (target && !/^[\w][\w.-]*$/.test(target)) {
    problems.add('target', target, 'is not a build stage name')
  }
  const secretFiles = parseList(read('secret-files'), true).map(line => {
    const at = line.indexOf('=')
    if (at <= 0) problems.add('secret-files', line, 'is not id=path')
    return {id: line.slice(0, at), path: line.slice(at + 1)}
  })
  const cacheFrom = parseList(read('cache-from'), true)
  const cacheTo = parseList(read('cache-to'), true)

  // Push: on by default, off for pull requests (fork PRs get no secrets).
  const push = booleanInput('push', read('push'), !pullRequest, problems)

  // Mirrors: repositories without tag or digest, never the image itself.
  const mirrors: string[] = []
  for (const entry of parseList(read('mirrors'))) {
    const name = repositoryInput('mirrors', entry, problems, false)
    if (!name) continue
    if (image && sameRepository(name, image)) {
      problems.add('mirrors', entry, 'is the image itself; list only copies')
    } else if (mirrors.some(known => sameRepository(known, name))) {
      core.warning(`mirrors: "${entry}" is listed twice; copying it once`)
    } else {
      mirrors.push(name)
    }
  }

  if ((pushByDigest || merging) && !push) {
    const name = pushByDigest ? 'push-by-digest' : 'digests'
    problems.add(
      'push',
      read('push') || 'false',
      `must not be false with ${name}, which exists to write to the registry`
    )
  }
  if (!push && mirrors.length > 0) {
    notice('mirrors: skipped, because push is false and nothing is pushed')
  } else if (pushByDigest && mirrors.length > 0) {
    notice('mirrors: skipped with push-by-digest; the merge job copies')
  }
  warnUnusedCredentials(
    credentials,
    [image, ...mirrors, source],
    [...cacheFrom, ...cacheTo]
  )

  // Builder.
  const driver = read('driver') || 'docker-container'
  if (!DRIVERS.includes(driver as Driver)) {
    problems.add('driver', driver, `is not one of ${DRIVERS.join(', ')}`)
  }
  if (pushByDigest && driver === 'docker') {
    // buildx refuses it: "push-by-digest is currently not implemented for
    // docker driver" (buildx 0.13, also the engine's containerd store).
    problems.add(
      'driver',
      driver,
      'cannot push by digest (push-by-digest); use docker-container or remote'
    )
  }
  const endpoint = read('endpoint')
  if (driver === 'remote' && !endpoint) {
    problems.add('endpoint', '', 'is required with driver: remote')
  }
  const driverOpts = parseList(read('driver-opts'))
  const nodes = nodeList(read('nodes'), problems)
  if (nodes.length > 0 && driver === 'docker') {
    problems.add(
      'nodes',
      nodes.map(node => node.endpoint).join(', '),
      'cannot be appended with driver: docker (the engine has one node); use docker-container or remote'
    )
  }
  if (nodes.length > 0 && read('builder')) {
    problems.add(
      'nodes',
      nodes.map(node => node.endpoint).join(', '),
      `cannot be appended to the existing builder ${read('builder')}; leave builder empty`
    )
  }
  const buildkitdConfig = read('buildkitd-config')
  const builder = read('builder')
  const network = read('network')

  // Emulation.
  const qemu = read('qemu') || 'auto'
  if (!['auto', 'true', 'false'].includes(qemu)) {
    problems.add('qemu', qemu, 'is not one of auto, true, false')
  }
  const qemuImage = read('qemu-image') || DEFAULT_QEMU_IMAGE
  try {
    parseReference(qemuImage)
  } catch (error) {
    problems.add(
      'qemu-image',
      qemuImage,
      `is not an image reference: ${message(error)}`
    )
  }

  // Attestations: off by default, so every common mirror accepts the index.
  const provenance = read('provenance') || 'false'
  const sbom = read('sbom') || 'false'
  for (const [name, value] of [
    ['provenance', provenance],
    ['sbom', sbom]
  ]) {
    if (!/^(true|false|[\w.-]+=[^,]*(,[\w.-]+=[^,]*)*)$/.test(value)) {
      problems.add(
        name,
        value,
        'is not true, false or key=value pairs such as mode=max'
      )
    }
  }
  if (driver === 'docker') {
    for (const [name, value] of [
      ['endpoint', endpoint],
      ['driver-opts', read('driver-opts')],
      ['buildkitd-config', buildkitdConfig]
    ]) {
      if (value)
        core.warning(
          `${name}: ignored with driver: docker (the engine's own builder)`
        )
    }
  }
  // Local files the build reads: a typo costs seconds here, not a failed
  // build after the emulators and the builder are up.
  const remoteContext = /^(https?|git|ssh):\/\/|^git@|\.git(#.*)?$/.test(
    context
  )
  if (!source && !merging && !remoteContext) {
    if (!isDirectory(context)) {
      problems.add('context', context, 'is not a directory')
    } else if (!isFile(file || join(context, 'Dockerfile'))) {
      problems.add(
        file ? 'file' : 'context',
        file || context,
        file ? 'is not a file' : 'holds no Dockerfile; set file'
      )
    }
  }
  if (buildkitdConfig && !isFile(buildkitdConfig)) {
    problems.add('buildkitd-config', buildkitdConfig, 'is not a file')
  }
  for (const {id, path} of secretFiles) {
    if (id && !isFile(path))
      problems.add('secret-files', `${id}=${path}`, 'names no file')
  }
  // TLS files of a builder's nodes: buildx would only time out on them.
  if (driver !== 'docker') {
    const opts: [string, string[]][] = [
      ['driver-opts', driverOpts],
      ...nodes.map((node, i): [string, string[]] => [
        `nodes (entry ${i + 1})`,
        node.driverOpts
      ])
    ]
    for (const [name, list] of opts) {
      for (const opt of list) {
        const [key, path] = opt.split(/=(.*)/s)
        if (TLS_FILES.includes(key) && !isFile(path ?? '')) {
          problems.add(name, opt, `names no file (${key})`)
        }
      }
    }
  }
  const noCache = booleanInput('no-cache', read('no-cache'), false, problems)
  const pull = booleanInput('pull', read('pull'), false, problems)
  const dryRun = booleanInput('dry-run', read('dry-run'), false, problems)

  // Mirrors: failure policy, retries, parallelism and a time limit each.
  const mirrorFailure = read('mirror-failure') || 'fail'
  if (!['fail', 'warn'].includes(mirrorFailure)) {
    problems.add('mirror-failure', mirrorFailure, 'is not fail or warn')
  }
  const mirrorAttempts = numberInput(
    'mirror-attempts',
    read('mirror-attempts'),
    3,
    problems,
    'attempts'
  )
  const mirrorRetryWait = numberInput(
    'mirror-retry-wait',
    read('mirror-retry-wait'),
    2,
    problems,
    'seconds'
  )
  const mirrorConcurrency = numberInput(
    'mirror-concurrency',
    read('mirror-concurrency'),
    3,
    problems,
    'mirrors at once'
  )
  const mirrorTimeout = numberInput(
    'mirror-timeout',
    read('mirror-timeout'),
    10,
    problems
  )
  for (const [name, value] of [
    ['mirror-attempts', mirrorAttempts],
    ['mirror-concurrency', mirrorConcurrency]
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > 20) {
      problems.add(name, String(value), 'must be a whole number from 1 to 20')
    }
  }
  if (mirrorRetryWait > 300) {
    problems.add(
      'mirror-retry-wait',
      String(mirrorRetryWait),
      'must be at most 300 seconds'
    )
  }
  if (mirrorTimeout <= 0) {
    problems.add(
      'mirror-timeout',
      String(mirrorTimeout),
      'must be more than 0 minutes'
    )
  }

  // Guards against emulated builds that crash or hang: generous defaults,
  // since one step under QEMU can be silent for many minutes.
  const buildTimeout = numberInput(
    'build-timeout',
    read('build-timeout'),
    300,
    problems
  )
  const stallTimeout = numberInput(
    'stall-timeout',
    read('stall-timeout'),
    60,
    problems
  )
  let debugPlatform = ''
  if (read('debug-platform')) {
    try {
      debugPlatform = formatPlatform(parsePlatform(read('debug-platform')))
      if (platforms.length > 0 && !platforms.includes(debugPlatform)) {
        problems.add(
          'debug-platform',
          read('debug-platform'),
          `is not one of platforms (${platforms.join(', ')})`
        )
      }
    } catch (error) {
      problems.add(
        'debug-platform',
        read('debug-platform'),
        `is not a platform: ${message(error)}`
      )
    }
  }

  // buildx pinned for this run.
  const buildxVersion = read('buildx-version')
  if (
    buildxVersion &&
    buildxVersion !== 'latest' &&
    !/^v?\d+\.\d+\.\d+(-[\w.]+)?$/.test(buildxVersion)
  ) {
    problems.add(
      'buildx-version',
      buildxVersion,
      'is not latest or a version such as v0.28.0'
    )
  }
  const buildxDownloadUrl = read('buildx-download-url') || DEFAULT_BUILDX_URL
  const userinfo = /^https?:\/\/([^/@]+)@/.exec(buildxDownloadUrl)?.[1]
  if (userinfo) {
    // Credentials in a mirror URL are secrets like any password.
    core.setSecret(userinfo)
    const password = userinfo.split(':')[1]
    if (password) core.setSecret(password)
  }
  if (!/^https?:\/\/\S+$/.test(buildxDownloadUrl)) {
    problems.add(
      'buildx-download-url',
      buildxDownloadUrl.replace(userinfo ?? '\0', '***'),
      'is not an http(s) URL'
    )
  } else if (
    buildxVersion &&
    /^http:/.test(buildxDownloadUrl) &&
    !/^http:\/\/(localhost|127\.|\[::1\])/.test(buildxDownloadUrl)
  ) {
    core.warning(
      'buildx-download-url: plain http; the checksums come from the same ' +
        'place as the binary, so only https protects them in transit'
    )
  }

  if (problems.list.length > 0) throw new InputError(problems.list)
  const inputs: Inputs = {
    image,
    tags,
    floatingTags: release.floating,
    version: version?.version ?? '',
    platforms,
    context,
    file,
    buildArgs,
    labels,
    annotations,
    target,
    secrets,
    secretFiles,
    cacheFrom,
    cacheTo,
    push,
    mirrors: pushByDigest ? [] : mirrors,
    credentials,
    driver: driver as Driver,
    endpoint,
    driverOpts,
    buildkitdConfig,
    builder,
    network,
    qemu: qemu as Inputs['qemu'],
    qemuImage,
    provenance,
    sbom,
    noCache,
    pull,
    dryRun,
    source,
    mirrorFailure: mirrorFailure as Inputs['mirrorFailure'],
    mirrorAttempts,
    mirrorRetryWait,
    mirrorConcurrency,
    mirrorTimeout,
    buildTimeout,
    stallTimeout,
    debugPlatform,
    buildxVersion,
    buildxDownloadUrl,
    pushByDigest,
    digests,
    nodes
  }
  core.debug(`Resolved inputs: ${JSON.stringify(redact(inputs))}`)
  return inputs
}

function repositoryInput(
  input: string,
  value: string,
  problems: Problems,
  required: boolean
): string {
  if (!value.trim()) {
    if (required) problems.add(input, value, 'is required')
    return ''
  }
  try {
    const reference = parseReference(value)
    if (reference.tag !== undefined || reference.digest !== undefined) {
      problems.add(
        input,
        value,
        'must be a repository without tag or digest (tags go in `tags`)'
      )
      return ''
    }
    const name = repositoryName(reference)
    if (reference.lowered) {
      notice(`${input}: repository "${value.trim()}" lower-cased to "${name}"`)
    }
    return name
  } catch (error) {
    problems.add(input, value, `is not a valid repository: ${message(error)}`)
    return ''
  }
}

export function sameRepository(a: string, b: string): boolean {
  return repositoryKey(parseReference(a)) === repositoryKey(parseReference(b))
}

function tagList(
  text: string,
  context: TagContext,
  problems: Problems
): Release {
  const given = parseList(text)
  if (given.length === 0) {
    const derived = defaultTags(context)
    if (!derived) {
      problems.add(
        'tags',
        text,
        `is empty and GITHUB_REF (${context.ref ?? 'unset'}) is not a tag ` +
          'push; give the tags to write, such as v1.2.3'
      )
      return {tags: [], floating: [], notices: []}
    }
    return derived
  }
  const tags: string[] = []
  for (const tag of given) {
    if (isTemplate(tag)) {
      // Template output counts as derived: cleaned, never rejected.
      const {tag: rendered, missing} = renderTemplate(tag, context)
      if (missing) {
        problems.add(
          'tags',
          tag,
          PLACEHOLDERS.includes(missing.replace(/[{}\s]/g, ''))
            ? `uses ${missing}, which has no value in this run`
            : `uses ${missing}, which is not a placeholder (accepted: ${PLACEHOLDERS.map(p => `{{${p}}}`).join(', ')})`
        )
      } else if (!rendered) {
        problems.add('tags', tag, 'renders to no valid tag')
      } else if (!tags.includes(rendered)) {
        tags.push(rendered)
      }
    } else if (tag.includes('/') || tag.includes(':')) {
      problems.add(
        'tags',
        tag,
        'is not a bare tag; put the repository in `image` (and copies in ' +
          '`mirrors`) and only the tag, such as v1.2.3, here'
      )
    } else if (!TAG.test(tag)) {
      const bad = [...tag].find(c => !/[\w.-]/.test(c))
      const why = bad
        ? `holds "${bad}", which Docker forbids in a tag`
        : 'must start with a letter, digit or _ and be at most 128 characters'
      problems.add('tags', tag, `${why} (allowed: letters, digits, _ . -)`)
    } else if (!tags.includes(tag)) {
      tags.push(tag)
    }
  }
  const floating = context.latest ? ['latest'] : []
  return {
    version: parseVersion(context.ref),
    tags: [...new Set([...tags, ...floating])],
    floating,
    notices: []
  }
}

function platformList(text: string, problems: Problems): string[] {
  const platforms: string[] = []
  const spellings = new Map<string, string[]>()
  for (const entry of parseList(text)) {
    try {
      const canonical = formatPlatform(parsePlatform(entry))
      if (!canonical.startsWith('linux/')) {
        problems.add(
          'platforms',
          entry,
          'is not a Linux platform; this action builds and emulates Linux images only'
        )
        continue
      }
      const seen = spellings.get(canonical)
      if (seen) {
        if (!seen.includes(entry)) seen.push(entry)
      } else {
        spellings.set(canonical, [entry])
        platforms.push(canonical)
      }
    } catch (error) {
      problems.add('platforms', entry, `is not a platform: ${message(error)}`)
    }
  }
  for (const [canonical, names] of spellings) {
    if (names.length > 1) {
      core.warning(
        `platforms: ${names.join(', ')} are the same platform (${canonical}); building it once`
      )
    }
  }
  if (platforms.length === 0 && problems.list.length === 0) {
    problems.add('platforms', text, 'names no platform')
  }
  return platforms
}

// digests: one platform=digest line per platform, as push-by-digest jobs
// print them in their platform-digest output.
function digestList(text: string, problems: Problems): PlatformDigest[] {
  const entries: PlatformDigest[] = []
  // One pair a line, as platform-digest outputs come; commas also part
  // pairs, as in every other list input.
  const lines = text.split(/\r?\n/)
  const pairs = lines.flatMap((line, index) =>
    line.split(',').map(pair => ({pair: pair.trim(), index}))
  )
  pairs.forEach(({pair: line, index}) => {
    if (!line) return
    const where = `line ${index + 1}`
    const at = line.lastIndexOf('=')
    if (at <= 0) {
      problems.add(
        'digests',
        line,
        `(${where}) is not platform=sha256:<64 hex>`
      )
      return
    }
    const digest = line.slice(at + 1).trim()
    let platform: string
    try {
      platform = formatPlatform(parsePlatform(line.slice(0, at)))
    } catch (error) {
      problems.add(
        'digests',
        line,
        `(${where}) has no valid platform: ${message(error)}`
      )
      return
    }
    if (!DIGEST.test(digest)) {
      problems.add(
        'digests',
        line,
        `(${where}) has no digest of the form sha256:<64 hex>`
      )
      return
    }
    if (entries.some(entry => entry.platform === platform)) {
      problems.add(
        'digests',
        line,
        `(${where}) repeats platform ${platform}; give one digest per platform`
      )
      return
    }
    entries.push({platform, digest})
  })
  return entries
}

// With digests, the platforms are the digests' own; an explicit platforms
// input must name exactly the same set.
function mergedPlatforms(
  text: string,
  digests: PlatformDigest[],
  problems: Problems
): string[] {
  const given = digests.map(entry => entry.platform)
  if (!text.trim()) return given
  const wanted = platformList(text, problems)
  for (const platform of wanted.filter(p => !given.includes(p))) {
    problems.add(
      'digests',
      platform,
      'is missing: platforms lists it, but no digests line gives its digest'
    )
  }
  for (const platform of given.filter(p => !wanted.includes(p))) {
    problems.add(
      'digests',
      platform,
      `is not one of platforms (${wanted.join(', ')})`
    )
  }
  return given
}

const NODE_KEYS = ['name', 'endpoint', 'platforms', 'driver-opts']

// nodes: a YAML list of {name?, endpoint, platforms, driver-opts?}; lists
// may be YAML lists or comma separated text.
// A YAML list of mappings with known keys (registry-auth, nodes). The
// parser's own messages quote the text around a problem, which may be a
// password: say where it is, never what it says.
function yamlEntries(
  input: string,
  text: string,
  keys: string[],
  problems: Problems
): {where: string; fields: Record<string, unknown>}[] {
  const shape = `a YAML list of {${keys.join(', ')}}`
  const document = parseDocument(text, {logLevel: 'silent', uniqueKeys: true})
  const trouble = [...document.errors, ...document.warnings]
  let entries: unknown
  if (trouble.length > 0) {
    const at = trouble[0].linePos?.[0]
    const where = at ? `line ${at.line}, column ${at.col}` : 'somewhere'
    problems.list.push(
      `${input}: is not valid YAML (${trouble[0].code} at ${where}); quote ` +
        'every value (values starting with * & ! | > % @ or a quote are ' +
        'YAML syntax)' +
        (input === 'registry-auth' ? ', or better, use password-env' : '')
    )
    return []
  }
  try {
    entries = document.toJS()
  } catch {
    // An alias such as `password: *secret` fails only here.
    problems.list.push(
      `${input}: is not valid YAML (an unquoted value starts with *, an ` +
        'alias); quote every value' +
        (input === 'registry-auth' ? ', or use password-env' : '')
    )
    return []
  }
  if (!Array.isArray(entries)) {
    problems.list.push(`${input}: must be ${shape}`)
    return []
  }
  return entries.flatMap((entry: unknown, index) => {
    const where = `${input} entry ${index + 1}`
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      problems.list.push(`${where}: must be a mapping of ${keys.join(', ')}`)
      return []
    }
    const fields = entry as Record<string, unknown>
    const unknown = Object.keys(fields).filter(key => !keys.includes(key))
    if (unknown.length > 0) {
      problems.list.push(
        `${where}: unknown ${unknown.join(', ')} (accepted: ${keys.join(', ')})`
      )
    }
    return [{where, fields}]
  })
}

function nodeList(text: string, problems: Problems): BuilderNode[] {
  if (!text.trim()) return []
  const nodes: BuilderNode[] = []
  for (const {where, fields} of yamlEntries(
    'nodes',
    text,
    NODE_KEYS,
    problems
  )) {
    // Scalars as text; a mapping where text belongs is reported.
    const text = (key: string, value: unknown): string => {
      if (value === undefined || value === null) return ''
      if (typeof value === 'string') return value.trim()
      if (typeof value === 'number' || typeof value === 'boolean') {
        return String(value)
      }
      problems.list.push(`${where}: ${key} must be text, not a ${typeof value}`)
      return ''
    }
    const list = (key: string): string[] => {
      const value = fields[key]
      return Array.isArray(value)
        ? value.map(item => text(key, item)).filter(Boolean)
        : parseList(text(key, value))
    }
    const name = text('name', fields.name)
    const endpoint = text('endpoint', fields.endpoint)
    if (name && !/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name)) {
      problems.list.push(
        `${where}: name ${JSON.stringify(name)} is not a valid node name (letters, digits, _ . -)`
      )
    }
    if (!endpoint) {
      problems.list.push(
        `${where}: endpoint is required (e.g. tcp://arm64-host:1234)`
      )
    }
    const platforms: string[] = []
    for (const entry of list('platforms')) {
      try {
        platforms.push(formatPlatform(parsePlatform(entry)))
      } catch (error) {
        problems.list.push(
          `${where}: platforms: ${JSON.stringify(entry)} is not a platform: ${message(error)}`
        )
      }
    }
    if (list('platforms').length === 0) {
      problems.list.push(
        `${where}: platforms is required (the platforms this node builds)`
      )
    }
    if (name && nodes.some(node => node.name === name)) {
      problems.list.push(`${where}: name ${name} is used twice`)
    }
    nodes.push({
      name,
      endpoint,
      platforms,
      driverOpts: list('driver-opts')
    })
  }
  return nodes
}

const AUTH_KEYS = ['registry', 'username', 'password', 'password-env']

// Every form of a password that could reach a log: as given, trimmed (what
// docker login keeps), each of its lines, and base64 of user:password.
function maskPassword(username: string, password: string): void {
  const forms = [password, password.trim(), ...password.split(/\r?\n/)]
  for (const form of new Set(forms.filter(f => f.trim().length >= 3))) {
    core.setSecret(form)
    core.setSecret(Buffer.from(`${username}:${form}`).toString('base64'))
  }
}

function credentialList(
  text: string,
  env: NodeJS.ProcessEnv,
  problems: Problems,
  pullRequest: boolean
): Credential[] {
  if (!text.trim()) return []
  const credentials: Credential[] = []
  const entries = yamlEntries('registry-auth', text, AUTH_KEYS, problems)
  for (const {where, fields} of entries) {
    const value = (name: string): string => {
      const field = fields[name]
      if (field === undefined || field === null) return ''
      if (typeof field === 'string') return field
      // YAML turns 007 into 7 and 1e3 into 1000: a password must be text.
      problems.list.push(
        `${where}: ${name} is not text to YAML (a ${typeof field}); ` +
          'quote it, or use password-env'
      )
      return ''
    }
    const registry = value('registry')
    const name = registry || 'Docker Hub'
    const username =
      typeof fields.username === 'number'
        ? String(fields.username)
        : value('username')
    const given = value('password')
    const passwordEnv = value('password-env')
    if (given && passwordEnv) {
      problems.list.push(
        `${where} (${name}): give password or password-env, not both`
      )
    }
    const password = passwordEnv ? (env[passwordEnv] ?? '') : given
    if (password) maskPassword(username, password)
    if (!username) {
      problems.list.push(`${where} (${name}): username is missing`)
      continue
    }
    if (!password && pullRequest) {
      // Pull requests from forks get no secrets; building still works.
      notice(
        `${where} (${name}): no password on a pull request; not logging in`
      )
      continue
    }
    if (!password) {
      const from = passwordEnv
        ? `environment variable ${passwordEnv} is empty or unset`
        : 'password (or password-env) is missing'
      problems.list.push(`${where} (${name}): ${from}`)
      continue
    }
    const key = registryKey(registry)
    if (credentials.some(known => known.key === key)) {
      problems.list.push(
        `registry-auth: registry "${registry || key}" is given twice; Docker ` +
          'keeps one identity per registry'
      )
      continue
    }
    credentials.push({registry: registry || key, key, username, password})
  }
  return credentials
}

// Secrets as build-push-action takes them: one id=value per line.
function secretList(
  lines: string[],
  problems: Problems
): {id: string; value: string}[] {
  return lines.flatMap((line, index) => {
    const at = line.indexOf('=')
    if (at <= 0) {
      // Quote only the part before '=': the rest may be the secret itself.
      problems.list.push(
        `secrets: entry ${index + 1} is not id=value (its value is not shown)`
      )
      return []
    }
    const value = line.slice(at + 1)
    if (value) core.setSecret(value)
    return [{id: line.slice(0, at), value}]
  })
}

// A credential for a registry the run never touches is most likely a typo
// in a host name; the login would succeed and the push would then fail.
function warnUnusedCredentials(
  credentials: Credential[],
  repositories: string[],
  cacheRefs: string[]
): void {
  const hosts = new Set(
    repositories.filter(Boolean).map(r => registryKey(parseReference(r).domain))
  )
  for (const entry of cacheRefs) {
    const ref = /(?:^|,)ref=([^,]+)/.exec(entry)?.[1]
    if (ref) {
      try {
        hosts.add(registryKey(parseReference(ref).domain))
      } catch {
        // An odd cache ref is buildx's to judge.
      }
    }
  }
  for (const credential of credentials) {
    if (!hosts.has(credential.key)) {
      core.warning(
        `registry-auth: ${credential.registry} is not the registry of image, ` +
          'mirrors or cache refs; check the host name'
      )
    }
  }
}

// OCI labels from the GitHub context, unless the user sets them.
export function withOciLabels(
  labels: string[],
  version: {version: string} | undefined,
  env: NodeJS.ProcessEnv
): string[] {
  const server = env.GITHUB_SERVER_URL || 'https://github.com'
  const repository = env.GITHUB_REPOSITORY
  const ours: Record<string, string | undefined> = {
    'org.opencontainers.image.source': repository && `${server}/${repository}`,
    'org.opencontainers.image.url': repository && `${server}/${repository}`,
    'org.opencontainers.image.revision': env.GITHUB_SHA,
    'org.opencontainers.image.version': version?.version,
    'org.opencontainers.image.created': new Date().toISOString()
  }
  const given = new Set(labels.map(label => label.split('=')[0]))
  const added = Object.entries(ours)
    .filter(([key, value]) => value && !given.has(key))
    .map(([key, value]) => `${key}=${value}`)
  return [...labels, ...added]
}

// Driver options that name a file on this runner (docker-container and
// remote TLS; kubernetes' are paths inside the cluster).
const TLS_FILES = ['cacert', 'cert', 'key']

const isFile = (path: string): boolean =>
  statSync(path, {throwIfNoEntry: false})?.isFile() ?? false
const isDirectory = (path: string): boolean =>
  statSync(path, {throwIfNoEntry: false})?.isDirectory() ?? false

function numberInput(
  input: string,
  value: string,
  fallback: number,
  problems: Problems,
  unit = 'minutes; 0 turns it off'
): number {
  const text = value.trim()
  if (!text) return fallback
  if (!/^-?\d+(\.\d+)?$/.test(text)) {
    problems.add(input, value, `is not a number (${unit})`)
    return fallback
  }
  const number = Number(text)
  if (number < 0) {
    problems.add(input, value, `must not be negative (${unit})`)
    return fallback
  }
  return number
}

function booleanInput(
  input: string,
  value: string,
  fallback: boolean,
  problems: Problems
): boolean {
  const text = value.trim()
  if (!text) return fallback
  if (['true', 'True', 'TRUE'].includes(text)) return true
  if (['false', 'False', 'FALSE'].includes(text)) return false
  problems.add(input, value, 'is not a boolean (true or false)')
  return fallback
}

function redact(inputs: Inputs): unknown {
  return {
    ...inputs,
    secrets: inputs.secrets.map(secret => secret.id),
    credentials: inputs.credentials.map(c => ({
      registry: c.registry,
      username: c.username
    }))
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
