/**
 * The shim's connection to a coordinator: one persistent undici WebSocket,
 * HELLO → SESSION_INFO handshake, request correlation by `message_id` /
 * `refers_to` (docs/architecture.md "terminal frame"), sideband queries on
 * the same connection, HEARTBEAT at the advertised interval, reconnect with
 * exponential backoff and jitter, and GOODBYE on close.
 *
 * Contract:
 * - `request()` resolves when the coordinator's terminal frame for that
 *   message arrives: the relay/echo of the same `message_id` (accepted) or the
 *   PROTOCOL_ERROR whose `refers_to` is it (rejected). The timeout is a safety
 *   net only. It rejects with a `ShimError`: `MPAC_ERR_REMOTE_UNAVAILABLE`
 *   when there is no connection, `MPAC_ERR_REMOTE_CLOSED` when the connection
 *   drops while the request is in flight, `MPAC_ERR_REMOTE_TIMEOUT`.
 * - `query()` sends a sideband frame and resolves with its single reply.
 *   Replies of one kind arrive in request order, so they are matched FIFO.
 * - After a drop, the client reconnects in the background and calls
 *   `onConnected` after every successful HELLO (the session layer rebuilds
 *   intent ownership there). A HELLO the coordinator rejects (or an
 *   untrusted certificate) is not retried in the background; the next
 *   `ensureConnected()` tries again and throws `MPAC_ERR_AUTH_REJECTED`
 *   (`MPAC_ERR_TLS_UNTRUSTED`) with what to fix. Replaced by another
 *   connection of the same principal (close 4409), it stays out of the way:
 *   every later call throws `MPAC_ERR_REPLACED`.
 */
import { randomUUID } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import type { Logger } from 'pino'
import { WebSocket, fetch } from 'undici'
import { CLOSE } from '../server/close-codes.js'
import type { Identity } from './config.js'
import { SHIM_ERROR_CODES, ShimError } from './errors.js'
import { clampLamport } from '../protocol/watermark.js'

export const PROTOCOL_VERSION = '0.1.13'

export type Frame = Record<string, unknown>

export interface Envelope {
  readonly protocol: string
  readonly version: string
  readonly message_type: string
  readonly message_id: string
  readonly session_id: string
  readonly sender: { readonly principal_id: string, readonly principal_type: string, readonly sender_instance_id: string }
  readonly ts: string
  readonly payload: Frame
  readonly watermark?: { readonly kind: string, readonly value: unknown }
  readonly [key: string]: unknown
}

export interface ErrorPayload {
  readonly error_code: string
  readonly description?: string
  readonly refers_to?: string
  readonly [key: string]: unknown
}

/** The outcome of one request, read from the coordinator's frames. */
export interface Reply {
  readonly accepted: boolean
  /** The terminal frame: the relay/echo of our message, or the rejecting PROTOCOL_ERROR. */
  readonly terminal: Envelope
  /** The rejection (only when `accepted` is false). */
  readonly error: ErrorPayload | undefined
  /** PROTOCOL_ERRORs referring to our message that did not stop it (e.g. a partial SCOPE_FROZEN). */
  readonly warnings: readonly ErrorPayload[]
  /** Every envelope received between the send and the terminal frame (CONFLICT_REPORT, INTENT_CLAIM_STATUS, …). */
  readonly seen: readonly Envelope[]
  readonly messageId: string
}

export interface SessionInfo {
  readonly session_id: string
  readonly granted_roles?: readonly string[]
  readonly liveness_policy?: { readonly heartbeat_interval_sec?: number }
  readonly [key: string]: unknown
}

export type SidebandRequest =
  | { readonly type: 'SESSION_SUMMARY' }
  | { readonly type: 'FILE_READ', readonly path: string }
  | { readonly type: 'FILE_LIST' }
  | { readonly type: 'LOCAL_PROOF', readonly nonce: string }

/** Timer source, injectable for tests. */
export interface Timers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
  setInterval (fn: () => void, ms: number): unknown
  clearInterval (handle: unknown): void
  random (): number
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms)
    h.unref()
    return h
  },
  clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => {
    const h = setInterval(fn, ms)
    h.unref()
    return h
  },
  clearInterval: h => clearInterval(h as NodeJS.Timeout),
  random: Math.random
}

