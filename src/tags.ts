import * as core from '@actions/core'
import {notice} from './notes.js'
import {readFileSync} from 'node:fs'
import semver from 'semver'
import {attempt} from './exec.js'
import {TAG} from './reference.js'

// Release tags from the git tag, after the scheme SRS's release workflow
// computed by hand: a stable v5.0.123 is written as v5.0.123, 5.0.123, 5 and
// v5. The floating tags (5, v5, latest) move only for stable releases:
// semver X.Y.Z, and SRS's release tags vX.Y-rN. Pre-releases (semver
// -rc.1, -alpha, SRS's -aN, -bN, -dN) get only their own two tags.

export interface Version {
  // The git tag's name after its last '/', as pushed.
  name: string
  // Without the leading v, cleaned for Docker.
  version: string
  major?: number
  minor?: number
  patch?: number
  stable: boolean
}

export interface Release {
  version?: Version
  tags: string[]
  // The subset of tags that move from release to release.
  floating: string[]
  notices: string[]
}

// SRS cuts vX.Y-rN (release N of X.Y) and -aN, -bN, -dN (alpha, beta, dev).
const SRS_SHAPE = /^v?(\d+)\.(\d+)-([rabd])(\d+)$/

export function parseVersion(ref: string | undefined): Version | undefined {
  if (!ref?.startsWith('refs/tags/')) return undefined
  const name = ref.slice('refs/tags/'.length).split('/').pop() ?? ''
  if (!name) return undefined
  const bare = name.replace(/^v(?=\d)/, '')
  const parsed = semver.parse(bare)
  if (parsed) {
    return {
      name,
      version: cleanTag(bare),
      major: parsed.major,
      minor: parsed.minor,
      patch: parsed.patch,
      stable: parsed.prerelease.length === 0
    }
  }
  const srs = SRS_SHAPE.exec(name)
  if (srs) {
    return {
      name,
      version: bare,
      major: Number(srs[1]),
      minor: Number(srs[2]),
      stable: srs[3] === 'r'
    }
  }
  return {name, version: cleanTag(bare), stable: false}
}

