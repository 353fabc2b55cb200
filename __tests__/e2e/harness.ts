import {expect} from '@jest/globals'
import {spawnSync} from 'node:child_process'
import {
  existsSync,
  readFileSync,
  readdirSync,
  statSync,
  writeFileSync
} from 'node:fs'
import {join} from 'node:path'
import {ROOT, stackEnv, type Run} from '../../scripts/runner.mjs'

export {runAction, stackEnv, type Run} from '../../scripts/runner.mjs'
export const FIXTURES = join(ROOT, '__tests__/fixtures')

export const REG = {
  base: '127.0.0.1:5000',
  hub: '127.0.0.1:5001',
  m1: '127.0.0.1:5002',
  m2: '127.0.0.1:5003',
  m3: '127.0.0.1:5004'
}

export const USERS = {
  hub: {username: 'main-ci', password: 'Main#Pa55 w0rd$'},
  m1: {username: 'm1-ci', password: `M1'Pa55"w0rd`},
  m2: {username: 'm2-ci', password: 'M2\\Pa55;w0rd|'}
}

export const commandsOf = (run: Run, ...prefix: string[]): string[][] =>
  run.argv.filter(argv => prefix.every((word, i) => argv[i] === word))

// --- Reading registries over HTTP, as a client would. -----------------

const ACCEPT = [
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json'
].join(', ')

export interface Auth {
  username: string
  password: string
}

const headers = (auth?: Auth): Record<string, string> =>
  auth
    ? {
        Authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`,
        Accept: ACCEPT
      }
    : {Accept: ACCEPT}

export async function manifest(
  registry: string,
  repository: string,
  reference: string,
  auth?: Auth
): Promise<{
  status: number
  digest: string
  body: Record<string, unknown>
  mediaType: string
}> {
  const response = await fetch(
    `http://${registry}/v2/${repository}/manifests/${reference}`,
    {headers: headers(auth)}
  )
  const text = await response.text()
  return {
    status: response.status,
    digest: response.headers.get('docker-content-digest') ?? '',
    mediaType: response.headers.get('content-type') ?? '',
    body: response.ok ? (JSON.parse(text) as Record<string, unknown>) : {}
  }
}

// The attestation manifests an index lists (platform unknown/unknown),
// each with the media type of its config and whether it names a subject:
// the legacy form has an image config and no subject; the OCI artifact
// form has application/vnd.oci.empty.v1+json and a subject.
export async function attestationsOf(
  registry: string,
  repository: string,
  reference: string,
  auth?: Auth
): Promise<{config: string; subject: boolean; artifactType?: string}[]> {
  const index = await manifest(registry, repository, reference, auth)
  const entries = (index.body.manifests ?? []) as {
    digest: string
    platform?: {os?: string}
  }[]
  const found = []
  for (const entry of entries.filter(e => e.platform?.os === 'unknown')) {
    const {body} = await manifest(registry, repository, entry.digest, auth)
    found.push({
      config: (body.config as {mediaType: string}).mediaType,
      subject: body.subject !== undefined,
      ...(typeof body.artifactType === 'string'
        ? {artifactType: body.artifactType}
        : {})
    })
  }
  return found
}

export async function tagList(
  registry: string,
  repository: string,
  auth?: Auth
): Promise<string[]> {
  const response = await fetch(
    `http://${registry}/v2/${repository}/tags/list`,
    {headers: headers(auth)}
  )
  if (response.status === 404) return []
  const body = (await response.json()) as {tags?: string[] | null}
  return (body.tags ?? []).sort()
}

export async function blobExists(
  registry: string,
  repository: string,
  digest: string,
  auth?: Auth
): Promise<boolean> {
  const response = await fetch(
    `http://${registry}/v2/${repository}/blobs/${digest}`,
    {method: 'HEAD', headers: headers(auth)}
  )
  return response.status === 200
}

// A repository name unique to one test, so tests never see each other.
export function uniqueRepo(prefix: string): string {
  return `${prefix}/app-${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`
}

export function authYaml(...names: (keyof typeof USERS)[]): string {
  return names
    .map(
      name =>
        `- registry: ${REG[name]}\n  username: ${USERS[name].username}\n  password-env: PW_${name.toUpperCase()}`
    )
    .join('\n')
}

export const passwordEnv = (): Record<string, string> => ({
  PW_HUB: USERS.hub.password,
  PW_M1: USERS.m1.password,
  PW_M2: USERS.m2.password
})

// A registry's access log (Distribution's own), for "who wrote what" checks.
export function registryLog(name: 'hub' | 'm1' | 'm2' | 'm3'): string {
  const state = stackEnv().MA_STACK_STATE ?? '/var/tmp/multiarch-stack'
  return readFileSync(join(state, 'log', `registry-${name}.log`), 'utf8')
}

