import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {parse} from 'yaml'
import {getInputs} from '../../src/inputs.js'
import {withInputs} from './helpers.js'

// examples/native-matrix.yml: the per-platform legs and the merge job fit
// what action.yml declares, and what they pass reads as valid inputs.
const ROOT = join(import.meta.dirname, '../..')
const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as {
  inputs: Record<string, unknown>
  outputs: Record<string, unknown>
}
const text = readFileSync(join(ROOT, 'examples/native-matrix.yml'), 'utf8')

interface Step {
  id?: string
  uses?: string
  with?: Record<string, string | boolean>
}
interface Job {
  needs?: string
  'runs-on': string
  strategy?: {matrix: {include: Record<string, string>[]}}
  steps: Step[]
}
const workflow = parse(text) as {jobs: {build: Job; merge: Job}}
const ours = (job: Job): Step =>
  job.steps.find(step => step.uses?.startsWith('ossrs/multiarch-action@'))!

describe('examples/native-matrix.yml', () => {
  it('gives only inputs that action.yml declares', () => {
    for (const job of Object.values(workflow.jobs)) {
      for (const input of Object.keys(ours(job).with ?? {})) {
        expect(Object.keys(action.inputs)).toContain(input)
      }
    }
  })

  it('reads only outputs that action.yml declares', () => {
    const used = [...text.matchAll(/steps\.build\.outputs\.([\w-]+)/g)]
    expect(used.length).toBeGreaterThan(0)
    for (const [, output] of used) {
      expect(Object.keys(action.outputs)).toContain(output)
    }
  })

  it('pins every other action by a full commit SHA', () => {
    const others = Object.values(workflow.jobs)
      .flatMap(job => job.steps)
      .map(step => step.uses)
      .filter(uses => uses && !uses.startsWith('ossrs/multiarch-action@'))
    expect(others.length).toBe(3)
    for (const uses of others) expect(uses).toMatch(/@[0-9a-f]{40}$/)
  })

  it('builds each platform natively, by digest, and merges after', () => {
    const legs = workflow.jobs.build.strategy!.matrix.include
    expect(legs.map(leg => [leg.runner, leg.platform])).toEqual([
      ['ubuntu-24.04', 'linux/amd64'],
      ['ubuntu-24.04-arm', 'linux/arm64']
    ])
    expect(ours(workflow.jobs.build).with?.['push-by-digest']).toBe(true)
    expect(workflow.jobs.merge.needs).toBe('build')
  })

  it('passes inputs the action accepts, leg and merge alike', () => {
    const env = {GITHUB_REF: 'refs/tags/v6.0.145', PW: 'x'}
    const auth = '- username: bot\n  password-env: PW'
    const leg = {
      ...(ours(workflow.jobs.build).with as Record<string, string>),
      'push-by-digest': 'true',
      platforms: 'linux/arm64',
      context: join(ROOT, '__tests__/fixtures/busybox'),
      file: '',
      'version-file': '',
      'registry-auth': auth
    }
    const built = withInputs(leg, () => getInputs(), env)
    expect(built.error).toBeUndefined()
    expect(built.value!.pushByDigest).toBe(true)

    const merge = {
      ...(ours(workflow.jobs.merge).with as Record<string, string>),
      digests: `linux/amd64=sha256:${'a'.repeat(64)}\nlinux/arm64=sha256:${'b'.repeat(64)}\n`,
      'registry-auth': auth
    }
    const merged = withInputs(merge, () => getInputs(), env)
    expect(merged.error).toBeUndefined()
    expect(merged.value!.tags).toEqual(['v6.0.145', '6.0.145', '6', 'v6'])
    expect(merged.value!.mirrors).toEqual([
      'registry.cn-hangzhou.aliyuncs.com/ossrs/srs'
    ])
  })
})
