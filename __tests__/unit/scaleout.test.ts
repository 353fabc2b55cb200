import {join} from 'node:path'
import {parse} from 'yaml'
import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {buildArgs, debugInputs} from '../../src/build.js'
import {appendArgs, createArgs} from '../../src/builder.js'
import {getInputs, InputError, type Inputs} from '../../src/inputs.js'
import {checkEntries, indexEntries, mergeArgs} from '../../src/merge.js'
import {plan, plannedRefs} from '../../src/plan.js'
import {withInputs} from './helpers.js'

// Scale-out (#7): push-by-digest jobs and the merge job's digests.

const AMD = `sha256:${'a'.repeat(64)}`
const ARM = `sha256:${'b'.repeat(64)}`
const base = {
  context: join(import.meta.dirname, '../fixtures/busybox'),
  image: '127.0.0.1:5001/example/app'
}

function read(inputs: Record<string, string>): {
  value?: Inputs
  error?: Error
  stdout: string
} {
  return withInputs(inputs, () => getInputs())
}

describe('push-by-digest inputs', () => {
  it('takes one platform, no tag, and skips mirrors with a notice', () => {
    const {value, error, stdout} = read({
      ...base,
      'push-by-digest': 'true',
      platforms: 'linux/aarch64',
      tags: 'v1',
      mirrors: '127.0.0.1:5002/example/app'
    })
    expect(error).toBeUndefined()
    expect(value).toMatchObject({
      pushByDigest: true,
      platforms: ['linux/arm64'],
      tags: [],
      floatingTags: [],
      mirrors: []
    })
    expect(stdout).toContain('tags: ignored with push-by-digest')
    expect(stdout).toContain('mirrors: skipped with push-by-digest')
  })

  it('labels the version of a tag push, writing no tag', () => {
    const {value, error} = withInputs(
      {...base, 'push-by-digest': 'true', platforms: 'linux/amd64'},
      () => getInputs(),
      {GITHUB_REF: 'refs/tags/v6.0.145'}
    )
    expect(error).toBeUndefined()
    expect(value!.tags).toEqual([])
    expect(value!.version).toBe('6.0.145')
    expect(value!.labels).toContain('org.opencontainers.image.version=6.0.145')
  })

  it('pushes nothing with debug-platform', () => {
    const {value} = read({
      ...base,
      'push-by-digest': 'true',
      platforms: 'linux/amd64',
      'debug-platform': 'linux/amd64'
    })
    const args = buildArgs(debugInputs(value!), 'b1', 'm')
    expect(args.join(' ')).not.toMatch(/--output|--push/)
  })

  it('needs no tag and no tag push', () => {
    const {error} = read({
      ...base,
      'push-by-digest': 'true',
      platforms: 'linux/amd64'
    })
    expect(error).toBeUndefined()
  })

  it.each([
    [
      {},
      /platforms: "linux\/amd64,linux\/arm64\/v8,linux\/arm\/v7" must name exactly one platform/
    ],
    [{platforms: 'linux/amd64,linux/arm64'}, /must name exactly one platform/],
    [
      {platforms: 'linux/amd64', push: 'false'},
      /push: "false" must not be false with push-by-digest/
    ],
    [
      {platforms: 'linux/amd64', 'push-by-digest': 'yes'},
      /push-by-digest: "yes" is not a boolean/
    ],
    [
      {platforms: 'linux/amd64', driver: 'docker'},
      /driver: "docker" cannot push by digest/
    ],
    [
      {platforms: 'linux/amd64', digests: `linux/amd64=${AMD}`},
      /push-by-digest: "true" cannot be combined with digests/
    ]
  ])('refuses %j', (more, message) => {
    const {error} = read({...base, 'push-by-digest': 'true', ...more})
    expect(error).toBeInstanceOf(InputError)
    expect(error!.message).toMatch(message)
  })

  it('pushes by digest only, with no tag and no --push', () => {
    const {value} = read({
      ...base,
      'push-by-digest': 'true',
      platforms: 'linux/amd64',
      tags: 'v1'
    })
    const args = buildArgs(value!, 'b1', 'm')
    expect(args).not.toContain('--push')
    expect(args).not.toContain('--tag')
    const at = args.indexOf('--output')
    expect(args[at + 1]).toBe(
      'type=image,name=127.0.0.1:5001/example/app,push-by-digest=true,name-canonical=true,push=true'
    )
    expect(plannedRefs(value!)).toEqual([])
  })
})

