import {spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  REG,
  USERS,
  manifest,
  stackEnv,
  uniqueRepo,
  type Auth
} from './harness.js'
import {
  startFaultProxy,
  type FaultProxy,
  type FaultRule,
  type RequestLine
} from './fault-proxy.mjs'

// The fault-injecting proxy itself, against the stack's real registries:
// m3 (127.0.0.1:5004, no auth) and m2 (127.0.0.1:5003, basic auth), with
// fetch and with a real `docker buildx imagetools create`.

const SOURCE = `${REG.base}/base/busybox:1`
const INDEX = 'application/vnd.oci.image.index.v1+json'
const IMAGE = 'application/vnd.oci.image.manifest.v1+json'

const proxies: FaultProxy[] = []
const dirs: string[] = []

async function proxy(
  target: string,
  rules: FaultRule[] = [],
  delayMs?: number
): Promise<FaultProxy> {
  const started = await startFaultProxy({target, rules, delayMs})
  proxies.push(started)
  return started
}

afterAll(async () => {
  await Promise.all(proxies.map(async started => started.stop()))
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true})
})

const sha256 = (data: string | Buffer): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`

const basic = (auth?: Auth): Record<string, string> =>
  auth
    ? {
        Authorization: `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`
      }
    : {}

// Uploads one blob the way clients do: POST for an upload URL, then PUT to
// the Location the registry answered with.
async function pushBlob(
  address: string,
  repository: string,
  data: string,
  auth?: Auth
): Promise<{location: string; status: number}> {
  const start = await fetch(
    `http://${address}/v2/${repository}/blobs/uploads/`,
    {
      method: 'POST',
      headers: basic(auth)
    }
  )
  expect(start.status).toBe(202)
  const location = start.headers.get('location') ?? ''
  const url = new URL(location, `http://${address}`)
  url.searchParams.set('digest', sha256(data))
  const put = await fetch(url, {
    method: 'PUT',
    headers: {...basic(auth), 'Content-Type': 'application/octet-stream'},
    body: data
  })
  await put.arrayBuffer()
  return {location, status: put.status}
}

// A tiny image (an empty config, no layers) whose manifest the tests PUT.
function tinyManifest(config: string): string {
  return JSON.stringify({
    schemaVersion: 2,
    mediaType: IMAGE,
    config: {
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: sha256(config),
      size: Buffer.byteLength(config)
    },
    layers: []
  })
}