// Request lines (method and path) that mention a repository.
export function requestsFor(
  name: 'hub' | 'm1' | 'm2' | 'm3',
  repo: string
): string[] {
  return registryLog(name)
    .split('\n')
    .filter(
      line =>
        line.includes(`/v2/${repo}/`) &&
        /"(GET|HEAD|PUT|POST|PATCH|DELETE) /.test(line)
    )
}

// How the action copies into a mirror: the first create carries the blobs
// from the source, any other writes the remaining tags from the mirror's
// own copy (manifests only). Returns the tags written, in order.
// The blobs cross once: one create from the source writes the first tag,
// and the other tags get the manifest written directly (the log names
// them); on this stack's registries nothing needs the fallback. Returns
// the tags written, in that order.
export function expectCopiedOnce(
  run: Run,
  mirror: string,
  source: string
): string[] {
  const creates = commandsOf(run, 'buildx', 'imagetools', 'create').filter(
    create => create.some(arg => arg.startsWith(`${mirror}:`))
  )
  expect(creates).toHaveLength(1)
  expect(creates[0][creates[0].length - 1]).toBe(source)
  const first = creates[0]
    .filter((_, i) => creates[0][i - 1] === '--tag')
    .map(ref => ref.slice(mirror.length + 1))
  expect(first).toHaveLength(1)
  return [...first, ...directWrites(run, mirror, source.split('@')[1])]
}

// The tags the action wrote straight to a mirror, as its log names them.
export function directWrites(
  run: Run,
  mirror: string,
  digest: string
): string[] {
  return [
    ...run.stdout.matchAll(
      new RegExp(`^${escape(mirror)}: wrote ${digest} to (.*)$`, 'gm')
    )
  ].flatMap(match => match[1].split(', '))
}

const escape = (text: string): string =>
  text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

export function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })
}

// No password, nor base64 of user:password, anywhere a runner keeps text.
export function expectNoSecret(run: Run): void {
  for (const {username, password} of Object.values(USERS)) {
    for (const form of [
      password,
      Buffer.from(`${username}:${password}`).toString('base64')
    ]) {
      const logged = run.stdout
        .split('\n')
        .filter(line => !line.startsWith('::add-mask::'))
        .join('\n')
      expect(logged).not.toContain(form)
      expect(JSON.stringify(run.argv)).not.toContain(form)
      expect(JSON.stringify(run.outputs)).not.toContain(form)
      expect(run.summary).not.toContain(form)
      expect(run.post.stdout).not.toContain(form)
      // The runner's own files: saved state, outputs, summary, RUNNER_TEMP.
      const files = [
        ...filesUnder(run.runnerTemp),
        ...['state', 'output', 'summary'].map(name => join(run.dir, name))
      ]
      for (const file of files) {
        expect(readFileSync(file, 'utf8')).not.toContain(form)
      }
      for (const file of filesUnder(join(run.dir, 'user-docker-config'))) {
        expect(readFileSync(file, 'utf8')).not.toContain(form)
      }
    }
  }
}

// Registry writes (PUT, POST, PATCH, DELETE) that touched a repository.
export const writesFor = (
  name: 'hub' | 'm1' | 'm2' | 'm3',
  repo: string
): string[] =>
  requestsFor(name, repo).filter(line => /"(PUT|POST|PATCH|DELETE) /.test(line))

// The docker CLI against the stack, outside any action run.
export function docker(...args: string[]): {status: number; stdout: string} {
  const out = spawnSync('docker', args, {
    encoding: 'utf8',
    env: {...process.env, ...stackEnv()}
  })
  return {status: out.status ?? -1, stdout: out.stdout}
}

// `docker buildx ls` as the run's user sees it: the builders left in the
// Docker config the run started from.
export function buildersAfter(run: Run): {status: number; stdout: string} {
  const out = spawnSync('docker', ['buildx', 'ls'], {
    encoding: 'utf8',
    env: {
      ...process.env,
      ...stackEnv(),
      DOCKER_CONFIG: join(run.dir, 'user-docker-config')
    }
  })
  return {status: out.status ?? -1, stdout: out.stdout}
}

// The kernel's binfmt_misc table, which emulator tests change and restore.
export const STANDIN = `${REG.base}/test/binfmt-standin:1`
export const BINFMT = '/proc/sys/fs/binfmt_misc'
export const HANDLERS = ['qemu-aarch64', 'qemu-arm']

export const registered = (handler: string): boolean =>
  existsSync(join(BINFMT, handler)) &&
  readFileSync(join(BINFMT, handler), 'utf8').startsWith('enabled')

export function unregister(handler: string): void {
  if (existsSync(join(BINFMT, handler)))
    writeFileSync(join(BINFMT, handler), '-1')
}

// Puts back the handlers a test removed, with the stand-in installer.
export function restoreHandlers(): void {
  if (HANDLERS.every(registered)) return
  docker('run', '--rm', '--privileged', STANDIN, '--install', 'arm64,arm')
}
