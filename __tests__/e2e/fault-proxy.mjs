// A fault-injecting HTTP proxy for the end-to-end tests. TEST TOOL ONLY.
//
// It stands in front of one registry of the local stack and forwards
// everything to it, except the requests a rule picks out: those it answers
// with an error status, resets, holds back, or acknowledges without passing
// them on. It lets the tests show what the action does when a registry
// misbehaves, without touching the registry itself.
//
// Two ways to use it:
//
//   node __tests__/e2e/fault-proxy.mjs --target 127.0.0.1:5003 \
//     [--rules rules.json] [--log requests.log] [--delay-ms 150] \
//     [--port 0] [--exit-with-stdin]
//
// listens on 127.0.0.1 (a free port unless --port), prints
// `listening 127.0.0.1:<port>` once ready and runs until SIGTERM or SIGINT
// (or, with --exit-with-stdin, until its stdin closes: its parent died).
//
//   import {startFaultProxy} from './fault-proxy.mjs'
//   const proxy = await startFaultProxy({target, rules, delayMs})
//
// runs the same thing as a child process, because the tests block their own
// event loop in spawnSync while the action talks to the proxy.
//
// Rules are a JSON list, tried in order; the first that matches a request
// decides what happens to it, and a request no rule matches is forwarded.
//
//   method       exact HTTP method ("PUT"); any when absent
//   path         regular expression searched in the path (no query string)
//   contentType  substring of the request's Content-Type header
//   times        only the first N requests that match count; after that the
//                rule is skipped (counted over the proxy's whole life)
//   action       "status"  answer status/headers/body, forward nothing
//                "reset"   destroy the client's connection, answer nothing
//                "delay"   wait delayMs, then forward (a hang when large)
//                "ack"     answer 201 Created without forwarding: a write the
//                          client believes landed (with Location and
//                          Docker-Content-Digest for manifest and blob PUTs)
//   status       for "status" (default 500) and "ack" (default 201)
//   headers      extra response headers for "status" and "ack"
//   body         response body for "status": a string, or any JSON value,
//                sent as JSON (e.g. {"errors":[{"code":"MANIFEST_INVALID",
//                "message":"...","detail":null}]})
//   delayMs      for "delay"
//
// --delay-ms (delayMs in startFaultProxy) waits that long before handling
// every request, to stand for the round trip to a far registry.
//
// Every request becomes one JSON line in the log, written before the client
// sees the answer (so a client that has its answer finds the line there):
//   {time, method, path, contentType, status, rule, action, ms}
// status is what the client got (null when it got none: reset, or it gave up
// first), rule the index of the rule that matched (null: none), action what
// the proxy did ("forward", "status", "reset", "delay", "ack", "error" when
// the target could not be reached) and ms the time until the answer.

import {spawn} from 'node:child_process'
import {createHash} from 'node:crypto'
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import http from 'node:http'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const HERE = fileURLToPath(import.meta.url)
const ACTIONS = ['status', 'reset', 'delay', 'ack']

// ------------------------------------------------------------- the proxy --

function compileRules(rules) {
  if (!Array.isArray(rules)) throw new Error('rules must be a JSON list')
  return rules.map((rule, index) => {
    if (!ACTIONS.includes(rule.action)) {
      throw new Error(`rule ${index}: action must be one of ${ACTIONS}`)
    }
    return {
      ...rule,
      pathRegExp: rule.path === undefined ? null : new RegExp(rule.path),
      matched: 0
    }
  })
}

// The first rule that matches, counting the match; null when none does.
function pickRule(rules, method, path, contentType) {
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index]
    if (rule.method !== undefined && rule.method !== method) continue
    if (rule.pathRegExp && !rule.pathRegExp.test(path)) continue
    if (
      rule.contentType !== undefined &&
      !(contentType ?? '').includes(rule.contentType)
    ) {
      continue
    }
    if (rule.times !== undefined && rule.matched >= rule.times) continue
    rule.matched++
    return {rule, index}
  }
  return null
}

const sleep = ms =>
  new Promise(done => {
    setTimeout(done, ms)
  })

function readBody(req) {
  return new Promise((done, fail) => {
    const chunks = []
    req.on('data', chunk => chunks.push(chunk))
    req.on('end', () => done(Buffer.concat(chunks)))
    req.on('error', fail)
  })
}

// Registries answer with absolute upload and manifest URLs. Distribution
// builds them from the Host header it was sent, which the proxy forwards
// as is, but a URL naming the target itself is turned back to the proxy.
function rewriteLocation(location, target, clientHost) {
  if (!location || !clientHost) return location
  let url
  try {
    url = new URL(location)
  } catch {
    return location // relative: already resolves against the proxy
  }
  if (url.host !== target) return location
  url.host = clientHost
  return url.toString()
}

