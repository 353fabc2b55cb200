import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {
  builderPlatforms,
  emulatedPlatforms,
  parseInstallerStatus,
  unmet
} from '../../src/emulators.js'

// The emulator checks read two things besides the kernel: the installer's
// JSON status and, for remote builders, `docker buildx inspect`.

const CAPTURED = join(import.meta.dirname, '../fixtures/progress')
const captured = (name: string): string =>
  readFileSync(join(CAPTURED, name), 'utf8')

describe('the installer status', () => {
  it('reads the stand-in installer output, platforms normalised', () => {
    expect(
      parseInstallerStatus(captured('binfmt-standin-install.stdout'))
    ).toEqual({
      supported: [
        'linux/amd64',
        'linux/386',
        'linux/arm64',
        'linux/arm/v7',
        'linux/arm/v6'
      ],
      emulators: ['qemu-aarch64', 'qemu-arm']
    })
  })

  it('takes null as no emulators, and ignores text around the JSON', () => {
    const stdout =
      'some banner\n{\n  "supported": [\n    "linux/amd64"\n  ],\n  "emulators": null\n}\n'
    expect(parseInstallerStatus(stdout)).toEqual({
      supported: ['linux/amd64'],
      emulators: []
    })
  })

  it.each([
    '',
    'installing: arm OK',
    '{"supported": "linux/amd64"}',
    '{"emulators": []}',
    '{not json}'
  ])('gives null for %j', stdout => {
    expect(parseInstallerStatus(stdout)).toBeNull()
  })
})

describe('what is still missing', () => {
  const needs = emulatedPlatforms(
    ['linux/amd64', 'linux/arm64', 'linux/arm/v7'],
    ['linux/amd64']
  )

  it('is nothing when the kernel and the installer agree', () => {
    const status = parseInstallerStatus(
      captured('binfmt-standin-install.stdout')
    )
    expect(unmet(needs, status, () => true)).toEqual([])
  })

  it('names the handler the kernel lacks and what the installer said', () => {
    const status = {
      supported: ['linux/amd64', 'linux/arm64'],
      emulators: ['qemu-aarch64']
    }
    const found = unmet(needs, status, handler => handler !== 'qemu-arm')
    expect(found).toHaveLength(1)
    expect(found[0].need).toEqual({
      platform: 'linux/arm/v7',
      handler: 'qemu-arm',
      installName: 'arm'
    })
    expect(found[0].kernel).toBe(false)
    expect(found[0].why).toEqual([
      'no qemu-arm in /proc/sys/fs/binfmt_misc',
      'the installer lists no qemu-arm emulator',
      'the installer does not list linux/arm/v7 as supported'
    ])
  })

  it('catches a handler the kernel has but the installer cannot run', () => {
    const status = {supported: ['linux/amd64'], emulators: ['qemu-aarch64']}
    const found = unmet(needs, status, () => true)
    expect(found.map(f => [f.need.platform, f.kernel, f.why])).toEqual([
      [
        'linux/arm64',
        true,
        ['the installer does not list linux/arm64 as supported']
      ],
      [
        'linux/arm/v7',
        true,
        [
          'the installer lists no qemu-arm emulator',
          'the installer does not list linux/arm/v7 as supported'
        ]
      ]
    ])
  })

  it('relies on the kernel alone without a status', () => {
    expect(unmet(needs, null, () => true)).toEqual([])
    expect(
      unmet(needs, null, h => h === 'qemu-arm').map(f => f.need.handler)
    ).toEqual(['qemu-aarch64'])
  })
})

describe('the platforms a builder reports', () => {
  it('reads the docker driver', () => {
    expect(builderPlatforms(captured('buildx-inspect-docker.txt'))).toEqual([
      'linux/amd64',
      'linux/amd64/v2',
      'linux/amd64/v3',
      'linux/amd64/v4',
      'linux/arm64'
    ])
  })

  it('joins every node of a builder and drops the * of hand-set platforms', () => {
    // Written for this test in the shape of `buildx inspect` for two nodes.
    const inspect = [
      'Name:   remote-builder',
      'Driver: remote',
      '',
      'Nodes:',
      'Name:      remote-builder0',
      'Platforms: linux/amd64*, linux/386',
      '',
      'Name:      remote-builder1',
      'Platforms: linux/arm64, linux/arm/v7, linux/arm/v6'
    ].join('\n')
    expect(builderPlatforms(inspect)).toEqual([
      'linux/amd64',
      'linux/386',
      'linux/arm64',
      'linux/arm/v7',
      'linux/arm/v6'
    ])
  })
})
