/**
 * The hook side of the shim's local socket: one JSON line out, one JSON line
 * in, then close. A hard deadline (1,000 ms by default) covers connecting,
 * writing and reading; a reply longer than `maxReplyBytes` (256 KiB), one
 * that is not a JSON object, or a connection closed before the newline is an
 * error. Every failure rejects with a `HookSocketError` whose `reason` says
 * which, so the caller can fail open with one line. Node built-ins only: this
 * runs in the hook process, before every edit.
 */
import { connect } from 'node:net'

export const DEFAULT_DEADLINE_MS = 1000
export const DEFAULT_MAX_REPLY_BYTES = 256 * 1024

export type HookSocketFailure = 'timeout' | 'unreachable' | 'closed' | 'too_large' | 'malformed'

export class HookSocketError extends Error {
  readonly reason: HookSocketFailure
  constructor (reason: HookSocketFailure, message: string) {
    super(message)
    this.name = 'HookSocketError'
    this.reason = reason
  }
}

export interface SocketRequestOptions {
  readonly deadlineMs?: number
  readonly maxReplyBytes?: number
}

/** Sends `request` as one JSON line to the Unix socket (or named pipe) at `path`; resolves with the parsed reply object. */
export function socketRequest (path: string, request: unknown, options: SocketRequestOptions = {}): Promise<Record<string, unknown>> {
  const deadlineMs = options.deadlineMs ?? DEFAULT_DEADLINE_MS
  const maxBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES
  const line = JSON.stringify(request) + '\n'
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    const socket = connect(path)
    const finish = (err: HookSocketError | undefined, value?: Record<string, unknown>): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      if (err !== undefined) reject(err)
      else resolve(value as Record<string, unknown>)
    }
    const timer = setTimeout(() => finish(new HookSocketError('timeout', `no reply from ${path} within ${deadlineMs} ms`)), deadlineMs)
    socket.setNoDelay?.(true)
    socket.on('connect', () => { socket.write(line) })
    socket.on('data', (chunk: Buffer) => {
      const newline = chunk.indexOf(10)
      const part = newline === -1 ? chunk : chunk.subarray(0, newline)
      size += part.length
      if (size > maxBytes) {
        finish(new HookSocketError('too_large', `reply from ${path} is longer than ${maxBytes} bytes`))
        return
      }
      chunks.push(part)
      if (newline === -1) return
      let parsed: unknown
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
      } catch {
        finish(new HookSocketError('malformed', `reply from ${path} is not JSON`))
        return
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        finish(new HookSocketError('malformed', `reply from ${path} is not a JSON object`))
        return
      }
      finish(undefined, parsed as Record<string, unknown>)
    })
    socket.on('error', (err: NodeJS.ErrnoException) => {
      finish(new HookSocketError('unreachable', `cannot reach ${path}: ${err.code ?? err.message}`))
    })
    socket.on('close', () => {
      finish(new HookSocketError('closed', `${path} closed the connection before replying`))
    })
  })
}
