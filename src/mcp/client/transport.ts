/**
 * One WebSocket connection to a coordinator (undici): opening it, sending
 * frames on it, closing it, and the stream of frames it receives.
 *
 * Contract:
 * - Owns: the socket, its connect timeout, and JSON framing both ways.
 * - Promises: `open()` resolves with an open connection or rejects with an
 *   `MpacError` saying why it could not open (diagnosis.ts; the handshake is
 *   re-asked over HTTP to learn it). Inbound frames that are JSON objects
 *   reach the attached handlers in arrival order; anything else is dropped
 *   (an unparsable one with a warning). `onClose` runs once, only for a
 *   connection that had opened, and only while handlers are attached:
 *   nothing is delivered before `attach()` or after `detach()`. `close()`
 *   never throws.
 * - Never: reads what a frame means, correlates replies, retries or
 *   reconnects (CoordinatorClient does), or sends anything on its own.
 */
import type { Logger } from 'pino'
import { WebSocket } from 'undici'
import { handshakeFailure } from './diagnosis.js'
import type { Frame, Timers } from './types.js'

export interface TransportHandlers {
  /** One inbound frame: a JSON object (an MPAC envelope or a sideband frame). */
  onFrame (frame: Frame): void
  /** The open connection ended (closed by either side, or the network). */
  onClose (code: number, reason: string): void
}

export interface TransportOptions {
  readonly url: string
  /** Sent as `Authorization: Bearer` on the upgrade request. */
  readonly token?: string | undefined
  readonly connectTimeoutMs: number
  readonly timers: Timers
  readonly logger: Logger
}

export class CoordinatorTransport {
  readonly #ws: WebSocket
  readonly #log: Logger
  #handlers: TransportHandlers | undefined

  private constructor (ws: WebSocket, log: Logger) {
    this.#ws = ws
    this.#log = log
  }

  /** Opens a connection: resolves once the WebSocket handshake succeeded. */
  static open (opts: TransportOptions): Promise<CoordinatorTransport> {
    const headers: Record<string, string> = {}
    if (opts.token !== undefined) headers['authorization'] = `Bearer ${opts.token}`
    const ws = new WebSocket(opts.url, { headers })
    const transport = new CoordinatorTransport(ws, opts.logger)
    const timeoutMs = opts.connectTimeoutMs
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = opts.timers.setTimeout(() => finish(new Error(`no WebSocket handshake within ${timeoutMs} ms`)), timeoutMs)
      const finish = (error?: Error): void => {
        if (settled) return
        settled = true
        opts.timers.clearTimeout(timer)
        if (error !== undefined) {
          try { ws.close() } catch { /* not open */ }
          void handshakeFailure(opts.url, opts.token, error).then(reject)
          return
        }
        resolve(transport)
      }
      ws.addEventListener('open', () => finish())
      ws.addEventListener('error', ev => finish(new Error((ev as unknown as { message?: string }).message ?? 'connection failed')))
      ws.addEventListener('close', ev => {
        if (!settled) finish(new Error(`connection closed (${ev.code}${ev.reason !== '' ? ' ' + ev.reason : ''})`))
        else transport.#handlers?.onClose(ev.code, ev.reason)
      })
      ws.addEventListener('message', ev => {
        if (transport.#handlers !== undefined) transport.#onMessage(transport.#handlers, ev.data)
      })
    })
  }

  /** Starts delivering inbound frames and the close to `handlers`. */
  attach (handlers: TransportHandlers): void {
    this.#handlers = handlers
  }

  /** Stops delivering anything: the owner no longer uses this connection. */
  detach (): void {
    this.#handlers = undefined
  }

  get isOpen (): boolean {
    return this.#ws.readyState === WebSocket.OPEN
  }

  /** Sends one frame as JSON; throws when the socket refuses it. */
  send (frame: object): void {
    this.#ws.send(JSON.stringify(frame))
  }

  close (code?: number, reason?: string): void {
    try {
      this.#ws.close(code, reason)
    } catch {
      // already closed or closing
    }
  }

  #onMessage (handlers: TransportHandlers, data: unknown): void {
    let frame: Frame
    try {
      const text = typeof data === 'string' ? data : Buffer.from(data as ArrayBuffer).toString('utf8')
      const parsed: unknown = JSON.parse(text)
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return
      frame = parsed as Frame
    } catch {
      this.#log.warn('unparsable frame from coordinator dropped')
      return
    }
    handlers.onFrame(frame)
  }
}
