import {formatPlatform, parsePlatform} from './platforms.js'

// The build's progress stream, read as BuildKit reports it: which step
// (vertex) belongs to which platform, what each step printed, which one
// failed and how. `rawjson` is the machine-readable form the action asks for;
// `plain` is what debug-platform shows the user, so both are parsed.
// Everything here is pure: build.ts feeds it text and asks questions.

export type ProgressMode = 'rawjson' | 'plain'

export interface Step {
  key: string // vertex digest (rawjson) or display number (plain)
  number: number // the `#N` the log shows for it
  name: string // as BuildKit names it: "[linux/arm/v7 3/4] RUN make"
  platform: string // normalised; '' for shared steps such as [internal]
  label: string // the name without the platform: "[3/4] RUN make"
  started: boolean
  completed: boolean
  cached: boolean
  error: string
  logs: string[] // the last LOG_LINES complete lines it printed
  lastOutput: number // when it last printed (ms), or started
}

const LOG_LINES = 40
const TEXT_LINES = 200

// QEMU's own last words before it dies with the program it runs, for
// example "qemu: uncaught target signal 11 (Segmentation fault) - core
// dumped" (qemu-user prints it for any fatal signal the guest did not
// handle).
const QEMU_FATAL =
  /\bqemu(?:-[\w.-]+)?: (?:uncaught target signal \d+|unhandled (?:CPU exception|trap)|fatal:)/

export const isQemuFatal = (line: string): boolean => QEMU_FATAL.test(line)

const SIGNALS: Record<number, string> = {
  4: 'SIGILL',
  5: 'SIGTRAP',
  6: 'SIGABRT',
  7: 'SIGBUS',
  8: 'SIGFPE',
  9: 'SIGKILL',
  11: 'SIGSEGV',
  15: 'SIGTERM'
}

const CANCELED = /context canceled|^Canceled\b/i

// "[linux/arm/v7 builder 3/4] RUN make" -> platform and the rest of the
// name. Single-platform builds leave the platform out: "[3/4] RUN make".
export function splitName(name: string): {platform: string; label: string} {
  const match = /^\[([^\]]*)\] ?(.*)$/s.exec(name)
  if (!match) return {platform: '', label: name}
  const words = match[1].split(' ')
  let platform = ''
  if (words[0].includes('/') && !/^\d+\/\d+$/.test(words[0])) {
    try {
      platform = formatPlatform(parsePlatform(words[0]))
      words.shift()
    } catch {
      // Not a platform after all (a stage name with a slash); keep it.
    }
  }
  const inside = words.join(' ')
  return {platform, label: inside ? `[${inside}] ${match[2]}` : match[2]}
}

// Splits a stream into lines, whatever the chunk boundaries.
export function lineSplitter(onLine: (line: string) => void): {
  write: (chunk: string) => void
  end: () => void
} {
  let pending = ''
  return {
    write(chunk) {
      pending += chunk
      let at = pending.indexOf('\n')
      while (at >= 0) {
        onLine(pending.slice(0, at).replace(/\r$/, ''))
        pending = pending.slice(at + 1)
        at = pending.indexOf('\n')
      }
    },
    end() {
      if (pending) onLine(pending)
      pending = ''
    }
  }
}

interface RawVertex {
  digest?: string
  name?: string
  started?: string
  completed?: string
  cached?: boolean
  error?: string
}

interface RawStatus {
  id?: string
  vertex?: string
  completed?: string
}

interface RawLog {
  vertex?: string
  data?: string
  timestamp?: string
}

interface RawWarning {
  short?: string
}

interface RawEvent {
  vertexes?: RawVertex[]
  statuses?: RawStatus[]
  logs?: RawLog[]
  warnings?: RawWarning[]
}

export class BuildProgress {
  // The time of the last line of any kind: what stall-timeout measures.
  lastOutput: number
  // Lines that were not progress: buildx's ERROR line, the Dockerfile
  // excerpt it quotes, warnings.
  readonly text: string[] = []

  private readonly byKey = new Map<string, Step>()
  private readonly partial = new Map<string, string>()
  private readonly startedAt = new Map<string, number>()
  private json: string[] | undefined
  private block = '' // the step whose lines are being printed (rawjson)
  private plainBlock: Step | undefined // the step a plain block is about
  private plainFresh = true // the next plain `#N` line opens a block

  constructor(
    readonly mode: ProgressMode,
    // The build's platforms: with only one, buildx leaves it out of the
    // step names, and it is filled in here.
    private readonly platforms: string[],
    private readonly print: (line: string) => void = () => undefined,
    private readonly now: () => number = Date.now
  ) {
    this.lastOutput = now()
  }

  steps(): Step[] {
    return [...this.byKey.values()]
  }

  // Steps that began and have not ended, in the order they appeared.
  running(): Step[] {
    return this.steps().filter(step => step.started && !step.completed)
  }