export interface ClientOptions {
  readonly url: string
  readonly sessionId: string
  /** When false, the session id of SESSION_INFO is adopted (a coordinator URL without `/session/<id>`). */
  readonly sessionIdPinned: boolean
  readonly identity: Identity
  readonly token?: string | undefined
  /** Local mode: the HELLO credential is the local secret (read at each HELLO; never sent as a header). */
  readonly helloSecret?: () => string
  readonly logger: Logger
  readonly requestTimeoutMs?: number
  readonly connectTimeoutMs?: number
  /** Overrides the interval SESSION_INFO advertises. */
  readonly heartbeatIntervalMs?: number
  readonly reconnectBaseMs?: number
  readonly reconnectMaxMs?: number
  readonly timers?: Timers
  /** Runs before every connection attempt (local mode: find or start the sidecar). */
  readonly beforeConnect?: () => Promise<void>
  /**
   * Runs on every new connection before the HELLO (local mode: the
   * coordinator proves it knows the local secret on this very connection,
   * before the secret is sent on it). Throwing drops the connection.
   */
  readonly verifyConnection?: (query: (request: SidebandRequest) => Promise<Frame>) => Promise<void>
  /** Runs after every admitted HELLO, before `ensureConnected()` resolves. */
  readonly onConnected?: (info: SessionInfo) => Promise<void>
  /** Every inbound envelope, after correlation. */
  readonly onEnvelope?: (envelope: Envelope) => void
  /** Every sideband push (FILE_UPDATED). */
  readonly onPush?: (frame: Frame) => void
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'disconnected' | 'closed'

interface PendingRequest {
  readonly messageId: string
  readonly type: string
  readonly warnings: ErrorPayload[]
  readonly seen: Envelope[]
  readonly resolve: (reply: Reply) => void
  readonly reject: (error: Error) => void
  timer: unknown
  fencing: boolean
}

interface PendingQuery {
  readonly resolve: (frame: Frame) => void
  readonly reject: (error: Error) => void
  timer: unknown
  /** Timed out: its late reply is still consumed here so the FIFO stays aligned. */
  abandoned: boolean
}

type QueryKind = 'summary' | 'file' | 'list' | 'proof'

const REPLY_KIND: Readonly<Record<string, QueryKind>> = {
  SESSION_SUMMARY_RESPONSE: 'summary',
  FILE_CONTENT: 'file',
  FILE_ERROR: 'file',
  FILE_LIST_RESPONSE: 'list',
  LOCAL_PROOF_RESPONSE: 'proof'
}

const REQUEST_KIND: Readonly<Record<SidebandRequest['type'], QueryKind>> = {
  SESSION_SUMMARY: 'summary',
  FILE_READ: 'file',
  FILE_LIST: 'list',
  LOCAL_PROOF: 'proof'
}

/** PROTOCOL_ERRORs that may be a warning rather than a rejection for this message type. */
function mayBeWarning (type: string, code: string): boolean {
  return type === 'INTENT_ANNOUNCE' && code === 'SCOPE_FROZEN'
}

const MAX_SEEN = 1000
const MAX_CLAIM_STATUSES = 500

/** What the user can do about a rejected HELLO. */
export function helloHint (code: string, hasToken: boolean): string {
  switch (code) {
    case 'CREDENTIAL_REJECTED':
      return hasToken
        ? 'the coordinator refused MPAC_COORDINATOR_TOKEN: check the token and that its allowed_sessions include this session id'
        : 'this coordinator requires a token: set MPAC_COORDINATOR_TOKEN'
    case 'AUTHORIZATION_FAILED':
      return 'no role could be granted: check MPAC_AGENT_ROLES and the roles of your token'
    case 'SESSION_CLOSED':
      return 'the session is closed: use another session id'
    case 'REPLAY_DETECTED':
      return 'the coordinator refused the message time: check that this machine\'s clock is correct'
    default:
      return 'check the coordinator URL, session id and token'
  }
}

export class CoordinatorClient {
  readonly #opts: ClientOptions
  readonly #timers: Timers
  readonly #log: Logger
  readonly #instanceId: string
  #state: ClientState = 'idle'
  #ws: WebSocket | undefined
  #connecting: Promise<void> | undefined
  #sessionId: string
  #sessionInfo: SessionInfo | undefined
  #rejection: ShimError | undefined
  #lamport = 0
  #attempt = 0
  #reconnectTimer: unknown
  #heartbeatTimer: unknown
  #closing = false
  readonly #pending = new Map<string, PendingRequest>()
  readonly #queries: Record<QueryKind, PendingQuery[]> = { summary: [], file: [], list: [], proof: [] }
  /** Every unanswered query in send order, across kinds (a refused query's error names no message). */
  #queryOrder: Array<{ kind: QueryKind, q: PendingQuery }> = []
  readonly #claimStatuses = new Map<string, Frame>()
  readonly #claimWaiters = new Map<string, Array<(payload: Frame) => void>>()

  constructor (opts: ClientOptions) {
    this.#opts = opts
    this.#timers = opts.timers ?? systemTimers
    this.#log = opts.logger
    this.#sessionId = opts.sessionId
    this.#instanceId = `${opts.identity.principalId}:${randomUUID()}`
  }