async function putManifest(
  address: string,
  repository: string,
  reference: string,
  body: string,
  auth?: Auth
): Promise<Response> {
  return fetch(`http://${address}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: {...basic(auth), 'Content-Type': IMAGE},
    body
  })
}

interface Copy {
  status: number
  output: string
  ms: number
}

// `docker buildx imagetools create` from the base registry to dest, with a
// DOCKER_CONFIG of its own holding the given registries' credentials.
function imagetools(dest: string, auths: Record<string, Auth> = {}): Copy {
  const config = mkdtempSync(join(tmpdir(), 'fault-proxy-docker-'))
  dirs.push(config)
  const entries: Record<string, {auth: string}> = {}
  for (const [registry, auth] of Object.entries(auths)) {
    const pair = `${auth.username}:${auth.password}`
    entries[registry] = {auth: Buffer.from(pair).toString('base64')}
  }
  writeFileSync(join(config, 'config.json'), JSON.stringify({auths: entries}))
  const started = Date.now()
  const out = spawnSync(
    'docker',
    ['buildx', 'imagetools', 'create', '-t', dest, SOURCE],
    {
      encoding: 'utf8',
      env: {...process.env, ...stackEnv(), DOCKER_CONFIG: config},
      timeout: 60_000
    }
  )
  return {
    status: out.status ?? -1,
    output: `${out.stdout}${out.stderr}`,
    ms: Date.now() - started
  }
}

const manifestPuts = (lines: RequestLine[]): RequestLine[] =>
  lines.filter(line => line.method === 'PUT' && /\/manifests\//.test(line.path))

let source: Awaited<ReturnType<typeof manifest>>
const platformDigests = (): string[] =>
  (source.body.manifests as {digest: string}[]).map(entry => entry.digest)

beforeAll(async () => {
  source = await manifest(REG.base, 'base/busybox', '1')
  expect(source.status).toBe(200)
  expect(platformDigests().length).toBeGreaterThan(1)
})

describe('plain forwarding', () => {
  test('forwards requests and keeps upload Locations on the proxy', async () => {
    const fp = await proxy(REG.m3)
    const repository = uniqueRepo('fault-proxy')

    const ping = await fetch(`http://${fp.address}/v2/`)
    expect(ping.status).toBe(200)
    expect(ping.headers.get('docker-distribution-api-version')).toBe(
      'registry/2.0'
    )

    const config = `{"probe":"${repository}"}`
    const blob = await pushBlob(fp.address, repository, config)
    // Distribution builds the upload URL from the Host it was sent.
    expect(new URL(blob.location).host).toBe(fp.address)
    expect(blob.status).toBe(201)

    const body = tinyManifest(config)
    const put = await putManifest(fp.address, repository, 'v1', body)
    expect(put.status).toBe(201)
    expect(put.headers.get('docker-content-digest')).toBe(sha256(body))
    expect(new URL(put.headers.get('location') ?? '').host).toBe(fp.address)

    // The target itself holds what went through the proxy.
    const landed = await manifest(REG.m3, repository, 'v1')
    expect(landed.digest).toBe(sha256(body))

    expect(
      fp.requests().map(line => [line.method, line.status, line.rule])
    ).toEqual([
      ['GET', 200, null],
      ['POST', 202, null],
      ['PUT', 201, null],
      ['PUT', 201, null]
    ])
  })

  test('passes basic auth challenges and credentials through', async () => {
    const fp = await proxy(REG.m2)
    const anonymous = await fetch(`http://${fp.address}/v2/`)
    expect(anonymous.status).toBe(401)
    expect(anonymous.headers.get('www-authenticate')).toMatch(/^Basic /)
    const signed = await fetch(`http://${fp.address}/v2/`, {
      headers: basic(USERS.m2)
    })
    expect(signed.status).toBe(200)
    expect(fp.requests().map(line => line.status)).toEqual([401, 200])
  })

  test('imagetools create copies a multi-platform image through it', async () => {
    const fp = await proxy(REG.m3)
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).toBe(0)

    const landed = await manifest(REG.m3, repository, 'copy')
    expect(landed.digest).toBe(source.digest)
    const lines = fp.requests()
    expect(lines.every(line => line.status !== null && line.status < 500)).toBe(
      true
    )
    expect(lines.filter(line => line.contentType === INDEX)).not.toHaveLength(0)
  })

  test('imagetools create with credentials reaches the auth registry', async () => {
    const fp = await proxy(REG.m2)
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`, {
      [fp.address]: USERS.m2
    })
    expect(copy.status).toBe(0)

    const landed = await manifest(REG.m2, repository, 'copy', USERS.m2)
    expect(landed.digest).toBe(source.digest)
    // Challenged first, then sent with the credentials.
    const statuses = fp.requests().map(line => line.status)
    expect(statuses).toContain(401)
    expect(statuses).toContain(201)
  })
})

describe('status rules', () => {
  const injected = {
    errors: [
      {
        code: 'MANIFEST_INVALID',
        message: 'injected by the fault proxy',
        detail: {rule: 0}
      }
    ]
  }

  test('the first manifest PUT gets a 500 once, the next one lands', async () => {
    const fp = await proxy(REG.m3, [
      {
        method: 'PUT',
        path: '/manifests/',
        times: 1,
        action: 'status',
        status: 500,
        body: injected
      }
    ])
    const repository = uniqueRepo('fault-proxy')
    const config = '{}'
    await pushBlob(fp.address, repository, config)
    const body = tinyManifest(config)

    const first = await putManifest(fp.address, repository, 'v1', body)
    expect(first.status).toBe(500)
    expect(first.headers.get('content-type')).toBe('application/json')
    expect(await first.json()).toEqual(injected)
    expect((await manifest(REG.m3, repository, 'v1')).status).toBe(404)

    const second = await putManifest(fp.address, repository, 'v1', body)
    expect(second.status).toBe(201)
    expect((await manifest(REG.m3, repository, 'v1')).digest).toBe(sha256(body))

    expect(
      manifestPuts(fp.requests()).map(line => [line.status, line.rule])
    ).toEqual([
      [500, 0],
      [201, null]
    ])
  })

  test('buildx retries a manifest PUT answered 500 once and succeeds', async () => {
    const fp = await proxy(REG.m3, [
      {
        method: 'PUT',
        path: '/manifests/',
        times: 1,
        action: 'status',
        status: 500,
        body: injected
      }
    ])
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).toBe(0)
    expect((await manifest(REG.m3, repository, 'copy')).digest).toBe(
      source.digest
    )
    const puts = manifestPuts(fp.requests())
    expect(puts[0]).toMatchObject({status: 500, rule: 0, action: 'status'})
    expect(puts.slice(1).every(line => line.status === 201)).toBe(true)
  })

  test('buildx gives up after retrying a manifest PUT that keeps failing', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'PUT', path: '/manifests/', action: 'status', status: 500}
    ])
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).not.toBe(0)
    expect(copy.output).toContain('500 Internal Server Error')
    const puts = manifestPuts(fp.requests())
    expect(puts.length).toBeGreaterThan(1)
    expect(puts.every(line => line.status === 500 && line.rule === 0)).toBe(
      true
    )
  })

  test('a rejected index leaves the tag on one platform manifest', async () => {
    const fp = await proxy(REG.m3, [
      {
        method: 'PUT',
        contentType: 'image.index',
        action: 'status',
        status: 400,
        body: injected
      }
    ])
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).not.toBe(0)
    expect(copy.output).toContain('400 Bad Request')
    // buildx pushes the platform manifests to the tag before the index.
    const left = await manifest(REG.m3, repository, 'copy')
    expect(left.status).toBe(200)
    expect(left.mediaType).toBe(IMAGE)
    expect(platformDigests()).toContain(left.digest)
  })
})

describe('reset rules', () => {
  test('a reset request fails at the client, the next one passes', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'GET', path: '^/v2/$', times: 1, action: 'reset'}
    ])
    const failure = await fetch(`http://${fp.address}/v2/`).then(
      () => null,
      (error: Error & {cause?: {code?: string}}) => error
    )
    // fetch's TypeError comes from another realm than jest's: no instanceof.
    expect(failure?.message).toBe('fetch failed')
    expect(failure?.cause?.code).toMatch(/ECONNRESET|UND_ERR_SOCKET/)
    expect((await fetch(`http://${fp.address}/v2/`)).status).toBe(200)
    expect(fp.requests()).toMatchObject([
      {method: 'GET', status: null, rule: 0, action: 'reset'},
      {method: 'GET', status: 200, rule: null, action: 'forward'}
    ])
  })

  test('buildx retries a manifest PUT whose connection was reset', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'PUT', path: '/manifests/', times: 1, action: 'reset'}
    ])
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).toBe(0)
    expect((await manifest(REG.m3, repository, 'copy')).digest).toBe(
      source.digest
    )
    expect(manifestPuts(fp.requests())[0]).toMatchObject({
      status: null,
      action: 'reset'
    })
  })
})

