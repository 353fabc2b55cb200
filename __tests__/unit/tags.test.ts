import {mkdtempSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {
  defaultTags,
  isNewer,
  readFileVersion,
  renderTemplate
} from '../../src/tags.js'

const tagsOf = (ref: string, latest = false): string[] | undefined =>
  defaultTags({ref, latest})?.tags

describe('tags from the git tag', () => {
  it.each([
    // Stable semver moves the major tags.
    ['refs/tags/v5.0.123', ['v5.0.123', '5.0.123', '5', 'v5']],
    ['refs/tags/v10.2.3', ['v10.2.3', '10.2.3', '10', 'v10']],
    ['refs/tags/6.0.145', ['6.0.145', '6', 'v6']],
    // SRS release tags move them too; alpha, beta and dev do not.
    ['refs/tags/v5.0-r2', ['v5.0-r2', '5.0-r2', '5', 'v5']],
    ['refs/tags/v6.0-a1', ['v6.0-a1', '6.0-a1']],
    ['refs/tags/v6.0-b1', ['v6.0-b1', '6.0-b1']],
    ['refs/tags/v6.0-d1', ['v6.0-d1', '6.0-d1']],
    // Semver pre-releases never move them (C04).
    ['refs/tags/v2.3.0-rc.12', ['v2.3.0-rc.12', '2.3.0-rc.12']],
    ['refs/tags/v1.0.0-alpha', ['v1.0.0-alpha', '1.0.0-alpha']],
    // Build metadata: `+` is forbidden in a tag (C06).
    [
      'refs/tags/v2.1.2-alpha+a3aefa34',
      ['v2.1.2-alpha-a3aefa34', '2.1.2-alpha-a3aefa34']
    ],
    // A tag nested in a path is read after its last slash.
    ['refs/tags/release/v6.0.145', ['v6.0.145', '6.0.145', '6', 'v6']],
    // Anything else is written as it is, cleaned.
    ['refs/tags/nightly#3', ['nightly-3']]
  ])('%s gives %j', (ref, expected) => {
    expect(tagsOf(ref)).toEqual(expected)
  })

  it('adds latest only when asked, and only for stable releases', () => {
    expect(tagsOf('refs/tags/v2.3.0', true)).toEqual([
      'v2.3.0',
      '2.3.0',
      '2',
      'v2',
      'latest'
    ])
    expect(tagsOf('refs/tags/v2.3.0-rc.12', true)).toEqual([
      'v2.3.0-rc.12',
      '2.3.0-rc.12'
    ])
    const rc = defaultTags({ref: 'refs/tags/v2.3.0-rc.12', latest: true})
    expect(rc?.notices.join()).toContain(
      'not a stable release; the major tags and latest stay'
    )
  })

  it('says which floating tags it would move', () => {
    expect(
      defaultTags({ref: 'refs/tags/v5.0.1', latest: true})?.floating
    ).toEqual(['5', 'v5', 'latest'])
  })

  it.each(['refs/heads/main', 'refs/pull/1/merge', undefined, 'refs/tags/'])(
    '%s is no tag push',
    ref => expect(tagsOf(ref as string)).toBeUndefined()
  )
})

describe('templates', () => {
  const context = {
    ref: 'refs/tags/v6.0.145',
    sha: '0123456789abcdef',
    latest: false,
    fileVersion: '6.0.145'
  }
  it.each([
    ['{{version}}', '6.0.145'],
    ['{{tag}}', 'v6.0.145'],
    ['v{{major}}', 'v6'],
    ['{{major}}.{{minor}}', '6.0'],
    ['sha-{{sha}}', 'sha-0123456'],
    ['{{file_version}}', '6.0.145'],
    ['{{ version }}+build', '6.0.145-build']
  ])('%s renders %s', (template, tag) => {
    expect(renderTemplate(template, context)).toEqual({tag})
  })

  it('refuses a placeholder with no value instead of writing a partial tag', () => {
    expect(
      renderTemplate('v{{major}}', {ref: 'refs/heads/main', latest: false})
    ).toEqual({missing: '{{major}}'})
    expect(renderTemplate('{{nope}}', context)).toEqual({missing: '{{nope}}'})
  })
})

describe('version file', () => {
  it("reads SRS's three #defines", () => {
    const dir = mkdtempSync(join(tmpdir(), 'version-'))
    const file = join(dir, 'srs_core_version6.hpp')
    writeFileSync(
      file,
      '#define VERSION_MAJOR 6\n#define VERSION_MINOR 0\n#define VERSION_REVISION 145\n'
    )
    const pattern =
      'VERSION_MAJOR\\s+(\\d+)[\\s\\S]*VERSION_MINOR\\s+(\\d+)[\\s\\S]*VERSION_REVISION\\s+(\\d+)'
    expect(readFileVersion(file, pattern)).toBe('6.0.145')
    expect(readFileVersion(file, 'nothing(\\d)')).toBe('')
  })
})

describe('floating tags never move backwards', () => {
  it.each([
    ['5.0.130', '5.0.123', true],
    ['5.0.123', '5.0.130', false],
    ['5.0.123', '5.0.123', false],
    ['6.0.1', '5.0.200', true],
    ['5.1-r1', '5.0.200', true],
    ['5.0-r2', '5.0.200', false],
    ['', '5.0.1', false]
  ])('current %s, ours %s: newer %s', (current, ours, newer) => {
    expect(isNewer(current, ours)).toBe(newer)
  })
})
