export const ROOT: string

export interface Run {
  status: number
  stdout: string
  outputs: Record<string, string>
  summary: string
  argv: string[][]
  post: {status: number; stdout: string}
  dir: string
  runnerTemp: string
}

export interface RunOptions {
  env?: Record<string, string>
  post?: boolean
  // A shell snippet the docker wrapper runs before the real docker; it sees
  // the argv as "$@" and may exit to fake a failure.
  wrapperHook?: string
  echo?: boolean
}

export function stackEnv(): Record<string, string>
export function removeRunDirs(): void
export function fileCommands(text: string): Record<string, string>
export function runAction(
  inputs: Record<string, string>,
  options?: RunOptions
): Run
