import * as core from '@actions/core'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {join} from 'node:path'
import {run} from './exec.js'
import type {Credential, Inputs} from './inputs.js'
import {parseReference, registryKey} from './reference.js'
import * as state from './state.js'

// Logins: every registry with credentials, the password on stdin only, into
// a Docker config directory of this run's own that the post step deletes.

const PHASE = 'Logins'

export const loginArgs = (credential: Credential): string[] => [
  'login',
  credential.registry,
  '--username',
  credential.username,
  '--password-stdin'
]

export const logoutArgs = (registry: string): string[] => ['logout', registry]

interface DockerConfig {
  auths?: Record<string, unknown>
  credsStore?: string
  credHelpers?: Record<string, string>
  cliPluginsExtraDirs?: string[]
  [key: string]: unknown
}

export const userConfigDir = (): string =>
  process.env.DOCKER_CONFIG || join(homedir(), '.docker')

// The run's config starts from the user's, so logins made in earlier steps
// keep working, but without credential stores: a copied credsStore would
// put this run's passwords into a keychain that outlives the job. CLI
// plugins (buildx itself) and buildx's builder store stay where they were.
export function runConfig(user: DockerConfig, userDir: string): DockerConfig {
  const config: DockerConfig = {...user}
  delete config.credsStore
  delete config.credHelpers
  config.auths = Object.fromEntries(
    Object.entries(user.auths ?? {}).filter(
      ([, entry]) => typeof (entry as {auth?: string}).auth === 'string'
    )
  )
  config.cliPluginsExtraDirs = [
    ...(user.cliPluginsExtraDirs ?? []),
    join(userDir, 'cli-plugins')
  ]
  return config
}

export function useRunConfig(tempDir: string): string {
  const userDir = userConfigDir()
  const file = join(userDir, 'config.json')
  const user = existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as DockerConfig)
    : {}
  const dir = join(tempDir, 'docker-config')
  mkdirSync(dir, {recursive: true, mode: 0o700})
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify(runConfig(user, userDir)),
    {
      mode: 0o600
    }
  )
  const buildxConfig = process.env.BUILDX_CONFIG || join(userDir, 'buildx')
  process.env.DOCKER_CONFIG = dir
  process.env.BUILDX_CONFIG = buildxConfig
  state.record({dockerConfig: dir, buildxConfig})
  core.info(`Docker config for this run: ${dir}`)
  return dir
}

// Registries that only mirrors use: with mirror-failure: warn, a login
// refused there must not stop the release, only those mirrors.
export function mirrorOnlyRegistries(inputs: Inputs): Set<string> {
  if (inputs.mirrorFailure !== 'warn') return new Set()
  const hostOf = (ref: string): string =>
    registryKey(parseReference(ref).domain)
  const used = new Set(
    [inputs.image, inputs.source].filter(Boolean).map(hostOf)
  )
  const caches = [...inputs.cacheFrom, ...inputs.cacheTo].join('\n')
  return new Set(
    inputs.mirrors
      .map(hostOf)
      .filter(host => !used.has(host) && !caches.includes(host))
  )
}

export async function login(
  credentials: Credential[],
  forgivable: Set<string> = new Set()
): Promise<string[]> {
  const done: string[] = []
  for (const credential of credentials) {
    core.info(`Logging in to ${credential.registry} as ${credential.username}`)
    try {
      await run({
        phase: PHASE,
        args: loginArgs(credential),
        subject: credential.registry,
        stdin: credential.password,
        timeoutMs: 120_000
      })
    } catch (error) {
      if (!forgivable.has(registryKey(credential.registry))) throw error
      core.warning(
        `${message(error)}\nmirror-failure: warn, so the release goes on; ` +
          `the mirrors on ${credential.registry} will fail.`,
        {title: `Login to ${credential.registry}`}
      )
      continue
    }
    done.push(credential.registry)
    state.record({logins: [...done]})
  }
  return done
}

const message = (error: unknown): string =>
  error instanceof Error ? error.message : String(error)