  get state (): ClientState { return this.#state }
  get sessionId (): string { return this.#sessionId }
  get sessionInfo (): SessionInfo | undefined { return this.#sessionInfo }
  get principalId (): string { return this.#opts.identity.principalId }
  get instanceId (): string { return this.#instanceId }

  /**
   * Resolves once the client is admitted. Joins an attempt in progress;
   * otherwise makes one attempt now (a tool call never waits for a backoff
   * delay) and throws a retryable `MPAC_ERR_REMOTE_UNAVAILABLE` if it fails.
   */
  async ensureConnected (): Promise<void> {
    if (this.#closing) throw new ShimError(SHIM_ERROR_CODES.REMOTE_CLOSED, 'the shim is shutting down')
    if (this.#state === 'open') return
    // Replaced by another connection of the same principal: reconnecting would
    // close that one in turn (4409 ping-pong), so every call reports it instead.
    if (this.#rejection?.code === SHIM_ERROR_CODES.REPLACED) throw this.#rejection
    if (this.#connecting === undefined) {
      this.#cancelReconnect()
      this.#connecting = this.#connectOnce().finally(() => { this.#connecting = undefined })
    }
    return this.#connecting
  }

  /** Sends one MPAC message and resolves with the coordinator's verdict on it. */
  async request (messageType: string, payload: Frame, timeoutMs?: number): Promise<Reply> {
    await this.ensureConnected()
    return this.#send(messageType, payload, timeoutMs ?? this.#opts.requestTimeoutMs ?? 15_000)
  }

  /** Sends a sideband query on the persistent connection and resolves with its one reply frame. */
  async query (request: SidebandRequest, timeoutMs?: number): Promise<Frame> {
    await this.ensureConnected()
    return this.#query(request, timeoutMs ?? this.#opts.requestTimeoutMs ?? 15_000)
  }

  /**
   * The INTENT_CLAIM_STATUS for `claimId`, from what was already received or
   * the next one to arrive; undefined after `timeoutMs`.
   */
  async waitForClaimStatus (claimId: string, timeoutMs: number): Promise<Frame | undefined> {
    const known = this.#claimStatuses.get(claimId)
    if (known !== undefined) return known
    return new Promise(resolve => {
      const waiters = this.#claimWaiters.get(claimId) ?? []
      const timer = this.#timers.setTimeout(() => {
        const list = this.#claimWaiters.get(claimId)
        if (list !== undefined) {
          const i = list.indexOf(done)
          if (i >= 0) list.splice(i, 1)
          if (list.length === 0) this.#claimWaiters.delete(claimId)
        }
        resolve(undefined)
      }, timeoutMs)
      const done = (status: Frame): void => {
        this.#timers.clearTimeout(timer)
        resolve(status)
      }
      waiters.push(done)
      this.#claimWaiters.set(claimId, waiters)
    })
  }

  /**
   * Leaves: GOODBYE (when `goodbye` is given and the client is admitted),
   * waits for its terminal frame briefly, then closes. No reconnect after this.
   */
  async close (goodbye?: { disposition: string, activeIntents: readonly string[], reason?: string }, timeoutMs = 2000): Promise<void> {
    if (this.#closing) return
    this.#closing = true
    this.#cancelReconnect()
    this.#stopHeartbeat()
    if (goodbye !== undefined && this.#state === 'open') {
      try {
        const payload: Frame = { reason: goodbye.reason ?? 'user_exit', intent_disposition: goodbye.disposition }
        if (goodbye.activeIntents.length > 0) payload['active_intents'] = [...goodbye.activeIntents]
        await this.#send('GOODBYE', payload, timeoutMs)
      } catch (err) {
        this.#log.debug({ err }, 'goodbye not confirmed')
      }
    }
    const ws = this.#ws
    this.#ws = undefined
    this.#state = 'closed'
    this.#failAll(new ShimError(SHIM_ERROR_CODES.REMOTE_CLOSED, 'the shim is shutting down'))
    if (ws !== undefined) {
      try {
        ws.close(1000)
      } catch {
        // already closed
      }
    }
  }

  // ---------------------------------------------------------------- connect

  async #connectOnce (): Promise<void> {
    this.#state = 'connecting'
    try {
      if (this.#opts.beforeConnect !== undefined) await this.#opts.beforeConnect()
      const ws = await this.#open()
      if (this.#closing) {
        ws.close(1000)
        throw new ShimError(SHIM_ERROR_CODES.REMOTE_CLOSED, 'the shim is shutting down')
      }
      this.#ws = ws
      if (!this.#opts.sessionIdPinned) {
        // No session in the URL: learn the one the coordinator serves before introducing ourselves.
        const summary = await this.#query({ type: 'SESSION_SUMMARY' }, this.#opts.connectTimeoutMs ?? 5000)
        const served = (summary['session'] as Frame | undefined)?.['session_id']
        if (typeof served === 'string' && served !== '') this.#sessionId = served
      }
      if (this.#opts.verifyConnection !== undefined) {
        const timeoutMs = this.#opts.connectTimeoutMs ?? 5000
        await this.#opts.verifyConnection(request => this.#query(request, timeoutMs))
      }
      const info = await this.#hello()
      this.#rejection = undefined
      this.#attempt = 0
      this.#state = 'open'
      this.#startHeartbeat(info)
      this.#log.info({ sessionId: this.#sessionId, participantId: this.principalId }, 'connected to coordinator')
      if (this.#opts.onConnected !== undefined) await this.#opts.onConnected(info)
    } catch (err) {
      const ws = this.#ws
      this.#ws = undefined
      this.#stopHeartbeat()
      this.#state = this.#closing ? 'closed' : 'disconnected'
      if (ws !== undefined) {
        try { ws.close(1000) } catch { /* already closed */ }
      }
      const error = err instanceof ShimError
        ? err
        : new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, `cannot reach the coordinator at ${this.#opts.url}: ${(err as Error).message}`, { retryable: true, cause: err })
      // Retry policy: a failure that cannot heal by itself (refused HELLO, untrusted certificate,
      // wrong URL path, unknown host, …: retryable=false) is not retried in the background; the
      // next call tries once more and reports it again. Anything else reconnects with backoff.
      if (!error.retryable) {
        this.#rejection = error
      } else {
        this.#scheduleReconnect()
      }
      throw error
    }
  }

  #open (): Promise<WebSocket> {
    const headers: Record<string, string> = {}
    if (this.#opts.token !== undefined) headers['authorization'] = `Bearer ${this.#opts.token}`
    const ws = new WebSocket(this.#opts.url, { headers })
    const timeoutMs = this.#opts.connectTimeoutMs ?? 5000
    return new Promise((resolve, reject) => {
      let settled = false
      const timer = this.#timers.setTimeout(() => finish(new Error(`no WebSocket handshake within ${timeoutMs} ms`)), timeoutMs)
      const finish = (error?: Error): void => {
        if (settled) return
        settled = true
        this.#timers.clearTimeout(timer)
        if (error !== undefined) {
          try { ws.close() } catch { /* not open */ }
          diagnoseHandshake(this.#opts.url, this.#opts.token).then(reject, (why: unknown) => reject(unreachableError(this.#opts.url, error, why)))
          return
        }
        resolve(ws)
      }
      ws.addEventListener('open', () => finish())
      ws.addEventListener('error', ev => finish(new Error((ev as unknown as { message?: string }).message ?? 'connection failed')))
      ws.addEventListener('close', ev => {
        if (!settled) finish(new Error(`connection closed (${ev.code}${ev.reason !== '' ? ' ' + ev.reason : ''})`))
        else this.#onClose(ws, ev.code, ev.reason)
      })
      ws.addEventListener('message', ev => {
        if (this.#ws === ws) this.#onMessage(ev.data)
      })
    })
  }

  async #hello (): Promise<SessionInfo> {
    const id = this.#opts.identity
    const payload: Frame = {
      display_name: id.displayName,
      roles: [...id.roles],
      capabilities: [...id.capabilities],
      implementation: { name: 'mpac-mcp', version: PROTOCOL_VERSION }
    }
    if (this.#opts.token !== undefined) payload['credential'] = { type: 'bearer_token', value: this.#opts.token }
    else if (this.#opts.helloSecret !== undefined) payload['credential'] = { type: 'bearer_token', value: this.#opts.helloSecret() }
    const reply = await this.#send('HELLO', payload, this.#opts.connectTimeoutMs ?? 5000)
    if (!reply.accepted) {
      const err = reply.error
      const code = err?.error_code ?? 'UNKNOWN'
      if (code === 'INVALID_REFERENCE') {
        throw new ShimError(SHIM_ERROR_CODES.REMOTE_SESSION_MISMATCH, `the coordinator at ${this.#opts.url} refused session ${JSON.stringify(this.#sessionId)} (${err?.description ?? 'invalid reference'})`, {
          hint: 'MPAC_SESSION_ID must match the /session/<id> of MPAC_COORDINATOR_URL (or leave MPAC_SESSION_ID unset)',
          detail: err !== undefined ? { ...err } : {}
        })
      }
      throw new ShimError(SHIM_ERROR_CODES.AUTH_REJECTED, `the coordinator refused to admit this agent (${code}: ${err?.description ?? 'no description'})`, {
        retryable: false,
        hint: helloHint(code, this.#opts.token !== undefined),
        detail: err !== undefined ? { ...err } : {}
      })
    }
    const info = reply.terminal.payload as SessionInfo
    if (typeof info.session_id === 'string' && info.session_id !== this.#sessionId) {
      if (this.#opts.sessionIdPinned) {
        throw new ShimError(SHIM_ERROR_CODES.REMOTE_SESSION_MISMATCH, `the coordinator at ${this.#opts.url} serves session ${JSON.stringify(info.session_id)}, not ${JSON.stringify(this.#sessionId)}`, {
          hint: 'check MPAC_COORDINATOR_URL (/session/<id>) and MPAC_SESSION_ID; in local mode another workspace\'s sidecar may hold the port: set MPAC_SIDECAR_PORT'
        })
      }
      this.#sessionId = info.session_id
    }
    this.#sessionInfo = info
    return info
  }

  #scheduleReconnect (): void {
    if (this.#closing || this.#reconnectTimer !== undefined || this.#rejection !== undefined) return
    const base = this.#opts.reconnectBaseMs ?? 250
    const max = this.#opts.reconnectMaxMs ?? 10_000
    const ceiling = Math.min(max, base * 2 ** Math.min(this.#attempt, 20))
    const delay = Math.round(ceiling / 2 + this.#timers.random() * ceiling / 2)
    this.#attempt++
    this.#log.debug({ delay, attempt: this.#attempt }, 'reconnect scheduled')
    this.#reconnectTimer = this.#timers.setTimeout(() => {
      this.#reconnectTimer = undefined
      if (this.#state === 'open' || this.#closing) return
      this.ensureConnected().catch(err => this.#log.debug({ err: (err as Error).message }, 'reconnect attempt failed'))
    }, delay)
  }

  #cancelReconnect (): void {
    if (this.#reconnectTimer !== undefined) {
      this.#timers.clearTimeout(this.#reconnectTimer)
      this.#reconnectTimer = undefined
    }
  }

  #onClose (ws: WebSocket, code: number, reason: string): void {
    if (this.#ws !== ws) return
    this.#ws = undefined
    this.#stopHeartbeat()
    if (this.#closing) return
    this.#state = 'disconnected'
    this.#log.warn({ code, reason }, 'coordinator connection lost')
    // Close codes of src/server/close-codes.ts. Permanent: 4004 (wrong path or session id),
    // 4401 (token), 4409 (replaced). 1009 fails the call for good but the connection is
    // re-made. Temporary, reconnect with backoff: 1000/1001/1006, 1011, 1012 (restart),
    // 4408 (no HELLO in time), 4429 (rate and session limits, slow consumer), 4503 (session
    // unavailable).
    if (code === CLOSE.NOT_FOUND.code) {
      this.#rejection = notFoundError(this.#opts.url, reason)
      this.#failAll(this.#rejection)
      return
    }
    if (code === CLOSE.TOO_BIG.code) {
      this.#failAll(new ShimError(SHIM_ERROR_CODES.REMOTE_CLOSED, `the coordinator closed the connection (1009 ${reason}): the message was larger than it accepts`, {
        retryable: false,
        hint: 'the same call will fail again: send a smaller change (split the file or the change)'
      }))
      this.#scheduleReconnect()
      return
    }
    if (code === CLOSE.UNAUTHORIZED.code || code === 4403) {
      // Token revoked or not allowed any more: reconnecting in the background cannot help.
      this.#rejection = new ShimError(SHIM_ERROR_CODES.AUTH_REJECTED, `the coordinator closed the connection (${code} ${reason})`, { hint: helloHint('CREDENTIAL_REJECTED', this.#opts.token !== undefined) })
    } else if (code === 4409) {
      // Another connection of the same principal took over; fighting back would loop forever.
      this.#rejection = new ShimError(SHIM_ERROR_CODES.REPLACED, `another connection with principal id ${this.principalId} replaced this one (close 4409): this agent is no longer connected`, {
        retryable: false,
        hint: 'two agents use the same principal id (the same MPAC_PRINCIPAL_ID, or the same MPAC_AGENT_NAME and workspace path on two machines): give each its own, then restart this one'
      })
      this.#failAll(this.#rejection)
      return
    }
    this.#failAll(new ShimError(SHIM_ERROR_CODES.REMOTE_CLOSED, `the connection to the coordinator dropped (${code}) while the call was in flight; it may or may not have taken effect`, {
      retryable: true,
      hint: 'check the session state with who_is_working, then retry'
    }))
    this.#scheduleReconnect()
  }

  /**
   * A coordinator answers in milliseconds: no reply within the safety-net
   * timeout means the connection is dead even if it looks open (half-open
   * TCP after a network change or sleep). Treat it as closed and reconnect,
   * instead of letting every later call wait for the same timeout.
   */
  #abandon (ws: WebSocket, why: string): void {
    if (this.#ws !== ws || this.#state !== 'open') return
    this.#log.warn({ why }, 'coordinator connection unresponsive; reconnecting')
    try { ws.close(4000, 'unresponsive') } catch { /* already closing */ }
    this.#onClose(ws, 1006, why)
  }

  #failAll (error: ShimError): void {
    for (const p of this.#pending.values()) {
      this.#timers.clearTimeout(p.timer)
      p.reject(error)
    }
    this.#pending.clear()
    for (const kind of Object.keys(this.#queries) as QueryKind[]) {
      for (const q of this.#queries[kind]) {
        this.#timers.clearTimeout(q.timer)
        if (!q.abandoned) q.reject(error)
      }
      this.#queries[kind] = []
    }
    this.#queryOrder = []
  }

  // -------------------------------------------------------------- heartbeat

  #startHeartbeat (info: SessionInfo): void {
    this.#stopHeartbeat()
    const advertised = info.liveness_policy?.heartbeat_interval_sec
    const ms = this.#opts.heartbeatIntervalMs ?? (typeof advertised === 'number' && advertised > 0 ? advertised * 1000 : 30_000)
    this.#heartbeatTimer = this.#timers.setInterval(() => this.#heartbeat(), ms)
  }

  #stopHeartbeat (): void {
    if (this.#heartbeatTimer !== undefined) {
      this.#timers.clearInterval(this.#heartbeatTimer)
      this.#heartbeatTimer = undefined
    }
  }

  #heartbeat (): void {
    if (this.#state !== 'open') return
    this.#send('HEARTBEAT', { status: 'idle' }, this.#opts.requestTimeoutMs ?? 15_000)
      .catch(err => this.#log.debug({ err: (err as Error).message }, 'heartbeat failed'))
  }

  // ---------------------------------------------------------------- sending

  #envelope (messageType: string, payload: Frame): Envelope {
    // Never past the largest value the coordinator accepts (src/protocol/watermark.ts).
    this.#lamport = clampLamport(this.#lamport + 1)
    return {
      protocol: 'MPAC',
      version: PROTOCOL_VERSION,
      message_type: messageType,
      message_id: randomUUID(),
      session_id: this.#sessionId,
      sender: { principal_id: this.principalId, principal_type: 'agent', sender_instance_id: this.#instanceId },
      ts: new Date().toISOString(),
      payload,
      watermark: { kind: 'lamport_clock', value: this.#lamport }
    }
  }

  #send (messageType: string, payload: Frame, timeoutMs: number): Promise<Reply> {
    const ws = this.#ws
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, 'not connected to the coordinator', { retryable: true }))
    }
    const envelope = this.#envelope(messageType, payload)
    return new Promise<Reply>((resolve, reject) => {
      const pending: PendingRequest = {
        messageId: envelope.message_id,
        type: messageType,
        warnings: [],
        seen: [],
        resolve,
        reject,
        timer: undefined,
        fencing: false
      }
      pending.timer = this.#timers.setTimeout(() => {
        this.#pending.delete(envelope.message_id)
        reject(new ShimError(SHIM_ERROR_CODES.REMOTE_TIMEOUT, `no reply from the coordinator to ${messageType} within ${timeoutMs} ms`, { retryable: true }))
        this.#abandon(ws, `no reply to ${messageType} within ${timeoutMs} ms`)
      }, timeoutMs)
      this.#pending.set(envelope.message_id, pending)
      try {
        ws.send(JSON.stringify(envelope))
      } catch (err) {
        this.#timers.clearTimeout(pending.timer)
        this.#pending.delete(envelope.message_id)
        reject(new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, `cannot send to the coordinator: ${(err as Error).message}`, { retryable: true }))
      }
    })
  }

