import {existsSync, readFileSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {
  FIXTURES,
  REG,
  USERS,
  authYaml,
  commandsOf,
  expectCopiedOnce,
  expectNoSecret,
  manifest,
  passwordEnv,
  requestsFor,
  runAction,
  stackEnv,
  tagList,
  uniqueRepo,
  writesFor,
  buildersAfter,
  type Run
} from './harness.js'

// The input contract and credential handling, end to end: the bundled
// action as the runner runs it, then the registries and the runner's files
// are read to see what really happened.

const CONTEXT = join(FIXTURES, 'busybox')
const quick = {
  platforms: 'linux/amd64,linux/arm64',
  context: CONTEXT,
  driver: 'docker',
  network: 'host'
}

describe('rejected inputs change nothing', () => {
  const repo = uniqueRepo('rejected')
  const image = `${REG.hub}/${repo}`
  const mirror = `${REG.m1}/${repo}`
  it.each([
    [
      'a mirror with a dangling tag (C02)',
      {mirrors: `${mirror}\n${REG.m2}/${repo}:`},
      `mirrors: "${REG.m2}/${repo}:"`
    ],
    [
      'platform linux/amd64/v8 (C09)',
      {platforms: 'linux/amd64,linux/amd64/v8'},
      'did you mean linux/arm64'
    ],
    [
      'platform linux/armv7 (C09)',
      {platforms: 'linux/amd64,linux/armv7'},
      'did you mean linux/arm/v7'
    ],
    [
      'platform linuxx/amd64 (C09)',
      {platforms: 'linuxx/amd64'},
      'platforms: "linuxx/amd64"'
    ],
    [
      'a tag with + (C06)',
      {tags: '2.1.2+a3aefa34'},
      'tags: "2.1.2+a3aefa34" holds "+"'
    ],
    [
      'build-args without = (C15)',
      {'build-args': 'JOBS 10'},
      'build-args: "JOBS 10"'
    ],
    [
      'a second identity for one registry (C19)',
      {
        'registry-auth': `${authYaml('hub', 'm1')}\n- {registry: "${REG.m1}", username: other, password: x}`
      },
      `registry "${REG.m1}" is given twice`
    ],
    ['the mirror is the image', {mirrors: image}, 'is the image itself'],
    [
      'mirror-attempts 0',
      {'mirror-attempts': '0'},
      'mirror-attempts: "0" must be a whole number from 1 to 20'
    ]
  ])('%s', (_, change, message) => {
    const run = runAction(
      {
        image,
        tags: 'v1',
        ...quick,
        mirrors: mirror,
        'registry-auth': authYaml('hub', 'm1'),
        ...change
      },
      {env: passwordEnv()}
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toContain(message)
    // Nothing ran: no emulator install, builder, login or build.
    expect(run.argv).toEqual([])
    for (const name of ['hub', 'm1', 'm2'] as const)
      expect(requestsFor(name, repo)).toEqual([])
    expectNoSecret(run)
  })

  it('stops at a refused mirror login before building (C22)', async () => {
    const run = runAction(
      {
        image,
        tags: 'v1',
        ...quick,
        mirrors: mirror,
        'registry-auth': `${authYaml('hub')}\n- {registry: "${REG.m1}", username: m1-ci, password: wrong}`
      },
      {env: passwordEnv()}
    )
    expect(run.status).not.toBe(0)
    // The registry's own reason, before anything is built (issue #2).
    expect(run.stdout).toMatch(
      new RegExp(
        `::error::Logins \\(${REG.m1.replace(/\./g, '\\.')}\\).*(401|unauthorized|incorrect username or password)`,
        'i'
      )
    )
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
    expect(await tagList(REG.hub, repo, USERS.hub)).toEqual([])
    const logged = run.stdout
      .split('\n')
      .filter(l => !l.startsWith('::add-mask::'))
    expect(logged.join('\n')).not.toContain('wrong')
    expectNoSecret(run)
  })
})

describe('passwords with every awkward character (canary, C16)', () => {
  let run: Run
  const repo = uniqueRepo('canary')
  beforeAll(() => {
    run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1',
        ...quick,
        mirrors: `${REG.m1}/${repo}\n${REG.m2}/${repo}`,
        'registry-auth': authYaml('hub', 'm1', 'm2')
      },
      {env: passwordEnv()}
    )
  })

  it('logs in everywhere with the password on stdin and copies to both mirrors', async () => {
    expect(run.status).toBe(0)
    const logins = commandsOf(run, 'login')
    expect(logins.map(l => l[1])).toEqual([REG.hub, REG.m1, REG.m2])
    for (const login of logins) {
      expect(login).toContain('--password-stdin')
      expect(login).not.toContain('-p')
      expect(login).not.toContain('--password')
    }
    // Exactly three logins, all before the build (C19).
    const firstBuild = run.argv.findIndex(
      a => a[0] === 'buildx' && a[1] === 'build'
    )
    expect(run.argv.map(a => a[0]).lastIndexOf('login')).toBeLessThan(
      firstBuild
    )
    for (const [registry, auth] of [
      [REG.m1, USERS.m1],
      [REG.m2, USERS.m2]
    ] as const) {
      expect((await manifest(registry, repo, 'v1', auth)).digest).toBe(
        run.outputs.digest
      )
    }
  })

  it('masks each password before the first login and before inputs are echoed', () => {
    const lines = run.stdout.split('\n')
    const firstLogin = lines.findIndex(l => l.startsWith('Logging in to '))
    const firstDebug = lines.findIndex(l =>
      l.startsWith('::debug::Resolved inputs')
    )
    for (const {password} of Object.values(USERS)) {
      const mask = lines.indexOf(`::add-mask::${password}`)
      expect(mask).toBeGreaterThanOrEqual(0)
      expect(mask).toBeLessThan(firstLogin)
      expect(mask).toBeLessThan(firstDebug)
    }
    expect(run.stdout).not.toMatch(/insecure/i)
  })

  it('leaks no password anywhere', () => expectNoSecret(run))

  it('sends each registry only its own identity (C21)', () => {
    for (const [name, user] of [
      ['hub', 'main-ci'],
      ['m1', 'm1-ci'],
      ['m2', 'm2-ci']
    ] as const) {
      const users = new Set(
        [
          ...readFileSync(
            join(stackEnv().MA_STACK_STATE, 'log', `registry-${name}.log`),
            'utf8'
          ).matchAll(/auth\.user\.name=(\S+)/g)
        ].map(m => m[1])
      )
      expect([...users]).toEqual([user])
    }
    const source = `${REG.hub}/${repo}@${run.outputs.digest}`
    for (const registry of [REG.m1, REG.m2]) {
      expect(expectCopiedOnce(run, `${registry}/${repo}`, source)).toEqual([
        'v1'
      ])
    }
  })
})

