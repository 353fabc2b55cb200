import {
  parseReference,
  registryKey,
  repositoryKey,
  repositoryName
} from '../../src/reference.js'

describe('parseReference', () => {
  it.each([
    ['ossrs/srs', {domain: '', path: 'ossrs/srs'}],
    [
      'registry.cn-hangzhou.aliyuncs.com/ossrs/srs',
      {domain: 'registry.cn-hangzhou.aliyuncs.com', path: 'ossrs/srs'}
    ],
    [
      '127.0.0.1:5001/example/app:v1',
      {domain: '127.0.0.1:5001', path: 'example/app', tag: 'v1'}
    ],
    [
      'localhost/app@sha256:' + 'a'.repeat(64),
      {domain: 'localhost', path: 'app', digest: 'sha256:' + 'a'.repeat(64)}
    ],
    [
      'registry.example.com/Example-Org/App',
      {domain: 'registry.example.com', path: 'example-org/app', lowered: true}
    ],
    ['ghcr.io/o/a:Beta-1', {domain: 'ghcr.io', path: 'o/a', tag: 'Beta-1'}]
  ])('%s', (text, expected) => {
    expect(parseReference(text)).toEqual(expected)
  })

  it.each([
    ['mirror2.example.com/example/app:', /empty tag/],
    ['ossrs/srs:v1+build', /invalid tag/],
    ['ossrs//srs', /invalid repository path/],
    ['ossrs/srs@sha256:abc', /invalid digest/],
    ['', /empty reference/],
    ['bad_host.example.com:x/app', /invalid registry host|invalid repository/]
  ])('%s is rejected', (text, message) => {
    expect(() => parseReference(text)).toThrow(message)
  })

  it('names a repository with its host as given and its path lowered', () => {
    expect(repositoryName(parseReference('Quay.io/Org/App'))).toBe(
      'quay.io/org/app'
    )
  })
})

describe('Docker Hub is one registry however it is spelled', () => {
  it.each([
    '',
    'docker.io',
    'index.docker.io',
    'registry-1.docker.io',
    'https://index.docker.io/v1/'
  ])('%j', host => expect(registryKey(host)).toBe('docker.io'))
  it.each([
    ['ossrs/srs', 'docker.io/ossrs/srs'],
    ['docker.io/ossrs/srs', 'docker.io/ossrs/srs'],
    ['index.docker.io/ossrs/srs', 'docker.io/ossrs/srs'],
    ['busybox', 'docker.io/library/busybox'],
    ['ghcr.io/busybox', 'ghcr.io/busybox']
  ])('%s', (text, key) => expect(repositoryKey(parseReference(text))).toBe(key))
})
