import {
  backoff,
  classify,
  copyArgs,
  explain,
  parseRetryAfter
} from '../../src/mirrors.js'

// Failure texts as buildx 0.13 prints them for imagetools create.
describe('classify', () => {
  it.each([
    [
      'failed commit on ref "index-sha256:1": unexpected status from PUT request to http://m/v2/a/manifests/v1: 500 Internal Server Error',
      'transient'
    ],
    [
      'unexpected status from PUT request to http://m/v2/a/manifests/v1: 503 Service Unavailable',
      'transient'
    ],
    [
      'unexpected status from HEAD request to http://m/v2/a/blobs/sha256:1: 429 Too Many Requests',
      'transient'
    ],
    [
      'failed to do request: Head "http://m/v2/a/blobs/sha256:1": read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer',
      'transient'
    ],
    ['dial tcp 127.0.0.1:5999: connect: connection refused', 'transient'],
    ['net/http: TLS handshake timeout', 'transient'],
    ['dial tcp: lookup registry.example.com: no such host', 'transient'],
    ['timed out after 600 s', 'transient'],
    [
      'unexpected status from PUT request to http://m/v2/a/manifests/v1: 400 Bad Request',
      'permanent'
    ],
    ['MANIFEST_INVALID: manifest invalid', 'permanent'],
    ['denied: requested access to the resource is denied', 'permanent'],
    [
      'unexpected status from POST request to http://m/v2/a/blobs/uploads/: 401 Unauthorized',
      'unauthorized'
    ],
    [
      'failed to authorize: failed to fetch anonymous token: authentication required',
      'unauthorized'
    ],
    ['ERROR: m/a:v1: not found', 'missing'],
    ['something nobody has seen', 'permanent']
  ])('%s is %s', (stderr, cause) => {
    expect(classify(stderr)).toBe(cause)
  })
})

describe('backoff', () => {
  it('doubles from the base, with jitter between half and one and a half', () => {
    expect(backoff(1, 2, () => 0)).toBe(1)
    expect(backoff(1, 2, () => 0.5)).toBe(2)
    expect(backoff(2, 2, () => 0.5)).toBe(4)
    expect(backoff(3, 2, () => 0.99)).toBe(11.9)
    expect(backoff(20, 2, () => 0.5)).toBe(300)
  })
})

describe('explain', () => {
  it('names the media type and the input that fixes a refused manifest', () => {
    const text = explain(
      '400 Bad Request: MANIFEST_INVALID',
      'application/vnd.oci.image.index.v1+json'
    )
    expect(text).toContain('application/vnd.oci.image.index.v1+json')
    expect(text).toContain('provenance: false')
    expect(explain('connection reset', 'x')).toBe('connection reset')
  })
})

describe('copyArgs', () => {
  it('keeps a single manifest when asked, and leaves the builder to buildx in mirror-only mode', () => {
    expect(copyArgs('', 'm/a', ['v1'], 'h/a@sha256:1', true)).toEqual([
      'buildx',
      'imagetools',
      'create',
      '--prefer-index=false',
      '--tag',
      'm/a:v1',
      'h/a@sha256:1'
    ])
  })
})

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-12-04T00:00:00Z')
  it.each([
    [null, 0],
    ['3', 3],
    ['120', 120],
    ['9999', 300],
    ['Fri, 04 Dec 2026 00:00:30 GMT', 30],
    ['Thu, 03 Dec 2026 23:00:00 GMT', 0],
    ['soon', 0]
  ])('%s waits %d s', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds)
  })
})

describe('a refused manifest PUT as buildx prints it', () => {
  it('gets the media type hint', () => {
    const text = explain(
      'ERROR: failed commit on ref "index-sha256:1": unexpected status from PUT request to http://m/v2/a/manifests/v1: 400 Bad Request',
      'application/vnd.oci.image.index.v1+json'
    )
    expect(text).toContain(
      'refused a manifest of type application/vnd.oci.image.index.v1+json'
    )
  })
})
