import * as core from '@actions/core'

// Notices that explain a decision the run made on the user's behalf (a tag
// left where it was, a repository lower-cased, mirrors skipped). They go to
// the log as annotations and are repeated in the job summary.

const taken: string[] = []

export function notice(text: string): void {
  core.notice(text)
  taken.push(text)
}

export const notes = (): readonly string[] => taken
