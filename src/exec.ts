import * as core from '@actions/core'
import {spawn} from 'node:child_process'

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
  // Kill the command after this long; the result then has timedOut set.
  timeoutMs?: number
}

export interface Result {
  exitCode: number
  stdout: string
  stderr: string
  timedOut?: boolean
}

export const docker = (): string => process.env.MULTIARCH_DOCKER || 'docker'

export async function attempt(command: Command): Promise<Result> {
  if (command.echo) core.info(`[command]${docker()} ${command.args.join(' ')}`)
  const env = command.env ? {...process.env, ...command.env} : process.env
  return new Promise(resolve => {
    const child = spawn(docker(), command.args, {env})
    // Bytes are kept as they come and decoded once: a manifest read with
    // --raw is hashed, so no character may be split between chunks.
    const out: Buffer[] = []
    const err: Buffer[] = []
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.on('data', (chunk: Buffer) => {
      out.push(chunk)
      if (command.echo) process.stdout.write(chunk)
    })
    child.stderr.on('data', (chunk: Buffer) => {
      err.push(chunk)
      if (command.echo) process.stdout.write(chunk)
    })
    const decode = (): void => {
      stdout = Buffer.concat(out).toString('utf8')
      stderr = Buffer.concat(err).toString('utf8')
    }
    // Passwords reach docker on stdin only, never in argv.
    child.stdin.end(command.stdin ?? '')
    const timer = command.timeoutMs
      ? setTimeout(() => {
          timedOut = true
          child.kill('SIGTERM')
          setTimeout(() => child.kill('SIGKILL'), 5000).unref()
        }, command.timeoutMs)
      : undefined
    child.on('error', error => {
      clearTimeout(timer)
      decode()
      resolve({exitCode: 127, stdout, stderr: `${stderr}${error.message}`})
    })
    child.on('close', code => {
      clearTimeout(timer)
      decode()
      const limit = `timed out after ${Math.round((command.timeoutMs ?? 0) / 1000)} s`
      resolve(
        timedOut
          ? {
              exitCode: code ?? 124,
              stdout,
              stderr: `${stderr}\n${limit}`,
              timedOut
            }
          : {exitCode: code ?? 128, stdout, stderr}
      )
    })
  })
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
  const reason = errorLines(result.stderr || result.stdout)
  const verb = command.args.slice(0, 2).join(' ')
  const ended = result.timedOut
    ? `timed out after ${Math.round((command.timeoutMs ?? 0) / 1000)} s`
    : `exited with ${result.exitCode}`
  return `docker ${verb} ${ended}` + (reason ? `: ${reason}` : '')
}

// buildx prints its progress on stderr too; the lines that say what went
// wrong start with ERROR (or error:). Without them, the last few lines.
export function errorLines(text: string): string {
  const lines = text.trim().split('\n')
  const errors = lines.filter(line => /^(ERROR|error)\b:?/.test(line.trim()))
  return (errors.length > 0 ? errors : lines.slice(-5)).join('\n')
}

// --- Long commands that may have to be stopped ----------------------------
// The build runs for minutes to hours; its output is handed over as it
// comes (for the stall guard and the crash guard), and it can be stopped
// the way a user stops it in a terminal: SIGINT first, which makes buildx
// cancel the build in BuildKit and exit; SIGTERM, then SIGKILL, only if it
// does not. Even a killed client ends its BuildKit session, which cancels
// the build's steps.

export interface Ended {
  exitCode: number // 128 + signal number when a signal ended it
  signal: NodeJS.Signals | null
}

export interface Started {
  done: Promise<Ended>
  // Starts the SIGINT, SIGTERM, SIGKILL sequence; `done` tells when it ended.
  stop: () => void
  signalsSent: () => NodeJS.Signals[]
}

export interface Escalation {
  termAfterMs: number // SIGTERM this long after SIGINT
  killAfterMs: number // SIGKILL this long after SIGTERM
}

export const ESCALATION: Escalation = {termAfterMs: 30_000, killAfterMs: 10_000}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = {
  SIGINT: 2,
  SIGKILL: 9,
  SIGTERM: 15
}

export function start(
  command: Command,
  onOutput: (text: string, stream: 'stdout' | 'stderr') => void,
  escalation: Escalation = ESCALATION
): Started {
  if (command.echo) core.info(`[command]${docker()} ${command.args.join(' ')}`)
  const env = command.env ? {...process.env, ...command.env} : process.env
  const child = spawn(docker(), command.args, {env})
  const sent: NodeJS.Signals[] = []
  const timers: NodeJS.Timeout[] = []
  let exited = false
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stdout.on('data', (text: string) => onOutput(text, 'stdout'))
  child.stderr.on('data', (text: string) => onOutput(text, 'stderr'))
  child.stdin.end(command.stdin ?? '')

  const done = new Promise<Ended>(resolve => {
    child.on('error', error => {
      exited = true
      onOutput(`${error.message}\n`, 'stderr')
      resolve({exitCode: 127, signal: null})
    })
    child.on('close', (code, signal) => {
      exited = true
      timers.forEach(clearTimeout)
      const number = signal ? (SIGNAL_NUMBERS[signal] ?? 0) : 0
      resolve({exitCode: code ?? 128 + number, signal})
    })
  })

  const send = (signal: NodeJS.Signals): void => {
    if (exited) return
    sent.push(signal)
    child.kill(signal)
  }
  const stop = (): void => {
    if (sent.length > 0 || exited) return
    send('SIGINT')
    timers.push(
      setTimeout(() => {
        send('SIGTERM')
        timers.push(setTimeout(() => send('SIGKILL'), escalation.killAfterMs))
      }, escalation.termAfterMs)
    )
  }
  return {done, stop, signalsSent: () => [...sent]}
}
