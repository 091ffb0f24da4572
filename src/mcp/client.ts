/**
 * The shim's connection to a coordinator: one persistent undici WebSocket,
 * HELLO → SESSION_INFO handshake, request correlation by `message_id` /
 * `refers_to` (docs/architecture.md "terminal frame"), sideband queries on
 * the same connection, HEARTBEAT at the advertised interval, reconnect with
 * exponential backoff and jitter, and GOODBYE on close.
 *
 * `CoordinatorClient` composes the parts in ./client/ and owns what binds
 * them: the connection state machine, the HELLO, reconnect and backoff, the
 * heartbeat, and the Lamport clock of the envelopes it sends.
 * - client/transport.ts   the WebSocket: open, send, close, inbound frames
 * - client/correlation.ts requests and sideband queries in flight, timeouts
 * - client/claims.ts      INTENT_CLAIM_STATUS by claim id
 * - client/diagnosis.ts   why a connection failed, as an MpacError with a hint
 * - client/probe.ts       is a coordinator listening at a URL (one-shot)
 * - client/types.ts       wire shapes and the timer source
 * This module re-exports their public names; importers use this one.
 *
 * Contract:
 * - `request()` resolves when the coordinator's terminal frame for that
 *   message arrives: the relay/echo of the same `message_id` (accepted) or the
 *   PROTOCOL_ERROR whose `refers_to` is it (rejected). The timeout is a safety
 *   net only. It rejects with an `MpacError`: `MPAC_ERR_REMOTE_UNAVAILABLE`
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
 * - Never: parses or frames bytes itself (transport), matches replies
 *   (correlation), or words a connection failure (diagnosis).
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { PEER_CLOSE } from '../protocol/close-codes.js'
import { clampLamport } from '../protocol/watermark.js'
import type { ParticipantMessageType } from '../protocol/message-types.js'
import type { Payload } from '../protocol/schemas.js'
import { ClaimStatuses } from './client/claims.js'
import { Correlator, type Link } from './client/correlation.js'
import { closeVerdict, helloRefusal, otherSessionServed } from './client/diagnosis.js'
import { CoordinatorTransport } from './client/transport.js'
import { PROTOCOL_VERSION, systemTimers, type Envelope, type Frame, type Reply, type SessionInfo, type SidebandRequest, type Timers } from './client/types.js'
import type { Identity } from './config.js'
import { MpacError, RemoteClosed, RemoteUnavailable, Replaced } from '../errors.js'

export { diagnoseHandshake, helloHint, unreachableError } from './client/diagnosis.js'
export { probeCoordinator, type ProbeResult } from './client/probe.js'
export { PROTOCOL_VERSION, systemTimers, type Envelope, type ErrorPayload, type Frame, type Reply, type SessionInfo, type SidebandRequest, type Timers } from './client/types.js'

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
  /** Every inbound sideband frame, replies included, in arrival order and before the query it answers resolves. */
  readonly onSidebandFrame?: (frame: Frame) => void
}

export type ClientState = 'idle' | 'connecting' | 'open' | 'disconnected' | 'closed'

export class CoordinatorClient {
  readonly #opts: ClientOptions
  readonly #timers: Timers
  readonly #log: Logger
  readonly #instanceId: string
  readonly #calls: Correlator
  readonly #claims: ClaimStatuses
  #state: ClientState = 'idle'
  #transport: CoordinatorTransport | undefined
  #connecting: Promise<void> | undefined
  #sessionId: string
  #sessionInfo: SessionInfo | undefined
  #rejection: MpacError | undefined
  #lamport = 0
  #attempt = 0
  #reconnectTimer: unknown
  #heartbeatTimer: unknown
  #closing = false

