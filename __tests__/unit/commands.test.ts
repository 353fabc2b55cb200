import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {buildArgs, readDigest, secretsEnvironment} from '../../src/build.js'
import {bootArgs, createArgs, removeArgs} from '../../src/builder.js'
import {emulatedPlatforms, installArgs} from '../../src/emulators.js'
import type {Inputs} from '../../src/inputs.js'
import {loginArgs, runConfig} from '../../src/logins.js'
import {copyArgs, inspectArgs, parseInspect} from '../../src/mirrors.js'

const inputs: Inputs = {
  image: 'ossrs/srs',
  tags: ['v6.0.145', '6'],
  floatingTags: ['6'],
  version: '6.0.145',
  platforms: ['linux/amd64', 'linux/arm64', 'linux/arm/v7'],
  context: '.',
  file: 'trunk/Dockerfile',
  buildArgs: ['JOBS=10'],
  labels: [],
  annotations: [],
  target: '',
  secrets: [],
  secretFiles: [],
  cacheFrom: [],
  cacheTo: [],
  push: true,
  mirrors: ['registry.cn-hangzhou.aliyuncs.com/ossrs/srs'],
  credentials: [],
  driver: 'docker-container',
  endpoint: '',
  driverOpts: [],
  buildkitdConfig: '',
  builder: '',
  network: '',
  qemu: 'auto',
  qemuImage: 'binfmt:pinned',
  provenance: 'false',
  sbom: 'false',
  noCache: false,
  pull: false,
  dryRun: false,
  source: '',
  mirrorFailure: 'fail',
  mirrorAttempts: 3,
  mirrorRetryWait: 2,
  mirrorConcurrency: 3,
  mirrorTimeout: 10,
  buildTimeout: 300,
  stallTimeout: 60,
  debugPlatform: '',
  buildxVersion: '',
  buildxDownloadUrl: 'https://github.com/docker/buildx/releases/download',
  pushByDigest: false,
  digests: [],
  nodes: []
}

describe('command lines', () => {
  it('builds and pushes every platform in one buildx build', () => {
    expect(buildArgs(inputs, 'b1', '/tmp/m.json')).toEqual([
      'buildx',
      'build',
      '--builder',
      'b1',
      '--platform',
      'linux/amd64,linux/arm64,linux/arm/v7',
      '--file',
      'trunk/Dockerfile',
      '--tag',
      'ossrs/srs:v6.0.145',
      '--tag',
      'ossrs/srs:6',
      '--build-arg',
      'JOBS=10',
      '--provenance=false',
      '--sbom=false',
      '--push',
      '--metadata-file',
      '/tmp/m.json',
      '.'
    ])
  })

  it('passes secrets by environment and cache refs through', () => {
    const changed: Inputs = {
      ...inputs,
      secrets: [{id: 'GIT_AUTH_TOKEN', value: 'ghp_secret'}],
      secretFiles: [{id: 'npmrc', path: '/home/u/.npmrc'}],
      cacheFrom: ['type=gha'],
      cacheTo: ['type=gha,mode=max'],
      annotations: ['index:org.opencontainers.image.title=srs']
    }
    const args = buildArgs(changed, 'b1', 'm')
    expect(args.join(' ')).not.toContain('ghp_secret')
    expect(args.join(' ')).toContain(
      '--annotation index:org.opencontainers.image.title=srs ' +
        '--secret id=GIT_AUTH_TOKEN,env=MULTIARCH_SECRET_0 ' +
        '--secret id=npmrc,src=/home/u/.npmrc ' +
        '--cache-from type=gha --cache-to type=gha,mode=max'
    )
    expect(secretsEnvironment(changed)).toEqual({
      MULTIARCH_SECRET_0: 'ghp_secret'
    })
  })

  it.each([
    [{provenance: 'mode=max'}, '--output type=registry,oci-artifact=false'],
    [{sbom: 'true'}, '--output type=registry,oci-artifact=false'],
    [
      {provenance: 'mode=min', pushByDigest: true, image: 'ossrs/srs'},
      '--output type=image,name=ossrs/srs,push-by-digest=true,' +
        'name-canonical=true,push=true,oci-artifact=false'
    ],
    [
      {pushByDigest: true, image: 'ossrs/srs'},
      '--output type=image,name=ossrs/srs,push-by-digest=true,' +
        'name-canonical=true,push=true --metadata-file'
    ]
  ])(
    'asks for the legacy attestation form when attestations are on: %j',
    (changed, expected) => {
      const args = buildArgs({...inputs, ...changed}, 'b1', 'm')
      expect(args.join(' ')).toContain(expected)
      expect(args).not.toContain('--push')
    }
  )

  it('pushes without exporter options when attestations are off', () => {
    const args = buildArgs(inputs, 'b1', 'm')
    expect(args).toContain('--push')
    expect(args.join(' ')).not.toContain('oci-artifact')
  })

  it('keeps the option out when nothing is pushed', () => {
    const args = buildArgs(
      {...inputs, push: false, provenance: 'mode=max'},
      'b1',
      'm'
    )
    expect(args.join(' ')).not.toContain('--output')
  })

  it('builds without pushing or loading when push is false', () => {
    const args = buildArgs({...inputs, push: false, network: 'host'}, 'b1', 'm')
    expect(args).not.toContain('--push')
    expect(args).not.toContain('--load')
    expect(args.join(' ')).toContain('--network host')
  })

  it.each([
    [{}, ['buildx', 'create', '--name', 'n', '--driver', 'docker-container']],
    [
      {
        driverOpts: ['network=host', 'image=moby/buildkit:v0.20.0'],
        buildkitdConfig: 'bk.toml'
      },
      [
        'buildx',
        'create',
        '--name',
        'n',
        '--driver',
        'docker-container',
        '--driver-opt',
        'network=host',
        '--driver-opt',
        'image=moby/buildkit:v0.20.0',
        '--buildkitd-config',
        'bk.toml'
      ]
    ],
    [
      {driver: 'remote', endpoint: 'tcp://127.0.0.1:1234'},
      [
        'buildx',
        'create',
        '--name',
        'n',
        '--driver',
        'remote',
        'tcp://127.0.0.1:1234'
      ]
    ]
  ])('creates a builder from %j', (change, expected) => {
    expect(createArgs({...inputs, ...change} as Inputs, 'n')).toEqual(expected)
  })

  it('boots and removes a builder by name', () => {
    expect(bootArgs('n')).toEqual([
      'buildx',
      'inspect',
      '--bootstrap',
      '--builder',
      'n'
    ])
    expect(removeArgs('n')).toEqual(['buildx', 'rm', 'n'])
  })

  it('logs in with the password on stdin', () => {
    const args = loginArgs({
      registry: 'r.io',
      key: 'r.io',
      username: 'u',
      password: 'secret'
    })
    expect(args).toEqual([
      'login',
      'r.io',
      '--username',
      'u',
      '--password-stdin'
    ])
    expect(args.join(' ')).not.toContain('secret')
  })

  it('copies all tags of a mirror in one imagetools create from the digest', () => {
    expect(
      copyArgs('b1', 'm.io/ossrs/srs', ['v1', '1'], 'ossrs/srs@sha256:abc')
    ).toEqual([
      'buildx',
      'imagetools',
      'create',
      '--builder',
      'b1',
      '--tag',
      'm.io/ossrs/srs:v1',
      '--tag',
      'm.io/ossrs/srs:1',
      'ossrs/srs@sha256:abc'
    ])
    expect(inspectArgs('b1', 'm.io/x:v1')).toEqual([
      'buildx',
      'imagetools',
      'inspect',
      '--builder',
      'b1',
      '--raw',
      'm.io/x:v1'
    ])
  })

  it('installs only emulators for platforms that are not native', () => {
    expect(
      emulatedPlatforms(inputs.platforms, ['linux/amd64', 'linux/386'])
    ).toEqual([
      {platform: 'linux/arm64', handler: 'qemu-aarch64', installName: 'arm64'},
      {platform: 'linux/arm/v7', handler: 'qemu-arm', installName: 'arm'}
    ])
    expect(emulatedPlatforms(['linux/amd64'], ['linux/amd64'])).toEqual([])
    expect(installArgs('img', ['arm64', 'arm'])).toEqual([
      'run',
      '--rm',
      '--privileged',
      'img',
      '--install',
      'arm64,arm'
    ])
  })
})

