import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { helloFirst } from '../coordinator/index.js'
import type { Credential, Verdict } from '../coordinator/types.js'
import type { ErrorCode } from '../protocol/error-codes.js'
import { SIDEBAND_REQUESTS } from '../protocol/message-types.js'
import { CLOSE, type CloseSpec } from '../protocol/close-codes.js'
import type { ServerConfig } from './config.js'
import type { Metrics } from './metrics.js'
import { serverErrorFrame } from './server-error.js'
import type { SessionDirectory, TrackedConnection } from './session-directory.js'
import { CoreFailure, type Peer, type SessionRuntime } from './session-runtime.js'
import { tokenDigest, type TokenEntry, type TokenTable } from './token-table.js'
import { localProof, sameHex } from '../local-secret.js'

/** The subset of a `ws` WebSocket the server uses. */
export interface WebSocketLike {
  readonly readyState: number
  readonly bufferedAmount: number
  send (data: string): void
  close (code?: number, reason?: string): void
  terminate (): void
  on (event: 'message', listener: (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => void): unknown
  on (event: 'close', listener: (code: number, reason: Buffer) => void): unknown
  on (event: 'error', listener: (err: Error) => void): unknown
}

const OPEN = 1

/** The token of the upgrade's `Authorization: Bearer` header, already checked for this session. */
export interface HeaderAuth {
  readonly digest: string
  readonly entry: TokenEntry
}

/** Mutable holder of the token table, swapped on reload. */
export interface AuthState { table: TokenTable | undefined }

export interface ConnectionContext {
  readonly config: ServerConfig
  readonly registry: SessionDirectory
  readonly auth: AuthState
  readonly metrics: Metrics
  readonly logger: Logger
}

const SIDEBAND: ReadonlySet<string> = new Set(SIDEBAND_REQUESTS)
const MAX_DEPTH = 64

/** Iterative depth check (no recursion, so it cannot overflow itself). */
function tooDeep (root: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[root, 1]]
  while (stack.length > 0) {
    const [value, depth] = stack.pop() as [unknown, number]
    if (value === null || typeof value !== 'object') continue
    if (depth > max) return true
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}

/**
 * One WebSocket connection to one session. Listeners are attached in the
 * constructor (synchronously, so no early frame is lost); frames are handled
 * one at a time in arrival order. Enforces the per-connection limits: rate
 * (token bucket), pre-HELLO deadline and frame cap, slow consumer. Frame size
 * is enforced by `ws` (`maxPayload` → close 1009).
 */
export class Connection implements Peer, TrackedConnection {
  readonly connId = randomUUID()
  readonly sessionId: string
  readonly headerAuth: HeaderAuth | undefined
  principalId: string | undefined
  /** Digest of the HELLO credential token that admitted this connection. */
  helloDigest: string | undefined
  /** The roles the token table gave that token when this connection was admitted (a reload that changes them closes it). */
  tokenRoles: readonly string[] | undefined
  #log: Logger | undefined
  readonly #socket: WebSocketLike
  readonly #ctx: ConnectionContext
  #runtime: SessionRuntime | undefined
  #closed = false
  #prehelloFrames = 0
  #prehelloTimer: NodeJS.Timeout | undefined
  #tokens: number
  #lastRefill = performance.now()
  #dropped = 0
  #corked = false

  /** The client address (`request.ip`: the proxy-reported one behind a trusted proxy). */
  readonly address: string
  /** Counted among the connections not admitted yet (registry.prehello*), until admitted or closed. */
  #prehelloCounted = true

  constructor (socket: WebSocketLike, sessionId: string, headerAuth: HeaderAuth | undefined, ctx: ConnectionContext, address = '') {
    this.#socket = socket
    this.address = address
    this.sessionId = sessionId
    this.headerAuth = headerAuth
    this.#ctx = ctx
    this.#tokens = ctx.config.limits.maxMsgsPerSec
    socket.on('message', (data, isBinary) => this.#onFrame(data, isBinary))
    socket.on('close', () => this.#onClose())
    socket.on('error', (err) => this.log.debug({ err }, 'socket error'))
    // Pre-HELLO deadline: absolute, traffic does not extend it (a connection
    // that never identifies itself must not hold resources forever).
    this.#prehelloTimer = setTimeout(() => {
      if (this.principalId === undefined) this.close(CLOSE.PREHELLO_TIMEOUT)
    }, ctx.config.limits.prehelloTimeoutSec * 1000)
    this.#prehelloTimer.unref()
    ctx.metrics.connections++
    ctx.metrics.connectionsTotal++
    ctx.registry.connectionOpened(this)
  }