  #query (request: SidebandRequest, timeoutMs: number): Promise<Frame> {
    const ws = this.#ws
    if (ws === undefined || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, 'not connected to the coordinator', { retryable: true }))
    }
    const kind = REQUEST_KIND[request.type]
    return new Promise<Frame>((resolve, reject) => {
      const q: PendingQuery = { resolve, reject, timer: undefined, abandoned: false }
      q.timer = this.#timers.setTimeout(() => {
        q.abandoned = true
        reject(new ShimError(SHIM_ERROR_CODES.REMOTE_TIMEOUT, `no reply from the coordinator to ${request.type} within ${timeoutMs} ms`, { retryable: true }))
        this.#abandon(ws, `no reply to ${request.type} within ${timeoutMs} ms`)
      }, timeoutMs)
      this.#queries[kind].push(q)
      this.#queryOrder.push({ kind, q })
      try {
        ws.send(JSON.stringify(request))
      } catch (err) {
        this.#timers.clearTimeout(q.timer)
        this.#queries[kind].pop()
        this.#queryOrder.pop()
        reject(new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, `cannot send to the coordinator: ${(err as Error).message}`, { retryable: true }))
      }
    })
  }

  // -------------------------------------------------------------- receiving

  #onMessage (data: unknown): void {
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
    if (typeof frame['message_type'] === 'string') {
      this.#onEnvelope(frame as unknown as Envelope)
    } else if (typeof frame['type'] === 'string') {
      this.#onSideband(frame)
    }
  }

  #onSideband (frame: Frame): void {
    const kind = REPLY_KIND[frame['type'] as string]
    if (kind === undefined) {
      this.#opts.onPush?.(frame)
      return
    }
    const q = this.#queries[kind].shift()
    if (q === undefined) {
      this.#log.debug({ type: frame['type'] }, 'unexpected sideband reply dropped')
      return
    }
    this.#queryOrder = this.#queryOrder.filter(e => e.q !== q)
    this.#timers.clearTimeout(q.timer)
    if (!q.abandoned) q.resolve(frame)
  }

  /**
   * A PROTOCOL_ERROR without `refers_to` answers a frame that had no
   * message_id: a sideband query the coordinator refused (rate limit,
   * malformed). Replies come in send order, so it is the oldest unanswered one.
   */
  #onQueryRefused (error: Frame): void {
    const first = this.#queryOrder.shift()
    if (first === undefined) return
    const queue = this.#queries[first.kind]
    const i = queue.indexOf(first.q)
    if (i >= 0) queue.splice(i, 1)
    this.#timers.clearTimeout(first.q.timer)
    if (!first.q.abandoned) {
      first.q.reject(new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, `the coordinator refused the query (${String(error['error_code'])}: ${String(error['description'] ?? '')})`, { retryable: true, hint: 'retry in a second' }))
    }
  }

  #onEnvelope (env: Envelope): void {
    // SPEC §12.7 rule 3: on receive, local = max(local, received) + 1, clamped to MAX_LAMPORT: a coordinator
    // (or a peer relayed by it) announcing a larger value must not push this client past what coordinators accept.
    const wm = env.watermark
    if (wm !== undefined && wm.kind === 'lamport_clock' && Number.isSafeInteger(wm.value) && (wm.value as number) >= 0) {
      this.#lamport = clampLamport(Math.max(this.#lamport, wm.value as number) + 1)
    }
    const payload = (env.payload ?? {}) as Frame

    for (const p of this.#pending.values()) {
      if (p.seen.length < MAX_SEEN && p.messageId !== env.message_id) p.seen.push(env)
    }

    if (env.message_type === 'INTENT_CLAIM_STATUS' && typeof payload['claim_id'] === 'string') {
      this.#recordClaimStatus(payload['claim_id'], payload)
    }

    if (env.message_type === 'PROTOCOL_ERROR') {
      const refersTo = payload['refers_to']
      const pending = typeof refersTo === 'string' ? this.#pending.get(refersTo) : undefined
      if (pending !== undefined) {
        this.#onError(pending, payload as unknown as ErrorPayload, env)
      } else if (refersTo === undefined && payload['error_code'] !== 'PARTICIPANT_UNAVAILABLE') {
        this.#onQueryRefused(payload)
      } else if (payload['error_code'] === 'PARTICIPANT_UNAVAILABLE' && payload['principal_id'] === this.principalId) {
        // We were declared unavailable (missed heartbeats, e.g. the machine slept) and our
        // ACTIVE intents suspended: a HEARTBEAT makes us available again and restores them.
        this.#heartbeat()
      }
    } else if (env.message_type === 'SESSION_INFO') {
      const hello = [...this.#pending.values()].find(p => p.type === 'HELLO')
      if (hello !== undefined) this.#settle(hello, { accepted: true, terminal: env, error: undefined })
    } else {
      const pending = this.#pending.get(env.message_id)
      if (pending !== undefined && pending.type !== 'HELLO') this.#settle(pending, { accepted: true, terminal: env, error: undefined })
    }

    this.#opts.onEnvelope?.(env)
  }

  #onError (pending: PendingRequest, error: ErrorPayload, env: Envelope): void {
    if (!mayBeWarning(pending.type, error.error_code)) {
      this.#settle(pending, { accepted: false, terminal: env, error })
      return
    }
    // A partial-overlap SCOPE_FROZEN is a warning followed by the relay; a
    // full one is the rejection. The coordinator answers a later sideband
    // query only after every output of our message, so a summary round trip
    // tells the two apart without sleeping.
    pending.warnings.push(error)
    if (pending.fencing) return
    pending.fencing = true
    this.#query({ type: 'SESSION_SUMMARY' }, this.#opts.requestTimeoutMs ?? 15_000).then(() => {
      if (this.#pending.get(pending.messageId) === pending) {
        pending.warnings.pop()
        this.#settle(pending, { accepted: false, terminal: env, error })
      }
    }, () => { /* the request's own timeout or close handling reports it */ })
  }

  #settle (pending: PendingRequest, outcome: { accepted: boolean, terminal: Envelope, error: ErrorPayload | undefined }): void {
    this.#pending.delete(pending.messageId)
    this.#timers.clearTimeout(pending.timer)
    pending.resolve({ ...outcome, warnings: pending.warnings, seen: pending.seen, messageId: pending.messageId })
  }

  #recordClaimStatus (claimId: string, payload: Frame): void {
    this.#claimStatuses.set(claimId, payload)
    if (this.#claimStatuses.size > MAX_CLAIM_STATUSES) {
      const oldest = this.#claimStatuses.keys().next().value
      if (oldest !== undefined) this.#claimStatuses.delete(oldest)
    }
    const waiters = this.#claimWaiters.get(claimId)
    if (waiters !== undefined) {
      this.#claimWaiters.delete(claimId)
      for (const w of waiters) w(payload)
    }
  }
}