describe('results read from machine output', () => {
  it('reads the index digest from the metadata file', () => {
    expect(readDigest({'containerimage.digest': 'sha256:1'})).toBe('sha256:1')
    expect(readDigest({})).toBe('')
  })

  it('hashes the raw bytes of a real index to its registry digest', () => {
    // base/busybox:1 as `imagetools inspect --raw` printed it here.
    const raw = readFileSync(
      join(import.meta.dirname, '../fixtures/busybox-index.json'),
      'utf8'
    )
    expect(parseInspect(raw).digest).toBe(
      'sha256:47732ec3942a613c1e366b8de06acd61f93c20a8bfe58cb040112cac7942eb82'
    )
  })

  it('reads digest and platforms from imagetools inspect, ignoring attestations', () => {
    const stdout = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {digest: 'sha256:a1', platform: {os: 'linux', architecture: 'amd64'}},
        {
          digest: 'sha256:a2',
          platform: {os: 'linux', architecture: 'arm64', variant: 'v8'}
        },
        {platform: {os: 'unknown', architecture: 'unknown'}}
      ]
    })
    // The digest is the sha256 of the raw bytes, as the registry computes it.
    const digest = `sha256:${createHash('sha256').update(stdout).digest('hex')}`
    expect(parseInspect(stdout)).toEqual({
      digest,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      platforms: ['linux/amd64', 'linux/arm64'],
      children: {'linux/amd64': 'sha256:a1', 'linux/arm64': 'sha256:a2'},
      bytes: Buffer.from(stdout)
    })
    // Bytes read straight from a registry give the same answer.
    expect(parseInspect(Buffer.from(stdout))).toEqual(parseInspect(stdout))
  })
})

describe('the run Docker config', () => {
  it('keeps inline logins and plugins, drops credential stores', () => {
    const config = runConfig(
      {
        auths: {'a.io': {auth: 'dTpw'}, 'b.io': {}},
        credsStore: 'desktop',
        credHelpers: {'c.io': 'ecr-login'},
        proxies: {default: {}}
      },
      '/home/u/.docker'
    )
    expect(config).toEqual({
      auths: {'a.io': {auth: 'dTpw'}},
      proxies: {default: {}},
      cliPluginsExtraDirs: ['/home/u/.docker/cli-plugins']
    })
  })
})
