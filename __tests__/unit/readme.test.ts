import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {parse} from 'yaml'
import {render} from '../../scripts/readme-tables.mjs'

const ROOT = join(import.meta.dirname, '../..')
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
const actionYml = readFileSync(join(ROOT, 'action.yml'), 'utf8')

describe('README', () => {
  it('has the inputs and outputs tables of action.yml', () => {
    // Run `node scripts/readme-tables.mjs` to bring them up to date.
    expect(readme).toBe(render(readme, actionYml))
  })

  it('documents every input and output by name', () => {
    const action = parse(actionYml) as {inputs: object; outputs: object}
    for (const name of [
      ...Object.keys(action.inputs),
      ...Object.keys(action.outputs)
    ]) {
      expect(readme).toContain(`| \`${name}\` |`)
    }
  })
})
