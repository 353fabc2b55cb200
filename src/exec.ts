import * as exec from '@actions/exec'

// Every command the action runs goes through `run`: it never throws on its
// own, it turns a non-zero exit into a PhaseError that names the phase, the
// thing being worked on (a platform, a registry) and the command's stderr.

export class PhaseError extends Error {
  constructor(
    readonly phase: string,
    message: string,
    readonly subject?: string
  ) {
    super(
      subject ? `${phase} (${subject}): ${message}` : `${phase}: ${message}`
    )
    this.name = 'PhaseError'
  }
}

export interface Command {
  phase: string
  args: string[]
  subject?: string
  stdin?: string
  // Stream the command's output to the log; quiet commands are captured only.
  echo?: boolean
  env?: Record<string, string>
}

export interface Result {
  exitCode: number
  stdout: string
  stderr: string
}

export const docker = (): string => process.env.MULTIARCH_DOCKER || 'docker'

export async function attempt(command: Command): Promise<Result> {
  const env = command.env ? {...process.env, ...command.env} : undefined
  const result = await exec.getExecOutput(docker(), command.args, {
    ignoreReturnCode: true,
    silent: !command.echo,
    input: command.stdin === undefined ? undefined : Buffer.from(command.stdin),
    env: env as Record<string, string> | undefined
  })
  return result
}

export async function run(command: Command): Promise<Result> {
  const result = await attempt(command)
  if (result.exitCode !== 0) {
    throw new PhaseError(
      command.phase,
      failure(command, result),
      command.subject
    )
  }
  return result
}

export function failure(command: Command, result: Result): string {
  const reason = lastLines(result.stderr || result.stdout, 20)
  const verb = command.args.slice(0, 2).join(' ')
  return (
    `docker ${verb} exited with ${result.exitCode}` +
    (reason ? `: ${reason}` : '')
  )
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n')
}
