import {jest} from '@jest/globals'

// Runs `work` with INPUT_* variables set as the runner sets them and
// returns what it wrote to stdout (workflow commands included).
export function withInputs<T>(
  inputs: Record<string, string>,
  work: () => T,
  env: Record<string, string> = {}
): {value?: T; error?: Error; stdout: string} {
  const saved = {...process.env}
  for (const key of Object.keys(process.env)) {
    if (key.startsWith('INPUT_')) delete process.env[key]
  }
  delete process.env.GITHUB_REF
  delete process.env.GITHUB_EVENT_NAME
  for (const [name, value] of Object.entries(inputs)) {
    process.env[`INPUT_${name.toUpperCase()}`] = value
  }
  Object.assign(process.env, env)
  let stdout = ''
  const spy = jest
    .spyOn(process.stdout, 'write')
    .mockImplementation((chunk: string | Uint8Array) => {
      stdout += chunk.toString()
      return true
    })
  try {
    return {value: work(), stdout}
  } catch (error) {
    return {error: error as Error, stdout}
  } finally {
    spy.mockRestore()
    process.env = saved
  }
}
