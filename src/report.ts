import * as core from '@actions/core'
import type {Inputs} from './inputs.js'
import type {MirrorResult, Published} from './mirrors.js'
import {notes} from './notes.js'

// Report: outputs for later steps and a job summary a maintainer can read
// at a glance: what was published where, at which digest.

export interface Timing {
  phase: string
  seconds: number
}

export interface Outcome {
  inputs: Inputs
  builder: string
  built: Published
  mirrors: MirrorResult[]
  timings: Timing[]
}

// The run's own image, when it built one (mirror-only mode has none).
const ownRefs = ({inputs, built}: Outcome): string[] =>
  built.digest && inputs.image
    ? inputs.tags.map(tag => `${inputs.image}:${tag}`)
    : []

export function writtenRefs(outcome: Outcome): string[] {
  const copied = outcome.mirrors
    .filter(m => m.status !== 'failed')
    .flatMap(m => m.refs)
  return [...ownRefs(outcome), ...copied]
}

export function setOutputs(outcome: Outcome): void {
  core.setOutput('digest', outcome.built.digest)
  core.setOutput('tags', writtenRefs(outcome).join('\n'))
  core.setOutput('platforms', outcome.built.platforms.join(','))
  core.setOutput('metadata', JSON.stringify(outcome.built.metadata))
  core.setOutput('mirrors', JSON.stringify(outcome.mirrors))
  core.setOutput('builder', outcome.builder)
  // One line a merge job takes as is into its digests input.
  const {inputs, built} = outcome
  core.setOutput(
    'platform-digest',
    inputs.pushByDigest && built.digest
      ? `${inputs.platforms[0]}=${built.digest}`
      : ''
  )
}

// Plain words only: the summary table is HTML, where Markdown shows as is.
export function mirrorStatus(mirror: MirrorResult): string {
  const retries = mirror.retries
  const after =
    retries > 0
      ? ` after ${retries} ${retries === 1 ? 'retry' : 'retries'}`
      : ''
  switch (mirror.status) {
    case 'done':
      return `copied, verified${after}`
    case 'up-to-date':
      return 'already up to date (every tag read back at this digest)'
    default:
      return `FAILED${after}: ${(mirror.reason ?? '').split('\n').join(' ')}`
  }
}

const short = (digest: string): string => digest.slice(0, 19) || '-'

export function summaryRows(outcome: Outcome): string[][] {
  const {inputs, built, mirrors} = outcome
  const rows: string[][] = []
  if (inputs.image) {
    const status = built.digest ? 'pushed' : 'built, not pushed'
    for (const tag of inputs.tags) {
      rows.push([inputs.image, tag, short(built.digest), status])
    }
  }
  for (const mirror of mirrors) {
    for (const tag of inputs.tags) {
      rows.push([
        mirror.mirror,
        tag,
        short(mirror.digest),
        mirrorStatus(mirror)
      ])
    }
  }
  return rows
}

export async function writeSummary(outcome: Outcome): Promise<void> {
  const {inputs, built, timings} = outcome
  const header = ['Repository', 'Tag', 'Digest', 'Status'].map(data => ({
    data,
    header: true
  }))
  const summary = core.summary
    .addHeading('Multi-platform release', 2)
    .addTable([header, ...summaryRows(outcome)])
    .addRaw(`Platforms: ${built.platforms.join(', ')}`, true)
  const children = Object.entries(built.children ?? {})
  if (children.length > 0) {
    summary.addList(
      children.map(([platform, digest]) => `${platform}: ${digest}`)
    )
  }
  if (inputs.pushByDigest && built.digest) {
    summary.addRaw(
      `Pushed by digest only (no tag); for the merge job's digests: ` +
        `${inputs.platforms[0]}=${built.digest}`,
      true
    )
  }
  const pulled = inputs.image || outcome.mirrors.find(m => m.digest)?.mirror
  if (built.digest && pulled) {
    summary.addCodeBlock(`docker pull ${pulled}@${built.digest}`, 'sh')
  }
  if (notes().length > 0) {
    summary.addHeading('Notes', 3).addList([...notes()])
  }
  summary.addRaw(
    `Timings: ${timings.map(t => `${t.phase} ${t.seconds}s`).join(', ')}`,
    true
  )
  if (process.env.GITHUB_STEP_SUMMARY) await summary.write()
}

// A failed run still says what went wrong, and what it had done by then.
export async function writeFailure(message: string): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const summary = core.summary
    .addHeading('Multi-platform release failed', 2)
    .addCodeBlock(message)
  if (notes().length > 0) {
    summary.addHeading('Notes', 3).addList([...notes()])
  }
  await summary.write()
}