// Runs of characters Docker forbids in a tag become one `-`.
export function cleanTag(name: string): string {
  const cleaned = name
    .replace(/[^\w.-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 128)
  return TAG.test(cleaned) ? cleaned : ''
}

export interface TagContext {
  ref?: string
  sha?: string
  latest: boolean
  // X.Y.Z read from a version file, when one is configured.
  fileVersion?: string
}

// The default scheme, when `tags` is empty.
export function defaultTags(context: TagContext): Release | undefined {
  const version = parseVersion(context.ref)
  if (!version) return undefined
  const notices: string[] = []
  const own = cleanTag(version.name)
  if (!own) return undefined
  if (own !== version.name) {
    notices.push(
      `git tag "${version.name}" holds characters Docker forbids in a tag; ` +
        `writing "${own}"`
    )
  }
  const tags = unique([own, version.version])
  const floating: string[] = []
  if (version.stable && version.major !== undefined) {
    floating.push(`${version.major}`, `v${version.major}`)
  } else {
    notices.push(
      `${version.name} is not a stable release; the major tags` +
        (context.latest ? ' and latest' : '') +
        ' stay where they are'
    )
  }
  if (context.latest && version.stable) floating.push('latest')
  return {version, tags: unique([...tags, ...floating]), floating, notices}
}

// Templates: {{tag}}, {{version}}, {{major}}, {{minor}}, {{patch}},
// {{sha}} and {{file_version}}. A placeholder with no value is an error,
// never an empty or partial tag.
export function renderTemplate(
  template: string,
  context: TagContext
): {tag?: string; missing?: string} {
  const version = parseVersion(context.ref)
  const values: Record<string, string | undefined> = {
    tag: version?.name,
    version: version?.version,
    major: version?.major?.toString(),
    minor: version?.minor?.toString(),
    patch: version?.patch?.toString(),
    sha: context.sha?.slice(0, 7),
    file_version: context.fileVersion
  }
  let missing: string | undefined
  const rendered = template.replace(
    /\{\{\s*(\w+)\s*\}\}/g,
    (whole, key: string) => {
      const value = values[key]
      if (value === undefined || value === '') missing ??= whole
      return value ?? ''
    }
  )
  if (missing) return {missing}
  return {tag: cleanTag(rendered)}
}

export const PLACEHOLDERS = [
  'tag',
  'version',
  'major',
  'minor',
  'patch',
  'sha',
  'file_version'
]

export const isTemplate = (text: string): boolean => /\{\{.*\}\}/.test(text)

// SRS keeps its version in three #defines; the default pattern reads one
// X.Y.Z, and a pattern with several groups joins them with dots.
export const DEFAULT_VERSION_PATTERN = '(\\d+\\.\\d+\\.\\d+)'

export function readFileVersion(path: string, pattern: string): string {
  const text = readFileSync(path, 'utf8')
  const match = new RegExp(pattern).exec(text)
  if (!match) return ''
  const groups = match.slice(1).filter(group => group !== undefined)
  return (groups.length > 0 ? groups : [match[0]]).join('.')
}

// Floating tags never move backwards: a tag that now points at a newer
// release than this one stays. Versions compare as semver when both are;
// otherwise by major.minor, and a tie lets the tag move.
export function isNewer(current: string, ours: string): boolean {
  const a = semver.coerce(current, {includePrerelease: true})
  const b = semver.coerce(ours, {includePrerelease: true})
  if (!a || !b) return false
  const strictA = semver.valid(current.replace(/^v/, ''))
  const strictB = semver.valid(ours.replace(/^v/, ''))
  if (strictA && strictB) return semver.gt(strictA, strictB)
  if (a.major !== b.major) return a.major > b.major
  return a.minor > b.minor
}

function unique(list: string[]): string[] {
  return [...new Set(list.filter(Boolean))]
}

export const labelArgs = (builder: string, ref: string): string[] => [
  'buildx',
  'imagetools',
  'inspect',
  ...(builder ? ['--builder', builder] : []),
  '--format',
  '{{json .Image}}',
  ref
]

// Before moving 5, v5 or latest, read the version label of what each points
// at now; a tag that holds a newer release stays where it is, so re-running
// an old release cannot roll users back.
export async function keepFloatingForward(
  repositories: string[],
  tags: string[],
  floating: string[],
  version: string,
  builder: string
): Promise<{tags: string[]; kept: string[]}> {
  const kept: string[] = []
  // Every destination is asked: a mirror may hold a newer release than
  // the image (a re-run after a failed mirror copy, say).
  for (const tag of floating) {
    for (const repository of repositories) {
      const ref = `${repository}:${tag}`
      const read = await attempt({phase: 'Tags', args: labelArgs(builder, ref)})
      if (read.exitCode !== 0) {
        if (/not found|manifest unknown/i.test(read.stderr)) continue
        core.warning(
          `Cannot read ${ref} (${read.stderr.trim()}); leaving ${tag} where it is`
        )
        kept.push(tag)
        break
      }
      const current = versionLabel(read.stdout)
      if (current && isNewer(current, version)) {
        notice(
          `${ref} holds ${current}, newer than ${version}; leaving ${tag} where it is`
        )
        kept.push(tag)
        break
      }
    }
  }
  return {tags: tags.filter(tag => !kept.includes(tag)), kept}
}

// `{{json .Image}}` prints one config, or a map of platform to config.
export function versionLabel(stdout: string): string {
  type Config = {config?: {Labels?: Record<string, string>}}
  const parsed = JSON.parse(stdout) as Config | Record<string, Config>
  const configs: Config[] =
    'config' in parsed
      ? [parsed]
      : Object.values(parsed as Record<string, Config>)
  for (const config of configs) {
    const label = config.config?.Labels?.['org.opencontainers.image.version']
    if (label) return label
  }
  return ''
}