describe('ack rules', () => {
  test('a manifest PUT is acknowledged but never lands', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'PUT', path: '/manifests/', action: 'ack'}
    ])
    const repository = uniqueRepo('fault-proxy')
    const body = tinyManifest('{}')
    const put = await putManifest(fp.address, repository, 'v1', body)
    expect(put.status).toBe(201)
    expect(put.headers.get('docker-content-digest')).toBe(sha256(body))
    expect(put.headers.get('location')).toBe(
      `http://${fp.address}/v2/${repository}/manifests/${sha256(body)}`
    )
    expect((await manifest(REG.m3, repository, 'v1')).status).toBe(404)
    expect(fp.requests()).toMatchObject([
      {method: 'PUT', status: 201, rule: 0, action: 'ack', contentType: IMAGE}
    ])
  })

  test('imagetools create reports success for manifests that never landed', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'PUT', path: '/manifests/', action: 'ack'}
    ])
    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).toBe(0)
    expect((await manifest(REG.m3, repository, 'copy')).status).toBe(404)
    const puts = manifestPuts(fp.requests())
    expect(puts.every(line => line.action === 'ack')).toBe(true)
    expect(puts.some(line => line.contentType === INDEX)).toBe(true)
  })
})

describe('delays', () => {
  test('delayMs slows every request by at least that much', async () => {
    const delayMs = 150
    const fp = await proxy(REG.m3, [], delayMs)
    for (let i = 0; i < 3; i++) {
      const started = Date.now()
      const response = await fetch(`http://${fp.address}/v2/`)
      expect(response.status).toBe(200)
      expect(Date.now() - started).toBeGreaterThanOrEqual(delayMs)
    }

    const repository = uniqueRepo('fault-proxy')
    const copy = imagetools(`${fp.address}/${repository}:copy`)
    expect(copy.status).toBe(0)
    expect(copy.ms).toBeGreaterThanOrEqual(delayMs)
    const lines = fp.requests()
    expect(lines.length).toBeGreaterThan(3)
    for (const line of lines) expect(line.ms).toBeGreaterThanOrEqual(delayMs)
  })

  test('a delay rule holds a request until the client gives up', async () => {
    const fp = await proxy(REG.m3, [
      {method: 'GET', path: '^/v2/$', times: 1, action: 'delay', delayMs: 5000}
    ])
    const started = Date.now()
    const failure = await fetch(`http://${fp.address}/v2/`, {
      signal: AbortSignal.timeout(300)
    }).then(
      () => null,
      (error: Error) => error
    )
    expect(failure?.name).toBe('TimeoutError')
    expect(Date.now() - started).toBeGreaterThanOrEqual(300)
    expect((await fetch(`http://${fp.address}/v2/`)).status).toBe(200)

    // The held request is logged once the client hangs up.
    const lines = fp.requests()
    expect(lines).toContainEqual(
      expect.objectContaining({status: null, rule: 0, action: 'delay'})
    )
    expect(lines).toContainEqual(
      expect.objectContaining({status: 200, rule: null, action: 'forward'})
    )
  })
})

test('a bad rule stops the proxy from starting', async () => {
  await expect(
    startFaultProxy({
      target: REG.m3,
      rules: [{action: 'explode' as 'status'}]
    })
  ).rejects.toThrow(/action must be one of/)
})
