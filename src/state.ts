import * as core from '@actions/core'

// What main created, carried to the post step that undoes it. Saved state
// holds names and paths only, never a credential.

export interface Created {
  builder?: string
  dockerConfig?: string
  buildxConfig?: string
  logins?: string[]
  tempDir?: string
}

const POST = 'isPost'
const CREATED = 'created'

export const isPost = (): boolean => core.getState(POST) === 'true'

export function markMain(): void {
  core.saveState(POST, 'true')
}

// The runner hands saved state to the post step only, so main keeps its own
// copy of what it has recorded so far.
let created: Created = {}

export function load(): Created {
  const text = core.getState(CREATED)
  return text ? (JSON.parse(text) as Created) : created
}

export function record(change: Partial<Created>): void {
  created = {...created, ...change}
  core.saveState(CREATED, JSON.stringify(created))
}
