import {TAG} from './reference.js'

// Tags to write when the user gives none: the git tag of a tag push.
// TODO(#5): the SRS scheme (major and minor tags, templates, pre-releases).

export interface DerivedTags {
  tags: string[]
  notices: string[]
}

export function tagsFromRef(ref: string | undefined): DerivedTags | undefined {
  if (!ref?.startsWith('refs/tags/')) return undefined
  const name = ref.slice('refs/tags/'.length).split('/').pop() ?? ''
  const cleaned = cleanTag(name)
  if (!cleaned) return undefined
  const notices =
    cleaned === name
      ? []
      : [
          `git tag "${name}" holds characters Docker forbids; using "${cleaned}"`
        ]
  return {tags: [cleaned], notices}
}

// Runs of characters Docker forbids in a tag become one `-`.
export function cleanTag(name: string): string {
  const cleaned = name
    .replace(/[^\w.-]+/g, '-')
    .replace(/^[.-]+/, '')
    .slice(0, 128)
  return TAG.test(cleaned) ? cleaned : ''
}