  /** Child logger with sessionId, connId (and principalId once admitted), created on first use (memory per idle connection). */
  get log (): Logger {
    this.#log ??= this.#ctx.logger.child(this.principalId === undefined
      ? { sessionId: this.sessionId, connId: this.connId }
      : { sessionId: this.sessionId, connId: this.connId, principalId: this.principalId })
    return this.#log
  }

  get isOpen (): boolean {
    return !this.#closed && this.#socket.readyState === OPEN
  }

  get runtime (): SessionRuntime | undefined { return this.#runtime }

  /**
   * Sends one frame, unless the connection is a slow consumer: data already
   * queued for it (corked frames of this flush included) above
   * --max-buffered-bytes closes it instead. So a connection never holds more
   * than the ceiling plus one frame, however many frames one burst produces,
   * and a single large frame to a connection that keeps up always goes out.
   */
  send (data: string): boolean {
    if (!this.isOpen) return false
    this.#checkBuffered()
    if (this.#closed) return false
    this.#socket.send(data)
    return true
  }

  cork (): void {
    const raw = this.#rawSocket()
    if (raw === undefined) return
    raw.cork()
    this.#corked = true
  }

  uncork (): void {
    if (!this.#corked) return
    this.#corked = false
    this.#rawSocket()?.uncork()
  }

  /** The TCP socket under `ws` (not part of its typed API; absent in other WebSocket implementations). */
  #rawSocket (): { cork (): void, uncork (): void } | undefined {
    const raw = (this.#socket as unknown as { _socket?: { cork?: unknown, uncork?: unknown } })._socket
    return raw !== undefined && typeof raw.cork === 'function' && typeof raw.uncork === 'function'
      ? raw as { cork (): void, uncork (): void }
      : undefined
  }

  #checkBuffered (): void {
    // Slow consumer: a peer that does not read must not make the server buffer
    // without bound (memory exhaustion); cut it, others are unaffected.
    if (!this.#closed && this.#socket.bufferedAmount > this.#ctx.config.limits.maxBufferedBytes) {
      this.log.warn({ bufferedAmount: this.#socket.bufferedAmount }, 'slow consumer; closing')
      this.close(CLOSE.SLOW_CONSUMER)
    }
  }

  /** Idempotent. Sends the close frame, and cuts the socket if the peer does not answer. */
  close (spec: CloseSpec): void {
    if (this.#closed) return
    this.#closed = true
    this.#ctx.metrics.closed(spec.code)
    this.log.debug({ code: spec.code, reason: spec.reason }, 'closing connection')
    try {
      this.#socket.close(spec.code, spec.reason)
    } catch {
      this.#socket.terminate()
    }
    const kill = setTimeout(() => this.#socket.terminate(), spec === CLOSE.SLOW_CONSUMER ? 1000 : 5000)
    kill.unref()
  }

  /** Closes once the frames already queued for this connection are sent (its errors explain why). */
  #closeAfterPending (spec: CloseSpec): void {
    const runtime = this.#runtime ?? this.#ctx.registry.peek(this.sessionId)
    if (runtime === undefined) this.close(spec)
    else runtime.defer(() => this.close(spec))
  }

  #onClose (): void {
    if (this.#prehelloTimer !== undefined) clearTimeout(this.#prehelloTimer)
    this.#endPrehello()
    this.#closed = true
    this.#runtime?.detach(this)
    this.#ctx.metrics.connections--
    this.#ctx.registry.connectionClosed(this)
  }

  /** Token bucket: `maxMsgsPerSec` per second, burst of one second's worth. */
  #takeToken (): boolean {
    const rate = this.#ctx.config.limits.maxMsgsPerSec
    const now = performance.now()
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#lastRefill) / 1000) * rate)
    this.#lastRefill = now
    if (this.#tokens >= 1) {
      this.#tokens -= 1
      this.#dropped = 0
      return true
    }
    return false
  }

  #onFrame (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    try {
      this.#frame(data, isBinary)
    } catch (err) {
      // Never let one frame take the process down; the session (if it failed) was already reset.
      if (!(err instanceof CoreFailure)) this.log.error({ err }, 'frame handling failed')
      this.close(CLOSE.INTERNAL)
    }
  }

  #frame (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.#closed) return
    const receivedAt = performance.now()
    const limits = this.#ctx.config.limits
    if (!this.#takeToken() || !this.#ctx.registry.takeTokenShare(this)) {
      // Flooding: each dropped frame gets an error so the client's request
      // does not hang; another full second's worth of excess closes it.
      this.#dropped++
      if (this.#dropped > limits.maxMsgsPerSec) {
        if (this.#dropped === limits.maxMsgsPerSec + 1) {
          this.log.warn('rate limit abused; closing')
          this.#closeAfterPending(CLOSE.RATE_LIMITED)
        }
        return
      }
      this.#serverError('INTENT_BACKOFF', `rate limit exceeded (${limits.maxMsgsPerSec} frames per second per connection, ${limits.maxMsgsPerSecPerToken} per token); retry later`, refersTo(data, isBinary), { retry_after_sec: 1 })
      return
    }
    if (this.principalId === undefined && ++this.#prehelloFrames > limits.prehelloMaxFrames) {
      if (this.#prehelloFrames === limits.prehelloMaxFrames + 1) this.#closeAfterPending(CLOSE.PREHELLO_FRAMES)
      return
    }
    if (isBinary) {
      this.#ctx.metrics.messageIn('BINARY')
      this.#serverError('MALFORMED_MESSAGE', 'binary frames are not supported; send JSON text frames')
      return
    }
    let frame: unknown
    try {
      frame = JSON.parse(toText(data))
    } catch {
      this.#ctx.metrics.messageIn('INVALID_JSON')
      this.#serverError('MALFORMED_MESSAGE', 'frame is not valid JSON')
      return
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) {
      this.#ctx.metrics.messageIn('INVALID_JSON')
      this.#serverError('MALFORMED_MESSAGE', 'frame must be a JSON object')
      return
    }
    const obj = frame as Record<string, unknown>
    // Deep nesting is valid JSON that JSON.parse accepts but that recursive code
    // (validation, JSON.stringify for the journal and relays) overflows on.
    if (tooDeep(obj, MAX_DEPTH)) {
      this.#ctx.metrics.messageIn(obj.message_type ?? obj.type)
      this.#serverError('MALFORMED_MESSAGE', `frame nests deeper than ${MAX_DEPTH} levels`, obj.message_id)
      return
    }
    if (obj.message_type === undefined && obj.type === 'LOCAL_PROOF' && this.#ctx.config.localSecret !== undefined) {
      this.#ctx.metrics.messageIn(obj.type)
      this.#localProof(obj, this.#ctx.config.localSecret)
      return
    }
    if (obj.message_type === undefined && typeof obj.type === 'string' && SIDEBAND.has(obj.type)) {
      this.#ctx.metrics.messageIn(obj.type)
      this.#sideband(obj, receivedAt)
      return
    }
    this.#ctx.metrics.messageIn(obj.message_type)
    this.#message(obj, receivedAt)
  }

  /** Local mode: proves to the shim that this coordinator knows the secret (src/local-secret.ts). */
  #localProof (frame: Record<string, unknown>, secret: string): void {
    const nonce = frame.nonce
    if (typeof nonce !== 'string' || !/^[0-9a-f]{32,128}$/.test(nonce)) {
      this.#serverError('MALFORMED_MESSAGE', 'LOCAL_PROOF needs a nonce of 32-128 lower-case hex characters')
      return
    }
    const { host, port } = this.#ctx.config
    const hostPort = `${host.includes(':') ? `[${host}]` : host}:${port}`
    this.#sendNow({ type: 'LOCAL_PROOF_RESPONSE', session_id: this.sessionId, proof: localProof(secret, nonce, this.sessionId, hostPort) })
  }

  /** Local mode without --allow-without-secret: the secret is required before anything else. */
  get #secretRequired (): boolean {
    return this.#ctx.config.localSecret !== undefined && !this.#ctx.config.allowWithoutSecret
  }

