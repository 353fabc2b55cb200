import {join} from 'node:path'
import {
  FIXTURES,
  HANDLERS,
  REG,
  STANDIN,
  commandsOf,
  registered,
  restoreHandlers,
  runAction,
  uniqueRepo,
  unregister,
  type Run
} from './harness.js'

// The emulator phase against the kernel's real binfmt_misc table: handlers
// are removed, the action installs them with the stand-in installer image
// through `docker run --privileged`, and a second run installs nothing.
// Every test leaves the handlers registered, as the other suites need them.

function release(platforms: string): Run {
  return runAction({
    image: `${REG.m3}/${uniqueRepo('emulators')}`,
    tags: 'v1',
    platforms,
    context: join(FIXTURES, 'busybox'),
    driver: 'docker',
    network: 'host',
    'qemu-image': STANDIN
  })
}

describe('emulators', () => {
  afterAll(() => {
    // Put back what the tests removed, whatever happened.
    restoreHandlers()
    expect(HANDLERS.every(registered)).toBe(true)
  })

  it('installs the missing handlers, then builds', () => {
    HANDLERS.forEach(unregister)
    expect(HANDLERS.some(registered)).toBe(false)
    const run = release('linux/amd64,linux/arm64/v8,linux/arm/v7')
    expect(run.status).toBe(0)
    expect(commandsOf(run, 'run', '--rm', '--privileged')).toEqual([
      ['run', '--rm', '--privileged', STANDIN, '--install', 'arm64,arm']
    ])
    expect(HANDLERS.every(registered)).toBe(true)
  })

  it('installs only the one that is missing', () => {
    unregister('qemu-arm')
    const run = release('linux/arm64,linux/arm/v7')
    expect(run.status).toBe(0)
    expect(commandsOf(run, 'run', '--rm', '--privileged')).toEqual([
      ['run', '--rm', '--privileged', STANDIN, '--install', 'arm']
    ])
    expect(run.stdout).toContain(
      'linux/arm64: qemu-aarch64 is already registered'
    )
  })

  it('installs nothing when every handler is there, or every platform is native', () => {
    for (const platforms of ['linux/arm64,linux/arm/v7', 'linux/amd64']) {
      const run = release(platforms)
      expect(run.status).toBe(0)
      expect(commandsOf(run, 'run')).toEqual([])
    }
  })

  it('fails before building when the installer leaves a handler missing', () => {
    unregister('qemu-arm')
    // The installer "succeeds" without registering anything, as binfmt's
    // own installer does when an emulator fails to register.
    const run = runAction(
      {
        image: `${REG.m3}/${uniqueRepo('emulators')}`,
        tags: 'v1',
        platforms: 'linux/amd64,linux/arm/v7',
        context: join(FIXTURES, 'busybox'),
        driver: 'docker',
        network: 'host',
        'qemu-image': STANDIN
      },
      {wrapperHook: 'if [ "$1" = run ]; then exit 0; fi'}
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(
      /::error::Emulators: no emulator is registered for linux\/arm\/v7 \(no qemu-arm in \/proc\/sys\/fs\/binfmt_misc\)/
    )
    expect(commandsOf(run, 'buildx', 'build')).toEqual([])
  })
})