/**
 * After a failed WebSocket handshake, asks the same URL over HTTP with the
 * same Authorization header: the coordinator answers 401/403 for a bad token
 * or a session the token may not use, which the WebSocket API hides.
 * Resolves with the error to report; rejects when nothing useful was learnt.
 */
export async function diagnoseHandshake (url: string, token: string | undefined): Promise<ShimError> {
  const httpUrl = url.replace(/^ws/i, 'http')
  const headers: Record<string, string> = {}
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`
  let res: Awaited<ReturnType<typeof fetch>>
  try {
    res = await fetch(httpUrl, { headers, signal: AbortSignal.timeout(2000) })
  } catch (err) {
    const tls = tlsErrorCode(err)
    if (tls === undefined) throw err
    return new ShimError(SHIM_ERROR_CODES.TLS_UNTRUSTED, `the coordinator's TLS certificate is not trusted (${tls}) at ${url}`, {
      hint: tls === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? 'the certificate does not name this host: check the host in MPAC_COORDINATOR_URL'
        : 'for a coordinator whose certificate comes from a private CA, set NODE_EXTRA_CA_CERTS=/path/to/ca.pem in the environment of mpac-mcp',
      detail: { tls_error: tls }
    })
  }
  let message = ''
  try {
    const body = await res.json() as { message?: unknown }
    if (typeof body.message === 'string') message = body.message
  } catch {
    // not JSON
  }
  if (res.status === 401 || res.status === 403) {
    return new ShimError(SHIM_ERROR_CODES.AUTH_REJECTED, `the coordinator refused the connection (HTTP ${res.status}${message !== '' ? ': ' + message : ''})`, {
      hint: res.status === 401
        ? (token === undefined ? 'this coordinator requires a token: set MPAC_COORDINATOR_TOKEN' : 'MPAC_COORDINATOR_TOKEN is not valid for this coordinator')
        : 'MPAC_COORDINATOR_TOKEN may not use this session: check the session id in MPAC_COORDINATOR_URL and the token\'s allowed_sessions',
      detail: { http_status: res.status }
    })
  }
  if (res.status === 404) return notFoundError(url, 'HTTP 404')
  throw new Error(`HTTP ${res.status}`)
}

