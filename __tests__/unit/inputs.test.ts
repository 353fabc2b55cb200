import {join} from 'node:path'
import {getInputs, InputError, type Inputs} from '../../src/inputs.js'
import {withInputs} from './helpers.js'

const base = {
  context: join(import.meta.dirname, '../fixtures/busybox'),
  image: '127.0.0.1:5001/example/app',
  tags: 'v1',
  platforms: 'linux/amd64'
}

function problems(inputs: Record<string, string>, env = {}): string {
  const {error} = withInputs(inputs, () => getInputs(), env)
  expect(error).toBeInstanceOf(InputError)
  return error!.message
}

function accepted(
  inputs: Record<string, string>,
  env = {}
): {value: Inputs; stdout: string} {
  const {value, error, stdout} = withInputs(inputs, () => getInputs(), env)
  expect(error).toBeUndefined()
  return {value: value!, stdout}
}

describe('getInputs', () => {
  it('reads the defaults', () => {
    // The default context is the working directory, as for buildx.
    const cwd = process.cwd()
    process.chdir(base.context)
    const {value} = accepted({image: 'ossrs/srs', tags: 'v6.0.145'})
    process.chdir(cwd)
    expect(value).toMatchObject({
      image: 'ossrs/srs',
      tags: ['v6.0.145'],
      platforms: ['linux/amd64', 'linux/arm64', 'linux/arm/v7'],
      context: '.',
      push: true,
      driver: 'docker-container',
      provenance: 'false',
      sbom: 'false',
      qemu: 'auto'
    })
  })

  it('trims list inputs written for readability (C10)', () => {
    const {value} = accepted({
      ...base,
      tags: 'v1.2.3, 1.2 ,',
      platforms: 'linux/amd64,\nlinux/arm64/v8 ,\nlinux/arm/v7\n',
      mirrors: '   127.0.0.1:5002/example/app\n\n'
    })
    expect(value.tags).toEqual(['v1.2.3', '1.2'])
    expect(value.platforms).toEqual([
      'linux/amd64',
      'linux/arm64',
      'linux/arm/v7'
    ])
    expect(value.mirrors).toEqual(['127.0.0.1:5002/example/app'])
  })

  it('warns once about one platform spelled three ways (C08)', () => {
    const {value, stdout} = accepted({
      ...base,
      platforms: 'linux/arm64,linux/arm64/v8,linux/aarch64,linux/amd64'
    })
    expect(value.platforms).toEqual(['linux/arm64', 'linux/amd64'])
    const warnings = stdout.split('\n').filter(l => l.startsWith('::warning'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('linux/arm64, linux/arm64/v8, linux/aarch64')
  })

  it.each([
    ['linux/amd64,linux/amd64/v8', '"linux/amd64/v8"', 'linux/arm64'],
    ['linux/amd64,linux/armv7', '"linux/armv7"', 'linux/arm/v7'],
    ['linuxx/amd64', '"linuxx/amd64"', 'linux/amd64']
  ])('rejects platforms %s (C09)', (platforms, bad, suggestion) => {
    const message = problems({...base, platforms})
    expect(message).toContain(`platforms: ${bad}`)
    expect(message).toContain(`did you mean ${suggestion}`)
  })

  it('rejects a mirror with a dangling tag (C02)', () => {
    const message = problems({
      ...base,
      mirrors: '127.0.0.1:5002/example/app\n127.0.0.1:5003/example/app:'
    })
    expect(message).toContain('mirrors: "127.0.0.1:5003/example/app:"')
  })

  it('rejects a mirror that is the image itself, however Docker Hub is spelled', () => {
    const message = problems({
      ...base,
      image: 'ossrs/srs',
      mirrors: 'index.docker.io/ossrs/srs'
    })
    expect(message).toContain('is the image itself')
  })

  it('lower-cases repositories with a notice and keeps the tag case (C07)', () => {
    const {value, stdout} = accepted({
      ...base,
      image: '127.0.0.1:5001/Example-Org/App',
      tags: 'Beta-1',
      mirrors: '127.0.0.1:5002/Example-Org/App'
    })
    expect(value.image).toBe('127.0.0.1:5001/example-org/app')
    expect(value.mirrors).toEqual(['127.0.0.1:5002/example-org/app'])
    expect(value.tags).toEqual(['Beta-1'])
    expect(stdout.match(/::notice::/g)).toHaveLength(2)
  })

  it.each([
    ['2.1.2+a3aefa34', '"+"'],
    ['v1#2', '"#"'],
    ['v 1', '" "']
  ])('rejects the explicit tag %s naming %s (C06)', (tags, character) => {
    const message = problems({...base, tags})
    expect(message).toContain(`tags: ${JSON.stringify(tags)}`)
    expect(message).toContain(`holds ${character}`)
  })

  it('rejects a tag that is a reference', () => {
    expect(problems({...base, tags: 'ossrs/srs:v1'})).toContain(
      'not a bare tag'
    )
  })

  it('derives the tag from a tag push and cleans forbidden characters', () => {
    const {value, stdout} = accepted(
      {...base, tags: ''},
      {GITHUB_REF: 'refs/tags/v2.1.2-alpha+a3aefa34'}
    )
    // C06: a pre-release, so no major tag; `+` becomes `-` with a notice.
    expect(value.tags).toEqual([
      'v2.1.2-alpha-a3aefa34',
      '2.1.2-alpha-a3aefa34'
    ])
    expect(stdout).toContain('::notice::')
  })

  it('fails naming tags when neither given nor a tag push', () => {
    const message = problems(
      {...base, tags: ''},
      {GITHUB_REF: 'refs/heads/main'}
    )
    expect(message).toContain('tags: ""')
    expect(message).toContain('refs/heads/main')
  })

  it('keeps commas in build-args and warns about NAME= after one (C15)', () => {
    const first = accepted({
      ...base,
      'build-args': 'JOBS=10\nNO_PROXY=localhost,127.0.0.1\nEMPTY=\n'
    })
    expect(first.value.buildArgs).toEqual([
      'JOBS=10',
      'NO_PROXY=localhost,127.0.0.1',
      'EMPTY='
    ])
    expect(first.stdout).not.toContain('::warning')
    const second = accepted({...base, 'build-args': 'JOBS=10,FOO=bar'})
    expect(second.value.buildArgs).toEqual(['JOBS=10,FOO=bar'])
    expect(second.stdout).toMatch(/::warning::build-args: .*own line/)
    expect(problems({...base, 'build-args': 'JOBS 10'})).toContain(
      'build-args: "JOBS 10"'
    )
  })

  it('reports several problems together', () => {
    const message = problems({
      image: 'Bad Image',
      tags: 'a+b',
      platforms: 'linux/armv7',
      driver: 'k8s'
    })
    for (const input of ['image:', 'tags:', 'platforms:', 'driver:']) {
      expect(message).toContain(input)
    }
  })

  it('needs an endpoint for the remote driver', () => {
    expect(problems({...base, driver: 'remote'})).toContain(
      'endpoint: "" is required'
    )
  })

  it('does not push on pull requests unless asked', () => {
    expect(accepted(base, {GITHUB_EVENT_NAME: 'pull_request'}).value.push).toBe(
      false
    )
    expect(
      accepted({...base, push: 'true'}, {GITHUB_EVENT_NAME: 'pull_request'})
        .value.push
    ).toBe(true)
    expect(problems({...base, push: 'yes'})).toContain(
      'push: "yes" is not a boolean'
    )
  })
})

describe('files and values checked up front', () => {
  it.each([
    [{context: '/nonexistent'}, 'context: "/nonexistent" is not a directory'],
    [
      {file: '/nonexistent/Dockerfile'},
      'file: "/nonexistent/Dockerfile" is not a file'
    ],
    [
      {'buildkitd-config': '/nope.toml'},
      'buildkitd-config: "/nope.toml" is not a file'
    ],
    [
      {'secret-files': 'npmrc=/nope'},
      'secret-files: "npmrc=/nope" names no file'
    ],
    [
      {provenance: 'garbage'},
      'provenance: "garbage" is not true, false or key=value'
    ],
    [{sbom: 'yes'}, 'sbom: "yes" is not true, false'],
    [{platforms: 'windows/amd64'}, 'is not a Linux platform'],
    [
      {'debug-platform': 'linux/s390x'},
      'debug-platform: "linux/s390x" is not one of platforms'
    ],
    [{'mirror-attempts': '1000000'}, 'must be a whole number from 1 to 20'],
    [
      {'mirror-retry-wait': '-1'},
      'mirror-retry-wait: "-1" must not be negative'
    ],
    [{'mirror-retry-wait': '99999'}, 'must be at most 300 seconds']
  ])('%j', (change, message) => {
    expect(problems({...base, ...change})).toContain(message)
  })

  it('accepts provenance modes and remote contexts', () => {
    accepted({...base, provenance: 'mode=max', sbom: 'true'})
    accepted({
      ...base,
      context: 'https://github.com/ossrs/srs.git#develop:trunk'
    })
  })

  it('masks credentials in a buildx download URL', () => {
    const {stdout} = accepted({
      ...base,
      'buildx-version': 'v0.28.0',
      'buildx-download-url':
        'https://user:Pw1234secret@mirror.example.com/buildx'
    })
    expect(stdout).toContain('::add-mask::Pw1234secret')
  })
})

describe('warnings and notices', () => {
  it('warns about a build argument that looks like a secret', () => {
    const {stdout} = accepted({...base, 'build-args': 'JOBS=2\nNPM_TOKEN=x'})
    expect(stdout).toMatch(
      /::warning::build-args: NPM_TOKEN looks like a secret.*secrets/
    )
    expect(stdout).not.toMatch(/JOBS looks like/)
  })

  it('masks build secrets and rejects malformed ones without quoting them', () => {
    const {value, stdout} = accepted({
      ...base,
      secrets: 'GIT_AUTH_TOKEN=ghp_abc,def'
    })
    expect(value.secrets).toEqual([
      {id: 'GIT_AUTH_TOKEN', value: 'ghp_abc,def'}
    ])
    expect(stdout).toContain('::add-mask::ghp_abc,def')
    const message = problems({...base, secrets: 'ghp_abcdefgh'})
    expect(message).toContain('secrets: entry 1 is not id=value')
    expect(message).not.toContain('ghp')
    expect(message).not.toContain('ghp_abcdefgh')
  })

  it('warns about credentials for a registry the run never touches', () => {
    const {stdout} = accepted({
      ...base,
      mirrors: '127.0.0.1:5002/example/app',
      'cache-from': 'type=registry,ref=127.0.0.1:5003/cache/app',
      'registry-auth': [
        '- {registry: 127.0.0.1:5001, username: a, password: x}',
        '- {registry: 127.0.0.1:5002, username: b, password: y}',
        '- {registry: 127.0.0.1:5003, username: c, password: z}',
        '- {registry: regsitry.example.com, username: d, password: w}'
      ].join('\n')
    })
    const warnings = stdout.split('\n').filter(l => l.startsWith('::warning'))
    expect(warnings).toEqual([
      expect.stringContaining(
        'regsitry.example.com is not the registry of image'
      )
    ])
  })

  it('says mirrors are skipped when nothing is pushed (C29)', () => {
    const {value, stdout} = accepted({
      ...base,
      push: 'false',
      mirrors: '127.0.0.1:5002/x/y'
    })
    expect(value.push).toBe(false)
    expect(stdout).toMatch(/::notice::mirrors: skipped, because push is false/)
  })

  it('skips a login without password on pull requests', () => {
    const {value, stdout} = accepted(
      {
        ...base,
        'registry-auth':
          '- {registry: 127.0.0.1:5001, username: u, password-env: PW}'
      },
      {GITHUB_EVENT_NAME: 'pull_request'}
    )
    expect(value.credentials).toEqual([])
    expect(stdout).toMatch(/::notice::.*no password on a pull request/)
  })
})

describe('registry-auth', () => {
  const auth = `
- registry: 127.0.0.1:5001
  username: main-ci
  password: "Main#Pa55 w0rd$"
- registry: 127.0.0.1:5002
  username: m1-ci
  password-env: M1_PASSWORD
`
  it('reads passwords inline and from the environment, masking both', () => {
    const password = `M1'Pa55"w0rd`
    const {value, stdout} = accepted(
      {...base, 'registry-auth': auth},
      {M1_PASSWORD: password}
    )
    expect(value.credentials).toEqual([
      {
        registry: '127.0.0.1:5001',
        key: '127.0.0.1:5001',
        username: 'main-ci',
        password: 'Main#Pa55 w0rd$'
      },
      {
        registry: '127.0.0.1:5002',
        key: '127.0.0.1:5002',
        username: 'm1-ci',
        password
      }
    ])
    const base64 = Buffer.from(`m1-ci:${password}`).toString('base64')
    expect(stdout).toContain(`::add-mask::${password}`)
    expect(stdout).toContain(`::add-mask::${base64}`)
    // The debug dump of inputs shows no password.
    expect(stdout.replace(/::add-mask::.*\n/g, '')).not.toContain(password)
  })

  it('rejects a second identity for one registry (C19)', () => {
    const message = problems(
      {
        ...base,
        'registry-auth': `${auth}- {registry: 127.0.0.1:5002, username: other, password: x}\n`
      },
      {M1_PASSWORD: 'p'}
    )
    expect(message).toContain('registry "127.0.0.1:5002" is given twice')
  })

  it('folds the spellings of Docker Hub into one registry', () => {
    const message = problems({
      ...base,
      'registry-auth':
        '- {registry: docker.io, username: a, password: x}\n- {registry: index.docker.io, username: b, password: y}'
    })
    expect(message).toContain('given twice')
  })

  it('names an unset password-env', () => {
    const message = problems({
      ...base,
      'registry-auth': '- {registry: r.io, username: u, password-env: NOPE}'
    })
    expect(message).toContain('environment variable NOPE is empty or unset')
  })

  it.each([
    [
      'an alias',
      '- {registry: r.io, username: u, password: *Star9pass}',
      'Star9pass'
    ],
    [
      'a block scalar header',
      '- registry: r.io\n  username: u\n  password: |Pipe9pass',
      'Pipe9pass'
    ],
    [
      'a folded header',
      '- registry: r.io\n  username: u\n  password: >Gt9pass',
      'Gt9pass'
    ],
    [
      'a tag',
      '- registry: r.io\n  username: u\n  password: !Bang9pass',
      'Bang9pass'
    ]
  ])('never quotes a password that YAML misreads as %s', (_, yaml, secret) => {
    const {error, stdout} = withInputs({...base, 'registry-auth': yaml}, () =>
      getInputs()
    )
    expect(error?.message).toMatch(
      /registry-auth: is not valid YAML \((\w+ at line \d+, column \d+|an unquoted value starts with \*)/
    )
    expect(error?.message).not.toContain(secret)
    expect(stdout).not.toContain(secret)
  })

  it.each([
    ['007', 'number'],
    ['1e3', 'number'],
    ['true', 'boolean'],
    ['[a, b]', 'object']
  ])(
    'refuses a password YAML turns into something else (%s)',
    (password, type) => {
      const message = problems({
        ...base,
        'registry-auth': `- {registry: r.io, username: u, password: ${password}}`
      })
      expect(message).toContain(
        `password is not text to YAML (a ${type}); quote it, or use password-env`
      )
    }
  )

  it('refuses both password and password-env, unknown keys and entries that are not mappings', () => {
    const message = problems({
      ...base,
      'registry-auth':
        '- {registry: r.io, username: u, password: x, password-env: HOME}\n- {registry: s.io, username: u, passwd: y}\n- just-a-string'
    })
    expect(message).toContain(
      'entry 1 (r.io): give password or password-env, not both'
    )
    expect(message).toContain('entry 2: unknown passwd')
    expect(message).toContain('entry 3: must be a mapping')
  })

  it('masks every line of a password with several', () => {
    const {stdout} = withInputs(
      {
        ...base,
        'registry-auth': '- {registry: r.io, username: u, password-env: PW}'
      },
      () => getInputs(),
      {PW: 'first line\nsecond line\n'}
    )
    for (const form of [
      'first line',
      'second line',
      'first line\nsecond line'
    ]) {
      expect(stdout).toContain(`::add-mask::${form.replace('\n', '%0A')}`)
    }
  })

  it('does not echo YAML that fails to parse', () => {
    const message = problems({
      ...base,
      'registry-auth': '- registry: r.io\n  password: "a"b"c'
    })
    expect(message).toContain('registry-auth: is not valid YAML')
    expect(message).not.toContain('"a"b"c')
  })
})

describe('more values checked up front', () => {
  it.each([
    [
      {'qemu-image': 'Bad Image::x'},
      'qemu-image: "Bad Image::x" is not an image reference'
    ],
    [{target: 'bad target'}, 'target: "bad target" is not a build stage name'],
    [
      {tags: '{{MAJOR}}'},
      'uses {{MAJOR}}, which is not a placeholder (accepted: {{tag}}'
    ],
    [{tags: 'v{{major}}'}, 'uses {{major}}, which has no value in this run']
  ])('%j', (change, text) => {
    const {error} = withInputs({...base, ...change}, () => getInputs())
    expect(error?.message).toContain(text)
  })
})
