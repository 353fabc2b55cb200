import * as core from '@actions/core'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {PhaseError, run} from './exec.js'
import type {Inputs} from './inputs.js'

// Build and push: one buildx build for every platform. The digest comes
// from buildx's metadata file, never from the log.

const PHASE = 'Build'

export interface Built {
  digest: string // index digest, '' when nothing was pushed
  metadata: Record<string, unknown>
}

export function buildArgs(
  inputs: Inputs,
  builder: string,
  metadataFile: string
): string[] {
  const args = ['buildx', 'build', '--builder', builder]
  args.push('--platform', inputs.platforms.join(','))
  if (inputs.file) args.push('--file', inputs.file)
  for (const tag of inputs.tags) args.push('--tag', `${inputs.image}:${tag}`)
  for (const arg of inputs.buildArgs) args.push('--build-arg', arg)
  for (const label of inputs.labels) args.push('--label', label)
  for (const note of inputs.annotations) args.push('--annotation', note)
  if (inputs.target) args.push('--target', inputs.target)
  inputs.secrets.forEach(({id}, index) =>
    args.push('--secret', `id=${id},env=${secretEnv(index)}`)
  )
  for (const {id, path} of inputs.secretFiles) {
    args.push('--secret', `id=${id},src=${path}`)
  }
  for (const cache of inputs.cacheFrom) args.push('--cache-from', cache)
  for (const cache of inputs.cacheTo) args.push('--cache-to', cache)
  if (inputs.network) args.push('--network', inputs.network)
  // `=` keeps a value such as `false` from being read as the build context.
  args.push(`--provenance=${inputs.provenance}`, `--sbom=${inputs.sbom}`)
  if (inputs.noCache) args.push('--no-cache')
  if (inputs.pull) args.push('--pull')
  if (inputs.push) args.push('--push')
  args.push('--metadata-file', metadataFile, inputs.context)
  return args
}

// Secret values travel to buildx in its environment, never in argv.
export const secretEnv = (index: number): string => `MULTIARCH_SECRET_${index}`

export function secretsEnvironment(inputs: Inputs): Record<string, string> {
  return Object.fromEntries(
    inputs.secrets.map(({value}, index) => [secretEnv(index), value])
  )
}

export function readDigest(metadata: Record<string, unknown>): string {
  const digest = metadata['containerimage.digest']
  return typeof digest === 'string' ? digest : ''
}

export async function build(
  inputs: Inputs,
  builder: string,
  tempDir: string
): Promise<Built> {
  const metadataFile = join(tempDir, 'metadata.json')
  await run({
    phase: PHASE,
    args: buildArgs(inputs, builder, metadataFile),
    subject: inputs.platforms.join(', '),
    echo: true,
    env: secretsEnvironment(inputs)
  })
  const metadata = JSON.parse(readFileSync(metadataFile, 'utf8')) as Record<
    string,
    unknown
  >
  const digest = readDigest(metadata)
  if (inputs.push && !digest) {
    throw new PhaseError(
      PHASE,
      `buildx wrote no containerimage.digest to ${metadataFile}`
    )
  }
  if (digest) core.info(`Pushed ${inputs.image}@${digest}`)
  return {digest, metadata}
}