/** The URL to use instead of one the coordinator answered 4004 (or HTTP 404) for. */
function notFoundError (url: string, reason: string): ShimError {
  let origin = url
  let session: string | undefined
  try {
    const parsed = new URL(url)
    origin = `${parsed.protocol}//${parsed.host}`
    const segments = parsed.pathname.split('/').filter(x => x !== '')
    if (segments[0] === 'session' && segments[1] !== undefined) session = decodeURIComponent(segments[1])
  } catch { /* validated at start */ }
  const message = session === undefined
    ? `the coordinator at ${origin} has no endpoint at ${url} (${reason}): connect to ${origin}/session/<session id>`
    : `the coordinator at ${origin} does not serve session ${JSON.stringify(session)} (${reason}): a single-session coordinator serves only its own id`
  return new ShimError(SHIM_ERROR_CODES.CONFIG_INVALID, message, {
    retryable: false,
    hint: session === undefined
      ? `set MPAC_COORDINATOR_URL to ${origin}/session/<session id> (the id is any name your team agrees on)`
      : `use the session id the coordinator prints in its banner (${origin}/session/<id>), or ${origin}/ for a single-session coordinator`,
    detail: { close_reason: reason }
  })
}

/** The innermost error of an undici failure that names a cause (`cause` chain). */
function rootCause (err: unknown): { code: string | undefined, message: string } | undefined {
  let found: { code: string | undefined, message: string } | undefined
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    const message = String((e as { message?: unknown }).message ?? '').trim().split('\n')[0] ?? ''
    if (typeof code === 'string' || (message !== '' && message !== 'fetch failed')) found = { code: typeof code === 'string' ? code : undefined, message }
  }
  return found
}

