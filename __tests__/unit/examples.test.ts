import {readFileSync, readdirSync} from 'node:fs'
import {join} from 'node:path'
import {parse} from 'yaml'

// Every workflow under examples/ uses this action only with inputs that
// action.yml declares, and passes passwords through password-env.
const ROOT = join(import.meta.dirname, '../..')
const action = parse(readFileSync(join(ROOT, 'action.yml'), 'utf8')) as {
  inputs: Record<string, unknown>
}
const examples = readdirSync(join(ROOT, 'examples')).filter(name =>
  name.endsWith('.yml')
)

interface Step {
  uses?: string
  with?: Record<string, string>
}

describe.each(examples)('examples/%s', name => {
  const workflow = parse(
    readFileSync(join(ROOT, 'examples', name), 'utf8')
  ) as {
    jobs: Record<string, {steps?: Step[]}>
  }
  const ours = Object.values(workflow.jobs)
    .flatMap(job => job.steps ?? [])
    .filter(step => step.uses?.startsWith('ossrs/multiarch-action@'))

  it('uses the action', () => expect(ours.length).toBeGreaterThan(0))

  it('gives only declared inputs, and no password inline', () => {
    for (const step of ours) {
      for (const input of Object.keys(step.with ?? {})) {
        expect(Object.keys(action.inputs)).toContain(input)
      }
      expect(step.with?.['registry-auth'] ?? '').not.toMatch(/password:/)
    }
  })
})