describe('list inputs written for readability (C10) and build-args (C15)', () => {
  it('trims, drops empty items and keeps commas in build-args', async () => {
    const repo = uniqueRepo('lists')
    const run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1.2.3, 1.2 ,',
        platforms: 'linux/amd64,\n linux/arm64/v8 ,\nlinux/arm/v7\n',
        context: CONTEXT,
        mirrors: `   ${REG.m1}/${repo}\n\n`,
        'build-args': 'JOBS=10\nNO_PROXY=localhost,127.0.0.1\nEMPTY=\n',
        'registry-auth': authYaml('hub', 'm1'),
        driver: 'docker',
        network: 'host',
        'qemu-image': `${REG.base}/test/binfmt-standin:1`
      },
      {env: passwordEnv()}
    )
    expect(run.status).toBe(0)
    const build = commandsOf(run, 'buildx', 'build')[0]
    expect(build[build.indexOf('--platform') + 1]).toBe(
      'linux/amd64,linux/arm64,linux/arm/v7'
    )
    expect(build.filter((_, i) => build[i - 1] === '--build-arg')).toEqual([
      'JOBS=10',
      'NO_PROXY=localhost,127.0.0.1',
      'EMPTY='
    ])
    for (const [registry, auth] of [
      [REG.hub, USERS.hub],
      [REG.m1, USERS.m1]
    ] as const) {
      expect(await tagList(registry, repo, auth)).toEqual(['1.2', 'v1.2.3'])
    }
    expect(
      expectCopiedOnce(
        run,
        `${REG.m1}/${repo}`,
        `${REG.hub}/${repo}@${run.outputs.digest}`
      )
    ).toEqual(['v1.2.3', '1.2'])
  })
})