/**
 * A WebSocket that never opened: undici's error event carries no cause, so
 * the cause comes from the HTTP probe of the same URL (diagnoseHandshake),
 * with a hint that fits it.
 */
export function unreachableError (url: string, handshake: Error, probe: unknown): ShimError {
  const cause = rootCause(probe)
  let host = url
  try { host = new URL(url).host } catch { /* validated at start */ }
  const why = cause !== undefined ? (cause.code !== undefined && !cause.message.includes(cause.code) ? `${cause.code}: ${cause.message}` : cause.message) : (handshake.message !== '' ? handshake.message : 'connection failed')
  const message = `cannot reach the coordinator at ${url}: ${why}`
  const code = cause?.code
  const options = ((): { retryable: boolean, hint: string } => {
    switch (code) {
      case 'ECONNREFUSED':
        return { retryable: true, hint: `nothing listens at ${host}: check the host and port in the URL, and that the coordinator runs (if it is restarting, retry in a few seconds)` }
      case 'ENOTFOUND':
        return { retryable: false, hint: `the host name in ${url} does not resolve: check MPAC_COORDINATOR_URL for a typo, and this machine's network` }
      case 'EAI_AGAIN':
        return { retryable: true, hint: 'name resolution failed for now (offline, DNS down): retry when the network is back' }
      case 'ERR_SSL_WRONG_VERSION_NUMBER':
      case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      case 'EPROTO':
        return { retryable: false, hint: `the server at ${host} does not speak TLS: use ws:// instead of wss:// (or the port of the TLS endpoint)` }
      case 'ETIMEDOUT':
      case 'UND_ERR_CONNECT_TIMEOUT':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ECONNRESET':
        return { retryable: true, hint: `the network path to ${host} failed: check the host, a firewall or VPN, then retry` }
      default:
        return { retryable: true, hint: 'the coordinator may be restarting; retry in a few seconds' }
    }
  })()
  return new ShimError(SHIM_ERROR_CODES.REMOTE_UNAVAILABLE, message, { ...options, cause: probe, ...(code !== undefined ? { detail: { errno: code } } : {}) })
}