  constructor (opts: ClientOptions) {
    this.#opts = opts
    this.#timers = opts.timers ?? systemTimers
    this.#log = opts.logger
    this.#sessionId = opts.sessionId
    this.#instanceId = `${opts.identity.principalId}:${randomUUID()}`
    this.#calls = new Correlator({
      timers: this.#timers,
      logger: this.#log,
      link: () => this.#transport,
      fenceTimeoutMs: opts.requestTimeoutMs ?? 15_000,
      onUnresponsive: (link, why) => this.#abandon(link, why)
    })
    this.#claims = new ClaimStatuses(this.#timers)
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
    if (this.#closing) throw new RemoteClosed('the shim is shutting down', { retryable: false })
    if (this.#state === 'open') return
    // Replaced by another connection of the same principal: reconnecting would
    // close that one in turn (4409 ping-pong), so every call reports it instead.
    if (this.#rejection instanceof Replaced) throw this.#rejection
    if (this.#connecting === undefined) {
      this.#cancelReconnect()
      this.#connecting = this.#connectOnce().finally(() => { this.#connecting = undefined })
    }
    return this.#connecting
  }

  /**
   * Sends one MPAC message and resolves with the coordinator's verdict on it.
   * The payload is typed by its message type's schema (Payload<T>).
   */
  async request<T extends ParticipantMessageType> (messageType: T, payload: Payload<T>, timeoutMs?: number): Promise<Reply> {
    await this.ensureConnected()
    return this.#send(messageType, payload, timeoutMs ?? this.#opts.requestTimeoutMs ?? 15_000)
  }

  /** Sends a sideband query on the persistent connection and resolves with its one reply frame. */
  async query (request: SidebandRequest, timeoutMs?: number): Promise<Frame> {
    await this.ensureConnected()
    return this.#calls.query(request, timeoutMs ?? this.#opts.requestTimeoutMs ?? 15_000)
  }

  /**
   * The INTENT_CLAIM_STATUS for `claimId`, from what was already received or
   * the next one to arrive; undefined after `timeoutMs`.
   */
  waitForClaimStatus (claimId: string, timeoutMs: number): Promise<Frame | undefined> {
    return this.#claims.waitFor(claimId, timeoutMs)
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
    const transport = this.#release()
    this.#state = 'closed'
    this.#calls.rejectAll(new RemoteClosed('the shim is shutting down', { retryable: false }))
    transport?.close(1000)
  }

  // ---------------------------------------------------------------- connect

  async #connectOnce (): Promise<void> {
    this.#state = 'connecting'
    try {
      if (this.#opts.beforeConnect !== undefined) await this.#opts.beforeConnect()
      const transport = await CoordinatorTransport.open({
        url: this.#opts.url,
        token: this.#opts.token,
        connectTimeoutMs: this.#opts.connectTimeoutMs ?? 5000,
        timers: this.#timers,
        logger: this.#log
      })
      if (this.#closing) {
        transport.close(1000)
        throw new RemoteClosed('the shim is shutting down', { retryable: false })
      }
      this.#transport = transport
      transport.attach({
        onFrame: frame => this.#onFrame(frame),
        onClose: (code, reason) => this.#onClose(transport, code, reason)
      })
      if (!this.#opts.sessionIdPinned) {
        // No session in the URL: learn the one the coordinator serves before introducing ourselves.
        const summary = await this.#calls.query({ type: 'SESSION_SUMMARY' }, this.#opts.connectTimeoutMs ?? 5000)
        const served = (summary['session'] as Frame | undefined)?.['session_id']
        if (typeof served === 'string' && served !== '') this.#sessionId = served
      }
      if (this.#opts.verifyConnection !== undefined) {
        const timeoutMs = this.#opts.connectTimeoutMs ?? 5000
        await this.#opts.verifyConnection(request => this.#calls.query(request, timeoutMs))
      }
      const info = await this.#hello()
      this.#rejection = undefined
      this.#attempt = 0
      this.#state = 'open'
      this.#startHeartbeat(info)
      this.#log.info({ sessionId: this.#sessionId, participantId: this.principalId }, 'connected to coordinator')
      if (this.#opts.onConnected !== undefined) await this.#opts.onConnected(info)
    } catch (err) {
      const transport = this.#release()
      this.#stopHeartbeat()
      this.#state = this.#closing ? 'closed' : 'disconnected'
      transport?.close(1000)
      const error = err instanceof MpacError
        ? err
        : new RemoteUnavailable(`cannot reach the coordinator at ${this.#opts.url}: ${(err as Error).message}`, { cause: err })
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
      throw helloRefusal(reply.error, { url: this.#opts.url, sessionId: this.#sessionId, hasToken: this.#opts.token !== undefined })
    }
    const info = reply.terminal.payload as SessionInfo
    if (typeof info.session_id === 'string' && info.session_id !== this.#sessionId) {
      if (this.#opts.sessionIdPinned) throw otherSessionServed(this.#opts.url, info.session_id, this.#sessionId)
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

  /** Stops using the current connection (nothing more is received from it) and hands it over to be closed. */
  #release (): CoordinatorTransport | undefined {
    const transport = this.#transport
    this.#transport = undefined
    transport?.detach()
    return transport
  }

  #onClose (link: Link, code: number, reason: string): void {
    if (this.#transport !== link) return
    this.#release()
    this.#stopHeartbeat()
    if (this.#closing) return
    this.#state = 'disconnected'
    this.#log.warn({ code, reason }, 'coordinator connection lost')
    const verdict = closeVerdict(code, reason, { url: this.#opts.url, principalId: this.principalId, hasToken: this.#opts.token !== undefined })
    if (verdict.rejection !== undefined) this.#rejection = verdict.rejection
    this.#calls.rejectAll(verdict.failWith)
    if (verdict.reconnect) this.#scheduleReconnect()
  }

  /**
   * A coordinator answers in milliseconds: no reply within the safety-net
   * timeout means the connection is dead even if it looks open (half-open
   * TCP after a network change or sleep). Treat it as closed and reconnect,
   * instead of letting every later call wait for the same timeout.
   */
  #abandon (link: Link, why: string): void {
    const transport = this.#transport
    if (transport === undefined || transport !== link || this.#state !== 'open') return
    this.#log.warn({ why }, 'coordinator connection unresponsive; reconnecting')
    transport.close(PEER_CLOSE.UNRESPONSIVE.code, PEER_CLOSE.UNRESPONSIVE.reason)
    this.#onClose(transport, 1006, why)
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
    return this.#calls.request(() => this.#envelope(messageType, payload), timeoutMs)
  }

  // -------------------------------------------------------------- receiving

  #onFrame (frame: Frame): void {
    if (typeof frame['message_type'] === 'string') {
      this.#onEnvelope(frame as unknown as Envelope)
    } else if (typeof frame['type'] === 'string') {
      this.#opts.onSidebandFrame?.(frame)
      if (!this.#calls.onSideband(frame)) this.#opts.onPush?.(frame)
    }
  }

  #onEnvelope (env: Envelope): void {
    // SPEC §12.7 rule 3: on receive, local = max(local, received) + 1, clamped to MAX_LAMPORT: a coordinator
    // (or a peer relayed by it) announcing a larger value must not push this client past what coordinators accept.
    const wm = env.watermark
    if (wm !== undefined && wm.kind === 'lamport_clock' && Number.isSafeInteger(wm.value) && (wm.value as number) >= 0) {
      this.#lamport = clampLamport(Math.max(this.#lamport, wm.value as number) + 1)
    }
    const payload = env.payload ?? {}

    if (env.message_type === 'INTENT_CLAIM_STATUS' && typeof payload['claim_id'] === 'string') {
      this.#claims.record(payload['claim_id'], payload)
    }

    const answered = this.#calls.onEnvelope(env)
    if (!answered && env.message_type === 'PROTOCOL_ERROR' && payload['error_code'] === 'PARTICIPANT_UNAVAILABLE' && payload['principal_id'] === this.principalId) {
      // We were declared unavailable (missed heartbeats, e.g. the machine slept) and our
      // ACTIVE intents suspended: a HEARTBEAT makes us available again and restores them.
      this.#heartbeat()
    }

    this.#opts.onEnvelope?.(env)
  }
}