describe('one platform spelled three ways (C08)', () => {
  it('builds it once and warns once', async () => {
    const repo = uniqueRepo('spellings')
    const run = runAction(
      {
        image: `${REG.m3}/${repo}`,
        tags: 'v1',
        ...quick,
        platforms: 'linux/arm64,linux/arm64/v8,linux/aarch64,linux/amd64',
        'qemu-image': `${REG.base}/test/binfmt-standin:1`
      },
      {env: passwordEnv()}
    )
    expect(run.status).toBe(0)
    const build = commandsOf(run, 'buildx', 'build')[0]
    expect(build[build.indexOf('--platform') + 1]).toBe(
      'linux/arm64,linux/amd64'
    )
    const warnings = run.stdout
      .split('\n')
      .filter(l => l.startsWith('::warning::platforms'))
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('linux/arm64, linux/arm64/v8, linux/aarch64')
    expect(
      ((await manifest(REG.m3, repo, 'v1')).body.manifests as unknown[]).length
    ).toBe(2)
    expect(run.stdout).not.toMatch(/missing|lacks/)
  })
})

describe('owner names with capitals (C07)', () => {
  it('lower-cases repositories, keeps the tag case, and never sends the capitals', async () => {
    const suffix = uniqueRepo('x').split('/')[1]
    const run = runAction(
      {
        image: `${REG.hub}/Example-Org/${suffix}`,
        tags: 'Beta-1',
        ...quick,
        mirrors: `${REG.m1}/Example-Org/${suffix}`,
        'registry-auth': authYaml('hub', 'm1')
      },
      {env: passwordEnv()}
    )
    expect(run.status).toBe(0)
    const repo = `example-org/${suffix}`
    expect(await tagList(REG.hub, repo, USERS.hub)).toEqual(['Beta-1'])
    expect(await tagList(REG.m1, repo, USERS.m1)).toEqual(['Beta-1'])
    expect(
      run.stdout.match(/::notice::(image|mirrors): repository/g)
    ).toHaveLength(2)
    for (const name of ['hub', 'm1'] as const)
      expect(requestsFor(name, `Example-Org/${suffix}`)).toEqual([])
  })
})

describe('nothing left on the runner (C17)', () => {
  function release(mirrors: string, auth: string): Run {
    return runAction(
      {
        image: `${REG.hub}/${uniqueRepo('leftover')}`,
        tags: 'v1',
        ...quick,
        mirrors,
        'registry-auth': auth
      },
      {env: passwordEnv()}
    )
  }

  it.each([
    ['after a release', () => release(`${REG.m1}/x`, authYaml('hub', 'm1')), 0],
    // A failed main step: a mirror registry that is not listening.
    [
      'after a failed release',
      () => release('127.0.0.1:5999/x', authYaml('hub', 'm1')),
      1
    ]
  ])('%s', (_, go, failed) => {
    const run = go()
    expect(run.status === 0 ? 0 : 1).toBe(failed)
    expect(run.post.status).toBe(0)
    expect(readdirSync(run.runnerTemp)).toEqual([])
    const config = join(run.dir, 'user-docker-config', 'config.json')
    if (existsSync(config)) {
      const auths =
        (JSON.parse(readFileSync(config, 'utf8')) as {auths?: object}).auths ??
        {}
      expect(Object.keys(auths)).toEqual([])
    }
    const builders = buildersAfter(run).stdout
    expect(builders).not.toContain('multiarch-')
    expectNoSecret(run)
  })
})

describe('a build without push (C29)', () => {
  it('builds every platform, pushes nothing and says mirrors were skipped', () => {
    const repo = uniqueRepo('nopush')
    const run = runAction(
      {
        image: `${REG.hub}/${repo}`,
        tags: 'v1',
        ...quick,
        platforms: 'linux/amd64,linux/arm64/v8,linux/arm/v7',
        push: 'false',
        mirrors: `${REG.m1}/${repo}`,
        'qemu-image': `${REG.base}/test/binfmt-standin:1`
      },
      {env: passwordEnv()}
    )
    expect(run.status).toBe(0)
    const build = commandsOf(run, 'buildx', 'build')[0]
    expect(build).not.toContain('--load')
    expect(build).not.toContain('--push')
    expect(build.join(' ')).not.toContain('type=docker')
    expect(run.stdout).toMatch(
      /::notice::mirrors: skipped, because push is false/
    )
    for (const name of ['hub', 'm1'] as const) {
      expect(writesFor(name, repo)).toEqual([])
    }
    expect(run.outputs.digest).toBe('')
  })
})