const TLS_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID'
])

/** The certificate verification code of a failed fetch (undici puts it on `cause`), if that is why it failed. */
function tlsErrorCode (err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && TLS_ERRORS.has(code)) return code
  }
  return undefined
}

export type ProbeResult =
  | { readonly kind: 'ok', readonly summary: Frame }
  | { readonly kind: 'refused' }
  | { readonly kind: 'foreign', readonly detail: string }

/**
 * Is an MPAC coordinator listening at `url`? A TCP connect first tells
 * "nothing there" (refused) from "something else there" (foreign); then a
 * sideband SESSION_SUMMARY on a fresh connection, without HELLO, must be
 * answered by a SESSION_SUMMARY_RESPONSE.
 */
export async function probeCoordinator (url: string, options: { timeoutMs?: number, token?: string | undefined } = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 2000
  const parsed = new URL(url)
  const port = Number(parsed.port !== '' ? parsed.port : parsed.protocol === 'wss:' ? 443 : 80)
  const host = parsed.hostname.replace(/^\[|\]$/g, '')
  const reachable = await new Promise<boolean>(resolve => {
    const socket = netConnect({ host, port })
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve(true) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
  if (!reachable) return { kind: 'refused' }

  const headers: Record<string, string> = {}
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`
  return new Promise<ProbeResult>(resolve => {
    let settled = false
    const ws = new WebSocket(url, { headers })
    const finish = (result: ProbeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try { ws.close(1000) } catch { /* not open */ }
      resolve(result)
    }
    const timer = setTimeout(() => finish({ kind: 'foreign', detail: `no reply to SESSION_SUMMARY within ${timeoutMs} ms` }), timeoutMs)
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'SESSION_SUMMARY' })))
    ws.addEventListener('error', () => finish({ kind: 'foreign', detail: 'the port is open but does not speak the MPAC WebSocket protocol' }))
    ws.addEventListener('close', ev => finish({ kind: 'foreign', detail: `connection closed (${ev.code})` }))
    ws.addEventListener('message', ev => {
      try {
        const frame = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer).toString('utf8')) as Frame
        if (frame['type'] === 'SESSION_SUMMARY_RESPONSE' && typeof frame['session'] === 'object' && frame['session'] !== null) {
          finish({ kind: 'ok', summary: frame['session'] as Frame })
        } else {
          finish({ kind: 'foreign', detail: `unexpected first frame ${JSON.stringify(frame['type'] ?? frame['message_type'])}` })
        }
      } catch {
        finish({ kind: 'foreign', detail: 'unparsable reply' })
      }
    })
  })
}