describe('digests input', () => {
  const merge = {image: base.image, tags: 'v1'}

  it('reads platform=digest lines, normalising the platform', () => {
    const {value, error} = read({
      ...merge,
      digests: `\n linux/x86_64=${AMD}\nlinux/arm64/v8 = ${ARM}\n`
    })
    expect(error).toBeUndefined()
    expect(value!.digests).toEqual([
      {platform: 'linux/amd64', digest: AMD},
      {platform: 'linux/arm64', digest: ARM}
    ])
    // The platforms are the digests' own; no context is needed.
    expect(value!.platforms).toEqual(['linux/amd64', 'linux/arm64'])
  })

  it('takes pairs parted by commas too, like other list inputs', () => {
    const {value, error} = read({
      ...merge,
      digests: `linux/amd64=${AMD}, linux/arm64=${ARM}`
    })
    expect(error).toBeUndefined()
    expect(value!.digests).toEqual([
      {platform: 'linux/amd64', digest: AMD},
      {platform: 'linux/arm64', digest: ARM}
    ])
  })

  it('works with every action.yml default filled in, as the runner does', () => {
    const action = parse(
      readFileSync(join(import.meta.dirname, '../../action.yml'), 'utf8')
    ) as {inputs: Record<string, {default?: string}>}
    const defaults = Object.fromEntries(
      Object.entries(action.inputs).map(([name, input]) => [
        name,
        String(input.default ?? '')
      ])
    )
    const {value, error} = read({
      ...defaults,
      ...merge,
      digests: `linux/amd64=${AMD}\nlinux/arm64=${ARM}`
    })
    expect(error).toBeUndefined()
    expect(value!.platforms).toEqual(['linux/amd64', 'linux/arm64'])
  })

  it('accepts platforms naming the same set in other spellings', () => {
    const {error} = read({
      ...merge,
      platforms: 'linux/arm64/v8,linux/amd64',
      digests: `linux/amd64=${AMD}\nlinux/arm64=${ARM}`
    })
    expect(error).toBeUndefined()
  })

  it.each([
    [
      `linux/amd64=${AMD}\nlinux/x86_64=${ARM}`,
      {},
      `digests: "linux/x86_64=${ARM}" (line 2) repeats platform linux/amd64`
    ],
    [
      `linux/amd64=${AMD}`,
      {platforms: 'linux/amd64,linux/arm64'},
      'digests: "linux/arm64" is missing'
    ],
    [
      `linux/amd64=${AMD}\nlinux/arm64=${ARM}`,
      {platforms: 'linux/amd64'},
      'digests: "linux/arm64" is not one of platforms (linux/amd64)'
    ],
    [
      `linux/amd64=sha256:abc`,
      {},
      '(line 1) has no digest of the form sha256:<64 hex>'
    ],
    [`linux/amd64 ${AMD}`, {}, '(line 1) is not platform=sha256:<64 hex>'],
    [`linux/amd64=${AMD.toUpperCase()}`, {}, 'has no digest of the form'],
    [`linux/arm64/v9x=${AMD}`, {}, '(line 1) has no valid platform'],
    [
      `linux/amd64=${AMD}`,
      {push: 'false'},
      'push: "false" must not be false with digests'
    ],
    [`linux/amd64=${AMD}`, {source: 'busybox:1', image: ''}, 'digests: ']
  ])('refuses %s with %j', (digests, more, message) => {
    const {error} = read({...merge, digests, ...more})
    expect(error).toBeInstanceOf(InputError)
    expect(error!.message).toContain(message)
  })

  it('plans a dry-run create, the create and a read of every tag', () => {
    const {value} = read({
      ...merge,
      tags: 'v1\nv1.0',
      digests: `linux/amd64=${AMD}\nlinux/arm64=${ARM}`,
      mirrors: '127.0.0.1:5002/example/app'
    })
    const lines = plan(value!).map(command => command.join(' '))
    const image = base.image
    expect(lines).toContain(
      `docker buildx imagetools create --dry-run --tag ${image}:v1 --tag ${image}:v1.0 ${image}@${AMD} ${image}@${ARM}`
    )
    expect(lines.join('\n')).not.toMatch(/buildx (build|create --name)/)
    expect(lines).toContain(
      `docker buildx imagetools create --tag 127.0.0.1:5002/example/app:v1 ${image}@<digest>`
    )
  })
})

