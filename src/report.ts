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

export function writtenRefs(outcome: Outcome): string[] {
  const {inputs, built, mirrors} = outcome
  if (!built.digest) return []
  const own = inputs.tags.map(tag => `${inputs.image}:${tag}`)
  const copied = mirrors.filter(m => m.status === 'done').flatMap(m => m.refs)
  return [...own, ...copied]
}

export function setOutputs(outcome: Outcome): void {
  core.setOutput('digest', outcome.built.digest)
  core.setOutput('tags', writtenRefs(outcome).join('\n'))
  core.setOutput('platforms', outcome.inputs.platforms.join(','))
  core.setOutput('metadata', JSON.stringify(outcome.built.metadata))
  core.setOutput('mirrors', JSON.stringify(outcome.mirrors))
  core.setOutput('builder', outcome.builder)
}

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
      return 'already up to date, verified'
    default:
      return `**failed**${after}: ${(mirror.reason ?? '').split('\n').join(' ')}`
  }
}

const short = (digest: string): string =>
  digest ? `\`${digest.slice(0, 19)}\`` : ''

export async function writeSummary(outcome: Outcome): Promise<void> {
  const {inputs, built, mirrors, timings} = outcome
  const header = ['Repository', 'Tag', 'Digest', 'Status'].map(data => ({
    data,
    header: true
  }))
  const rows: string[][] = []
  const pushed = built.digest ? 'pushed' : 'built, not pushed'
  for (const tag of inputs.tags) {
    rows.push([inputs.image, tag, short(built.digest), pushed])
  }
  for (const mirror of mirrors) {
    for (const tag of inputs.tags) {
      const status = mirrorStatus(mirror)
      rows.push([mirror.mirror, tag, short(mirror.digest), status])
    }
  }
  const summary = core.summary
    .addHeading('Multi-platform release', 2)
    .addTable([header, ...rows])
    .addRaw(`Platforms: ${inputs.platforms.join(', ')}`, true)
  if (built.digest) {
    summary.addCodeBlock(`docker pull ${inputs.image}@${built.digest}`, 'sh')
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
