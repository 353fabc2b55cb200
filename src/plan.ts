import * as core from '@actions/core'
import {buildArgs} from './build.js'
import {bootArgs, createArgs} from './builder.js'
import {emulatedPlatforms, installArgs, isRegistered} from './emulators.js'
import type {Inputs} from './inputs.js'
import {loginArgs} from './logins.js'
import {copyArgs, inspectArgs} from './mirrors.js'

// dry-run: every command the run would make, in order, and every tag on
// every registry, without running any of them.

const BUILDER = '<new builder>'
const DIGEST = '<digest>'

export function plan(inputs: Inputs): string[][] {
  const commands: string[][] = []
  const missing = emulatedPlatforms(inputs.platforms).filter(
    need => inputs.qemu === 'true' || !isRegistered(need.handler)
  )
  if (inputs.qemu !== 'false' && inputs.driver !== 'remote' && missing.length) {
    const names = [...new Set(missing.map(need => need.installName))]
    commands.push(['docker', ...installArgs(inputs.qemuImage, names)])
  }
  let builder = inputs.builder
  if (!builder && inputs.driver === 'docker') builder = 'default'
  if (!builder) {
    builder = BUILDER
    commands.push(['docker', ...createArgs(inputs, builder)])
  }
  commands.push(['docker', ...bootArgs(builder)])
  for (const credential of inputs.credentials) {
    commands.push(['docker', ...loginArgs(credential)])
  }
  commands.push(['docker', ...buildArgs(inputs, builder, '<metadata file>')])
  if (inputs.push) {
    const source = `${inputs.image}@${DIGEST}`
    for (const mirror of inputs.mirrors) {
      commands.push([
        'docker',
        ...copyArgs(builder, mirror, inputs.tags, source)
      ])
      for (const tag of inputs.tags) {
        commands.push(['docker', ...inspectArgs(builder, `${mirror}:${tag}`)])
      }
    }
  }
  return commands
}

const quote = (arg: string): string =>
  /^[\w@%+=:,./<>{}-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`

export async function printPlan(inputs: Inputs): Promise<void> {
  const lines = plan(inputs).map(command => command.map(quote).join(' '))
  const refs = inputs.push
    ? [inputs.image, ...inputs.mirrors].flatMap(repository =>
        inputs.tags.map(tag => `${repository}:${tag}`)
      )
    : []
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
