import * as core from '@actions/core'
import {randomBytes} from 'node:crypto'
import {localPlatforms} from './emulators.js'
import {run} from './exec.js'
import type {BuilderNode, Inputs} from './inputs.js'
import * as state from './state.js'

// Builder: a fresh BuildKit for this run (docker-container or remote), the
// engine's own (docker), or one the user names (builder).

const PHASE = 'Builder'

export function builderName(runId = process.env.GITHUB_RUN_ID): string {
  const suffix = randomBytes(4).toString('hex')
  return runId ? `multiarch-${runId}-${suffix}` : `multiarch-${suffix}`
}

export function createArgs(inputs: Inputs, name: string): string[] {
  const args = ['buildx', 'create', '--name', name, '--driver', inputs.driver]
  // With nodes, the first node is pinned to the platforms no node declares:
  // buildx otherwise sends a platform to the first node that can run it,
  // emulated or not (seen with two BuildKit daemons on one host).
  const own = inputs.nodes.length > 0 ? localPlatforms(inputs) : []
  if (own.length > 0) args.push('--platform', own.join(','))
  for (const opt of inputs.driverOpts) args.push('--driver-opt', opt)
  if (inputs.buildkitdConfig) {
    args.push('--buildkitd-config', inputs.buildkitdConfig)
  }
  if (inputs.driver === 'remote') args.push(inputs.endpoint)
  return args
}

// One more BuildKit node in the builder, for the platforms it builds
// natively; buildx rm <builder> later removes it with the builder.
export function appendArgs(
  builder: string,
  node: BuilderNode,
  index: number
): string[] {
  const args = ['buildx', 'create', '--append', '--name', builder]
  args.push('--node', node.name || `${builder}-node${index + 1}`)
  args.push('--platform', node.platforms.join(','))
  for (const opt of node.driverOpts) args.push('--driver-opt', opt)
  args.push(node.endpoint)
  return args
}

export const bootArgs = (name: string): string[] => [
  'buildx',
  'inspect',
  '--bootstrap',
  '--builder',
  name
]

export const removeArgs = (name: string): string[] => ['buildx', 'rm', name]

export async function prepareBuilder(inputs: Inputs): Promise<string> {
  if (inputs.builder) {
    core.info(`Using the existing builder ${inputs.builder}`)
    await run({phase: PHASE, args: bootArgs(inputs.builder), echo: true})
    return inputs.builder
  }
  if (inputs.driver === 'docker') {
    // The docker driver is the engine's own BuildKit, named after the
    // current Docker context.
    const name = process.env.DOCKER_CONTEXT || 'default'
    core.info(`Using the Docker engine's own builder (${name})`)
    await run({phase: PHASE, args: bootArgs(name), echo: true})
    return name
  }
  const name = builderName()
  await run({phase: PHASE, args: createArgs(inputs, name), echo: true})
  state.record({builder: name})
  for (const [index, node] of inputs.nodes.entries()) {
    await run({
      phase: PHASE,
      args: appendArgs(name, node, index),
      subject: node.endpoint,
      echo: true
    })
  }
  try {
    await run({phase: PHASE, args: bootArgs(name), subject: name, echo: true})
  } catch (error) {
    const endpoints = [
      ...(inputs.driver === 'remote' ? [`endpoint ${inputs.endpoint}`] : []),
      ...inputs.nodes.map(
        (node, i) => `nodes entry ${i + 1} (${node.endpoint})`
      )
    ]
    if (endpoints.length === 0 || !(error instanceof Error)) throw error
    // buildx says only "context deadline exceeded" for an endpoint it
    // cannot reach or whose TLS handshake fails.
    error.message +=
      `\nThe builder could not reach every BuildKit of ` +
      `${endpoints.join(', ')}: check the address, that it listens, and ` +
      'the TLS files in driver-opts (cacert, cert, key) it needs.'
    throw error
  }
  return name
}

export async function removeBuilder(name: string): Promise<void> {
  await run({
    phase: 'Cleanup',
    args: removeArgs(name),
    subject: name,
    echo: true
  })
}