  line(line: string): void {
    this.lastOutput = this.now()
    if (this.mode === 'plain') {
      this.print(line)
      this.plainLine(line)
    } else {
      this.jsonLine(line)
    }
  }

  // The end of the stream: lines a step left unfinished count as printed.
  end(): void {
    for (const [key, rest] of this.partial) {
      const step = this.byKey.get(key)
      if (step && rest) this.addLog(step, rest, undefined)
    }
    this.partial.clear()
  }

  // --- rawjson -------------------------------------------------------------
  // buildx writes each event as indented JSON: "{" and "}" alone on their
  // lines, everything inside indented. Anything else is text.

  private jsonLine(line: string): void {
    if (this.json) {
      this.json.push(line)
      if (line === '}') {
        const text = this.json.join('\n')
        this.json = undefined
        this.jsonEvent(text)
      }
      return
    }
    if (line === '{') {
      this.json = [line]
    } else if (line.startsWith('{') && line.endsWith('}')) {
      this.jsonEvent(line) // one event per line, should buildx ever do so
    } else {
      this.addText(line)
      this.block = ''
      this.print(line)
    }
  }

  private jsonEvent(text: string): void {
    let event: RawEvent
    try {
      event = JSON.parse(text) as RawEvent
    } catch {
      for (const line of text.split('\n')) this.addText(line)
      return
    }
    for (const vertex of event.vertexes ?? []) this.vertex(vertex)
    for (const status of event.statuses ?? []) {
      const step = this.byKey.get(status.vertex ?? '')
      if (step && status.completed && status.id) {
        this.printFor(step, `#${step.number} ${status.id} done`)
      }
    }
    for (const log of event.logs ?? []) this.log(log)
    for (const warning of event.warnings ?? []) {
      if (warning.short) {
        const line = `WARNING: ${Buffer.from(warning.short, 'base64').toString()}`
        this.addText(line)
        this.print(line)
      }
    }
  }

  private vertex(raw: RawVertex): void {
    if (!raw.digest || raw.name === undefined) return
    const step = this.step(raw.digest, raw.name)
    if (raw.started && !step.started) {
      step.started = true
      step.lastOutput = this.now()
      this.startedAt.set(step.key, Date.parse(raw.started))
      this.printFor(step, undefined)
    }
    if (raw.cached && !step.cached) {
      step.cached = true
      step.started = true
      this.printFor(step, `#${step.number} CACHED`)
    }
    if (raw.completed && !step.completed) {
      step.completed = true
      step.started = true
      this.flush(step)
      if (raw.error) {
        step.error = raw.error
        this.printFor(
          step,
          CANCELED.test(raw.error)
            ? `#${step.number} CANCELED`
            : `#${step.number} ERROR: ${raw.error}`
        )
      } else if (!step.cached) {
        const began = this.startedAt.get(step.key) ?? Date.parse(raw.completed)
        const took = (Date.parse(raw.completed) - began) / 1000
        this.printFor(step, `#${step.number} DONE ${took.toFixed(1)}s`)
      }
    }
  }

  private log(raw: RawLog): void {
    const step = this.byKey.get(raw.vertex ?? '')
    if (!step || !raw.data) return
    const data = Buffer.from(raw.data, 'base64').toString()
    const pieces = ((this.partial.get(step.key) ?? '') + data).split('\n')
    this.partial.set(step.key, pieces.pop() ?? '')
    const at = raw.timestamp ? Date.parse(raw.timestamp) : undefined
    for (const piece of pieces) this.addLog(step, piece.replace(/\r$/, ''), at)
  }

  private flush(step: Step): void {
    const rest = this.partial.get(step.key)
    if (rest) this.addLog(step, rest, undefined)
    this.partial.delete(step.key)
  }

  private addLog(step: Step, line: string, at: number | undefined): void {
    step.logs.push(line)
    if (step.logs.length > LOG_LINES) step.logs.shift()
    step.lastOutput = this.now()
    if (this.mode === 'rawjson') {
      const began = this.startedAt.get(step.key)
      const seconds =
        at !== undefined && began !== undefined
          ? ` ${((at - began) / 1000).toFixed(3)}`
          : ''
      this.printFor(step, `#${step.number}${seconds} ${line}`)
    }
  }

  // Prints like buildx's plain output: a block per step, headed by its
  // number and name, opened again whenever another step had the floor.
  private printFor(step: Step, line: string | undefined): void {
    if (this.block !== step.key) {
      this.print('')
      this.print(`#${step.number} ${step.name}`)
      this.block = step.key
    }
    if (line !== undefined) this.print(line)
  }

  // --- plain ---------------------------------------------------------------
  // Blocks separated by blank lines; the first `#N` line of a block names
  // the step, then come `#N <seconds> <log line>`, statuses, and one of
  // `#N DONE 0.1s`, `#N CACHED`, `#N ERROR: ...`, `#N CANCELED`, `#N ...`.

