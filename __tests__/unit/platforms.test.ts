import {
  emulatorFor,
  formatPlatform,
  fromDescriptor,
  parsePlatform
} from '../../src/platforms.js'

describe('parsePlatform normalises like containerd', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/arm64/v8', 'linux/arm64'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64', 'linux/arm64'],
    ['linux/arm', 'linux/arm/v7'],
    ['linux/arm/v7', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/armhf', 'linux/arm/v7'],
    ['Linux/AMD64', 'linux/amd64'],
    ['linux/amd64/v3', 'linux/amd64/v3'],
    ['linux/386', 'linux/386'],
    ['linux/riscv64', 'linux/riscv64']
  ])('%s is %s', (given, expected) => {
    expect(formatPlatform(parsePlatform(given))).toBe(expected)
  })

  it.each([
    ['linux/amd64/v8', /no variant "v8".*did you mean linux\/arm64/],
    [
      'linux/armv7',
      /unknown architecture "armv7".*did you mean linux\/arm\/v7/
    ],
    ['linuxx/amd64', /unknown os "linuxx".*did you mean linux\/amd64/],
    ['amd64', /expected os\/arch/],
    ['linux/', /expected os\/arch/],
    ['linux/arm64/v8/x', /expected os\/arch/]
  ])('%s is rejected', (given, message) => {
    expect(() => parsePlatform(given)).toThrow(message)
  })
})

describe('fromDescriptor', () => {
  it.each([
    [{os: 'linux', architecture: 'arm64', variant: 'v8'}, 'linux/arm64'],
    [{os: 'linux', architecture: 'arm64'}, 'linux/arm64'],
    [{os: 'linux', architecture: 'arm', variant: 'v7'}, 'linux/arm/v7'],
    [{os: 'unknown', architecture: 'unknown'}, 'unknown/unknown']
  ])('%j is %s', (platform, expected) => {
    expect(fromDescriptor(platform)).toBe(expected)
  })
})

describe('emulatorFor', () => {
  it.each([
    ['linux/arm64', 'qemu-aarch64', 'arm64'],
    ['linux/arm/v7', 'qemu-arm', 'arm'],
    ['linux/riscv64', 'qemu-riscv64', 'riscv64'],
    ['linux/ppc64le', 'qemu-ppc64le', 'ppc64le']
  ])('%s needs %s, installed as %s', (platform, handler, installName) => {
    expect(emulatorFor(platform)).toEqual({handler, installName})
  })
})