describe('merge', () => {
  it('creates one index from image@digest sources with every tag', () => {
    expect(
      mergeArgs(
        'ossrs/srs',
        ['v6.0.145', '6'],
        [
          {platform: 'linux/amd64', digest: AMD},
          {platform: 'linux/arm64', digest: ARM}
        ]
      )
    ).toEqual([
      'buildx',
      'imagetools',
      'create',
      '--tag',
      'ossrs/srs:v6.0.145',
      '--tag',
      'ossrs/srs:6',
      `ossrs/srs@${AMD}`,
      `ossrs/srs@${ARM}`
    ])
  })

  const index = (entries: [string, string, string?][]): string =>
    JSON.stringify({
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: entries.map(([architecture, digest, variant]) => ({
        digest,
        platform: {
          os: architecture === 'unknown' ? 'unknown' : 'linux',
          architecture,
          ...(variant ? {variant} : {})
        }
      }))
    })
  const wanted = [
    {platform: 'linux/amd64', digest: AMD},
    {platform: 'linux/arm64', digest: ARM}
  ]

  it('accepts every platform once at its digest, ignoring attestations', () => {
    const text = index([
      ['amd64', AMD],
      ['arm64', ARM, 'v8'],
      ['unknown', `sha256:${'c'.repeat(64)}`]
    ])
    expect(indexEntries(text)).toHaveLength(2)
    expect(checkEntries(indexEntries(text), wanted)).toEqual([])
  })

  it('names a platform that is missing, doubled or at another digest', () => {
    expect(
      checkEntries(
        indexEntries(
          index([
            ['amd64', AMD],
            ['amd64', ARM]
          ])
        ),
        wanted
      )
    ).toEqual([
      'linux/amd64 is in the index 2 times',
      `linux/arm64 is missing from the index (its digest ${ARM} holds linux/amd64)`
    ])
    expect(
      checkEntries(
        indexEntries(
          index([
            ['amd64', ARM],
            ['arm64', AMD]
          ])
        ),
        wanted
      )
    ).toEqual([
      `linux/amd64 is ${ARM}, expected ${AMD}`,
      `linux/arm64 is ${AMD}, expected ${ARM}`
    ])
  })
})

