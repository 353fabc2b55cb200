// Types for fault-proxy.mjs, the fault-injecting HTTP proxy of the e2e tests.

import type {Server} from 'node:http'

export type FaultAction = 'status' | 'reset' | 'delay' | 'ack'

export interface FaultRule {
  // Exact HTTP method; any when absent.
  method?: string
  // Regular expression searched in the request path (without the query).
  path?: string
  // Substring of the request's Content-Type.
  contentType?: string
  // Only the first N matching requests (over the proxy's life); default all.
  times?: number
  action: FaultAction
  // "status": the status to answer (default 500); "ack": default 201.
  status?: number
  // Extra response headers for "status" and "ack".
  headers?: Record<string, string>
  // "status": the response body; anything but a string is sent as JSON.
  body?: unknown
  // "delay": how long to hold the request before forwarding it.
  delayMs?: number
}

export interface RequestLine {
  time: string
  method: string
  path: string
  contentType: string | null
  // What the client got; null when it got no answer (reset, gave up).
  status: number | null
  // Index of the rule that matched; null when none did.
  rule: number | null
  action: 'forward' | FaultAction | 'error'
  // Milliseconds from the request's arrival to its answer.
  ms: number
  // Request body bytes forwarded to the target.
  bytes: number
}

export interface FaultProxyOptions {
  // host:port of the registry behind the proxy.
  target: string
  rules?: FaultRule[]
  // Waited before handling every request (a far registry's round trip).
  delayMs?: number
}

export interface FaultProxy {
  // 127.0.0.1:port
  address: string
  logFile: string
  requests(): RequestLine[]
  stop(): Promise<void>
}

// Runs the proxy as a child process and resolves once it listens.
export function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy>

// The proxy in this process (not started: call server.listen).
export function createFaultProxy(options: FaultProxyOptions & {log?: string}): {
  server: Server
  matches(): number[]
  close(): Promise<void>
}
