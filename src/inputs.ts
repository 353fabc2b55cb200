import * as core from '@actions/core'
import {parse as parseYaml} from 'yaml'
import {parseList} from './lists.js'
import {formatPlatform, parsePlatform} from './platforms.js'
import {
  TAG,
  parseReference,
  registryKey,
  repositoryKey,
  repositoryName
} from './reference.js'
import {tagsFromRef} from './tags.js'

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
  platforms: string[]
  context: string
  file: string
  buildArgs: string[]
  labels: string[]
  target: string
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
}

export const DEFAULT_PLATFORMS = 'linux/amd64,linux/arm64/v8,linux/arm/v7'
// Pinned to the release many projects fell back to when QEMU 9.2 in
// binfmt:latest broke arm builds (tonistiigi/binfmt#240); moving it is a
// deliberate change, tested, never a surprise on release day.
export const DEFAULT_QEMU_IMAGE = 'docker.io/tonistiigi/binfmt:qemu-v7.0.0-28'
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

  // Image: a repository, tags come from `tags`.
  const image = repositoryInput('image', read('image'), problems, true)

  // Tags: bare tags, or the git tag of a tag push.
  const tags = tagList(read('tags'), env.GITHUB_REF, problems)

  // Platforms: normalised, duplicates in other spellings reported once.
  const platforms = platformList(
    read('platforms') || DEFAULT_PLATFORMS,
    problems
  )

  // Build settings passed through to buildx.
  const context = read('context') || '.'
  const file = read('file')
  const buildArgs = parseList(read('build-args'), true)
  for (const arg of buildArgs) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) {
      problems.add('build-args', arg, 'is not NAME=value (one per line)')
    } else if (/,\s*[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) {
      core.warning(
        `build-args: "${arg.split('=')[0]}=..." holds a comma followed by ` +
          'NAME=; build-args are split on newlines only, so this is one ' +
          'argument. Put each argument on its own line.'
      )
    }
  }
  const labels = parseList(read('labels'), true)
  const target = read('target')

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

  // Credentials: a YAML list of registry, username, password.
  const credentials = credentialList(read('registry-auth'), env, problems)

  // Builder.
  const driver = read('driver') || 'docker-container'
  if (!DRIVERS.includes(driver as Driver)) {
    problems.add('driver', driver, `is not one of ${DRIVERS.join(', ')}`)
  }
  const endpoint = read('endpoint')
  if (driver === 'remote' && !endpoint) {
    problems.add('endpoint', '', 'is required with driver: remote')
  }
  const driverOpts = parseList(read('driver-opts'))
  const buildkitdConfig = read('buildkitd-config')
  const builder = read('builder')
  const network = read('network')

  // Emulation.
  const qemu = read('qemu') || 'auto'
  if (!['auto', 'true', 'false'].includes(qemu)) {
    problems.add('qemu', qemu, 'is not one of auto, true, false')
  }
  const qemuImage = read('qemu-image') || DEFAULT_QEMU_IMAGE

  // Attestations: off by default, so every common mirror accepts the index.
  const provenance = read('provenance') || 'false'
  const sbom = read('sbom') || 'false'
  const noCache = booleanInput('no-cache', read('no-cache'), false, problems)
  const pull = booleanInput('pull', read('pull'), false, problems)
  const dryRun = booleanInput('dry-run', read('dry-run'), false, problems)

  if (problems.list.length > 0) throw new InputError(problems.list)
  const inputs: Inputs = {
    image,
    tags,
    platforms,
    context,
    file,
    buildArgs,
    labels,
    target,
    push,
    mirrors,
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
    dryRun
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
      core.notice(
        `${input}: repository "${value.trim()}" lower-cased to "${name}"`
      )
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
  ref: string | undefined,
  problems: Problems
): string[] {
  const given = parseList(text)
  if (given.length === 0) {
    const derived = tagsFromRef(ref)
    if (!derived) {
      problems.add(
        'tags',
        text,
        `is empty and GITHUB_REF (${ref ?? 'unset'}) is not a tag push; ` +
          'give the tags to write, such as v1.2.3'
      )
      return []
    }
    derived.notices.forEach(notice => core.notice(notice))
    return derived.tags
  }
  const tags: string[] = []
  for (const tag of given) {
    if (tag.includes('/') || tag.includes(':')) {
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
  return tags
}

function platformList(text: string, problems: Problems): string[] {
  const platforms: string[] = []
  const spellings = new Map<string, string[]>()
  for (const entry of parseList(text)) {
    try {
      const canonical = formatPlatform(parsePlatform(entry))
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

function credentialList(
  text: string,
  env: NodeJS.ProcessEnv,
  problems: Problems
): Credential[] {
  if (!text.trim()) return []
  let entries: unknown
  try {
    entries = parseYaml(text)
  } catch (error) {
    // The YAML parser quotes the offending line, which may hold a password.
    problems.list.push(
      `registry-auth: is not valid YAML (${firstLine(message(error))}); ` +
        'write a list of {registry, username, password} entries, or use ' +
        'password-env to keep quotes and backslashes out of YAML'
    )
    return []
  }
  if (!Array.isArray(entries)) {
    problems.list.push(
      'registry-auth: must be a YAML list of {registry, username, password}'
    )
    return []
  }
  const credentials: Credential[] = []
  entries.forEach((entry: unknown, index) => {
    const where = `registry-auth entry ${index + 1}`
    const fields = (entry ?? {}) as Record<string, unknown>
    // YAML reads a password such as 12345 as a number; take it as text.
    const text = (name: string): string => {
      const value = fields[name]
      return ['string', 'number', 'boolean'].includes(typeof value)
        ? String(value)
        : ''
    }
    const registry = text('registry')
    const username = text('username')
    let password = text('password')
    const passwordEnv = text('password-env')
    if (passwordEnv) password = env[passwordEnv] ?? ''
    if (password) {
      core.setSecret(password)
      core.setSecret(Buffer.from(`${username}:${password}`).toString('base64'))
    }
    if (!username) {
      problems.list.push(
        `${where} (${registry || 'Docker Hub'}): username is missing`
      )
      return
    }
    if (!password) {
      const from = passwordEnv
        ? `environment variable ${passwordEnv} is empty or unset`
        : 'password (or password-env) is missing'
      problems.list.push(`${where} (${registry || 'Docker Hub'}): ${from}`)
      return
    }
    const key = registryKey(registry)
    if (credentials.some(known => known.key === key)) {
      problems.list.push(
        `registry-auth: registry "${registry || key}" is given twice; Docker ` +
          'keeps one identity per registry'
      )
      return
    }
    credentials.push({registry: registry || key, key, username, password})
  })
  return credentials
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
    credentials: inputs.credentials.map(c => ({
      registry: c.registry,
      username: c.username
    }))
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function firstLine(text: string): string {
  return text.split('\n')[0]
}