// What a registry would answer to a write that landed.
function ackHeaders(req, path, body, clientHost) {
  const base = `http://${clientHost ?? 'localhost'}`
  const manifest = /^\/v2\/(.+)\/manifests\/[^/]+$/.exec(path)
  if (req.method === 'PUT' && manifest) {
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`
    return {
      Location: `${base}/v2/${manifest[1]}/manifests/${digest}`,
      'Docker-Content-Digest': digest
    }
  }
  const upload = /^\/v2\/(.+)\/blobs\/uploads\//.exec(path)
  const digest = new URL(req.url, base).searchParams.get('digest')
  if (req.method === 'PUT' && upload && digest) {
    return {
      Location: `${base}/v2/${upload[1]}/blobs/${digest}`,
      'Docker-Content-Digest': digest
    }
  }
  return {}
}

// Each side's connection is its own: the proxy keeps its own keep-alive.
function withoutHopByHop(headers) {
  const copy = {...headers}
  delete copy.connection
  delete copy['keep-alive']
  delete copy['proxy-connection']
  return copy
}

function errorBody(code, message) {
  return JSON.stringify({errors: [{code, message, detail: null}]})
}

export function createFaultProxy({target, rules = [], delayMs = 0, log}) {
  const compiled = compileRules(rules)
  const agent = new http.Agent({keepAlive: true})

  const server = http.createServer((req, res) => {
    const started = Date.now()
    const path = req.url.split('?')[0]
    const contentType = req.headers['content-type'] ?? null
    const clientHost = req.headers.host
    const picked = pickRule(compiled, req.method, path, contentType)
    const entry = {
      time: new Date(started).toISOString(),
      method: req.method,
      path,
      contentType,
      status: null,
      rule: picked ? picked.index : null,
      action: picked ? picked.rule.action : 'forward',
      ms: null,
      // Request body bytes that reached the target (for the benchmark).
      bytes: 0
    }
    let logged = false
    const record = status => {
      if (logged) return
      logged = true
      entry.status = status
      entry.ms = Date.now() - started
      if (log) appendFileSync(log, `${JSON.stringify(entry)}\n`)
    }
    // A client that gives up before its answer is logged with status null.
    res.on('close', () => record(null))

    const answer = (status, headers, body) => {
      record(status)
      const payload = body === undefined ? Buffer.alloc(0) : Buffer.from(body)
      res.writeHead(status, {
        'Content-Length': String(payload.length),
        'Docker-Distribution-Api-Version': 'registry/2.0',
        ...headers
      })
      res.end(payload)
    }

    const forward = () => {
      const upstream = http.request({
        agent,
        host: target.split(':')[0],
        port: Number(target.split(':')[1] ?? 80),
        method: req.method,
        path: req.url,
        headers: withoutHopByHop(req.headers)
      })
      upstream.on('response', upRes => {
        const headers = withoutHopByHop(upRes.headers)
        if (headers.location) {
          headers.location = rewriteLocation(
            headers.location,
            target,
            clientHost
          )
        }
        record(upRes.statusCode)
        res.writeHead(upRes.statusCode, upRes.statusMessage, headers)
        upRes.pipe(res)
        upRes.on('error', () => res.destroy())
      })
      upstream.on('error', error => {
        if (res.headersSent || res.destroyed) {
          res.destroy()
          return
        }
        entry.action = 'error'
        answer(
          502,
          {'Content-Type': 'application/json'},
          errorBody('UNAVAILABLE', `fault proxy: ${error.message}`)
        )
      })
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy()
      })
      req.on('data', chunk => {
        entry.bytes += chunk.length
      })
      req.pipe(upstream)
    }

    const handle = async () => {
      if (delayMs > 0) await sleep(delayMs)
      if (res.destroyed) return
      const rule = picked?.rule
      switch (rule?.action) {
        case undefined:
          forward()
          return
        case 'delay':
          await sleep(rule.delayMs ?? 0)
          if (!res.destroyed) forward()
          return
        case 'reset': {
          record(null)
          const socket = req.socket
          if (typeof socket.resetAndDestroy === 'function') {
            socket.resetAndDestroy()
          } else {
            socket.destroy()
          }
          return
        }
        case 'status': {
          await readBody(req)
          const json = rule.body !== undefined && typeof rule.body !== 'string'
          const body = json ? JSON.stringify(rule.body) : rule.body
          const headers = {...(rule.headers ?? {})}
          const named = Object.keys(headers).map(name => name.toLowerCase())
          if (body !== undefined && !named.includes('content-type')) {
            headers['Content-Type'] = 'application/json'
          }
          answer(rule.status ?? 500, headers, body)
          return
        }
        case 'ack': {
          const body = await readBody(req)
          answer(rule.status ?? 201, {
            ...ackHeaders(req, path, body, clientHost),
            ...(rule.headers ?? {})
          })
          return
        }
      }
    }
    handle().catch(error => {
      if (!res.headersSent && !res.destroyed) {
        entry.action = 'error'
        answer(
          500,
          {'Content-Type': 'application/json'},
          errorBody('UNKNOWN', `fault proxy: ${error.message}`)
        )
      } else {
        res.destroy()
      }
    })
  })

  return {
    server,
    matches: () => compiled.map(rule => rule.matched),
    close: () =>
      new Promise(done => {
        server.close(() => done())
        server.closeAllConnections()
        agent.destroy()
      })
  }
}

// --------------------------------------------------- the command line --

function parseArgs(argv) {
  const options = {delayMs: 0, port: 0, exitWithStdin: false}
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`)
      return argv[++i]
    }
    if (flag === '--target') options.target = value()
    else if (flag === '--rules') options.rules = value()
    else if (flag === '--log') options.log = value()
    else if (flag === '--delay-ms') options.delayMs = Number(value())
    else if (flag === '--port') options.port = Number(value())
    else if (flag === '--exit-with-stdin') options.exitWithStdin = true
    else throw new Error(`unknown argument ${flag}`)
  }
  if (!options.target || !/^[^:/]+:\d+$/.test(options.target)) {
    throw new Error('--target HOST:PORT is required')
  }
  if (!Number.isFinite(options.delayMs) || options.delayMs < 0) {
    throw new Error('--delay-ms must be a number of milliseconds')
  }
  return options
}

