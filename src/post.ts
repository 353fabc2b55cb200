import * as core from '@actions/core'
import {rmSync} from 'node:fs'
import {removeBuilder} from './builder.js'
import {run} from './exec.js'
import {logoutArgs} from './logins.js'
import * as state from './state.js'

// The post step undoes what main created, even when main failed; each
// cleanup failure is a warning, never a failed job.

export async function post(): Promise<void> {
  const created = state.load()
  if (created.dockerConfig) process.env.DOCKER_CONFIG = created.dockerConfig
  if (created.buildxConfig) process.env.BUILDX_CONFIG = created.buildxConfig

  if (created.builder) {
    const name = created.builder
    await undo(`Removing builder ${name}`, () => removeBuilder(name))
  }
  for (const registry of created.logins ?? []) {
    await undo(`Logging out of ${registry}`, async () => {
      await run({
        phase: 'Cleanup',
        args: logoutArgs(registry),
        subject: registry
      })
    })
  }
  for (const dir of [created.dockerConfig, created.tempDir]) {
    if (dir) {
      await undo(`Removing ${dir}`, async () => {
        rmSync(dir, {recursive: true, force: true})
        return Promise.resolve()
      })
    }
  }
}

async function undo(title: string, action: () => Promise<void>): Promise<void> {
  await core.group(title, async () => {
    try {
      await action()
    } catch (error) {
      core.warning(
        `${title} failed: ${error instanceof Error ? error.message : String(error)}`
      )
    }
  })
}
