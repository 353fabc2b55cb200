import * as core from '@actions/core'
import {buildArgs} from './build.js'
import {appendArgs, bootArgs, createArgs, removeArgs} from './builder.js'
import {
  emulatedPlatforms,
  installArgs,
  isRegistered,
  localPlatforms
} from './emulators.js'
import type {Inputs} from './inputs.js'
import {loginArgs, logoutArgs} from './logins.js'
import {mergeArgs} from './merge.js'
import {copyArgs, inspectArgs, sourceRepository} from './mirrors.js'
import {labelArgs} from './tags.js'

// dry-run: every command the run would make, in order, the post step's
// included, and every tag on every registry, without running any of them.

const BUILDER = '<new builder>'
const DIGEST = '<digest>'

export function plan(inputs: Inputs): string[][] {
  const commands: string[][] = []
  const docker = (args: string[]): number => commands.push(['docker', ...args])
  if (inputs.buildxVersion) {
    commands.push([
      'download',
      `${inputs.buildxDownloadUrl}/${inputs.buildxVersion}/buildx-${inputs.buildxVersion}.linux-<arch>`,
      'and checksums.txt'
    ])
  }
  docker(['buildx', 'version'])
  const merging = inputs.digests.length > 0
  const copying = inputs.source !== '' || merging
  let builder = ''
  if (!copying) {
    const missing = emulatedPlatforms(localPlatforms(inputs)).filter(
      need => inputs.qemu === 'true' || !isRegistered(need.handler)
    )
    if (
      inputs.qemu !== 'false' &&
      inputs.driver !== 'remote' &&
      missing.length
    ) {
      const names = [...new Set(missing.map(need => need.installName))]
      docker(installArgs(inputs.qemuImage, names))
    }
    builder = inputs.builder || (inputs.driver === 'docker' ? 'default' : '')
    if (!builder) {
      builder = BUILDER
      docker(createArgs(inputs, builder))
      inputs.nodes.forEach((node, i) => docker(appendArgs(builder, node, i)))
    }
    docker(bootArgs(builder))
  }
  for (const credential of inputs.credentials) docker(loginArgs(credential))
  // Floating tags are read on every destination before they move.
  const destinations = [inputs.image, ...inputs.mirrors].filter(Boolean)
  for (const tag of inputs.push && inputs.version ? inputs.floatingTags : []) {
    destinations.forEach(repository =>
      docker(labelArgs(builder, `${repository}:${tag}`))
    )
  }
  let source = `${inputs.image}@${DIGEST}`
  if (merging) {
    const {image, tags, digests} = inputs
    docker(mergeArgs(image, tags, digests, true))
    docker(mergeArgs(image, tags, digests))
    docker(inspectArgs('', `${image}:${tags[0]}`))
    tags.slice(1).forEach(tag => commands.push(['GET', `${image}:${tag}`]))
  } else if (copying) {
    commands.push(['GET', inputs.source])
    source = `${sourceRepository(inputs.source)}@${DIGEST}`
  } else {
    docker(
      buildArgs(
        inputs,
        builder,
        '<metadata file>',
        inputs.debugPlatform ? 'plain' : 'rawjson'
      )
    )
    if (inputs.push) commands.push(['GET', source])
  }
  if (inputs.push) {
    // Reads and the writes after the first tag go straight to the registry
    // (GET, PUT); where it does not answer plainly, buildx does them
    // (imagetools inspect --raw, imagetools create from ${mirror}@digest).
    for (const mirror of inputs.mirrors) {
      const refs = inputs.tags.map(tag => `${mirror}:${tag}`)
      refs.forEach(ref => commands.push(['GET', ref]))
      docker(copyArgs(builder, mirror, inputs.tags.slice(0, 1), source))
      refs.slice(1).forEach(ref => commands.push(['PUT', ref, DIGEST]))
      refs.forEach(ref => commands.push(['GET', ref]))
    }
  }
  // The post step.
  if (!copying && builder === BUILDER) docker(removeArgs(builder))
  for (const credential of inputs.credentials)
    docker(logoutArgs(credential.registry))
  return commands
}

const quote = (arg: string): string =>
  /^[\w@%+=:,./<>{}-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`

export function plannedRefs(inputs: Inputs): string[] {
  if (inputs.pushByDigest) return []
  const repositories =
    inputs.push || inputs.source
      ? [inputs.image, ...inputs.mirrors].filter(Boolean)
      : []
  return repositories.flatMap(repository =>
    inputs.tags.map(tag => `${repository}:${tag}`)
  )
}

export async function printPlan(inputs: Inputs): Promise<void> {
  const lines = plan(inputs).map(command => command.map(quote).join(' '))
  const refs = plannedRefs(inputs)
  core.info('dry-run: nothing below is run')
  lines.forEach(line => core.info(line))
  core.info(`Tags that would be written:\n${refs.join('\n') || '(none)'}`)
  if (process.env.GITHUB_STEP_SUMMARY) {
    await core.summary
      .addHeading('Multi-platform release: dry run', 2)
      .addCodeBlock(lines.join('\n'), 'sh')
      .addList(refs)
      .write()
  }
}