function main() {
  let options
  let rules = []
  try {
    options = parseArgs(process.argv.slice(2))
    if (options.rules) rules = JSON.parse(readFileSync(options.rules, 'utf8'))
  } catch (error) {
    process.stderr.write(`fault-proxy: ${error.message}\n`)
    process.exit(2)
  }
  const proxy = createFaultProxy({
    target: options.target,
    rules,
    delayMs: options.delayMs,
    log: options.log
  })
  const stop = () => {
    void proxy.close().then(() => process.exit(0))
    // Connections the proxy holds open (a "delay" hang) must not keep it up.
    setTimeout(() => process.exit(0), 1000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (options.exitWithStdin) {
    process.stdin.on('end', stop)
    process.stdin.on('error', stop)
    process.stdin.resume()
  }
  proxy.server.on('error', error => {
    process.stderr.write(`fault-proxy: ${error.message}\n`)
    process.exit(1)
  })
  proxy.server.listen(options.port, '127.0.0.1', () => {
    const {port} = proxy.server.address()
    process.stdout.write(`listening 127.0.0.1:${port}\n`)
  })
}

// ------------------------------------------------- the helper for tests --

export function startFaultProxy({target, rules = [], delayMs = 0}) {
  const dir = mkdtempSync(join(tmpdir(), 'fault-proxy-'))
  const rulesFile = join(dir, 'rules.json')
  const logFile = join(dir, 'requests.log')
  writeFileSync(rulesFile, JSON.stringify(rules))
  writeFileSync(logFile, '')
  const child = spawn(
    process.execPath,
    [
      HERE,
      '--target',
      target,
      '--rules',
      rulesFile,
      '--log',
      logFile,
      '--delay-ms',
      String(delayMs),
      '--exit-with-stdin'
    ],
    {stdio: ['pipe', 'pipe', 'pipe']}
  )
  const exited = new Promise(done => child.on('exit', done))
  let stderr = ''
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', text => (stderr += text))

  let stopping
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
      }
      await exited
      child.stdin.destroy()
      rmSync(dir, {recursive: true, force: true})
    })()
    return stopping
  }

  let ready = false
  return new Promise((done, fail) => {
    let stdout = ''
    const timer = setTimeout(() => {
      void stop()
      fail(new Error(`fault proxy did not start in 10 s: ${stderr}`))
    }, 10_000)
    child.stdout.setEncoding('utf8')
    child.stdout.on('data', text => {
      stdout += text
      const match = /^listening (127\.0\.0\.1:\d+)$/m.exec(stdout)
      if (!match) return
      ready = true
      clearTimeout(timer)
      child.stdout.removeAllListeners('data')
      child.stdout.resume()
      done({
        address: match[1],
        logFile,
        requests: () =>
          readFileSync(logFile, 'utf8')
            .split('\n')
            .filter(line => line !== '')
            .map(line => JSON.parse(line)),
        stop
      })
    })
    void exited.then(code => {
      if (ready) return
      clearTimeout(timer)
      child.stdin.destroy()
      rmSync(dir, {recursive: true, force: true})
      fail(
        new Error(`fault proxy exited (${code}) before listening: ${stderr}`)
      )
    })
  })
}

if (process.argv[1] && resolve(process.argv[1]) === HERE) main()
