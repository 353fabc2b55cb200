// Image references after the distribution project's grammar
// (github.com/distribution/reference, regexp.go), kept to what the action
// needs: a repository with an optional tag or digest.

const alnum = '[a-z0-9]+'
const separator = '(?:[._]|__|[-]+)'
const pathComponent = `${alnum}(?:${separator}${alnum})*`
const domainComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
const domain = `(?:${domainComponent}(?:\\.${domainComponent})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`

const PATH = new RegExp(`^${pathComponent}(?:/${pathComponent})*$`)
const DOMAIN = new RegExp(`^${domain}$`)
export const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST =
  /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/

export const DOCKER_HUB = 'docker.io'
const HUB_SPELLINGS = ['docker.io', 'index.docker.io', 'registry-1.docker.io']

export interface Reference {
  // The registry host as the user wrote it (lower-cased), '' for Docker Hub
  // written without one.
  domain: string
  // Repository path, lower-cased.
  path: string
  tag?: string
  digest?: string
  // Set when the path had capitals that were lowered.
  lowered?: boolean
}

export class ReferenceError extends Error {}

export function parseReference(text: string): Reference {
  let rest = text.trim()
  if (!rest) throw new ReferenceError('empty reference')
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) {
      throw new ReferenceError(`invalid digest "${digest}"`)
    }
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) {
      throw new ReferenceError(
        tag ? `invalid tag "${tag}"` : 'empty tag after ":"'
      )
    }
  }
  const slash = rest.indexOf('/')
  const first = slash < 0 ? '' : rest.slice(0, slash)
  const isDomain =
    slash >= 0 &&
    (first.includes('.') || first.includes(':') || first === 'localhost')
  const host = isDomain ? first.toLowerCase() : ''
  const given = isDomain ? rest.slice(slash + 1) : rest
  const path = given.toLowerCase()
  if (isDomain && !DOMAIN.test(host)) {
    throw new ReferenceError(`invalid registry host "${first}"`)
  }
  if (!PATH.test(path)) {
    throw new ReferenceError(
      `invalid repository path "${given}" (lower-case letters, digits and ` +
        'separators . _ __ - between them, components split by /)'
    )
  }
  const reference: Reference = {domain: host, path}
  if (tag !== undefined) reference.tag = tag
  if (digest !== undefined) reference.digest = digest
  if (path !== given) reference.lowered = true
  return reference
}

// The repository as it goes on a command line: host as given, path lowered.
export function repositoryName(reference: Reference): string {
  return reference.domain
    ? `${reference.domain}/${reference.path}`
    : reference.path
}

// One key per registry, whatever spelling of Docker Hub was used.
export function registryKey(host: string): string {
  const lowered = host
    .trim()
    .toLowerCase()
    .replace(/^https?:\/\//, '')
  const bare = lowered.replace(/\/.*$/, '')
  return bare === '' || HUB_SPELLINGS.includes(bare) ? DOCKER_HUB : bare
}

// One key per repository: `ossrs/srs` and `docker.io/ossrs/srs` are equal,
// and so are `busybox` and `docker.io/library/busybox`.
export function repositoryKey(reference: Reference): string {
  return `${registryKey(reference.domain)}/${registryPath(reference)}`
}

// The repository's path on its registry: Hub keeps official images under
// library/.
export function registryPath(reference: Reference): string {
  return registryKey(reference.domain) === DOCKER_HUB &&
    !reference.path.includes('/')
    ? `library/${reference.path}`
    : reference.path
}