// Builder nodes are tested here as command lines and validation only: no
// second BuildKit daemon can be had on the test machine (no BuildKit image
// to pull, no buildkitd package), so `buildx create --append` never runs
// in the e2e suite.
describe('builder nodes', () => {
  const node = {
    name: 'arm',
    endpoint: 'tcp://10.0.0.2:1234',
    platforms: ['linux/arm64', 'linux/arm/v7'],
    driverOpts: ['cacert=/certs/ca.pem', 'cert=/certs/cert.pem']
  }

  it.each([
    [
      node,
      0,
      [
        'buildx',
        'create',
        '--append',
        '--name',
        'b1',
        '--node',
        'arm',
        '--platform',
        'linux/arm64,linux/arm/v7',
        '--driver-opt',
        'cacert=/certs/ca.pem',
        '--driver-opt',
        'cert=/certs/cert.pem',
        'tcp://10.0.0.2:1234'
      ]
    ],
    [
      {...node, name: '', driverOpts: [], platforms: ['linux/riscv64']},
      1,
      [
        'buildx',
        'create',
        '--append',
        '--name',
        'b1',
        '--node',
        'b1-node2',
        '--platform',
        'linux/riscv64',
        'tcp://10.0.0.2:1234'
      ]
    ],
    [
      {...node, endpoint: 'kube-pod://buildkitd-arm64', driverOpts: []},
      0,
      [
        'buildx',
        'create',
        '--append',
        '--name',
        'b1',
        '--node',
        'arm',
        '--platform',
        'linux/arm64,linux/arm/v7',
        'kube-pod://buildkitd-arm64'
      ]
    ]
  ])('appends %j as node %i', (given, index, argv) => {
    expect(appendArgs('b1', given, index)).toEqual(argv)
  })

  it('pins the first node to the platforms no appended node declares', () => {
    const {value} = read({
      ...base,
      tags: 'v1',
      platforms: 'linux/amd64,linux/arm64,linux/arm/v7',
      driver: 'remote',
      endpoint: 'tcp://10.0.0.1:1234',
      nodes: '- endpoint: tcp://10.0.0.2:1234\n  platforms: linux/arm64'
    })
    expect(createArgs(value!, 'b1')).toEqual([
      'buildx',
      'create',
      '--name',
      'b1',
      '--driver',
      'remote',
      '--platform',
      'linux/amd64,linux/arm/v7',
      'tcp://10.0.0.1:1234'
    ])
    // Without nodes, BuildKit reports its own platforms.
    expect(createArgs({...value!, nodes: []}, 'b1')).not.toContain('--platform')
  })

  // The TLS files a node names must exist on the runner.
  const certs = mkdtempSync(join(tmpdir(), 'certs-'))
  writeFileSync(join(certs, 'ca.pem'), 'not checked further')
  const ca = join(certs, 'ca.pem')
  const yaml = [
    '- name: arm',
    '  endpoint: tcp://10.0.0.2:1234',
    '  platforms: linux/aarch64, linux/arm/v7',
    '  driver-opts:',
    `    - cacert=${ca}`,
    '- endpoint: tcp://10.0.0.3:1234',
    '  platforms: [linux/riscv64]'
  ].join('\n')

  it('reads a YAML list, normalising platforms', () => {
    const {value, error} = read({...base, tags: 'v1', nodes: yaml})
    expect(error).toBeUndefined()
    expect(value!.nodes).toEqual([
      {
        name: 'arm',
        endpoint: 'tcp://10.0.0.2:1234',
        platforms: ['linux/arm64', 'linux/arm/v7'],
        driverOpts: [`cacert=${ca}`]
      },
      {
        name: '',
        endpoint: 'tcp://10.0.0.3:1234',
        platforms: ['linux/riscv64'],
        driverOpts: []
      }
    ])
    // The plan appends both after creating the builder, before booting it;
    // the post step's buildx rm removes builder and nodes together.
    const lines = plan(value!).map(command => command.join(' '))
    const create = lines.findIndex(l => l.includes('buildx create --name'))
    expect(lines.slice(create + 1, create + 4)).toEqual([
      `docker buildx create --append --name <new builder> --node arm --platform linux/arm64,linux/arm/v7 --driver-opt cacert=${ca} tcp://10.0.0.2:1234`,
      'docker buildx create --append --name <new builder> --node <new builder>-node2 --platform linux/riscv64 tcp://10.0.0.3:1234',
      'docker buildx inspect --bootstrap --builder <new builder>'
    ])
    expect(lines).toContain('docker buildx rm <new builder>')
  })

  it('names a TLS file that is not there, per node and in driver-opts', () => {
    const {error} = read({
      ...base,
      tags: 'v1',
      driver: 'remote',
      endpoint: 'tcp://10.0.0.1:1234',
      'driver-opts': `cacert=${ca},key=/nope/key.pem`,
      nodes: yaml.replace(`cacert=${ca}`, 'cert=/nope/cert.pem')
    })
    expect(error?.message).toContain(
      'driver-opts: "key=/nope/key.pem" names no file (key)'
    )
    expect(error?.message).toContain(
      'nodes (entry 1): "cert=/nope/cert.pem" names no file (cert)'
    )
    expect(error?.message).not.toContain(ca)
  })

  it('installs no emulator for a platform a node builds natively', () => {
    const env = {MULTIARCH_BINFMT_DIR: mkdtempSync(join(tmpdir(), 'binfmt-'))}
    const planned = (more: Record<string, string>): string =>
      withInputs(
        {...base, tags: 'v1', platforms: 'linux/amd64,linux/arm64', ...more},
        () => plan(getInputs()),
        env
      )
        .value!.map(command => command.join(' '))
        .join('\n')
    expect(planned({})).toMatch(/--install arm64/)
    expect(
      planned({
        nodes: '- {endpoint: tcp://10.0.0.2:1234, platforms: linux/arm64}'
      })
    ).not.toMatch(/--install/)
  })

  it.each([
    ['- platforms: linux/arm64', {}, 'nodes entry 1: endpoint is required'],
    ['- endpoint: tcp://h:1', {}, 'nodes entry 1: platforms is required'],
    [
      '- {endpoint: tcp://h:1, platforms: linux/armv7}',
      {},
      'nodes entry 1: platforms: "linux/armv7" is not a platform'
    ],
    [
      '- {endpoint: tcp://h:1, platforms: linux/arm64, host: x}',
      {},
      'nodes entry 1: unknown host'
    ],
    [
      'endpoint: tcp://h:1',
      {},
      'nodes: must be a YAML list of {name, endpoint, platforms, driver-opts}'
    ],
    [
      '- {endpoint: tcp://h:1, platforms: linux/arm64}',
      {driver: 'docker'},
      'nodes: "tcp://h:1" cannot be appended with driver: docker'
    ],
    [
      '- {endpoint: tcp://h:1, platforms: linux/arm64}',
      {builder: 'mine'},
      'cannot be appended to the existing builder mine'
    ],
    [
      '- {name: a, endpoint: tcp://h:1, platforms: linux/arm64}\n- {name: a, endpoint: tcp://g:1, platforms: linux/arm64}',
      {},
      'nodes entry 2: name a is used twice'
    ]
  ])('refuses %s with %j', (nodes, more, message) => {
    const {error} = read({...base, tags: 'v1', nodes, ...more})
    expect(error).toBeInstanceOf(InputError)
    expect(error!.message).toContain(message)
  })
})
