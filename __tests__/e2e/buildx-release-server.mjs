// A release-shaped file server for the buildx end-to-end tests, run as its
// own process (the tests block their event loop while the action runs).
//
//   node buildx-release-server.mjs <dir> <log> <port-file>
//
// Serves <dir> on 127.0.0.1 at a free port, written to <port-file> once it
// listens. Every request is appended to <log> as "GET /path status". A file
// <dir>/.fail holding lines "<path> <count> <status>" makes the first
// <count> requests of <path> answer <status>, to show the retries.

import {
  appendFileSync,
  existsSync,
  readFileSync,
  statSync,
  writeFileSync
} from 'node:fs'
import {createReadStream} from 'node:fs'
import {createServer} from 'node:http'
import {join, normalize} from 'node:path'

const [dir, log, portFile] = process.argv.slice(2)
const served = new Map()

function failing(path) {
  const rules = join(dir, '.fail')
  if (!existsSync(rules)) return 0
  for (const line of readFileSync(rules, 'utf8').split('\n')) {
    const [rulePath, count, status] = line.trim().split(/\s+/)
    if (rulePath !== path) continue
    const seen = served.get(path) ?? 0
    served.set(path, seen + 1)
    return seen < Number(count) ? Number(status) : 0
  }
  return 0
}

const server = createServer((request, response) => {
  const path = decodeURIComponent(
    new URL(request.url ?? '/', 'http://x').pathname
  )
  const file = join(dir, normalize(path).replace(/^(\.\.[/\\])+/, ''))
  let status = failing(path)
  if (!status) {
    status =
      request.method === 'GET' && existsSync(file) && statSync(file).isFile()
        ? 200
        : 404
  }
  appendFileSync(log, `${request.method} ${path} ${status}\n`)
  if (status !== 200) {
    response.writeHead(status).end()
    return
  }
  response.writeHead(200, {'Content-Length': statSync(file).size})
  createReadStream(file).pipe(response)
})

server.listen(0, '127.0.0.1', () => {
  writeFileSync(portFile, String(server.address().port))
})

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0))
}
