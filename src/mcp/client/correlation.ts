/**
 * Request correlation: which inbound frame answers which outbound one.
 *
 * Contract:
 * - Owns: the requests in flight (keyed by `message_id`), the sideband
 *   queries in flight (FIFO per reply kind, plus their send order across
 *   kinds), and their safety-net timeouts.
 * - Promises: a request settles exactly once — with the coordinator's
 *   terminal frame for it (the relay/echo of its `message_id`, SESSION_INFO
 *   for a HELLO, or the PROTOCOL_ERROR whose `refers_to` is it), or rejected
 *   with an `MpacError`: `MPAC_ERR_REMOTE_UNAVAILABLE` when no connection is
 *   open or the send fails, `MPAC_ERR_REMOTE_TIMEOUT` after its timeout, the
 *   error given to `rejectAll()` when the connection goes. A query settles
 *   the same way with its single reply; replies of one kind arrive in request
 *   order, so they are matched FIFO, and a timed-out query still consumes its
 *   late reply so the order stays aligned. A timeout also reports the
 *   connection as unresponsive (`onUnresponsive`).
 * - Never: builds envelopes (CoordinatorClient stamps ids and the Lamport
 *   clock), opens, closes or reconnects a connection, or reads frames that
 *   answer nothing of ours.
 */
import type { Logger } from 'pino'
import { RemoteTimeout, RemoteUnavailable, type MpacError } from '../../errors.js'
import type { Envelope, ErrorPayload, Frame, Reply, SidebandRequest, Timers } from './types.js'

/** Where requests go out: the connection in use (transport.ts). */
export interface Link {
  readonly isOpen: boolean
  send (frame: object): void
}

export interface CorrelatorOptions {
  readonly timers: Timers
  readonly logger: Logger
  /** The connection in use now, if any. */
  readonly link: () => Link | undefined
  /** Timeout of the SESSION_SUMMARY that tells a warning from a rejection (see `#onError`). */
  readonly fenceTimeoutMs: number
  /** A request or query on `link` got no reply within its timeout. */
  readonly onUnresponsive: (link: Link, why: string) => void
}

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

export class Correlator {
  readonly #opts: CorrelatorOptions
  readonly #timers: Timers
  readonly #pending = new Map<string, PendingRequest>()
  readonly #queries: Record<QueryKind, PendingQuery[]> = { summary: [], file: [], list: [], proof: [] }
  /** Every unanswered query in send order, across kinds (a refused query's error names no message). */
  #queryOrder: Array<{ kind: QueryKind, q: PendingQuery }> = []

  constructor (opts: CorrelatorOptions) {
    this.#opts = opts
    this.#timers = opts.timers
  }

  /**
   * Sends the envelope `build()` makes (only once a connection is open, so
   * a refused call consumes no message id or clock tick) and resolves with
   * the coordinator's verdict on it.
   */
  request (build: () => Envelope, timeoutMs: number): Promise<Reply> {
    const link = this.#opts.link()
    if (link === undefined || !link.isOpen) {
      return Promise.reject(new RemoteUnavailable('not connected to the coordinator'))
    }
    const envelope = build()
    const messageType = envelope.message_type
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
        reject(new RemoteTimeout(messageType, timeoutMs))
        this.#opts.onUnresponsive(link, `no reply to ${messageType} within ${timeoutMs} ms`)
      }, timeoutMs)
      this.#pending.set(envelope.message_id, pending)
      try {
        link.send(envelope)
      } catch (err) {
        this.#timers.clearTimeout(pending.timer)
        this.#pending.delete(envelope.message_id)
        reject(new RemoteUnavailable(`cannot send to the coordinator: ${(err as Error).message}`))
      }
    })
  }

  /** Sends a sideband query and resolves with its one reply frame. */
  query (request: SidebandRequest, timeoutMs: number): Promise<Frame> {
    const link = this.#opts.link()
    if (link === undefined || !link.isOpen) {
      return Promise.reject(new RemoteUnavailable('not connected to the coordinator'))
    }
    const kind = REQUEST_KIND[request.type]
    return new Promise<Frame>((resolve, reject) => {
      const q: PendingQuery = { resolve, reject, timer: undefined, abandoned: false }
      q.timer = this.#timers.setTimeout(() => {
        q.abandoned = true
        reject(new RemoteTimeout(request.type, timeoutMs))
        this.#opts.onUnresponsive(link, `no reply to ${request.type} within ${timeoutMs} ms`)
      }, timeoutMs)
      this.#queries[kind].push(q)
      this.#queryOrder.push({ kind, q })
      try {
        link.send(request)
      } catch (err) {
        this.#timers.clearTimeout(q.timer)
        this.#queries[kind].pop()
        this.#queryOrder.pop()
        reject(new RemoteUnavailable(`cannot send to the coordinator: ${(err as Error).message}`))
      }
    })
  }

  /** Rejects every request and query in flight with `error` (the connection is gone). */
  rejectAll (error: MpacError): void {
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

  /**
   * One inbound envelope: recorded in the `seen` of every request in flight,
   * and settles the request it is the terminal frame of. True when it is a
   * PROTOCOL_ERROR this layer took as an answer (to a request, or to a
   * sideband query the coordinator refused); false for one that answers
   * nothing of ours, and for every other envelope.
   */
  onEnvelope (env: Envelope): boolean {
    const payload = env.payload ?? {}
    for (const p of this.#pending.values()) {
      if (p.seen.length < MAX_SEEN && p.messageId !== env.message_id) p.seen.push(env)
    }

    if (env.message_type === 'PROTOCOL_ERROR') {
      const refersTo = payload['refers_to']
      const pending = typeof refersTo === 'string' ? this.#pending.get(refersTo) : undefined
      if (pending !== undefined) {
        this.#onError(pending, payload as unknown as ErrorPayload, env)
        return true
      }
      if (refersTo === undefined && payload['error_code'] !== 'PARTICIPANT_UNAVAILABLE') {
        this.#onQueryRefused(payload)
        return true
      }
      return false
    }
    if (env.message_type === 'SESSION_INFO') {
      const hello = [...this.#pending.values()].find(p => p.type === 'HELLO')
      if (hello !== undefined) this.#settle(hello, { accepted: true, terminal: env, error: undefined })
    } else {
      const pending = this.#pending.get(env.message_id)
      if (pending !== undefined && pending.type !== 'HELLO') this.#settle(pending, { accepted: true, terminal: env, error: undefined })
    }
    return false
  }

  /** One inbound sideband frame: settles the query it answers. False when it is no reply (a push such as FILE_UPDATED). */
  onSideband (frame: Frame): boolean {
    const kind = REPLY_KIND[frame['type'] as string]
    if (kind === undefined) return false
    const q = this.#queries[kind].shift()
    if (q === undefined) {
      this.#opts.logger.debug({ type: frame['type'] }, 'unexpected sideband reply dropped')
      return true
    }
    this.#queryOrder = this.#queryOrder.filter(e => e.q !== q)
    this.#timers.clearTimeout(q.timer)
    if (!q.abandoned) q.resolve(frame)
    return true
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
      first.q.reject(new RemoteUnavailable(`the coordinator refused the query (${String(error['error_code'])}: ${typeof error['description'] === 'string' ? error['description'] : ''})`, { hint: 'retry in a second' }))
    }
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
    this.query({ type: 'SESSION_SUMMARY' }, this.#opts.fenceTimeoutMs).then(() => {
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
}