  private plainLine(line: string): void {
    if (line === '') {
      this.plainFresh = true
      return
    }
    const match = /^#(\d+) (.*)$/s.exec(line)
    // #0 is buildx's own "building with ... instance" line, not a step.
    if (!match || match[1] === '0') {
      this.addText(line)
      this.plainFresh = false
      return
    }
    const [, number, rest] = match
    if (this.plainFresh) {
      this.plainFresh = false
      this.plainBlock = this.step(`#${number}`, rest, Number(number))
      this.plainBlock.started = true
      return
    }
    const step = this.byKey.get(`#${number}`)
    if (!step) return
    const log = /^\d+\.\d+ ?(.*)$/s.exec(rest)
    if (log) {
      this.addLog(step, log[1], undefined)
    } else if (rest === 'CACHED') {
      step.cached = step.completed = true
    } else if (/^DONE \d/.test(rest)) {
      step.completed = true
    } else if (rest === 'CANCELED') {
      step.completed = true
      step.error = 'canceled'
    } else if (rest.startsWith('ERROR: ')) {
      step.completed = true
      step.error = rest.slice('ERROR: '.length)
    }
  }

  // ---------------------------------------------------------------------------

  private step(key: string, name: string, number?: number): Step {
    let step = this.byKey.get(key)
    if (!step) {
      const {platform, label} = splitName(name)
      const single =
        this.platforms.length === 1 && /^\[[^\]]*\d+\/\d+\]/.test(label)
      step = {
        key,
        number: number ?? this.byKey.size + 1,
        name,
        platform: platform || (single ? this.platforms[0] : ''),
        label,
        started: false,
        completed: false,
        cached: false,
        error: '',
        logs: [],
        lastOutput: this.now()
      }
      this.byKey.set(key, step)
    }
    return step
  }

  private addText(line: string): void {
    this.text.push(line)
    if (this.text.length > TEXT_LINES) this.text.shift()
  }
}

// --- What went wrong -------------------------------------------------------

export interface Failure {
  platform: string // '' when buildx did not say (a shared step)
  step: string // "[3/4] RUN make"
  reason: string // BuildKit's error for the step
  exitCode?: number
  signal?: string // "SIGSEGV" for exit status 139
  qemuLine?: string // QEMU's fatal line, quoted from the step's log
  execFormat: boolean // the kernel found no emulator for a binary
  dockerfile?: {file: string; line: number}
  logs: string[]
}

// The steps that failed on their own, not those BuildKit cancelled because
// another one failed.
export function failures(progress: BuildProgress): Failure[] {
  const failed = progress
    .steps()
    .filter(step => step.error && !CANCELED.test(step.error))
  const excerpt = dockerfileLine(progress.text)
  return failed.map(step => {
    const code = /exit code: (\d+)/.exec(step.error)
    const exitCode = code ? Number(code[1]) : undefined
    const qemuLine = [...step.logs].reverse().find(isQemuFatal)
    const signalNumber =
      exitCode !== undefined && exitCode > 128 ? exitCode - 128 : undefined
    return {
      platform: step.platform,
      step: step.label,
      reason: step.error,
      exitCode,
      signal: signalNumber ? SIGNALS[signalNumber] : undefined,
      qemuLine: qemuLine?.trim(),
      execFormat: /exec format error/i.test(
        [step.error, ...step.logs].join('\n')
      ),
      dockerfile: failed.length === 1 ? excerpt : undefined,
      logs: step.logs.slice(-10)
    }
  })
}

// buildx quotes the failing instruction as "Dockerfile:15" over a line of
// dashes; the file is the -f path as buildx was given it.
export function dockerfileLine(
  text: string[]
): {file: string; line: number} | undefined {
  for (let i = 0; i + 1 < text.length; i++) {
    const match = /^(\S+):(\d+)$/.exec(text[i].trim())
    if (match && /^-{5,}$/.test(text[i + 1].trim())) {
      return {file: match[1], line: Number(match[2])}
    }
  }
  return undefined
}

// buildx's own summary of the failure ("ERROR: failed to solve: ...").
export function finalError(text: string[]): string {
  return (
    [...text]
      .reverse()
      .find(line => line.startsWith('ERROR:'))
      ?.trim() ?? ''
  )
}

// Steps still running whose last words were QEMU's fatal line: the
// emulated program is dead, and when it was the step's first process QEMU
// cannot even exit (the PID namespace's init ignores the signal QEMU
// re-raises), so the step would hang until a timeout.
export function crashedAndSilent(
  progress: BuildProgress,
  graceMs: number,
  now: number
): Step[] {
  return progress
    .running()
    .filter(
      step =>
        step.logs.length > 0 &&
        isQemuFatal(step.logs[step.logs.length - 1]) &&
        now - step.lastOutput >= graceMs
    )
}

export const describeStep = (step: {
  platform: string
  label: string
}): string => (step.platform ? `${step.platform} ${step.label}` : step.label)