  #sideband (frame: Record<string, unknown>, receivedAt: number): void {
    if (this.principalId === undefined && this.#secretRequired) {
      this.log.info('sideband before a HELLO with the local secret; closing')
      this.close(CLOSE.UNAUTHORIZED)
      return
    }
    // protocol.md §13.6 S3: in the authenticated profile, sideband before an
    // admitted HELLO needs a bearer header valid for this session.
    if (this.principalId === undefined && this.#ctx.config.securityProfile === 'authenticated' && this.headerAuth === undefined) {
      this.close(CLOSE.UNAUTHORIZED)
      return
    }
    const runtime = this.#runtime ?? this.#ctx.registry.get(this.sessionId)
    if (runtime !== undefined) {
      runtime.handleSideband(this, frame, receivedAt)
      return
    }
    if (this.#ctx.registry.isUnavailable(this.sessionId)) {
      this.close(CLOSE.SESSION_UNAVAILABLE)
      return
    }
    // No such session: answer without creating one (probes never create sessions).
    this.#sendNow(this.#ctx.registry.missingSessionReply(this.sessionId, frame))
  }

  #message (envelope: Record<string, unknown>, receivedAt: number): void {
    const sender = envelope.sender
    const claimed = sender !== null && typeof sender === 'object' ? (sender as Record<string, unknown>).principal_id : undefined
    const type = envelope.message_type
    const existing = this.#runtime ?? this.#ctx.registry.get(this.sessionId)
    const coordinatorId = existing?.core.coordinatorId ?? `service:coordinator-${this.sessionId}`
    // protocol.md §13.6 S13: nobody may speak as the coordinator.
    if (claimed === coordinatorId) {
      this.#serverError('AUTHORIZATION_FAILED', 'sender.principal_id is the coordinator\'s own id', envelope.message_id)
      return
    }
    if (this.principalId !== undefined) {
      // SPEC §23.3: messages whose principal_id differs from the authenticated one MUST be rejected.
      if (claimed !== this.principalId) {
        this.#serverError('AUTHORIZATION_FAILED', `this connection is bound to principal ${this.principalId}`, envelope.message_id)
        return
      }
      const verdict = type === 'HELLO' ? this.#verdict(envelope, claimed) : undefined
      this.#runtime?.handleMessage(this, envelope, verdict, receivedAt)
      return
    }
    // Issue 11.2: input from a connection that was never admitted changes
    // nothing (no clock, epoch, participant or replay-window move, nothing
    // journaled) and its reply says nothing about the session: every refusal
    // below is authored here, before the core sees the input, and is the same
    // whether the session exists or not.
    if (type !== 'HELLO') {
      // The Python coordinator's wording (protocol.md §7 step 6), same code.
      this.#serverError('INVALID_REFERENCE', helloFirst(typeof claimed === 'string' ? claimed : '(unknown)'), envelope.message_id)
      return
    }
    const full = this.#ctx.registry.admissionLimit(this, this.#tokenOf(envelope), claimed)
    if (full !== undefined) {
      this.close(full)
      return
    }
    if (this.#secretRequired) {
      const cred = helloCredential(envelope)
      const secret = this.#ctx.config.localSecret as string
      if (cred === undefined || cred.type !== 'bearer_token' || !sameHex(tokenDigest(cred.value), tokenDigest(secret))) {
        this.log.info({ principalId: typeof claimed === 'string' ? claimed.slice(0, 100) : undefined }, 'HELLO without the local secret refused')
        this.#serverError('CREDENTIAL_REJECTED', 'this local coordinator admits only clients of its user that present its secret (mpac-mcp does); start it with --allow-without-secret (MPAC_ALLOW_WITHOUT_SECRET=true for mpac-mcp) to admit others', envelope.message_id)
        this.#closeAfterPending(CLOSE.UNAUTHORIZED)
        return
      }
    }
    const verdict = this.#verdict(envelope, claimed)
    if (verdict !== undefined && !verdict.accepted) {
      this.log.info({ reason: verdict.reason }, 'HELLO refused: credential rejected')
      this.#serverError('CREDENTIAL_REJECTED', verdict.reason, envelope.message_id)
      return
    }
    let runtime = existing
    if (runtime === undefined) {
      // A stored session that cannot be loaded (damaged, or the store fails) is never recreated over it.
      if (this.#ctx.registry.isUnavailable(this.sessionId)) {
        this.close(CLOSE.SESSION_UNAVAILABLE)
        return
      }
      const created = this.#ctx.registry.provisional(this.sessionId, this.#tokenOf(envelope), this)
      if ('code' in created) {
        this.close(created)
        return
      }
      runtime = created
    }
    const refusal = runtime.helloRefusal(envelope, verdict)
    if (refusal !== undefined) {
      this.log.info({ code: refusal.code, reason: refusal.description }, 'HELLO refused')
      this.#serverError(refusal.code, refusal.description, envelope.message_id)
      runtime.releaseIfProvisional()
      return
    }
    const result = runtime.handleMessage(this, envelope, verdict, receivedAt)
    if (result?.accepted === true) {
      if (this.#prehelloTimer !== undefined) clearTimeout(this.#prehelloTimer)
      this.#endPrehello()
      this.#runtime = runtime
      runtime.attach(this)
      const token = this.#tokenOf(envelope)
      this.helloDigest = token
      this.tokenRoles = token === undefined ? undefined : this.#ctx.auth.table?.entryOf(token)?.roles
      this.#log = undefined
      this.#ctx.registry.admitted(this, runtime, token)
    }
  }

  #endPrehello (): void {
    if (!this.#prehelloCounted) return
    this.#prehelloCounted = false
    this.#ctx.registry.prehelloEnded(this.address)
  }

  /** Digest of the token this HELLO presents (credential, else header). */
  #tokenOf (envelope: Record<string, unknown>): string | undefined {
    const cred = helloCredential(envelope)
    if (cred !== undefined && cred.type === 'bearer_token' && cred.value !== '') return tokenDigest(cred.value)
    return this.headerAuth?.digest
  }

  /**
   * The credential verdict for a HELLO (authenticated profile), from the
   * HELLO credential and the upgrade's bearer header. Open profile: none.
   */
  #verdict (envelope: Record<string, unknown>, claimed: unknown): Verdict | undefined {
    const table = this.#ctx.auth.table
    if (this.#ctx.config.securityProfile !== 'authenticated') return undefined
    // Never let the core decide without a verdict in this profile (it would admit any credential).
    if (table === undefined) return { accepted: false, reason: 'no token table is loaded' }
    const principalId = typeof claimed === 'string' ? claimed : ''
    const cred = helloCredential(envelope)
    if (cred !== undefined && this.headerAuth !== undefined &&
        (cred.type !== 'bearer_token' || tokenDigest(cred.value) !== this.headerAuth.digest)) {
      return { accepted: false, reason: 'the HELLO credential and the Authorization header carry different tokens' }
    }
    if (cred !== undefined) return table.verify(cred, this.sessionId, principalId)
    if (this.headerAuth !== undefined) {
      const entry = this.headerAuth.entry
      if (entry.principal !== undefined && entry.principal !== principalId) {
        return { accepted: false, reason: `token is pinned to another principal than ${principalId}` }
      }
      return entry.principal === undefined
        ? { accepted: true, grantedRoles: entry.roles }
        : { accepted: true, grantedRoles: entry.roles, principalId: entry.principal }
    }
    return { accepted: false, reason: 'missing credential: send payload.credential {type:"bearer_token", value} or an Authorization: Bearer header' }
  }

  /** A PROTOCOL_ERROR the server itself authors (input the core never sees; not journaled). */
  #serverError (code: ErrorCode, description: string, refersTo?: unknown, extensions?: Record<string, unknown>): void {
    // Only an admitted connection's errors go through its session (ordered with
    // its other frames); a never-admitted one gets the same frame whether the
    // session exists or not.
    const runtime = this.#runtime
    const coordinatorId = runtime?.core.coordinatorId ?? `service:coordinator-${this.sessionId}`
    const frame = serverErrorFrame({ sessionId: this.sessionId, coordinatorId, now: Date.now(), code, description, refersTo, extensions })
    this.log.debug({ code }, 'protocol error')
    if (runtime !== undefined) {
      runtime.sendDirect(this, frame)
    } else {
      this.#sendNow(frame)
      this.#ctx.metrics.messageOut('PROTOCOL_ERROR')
      this.#ctx.metrics.protocolError(code)
    }
  }

  #sendNow (frame: Record<string, unknown>): void {
    this.send(JSON.stringify(frame))
  }
}

function toText (data: Buffer | ArrayBuffer | Buffer[]): string {
  if (Buffer.isBuffer(data)) return data.toString('utf8')
  if (Array.isArray(data)) return Buffer.concat(data).toString('utf8')
  return Buffer.from(data).toString('utf8')
}

/** The message_id of a frame, if it is a JSON object that has one (for refers_to). */
function refersTo (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): string | undefined {
  if (isBinary) return undefined
  try {
    const obj = JSON.parse(toText(data)) as Record<string, unknown>
    return typeof obj.message_id === 'string' ? obj.message_id : undefined
  } catch {
    return undefined
  }
}

function helloCredential (envelope: Record<string, unknown>): Credential | undefined {
  const payload = envelope.payload
  if (payload === null || typeof payload !== 'object') return undefined
  const cred = (payload as Record<string, unknown>).credential
  if (cred === null || typeof cred !== 'object') return undefined
  const c = cred as Record<string, unknown>
  if (typeof c.type !== 'string' || typeof c.value !== 'string') return undefined
  return c as unknown as Credential
}
