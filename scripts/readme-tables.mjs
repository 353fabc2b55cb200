// Keeps the README's inputs and outputs tables equal to action.yml:
// `node scripts/readme-tables.mjs` rewrites them between their markers, and
// a unit test fails when they differ.

import {readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'
import {parse} from 'yaml'

const ROOT = join(fileURLToPath(import.meta.url), '../..')

// Inputs that take several values, one per line (or comma separated).
const LISTS = [
  'tags',
  'platforms',
  'build-args',
  'labels',
  'annotations',
  'mirrors',
  'secrets',
  'secret-files',
  'cache-from',
  'cache-to',
  'driver-opts',
  'digests'
]

export function inputType(name, spec) {
  if (name === 'registry-auth') return 'YAML'
  if (LISTS.includes(name)) return 'List'
  if (spec.default === 'true' || spec.default === 'false') return 'Bool'
  if (/^\d+$/.test(spec.default ?? '')) return 'Number'
  return 'String'
}

const cell = text =>
  String(text ?? '')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/\|/g, '\\|')

export function tables(actionYml) {
  const action = parse(actionYml)
  const inputs = Object.entries(action.inputs).map(([name, spec]) => {
    const fallback = spec.default ? `\`${cell(spec.default)}\`` : ''
    return `| \`${name}\` | ${inputType(name, spec)} | ${fallback} | ${cell(spec.description)} |`
  })
  const outputs = Object.entries(action.outputs).map(
    ([name, spec]) => `| \`${name}\` | ${cell(spec.description)} |`
  )
  return {
    inputs: [
      '| Name | Type | Default | Description |',
      '|---|---|---|---|',
      ...inputs
    ].join('\n'),
    outputs: ['| Name | Description |', '|---|---|', ...outputs].join('\n')
  }
}

export function render(readme, actionYml) {
  const generated = tables(actionYml)
  return readme.replace(
    /(<!-- (inputs|outputs):start -->)[\s\S]*?(<!-- \2:end -->)/g,
    (_, start, which, end) => `${start}\n${generated[which]}\n${end}`
  )
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = join(ROOT, 'README.md')
  const actionYml = readFileSync(join(ROOT, 'action.yml'), 'utf8')
  writeFileSync(file, render(readFileSync(file, 'utf8'), actionYml))
}
