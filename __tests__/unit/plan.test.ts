import {jest} from '@jest/globals'
import {mkdtempSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {getInputs} from '../../src/inputs.js'
import {plan} from '../../src/plan.js'
import {withInputs} from './helpers.js'

// The SRS release as one step, planned with no emulator registered.
const SRS = {
  image: 'ossrs/srs',
  tags: 'v6.0.145\n6',
  file: 'trunk/Dockerfile',
  'build-args': 'JOBS=10',
  mirrors: 'registry.cn-hangzhou.aliyuncs.com/ossrs/srs',
  'registry-auth': [
    '- {username: ossrsbot, password-env: DOCKER_PASSWORD}',
    '- {registry: registry.cn-hangzhou.aliyuncs.com, username: ossrs, password-env: ACR_PASSWORD}'
  ].join('\n'),
  'dry-run': 'true'
}

// The plan reads files relative to the working directory, as buildx does.
const cwd = process.cwd()
beforeAll(() => process.chdir(join(import.meta.dirname, '../fixtures/srs')))
afterAll(() => process.chdir(cwd))

describe('dry-run plan', () => {
  it('lists every command of the SRS release and no password', () => {
    const env = {
      DOCKER_PASSWORD: 'hub-secret',
      ACR_PASSWORD: 'acr-secret',
      MULTIARCH_BINFMT_DIR: mkdtempSync(join(tmpdir(), 'binfmt-'))
    }
    jest.useFakeTimers({now: new Date('2026-12-01T00:00:00Z')})
    const {value, error} = withInputs(SRS, () => plan(getInputs()), env)
    expect(error).toBeUndefined()
    const lines = value!.map(command => command.join(' '))
    expect(lines.join('\n')).not.toMatch(/hub-secret|acr-secret/)
    expect(lines).toMatchSnapshot()
    jest.useRealTimers()
  })
})

describe('dry-run plan in mirror-only mode', () => {
  it('reads the source, copies it, and builds nothing', () => {
    const {value, error} = withInputs(
      {
        source: 'ossrs/srs:v6.0.145',
        tags: 'v6.0.145',
        mirrors: 'registry.cn-hangzhou.aliyuncs.com/ossrs/srs',
        'dry-run': 'true'
      },
      () => plan(getInputs())
    )
    expect(error).toBeUndefined()
    const lines = value!.map(command => command.join(' '))
    expect(lines.join('\n')).not.toMatch(
      /buildx build|--privileged|buildx create/
    )
    expect(lines).toContain('GET ossrs/srs:v6.0.145')
    expect(lines).toContain(
      'docker buildx imagetools create --tag registry.cn-hangzhou.aliyuncs.com/ossrs/srs:v6.0.145 ossrs/srs@<digest>'
    )
  })
})
