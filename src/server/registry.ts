import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { CoordinatorConfig } from '../coordinator/types.js'
import { FenceLostError, recoverSession, replaySession, SnapshotPolicy, StoreDamagedError, type FleetStore, type HandoverRequest, type ManagedSessionStore, type NodeIdentity } from '../store/index.js'
import { CLOSE, type CloseSpec } from '../protocol/close-codes.js'
import type { ServerConfig } from './config.js'
import { CommitLanes } from './commit-lanes.js'
import { createCore, restoreCore } from './core.js'
import { FleetMetrics, type Metrics } from './metrics.js'
import type { AcquireResult, RouterMode } from './routing.js'
import type { SessionDirectory, TrackedConnection } from './session-directory.js'
import { SessionRuntime, type DeliveryGate, type RuntimeBatch } from './session-runtime.js'
import type { TokenTable } from './token-table.js'
import { DiskWorkspace } from './workspace.js'

export interface RegistryOptions {
  readonly config: ServerConfig
  /** The synchronous store (SQLite, memory); never touched in fleet mode. */
  readonly store: ManagedSessionStore
  readonly logger: Logger
  readonly metrics: Metrics
  readonly now?: () => number
  /** Fleet mode (--store postgres): sessions are claimed, committed and released through the fleet store. */
  readonly fleet?: FleetOptions
}

/** The node lease as the registry uses it (src/store/ownership.ts NodeLease). */
export interface FleetLease extends DeliveryGate {
  readonly identity: NodeIdentity
  on (event: 'lapsed', listener: (reason: string) => void): unknown
}

/** Handover requests and release hints (src/store/ownership.ts HandoverWatcher). */
export interface FleetWatcher {
  on (event: 'handover', listener: (request: HandoverRequest) => void): unknown
  forget (sessionId: string): void
  waitForRelease (sessionId: string, timeoutMs: number): Promise<boolean>
}

export interface FleetOptions {
  readonly store: FleetStore
  readonly lease: FleetLease
  readonly watcher: FleetWatcher
  readonly router: RouterMode
  /**
   * A session with connections stays at least this long with the node that
   * claimed it before a handover request is honoured (router flapping must
   * not make sessions ping-pong). A session without connections is handed
   * over at once. Default 30 s.
   */
  readonly handoverHoldMs?: number
}


/**
 * Every session of the process: loaded ones (in memory, with a runtime),
 * stored ones (unloaded after being idle, reloaded on demand), and the
 * provisional ones a first HELLO is creating. Also the set of open
 * connections (shutdown, idle exit, token revocation).
 */
export class SessionRegistry implements SessionDirectory {
  readonly #opts: RegistryOptions
  readonly #now: () => number
  readonly #live = new Map<string, SessionRuntime>()
  /** Ids with stored state (loaded or not). */
  readonly #stored = new Set<string>()
  /** Sessions whose stored state is damaged: refused (4503), never recreated. */
  readonly #quarantined = new Set<string>()
  /** Sessions created by each token (digest), for --max-sessions-per-token. */
  readonly #byToken = new Map<string, Set<string>>()
  /** Sessions created from each client address (in this process), for --max-sessions-per-address. */
  readonly #byAddress = new Map<string, Set<string>>()
  /** Stored sessions not loaded: when they were last active (for --session-idle-retention). */
  readonly #lastActive = new Map<string, number>()
  readonly #connections = new Set<TrackedConnection>()
  /** Open connections per token digest (bearer header at the upgrade, or the admitting HELLO's credential). */
  readonly #connsByToken = new Map<string, Set<TrackedConnection>>()
  /** Open connections per client address. */
  readonly #connsByAddress = new Map<string, Set<TrackedConnection>>()
  readonly #addressOf = new WeakMap<TrackedConnection, string>()
  /** --max-msgs-per-sec-per-token buckets (dropped with the token's last connection). */
  readonly #tokenBuckets = new Map<string, { tokens: number, at: number }>()
  readonly #snapshotPolicy = new SnapshotPolicy()
  /** Sessions with work queued in this event-loop turn (flushed together). */
  #dirty = new Set<SessionRuntime>()
  /** The token table connections are judged by (swapped by revalidate). */
  #table: TokenTable | undefined
  #expiryTimer: NodeJS.Timeout | undefined
  /** When #expiryTimer fires (epoch ms), or Infinity. */
  #expiryAt = Infinity
  /** Connections not admitted by a HELLO yet, per client address and in total. */
  readonly #prehello = new Map<string, number>()
  #prehelloTotal = 0
  #workspace: DiskWorkspace | undefined
  #sweepTimer: NodeJS.Timeout | undefined
  /** Called with every runtime put in memory (created, loaded or recovered): the dashboard subscribes to watched ones. */
  onRuntime: ((runtime: SessionRuntime) => void) | undefined
  /** Called whenever the number of open connections changes (idle exit). */
  onConnectionCount: ((count: number) => void) | undefined
  readonly #fleet: FleetOptions | undefined
  readonly #lanes: CommitLanes | undefined
  /** Claims in progress (concurrent upgrades of one session share one). */
  readonly #acquiring = new Map<string, Promise<AcquireResult>>()
  /** When each owned runtime was claimed (the handover hold). */
  readonly #claimedAt = new WeakMap<SessionRuntime, number>()
  readonly #releasing = new Set<SessionRuntime>()
  /** Open connections per session id (fleet mode keeps a claimed provisional session while one is open). */
  readonly #connsBySession = new Map<string, number>()

  constructor (opts: RegistryOptions) {
    this.#opts = opts
    this.#now = opts.now ?? Date.now
    this.#table = opts.config.tokenTable
    this.#fleet = opts.fleet
    if (opts.fleet !== undefined) {
      opts.metrics.fleet ??= new FleetMetrics()
      this.#lanes = new CommitLanes({ store: opts.fleet.store, snapshotPolicy: this.#snapshotPolicy, logger: opts.logger, metrics: opts.metrics, now: this.#now })
    }
  }

  /** Fleet mode (--store postgres). */
  get fleetMode (): boolean { return this.#fleet !== undefined }

  get connectionCount (): number { return this.#connections.size }
  get loadedCount (): number { return this.#live.size }
  get sessionCount (): number {
    let n = this.#stored.size
    for (const id of this.#live.keys()) if (!this.#stored.has(id)) n++
    return n
  }

  connections (): IterableIterator<TrackedConnection> { return this.#connections.values() }

  /** Every session id, stored or loaded, sorted, with whether it is in memory (read-only; loads nothing). */
  sessionIds (): Array<{ readonly sessionId: string, readonly loaded: boolean }> {
    const ids = new Set([...this.#stored, ...this.#live.keys()])
    return [...ids].sort().map(sessionId => ({ sessionId, loaded: this.#live.has(sessionId) }))
  }

  /** True when the session has stored state (loaded or not). */
  isStored (sessionId: string): boolean {
    return this.#stored.has(sessionId)
  }

  /** The core configuration every session of this server gets. */
  coreConfig (sessionId: string): CoordinatorConfig {
    const c = this.#opts.config
    return {
      sessionId,
      securityProfile: c.securityProfile,
      complianceProfile: c.complianceProfile,
      executionModel: c.executionModel,
      heartbeatIntervalSec: c.heartbeatIntervalSec,
      unavailabilityTimeoutSec: c.unavailabilityTimeoutSec,
      resolutionTimeoutSec: c.resolutionTimeoutSec,
      intentClaimGraceSec: c.claimGraceSec,
      ...(c.frozenScopePhases ? { frozenScopePhases: {} } : {}),
      maxWorkspaceBytes: c.limits.maxWorkspaceBytes,
      maxParticipants: c.limits.maxParticipants,
      maxIntentsPerParticipant: c.limits.maxIntentsPerParticipant,
      maxIntentsPerSession: c.limits.maxIntentsPerSession,
      maxScopeFiles: c.limits.maxScopeFiles,
      maxOpenConflicts: c.limits.maxOpenConflicts,
      // protocol.md §2.1 recommends the envelope session_id check in multi-session mode only: the Python bridge's
      // unpinned remote mode sends its locally derived session id to a single-session server (docs/compatibility.md).
      checkEnvelopeSessionId: c.mode !== 'single',
      ...(c.backendHealthPolicy === undefined ? {} : { backendHealthPolicy: c.backendHealthPolicy })
    }
  }

  /**
   * Restores every stored session (epoch + 1, reconnect grace) and, in
   * single-session mode, creates the one session and loads its workspace.
   */
  start (): void {
    if (this.#fleet !== undefined) {
      this.#startFleet(this.#fleet)
      return
    }
    const { config, store, logger } = this.#opts
    for (const q of store.listQuarantined()) {
      if (config.mode === 'single' && q.sessionId !== config.sessionId) continue
      this.#quarantined.add(q.sessionId)
      logger.error({ sessionId: q.sessionId, reason: q.reason }, 'session quarantined: stored state is damaged')
    }
    // Single-session mode touches only its own session, even in a shared data directory.
    const ids = config.mode === 'single'
      ? store.listSessions().filter(id => id === config.sessionId)
      : store.listSessions()
    if (config.mode === 'single' && config.workspaceDir !== undefined) this.#workspace = new DiskWorkspace(config.workspaceDir)
    for (const id of ids) {
      this.#stored.add(id)
      // After a restart: replay, then a new epoch (`recovered`, journaled and snapshotted by the store).
      try {
        const recovered = recoverSession(store, id, this.coreConfig(id), this.#now(), config.restartGraceSec)
        if (recovered === undefined) this.#stored.delete(id)
        else this.#newRuntime(id, recovered.coordinator, true).markRecovered(this.#now())
      } catch (err) {
        // Damaged: quarantined. Any other failure: the state is still stored, so the id stays
        // taken (never recreated empty over it) and loading is retried on the next connection.
        if (err instanceof StoreDamagedError) {
          this.#stored.delete(id)
          this.#quarantined.add(id)
          logDamage(logger, err)
        } else {
          logger.error({ sessionId: id, err }, 'restoring session failed')
        }
      }
    }
    if (config.mode === 'single' && this.isUnavailable(config.sessionId as string)) {
      logger.error({ sessionId: config.sessionId }, 'the session of this single-session sidecar cannot be restored; connections are refused (4503) (see docs/data.md, Quarantined sessions)')
    } else if (config.mode === 'single') {
      const id = config.sessionId as string
      let runtime = this.#live.get(id)
      if (runtime === undefined) {
        runtime = this.#newRuntime(id, createCore(this.coreConfig(id)), true)
        this.#stored.add(id)
      }
      if (this.#workspace !== undefined) {
        // A commit interrupted by a crash is finished first (from its temporary files, or from the journal just replayed).
        const core = runtime.core
        const recovery = this.#workspace.recover(path => core.readFile(path)?.content)
        if (recovery.state !== undefined) {
          logger.warn({ sessionId: id, manifest: recovery.state, rolledForward: recovery.rolledForward, failed: recovery.failed }, 'workspace: finished a commit interrupted by a crash')
        }
        const report = this.#workspace.load(config.limits.maxWorkspaceBytes)
        const onDisk = new Set(report.files.map(f => f.path))
        const gone = runtime.core.listFiles().filter(f => !onDisk.has(f.path)).map(f => ({ path: f.path, content: null }))
        runtime.syncFiles([...report.files, ...gone])
        logger.info({ sessionId: id, files: report.files.length, bytes: report.bytes, skipped: report.skipped, staleTempsRemoved: report.cleaned, git: this.#workspace.git.isRepository }, 'workspace loaded')
      }
    }
    // The per-token session quota counts what the store holds, not what this process created.
    try {
      for (const { sessionId, owner } of store.listOwners()) {
        if (this.#stored.has(sessionId) || this.#quarantined.has(sessionId)) this.#own(owner, sessionId)
      }
    } catch (err) {
      logger.error({ err }, 'reading session owners failed; per-token session quotas count only new sessions')
    }
    for (const runtime of this.#live.values()) runtime.flush()
    const retentionMs = config.mode === 'single' || config.idleRetentionSec === 0 ? Infinity : config.idleRetentionSec * 1000
    const every = Math.max(1000, Math.min(60_000, config.sessionIdleUnloadSec * 1000 / 2, retentionMs / 2))
    this.#sweepTimer = setInterval(() => this.sweep(), every)
    this.#sweepTimer.unref()
  }

  /** The loaded session, loading it from the store when it is stored but unloaded. */
  get (sessionId: string): SessionRuntime | undefined {
    const live = this.#live.get(sessionId)
    if (live !== undefined) return live
    // Fleet mode: a session is served only once the upgrade's routing claimed and loaded it (acquire).
    if (this.#fleet !== undefined || !this.#stored.has(sessionId)) return undefined
    return this.#load(sessionId)
  }

  /**
   * True when the session exists but cannot be served: its stored state is
   * damaged (quarantined), or loading it failed (the store is failing). Such
   * a session is refused (close 4503) and never recreated empty over its
   * stored state. Call after `get` returned undefined.
   */
  isUnavailable (sessionId: string): boolean {
    return this.#quarantined.has(sessionId) || (this.#stored.has(sessionId) && !this.#live.has(sessionId))
  }

  /** The loaded session only (no loading). */
  peek (sessionId: string): SessionRuntime | undefined {
    return this.#live.get(sessionId)
  }

  /**
   * A session for a first HELLO: in memory only until a HELLO is admitted
   * (a rejected or probing client never creates a session). Enforces
   * --max-sessions and --max-sessions-per-token.
   */
  provisional (sessionId: string, tokenDigest: string | undefined, conn?: TrackedConnection): SessionRuntime | CloseSpec {
    if (this.#fleet !== undefined) {
      // Fleet mode creates sessions only by claiming them before the upgrade; this one was released since.
      ;(conn?.log ?? this.#opts.logger).info({ sessionId }, 'fleet: the session is no longer held by this node; the client reconnects')
      return CLOSE.MOVED
    }
    const limits = this.#opts.config.limits
    if (this.sessionCount >= limits.maxSessions) return this.#refused(conn, CLOSE.TOO_MANY_SESSIONS, limits.maxSessions)
    if (tokenDigest !== undefined && (this.#byToken.get(tokenDigest)?.size ?? 0) >= limits.maxSessionsPerToken) {
      return this.#refused(conn, CLOSE.TOO_MANY_TOKEN_SESSIONS, limits.maxSessionsPerToken)
    }
    const address = conn === undefined ? undefined : this.#addressOf.get(conn)
    if (address !== undefined && (this.#byAddress.get(address)?.size ?? 0) >= limits.maxSessionsPerAddress) {
      return this.#refused(conn, CLOSE.TOO_MANY_ADDRESS_SESSIONS, limits.maxSessionsPerAddress)
    }
    return this.#newRuntime(sessionId, createCore(this.coreConfig(sessionId)), false)
  }

  /**
   * Before a HELLO is handled on a connection without one: refuses it when
   * its token already holds --max-connections-per-token open connections
   * (a connection of the same principal to the same session is not counted:
   * the HELLO replaces it).
   */
  admissionLimit (conn: TrackedConnection, tokenDigest: string | undefined, principalId: unknown): CloseSpec | undefined {
    if (tokenDigest === undefined) return undefined
    const max = this.#opts.config.limits.maxConnectionsPerToken
    const set = this.#connsByToken.get(tokenDigest)
    if (set === undefined || set.size < max) return undefined
    let n = 0
    for (const other of set) {
      if (other === conn || (other.sessionId === conn.sessionId && other.principalId !== undefined && other.principalId === principalId)) continue
      n++
    }
    return n >= max ? this.#refused(conn, CLOSE.TOO_MANY_TOKEN_CONNECTIONS, max) : undefined
  }

  /**
   * --max-msgs-per-sec-per-token: one token bucket per token across all its
   * connections (burst = one second's worth), so a tenant with many
   * connections gets a bounded share of the server, not connections × the
   * per-connection rate. Connections without a token (open profile) are not
   * limited here. False = over the share (the frame is refused like a
   * per-connection rate-limited one).
   */
  takeTokenShare (conn: TrackedConnection): boolean {
    const digest = conn.helloDigest ?? conn.headerAuth?.digest
    if (digest === undefined) return true
    const rate = this.#opts.config.limits.maxMsgsPerSecPerToken
    const now = performance.now()
    let bucket = this.#tokenBuckets.get(digest)
    if (bucket === undefined) this.#tokenBuckets.set(digest, bucket = { tokens: rate, at: now })
    bucket.tokens = Math.min(rate, bucket.tokens + ((now - bucket.at) / 1000) * rate)
    bucket.at = now
    if (bucket.tokens < 1) return false
    bucket.tokens -= 1
    return true
  }

  /** Open connections presenting this token (for the check before the upgrade). */
  tokenConnections (tokenDigest: string): number {
    return this.#connsByToken.get(tokenDigest)?.size ?? 0
  }

  /** Open connections from this client address (for the check before the upgrade). */
  addressConnections (address: string): number {
    return this.#connsByAddress.get(address)?.size ?? 0
  }

  /** Records the client address of a new connection; refuses it when the address is over its limit. */
  bindAddress (conn: TrackedConnection, address: string): CloseSpec | undefined {
    const max = this.#opts.config.limits.maxConnectionsPerAddress
    let set = this.#connsByAddress.get(address)
    if (set === undefined) this.#connsByAddress.set(address, set = new Set())
    if (set.size >= max) return this.#refused(conn, CLOSE.TOO_MANY_ADDRESS_CONNECTIONS, max)
    set.add(conn)
    this.#addressOf.set(conn, address)
    return undefined
  }

  #refused (conn: TrackedConnection | undefined, spec: CloseSpec, limit: number): CloseSpec {
    const log = conn?.log ?? this.#opts.logger
    log.info({ code: spec.code, reason: spec.reason, limit }, 'connection refused at a limit')
    return spec
  }

  /** A HELLO was admitted on `conn`. */
  admitted (conn: TrackedConnection, runtime: SessionRuntime, tokenDigest: string | undefined): void {
    this.#noteExpiry(tokenDigest)
    if (tokenDigest !== undefined) this.#trackToken(conn, tokenDigest)
    if (!this.#stored.has(runtime.sessionId)) {
      this.#stored.add(runtime.sessionId)
      if (tokenDigest !== undefined) {
        this.#own(tokenDigest, runtime.sessionId)
        runtime.owner = tokenDigest
      }
      const address = this.#addressOf.get(conn)
      if (address !== undefined) {
        let set = this.#byAddress.get(address)
        if (set === undefined) this.#byAddress.set(address, set = new Set())
        set.add(runtime.sessionId)
      }
      conn.log.info('session created')
    }
  }

  #own (tokenDigest: string, sessionId: string): void {
    let set = this.#byToken.get(tokenDigest)
    if (set === undefined) this.#byToken.set(tokenDigest, set = new Set())
    set.add(sessionId)
  }

  #trackToken (conn: TrackedConnection, digest: string): void {
    let set = this.#connsByToken.get(digest)
    if (set === undefined) this.#connsByToken.set(digest, set = new Set())
    set.add(conn)
  }

  #untrack (conn: TrackedConnection): void {
    for (const digest of [conn.headerAuth?.digest, conn.helloDigest]) {
      if (digest === undefined) continue
      const set = this.#connsByToken.get(digest)
      if (set !== undefined && set.delete(conn) && set.size === 0) {
        this.#connsByToken.delete(digest)
        this.#tokenBuckets.delete(digest)
      }
    }
    const address = this.#addressOf.get(conn)
    if (address !== undefined) {
      const set = this.#connsByAddress.get(address)
      if (set !== undefined && set.delete(conn) && set.size === 0) this.#connsByAddress.delete(address)
    }
  }

  /** Forgets a session everywhere but the store (purged, or deleted after idling past retention). */
  #forget (sessionId: string): void {
    this.#stored.delete(sessionId)
    this.#lastActive.delete(sessionId)
    for (const [digest, set] of this.#byToken) if (set.delete(sessionId) && set.size === 0) this.#byToken.delete(digest)
    for (const [address, set] of this.#byAddress) if (set.delete(sessionId) && set.size === 0) this.#byAddress.delete(address)
  }

  /** Reply to a sideband query for a session that does not exist (nothing is created). */
  missingSessionReply (sessionId: string, frame: Record<string, unknown>): Record<string, unknown> {
    switch (frame.type) {
      case 'SESSION_SUMMARY':
        return {
          type: 'SESSION_SUMMARY_RESPONSE',
          session: {
            session_id: sessionId,
            workspace_dir: null,
            captured_at: new Date(this.#now()).toISOString(),
            participant_count: 0,
            active_intent_count: 0,
            open_conflict_count: 0,
            participants: [],
            active_intents: [],
            open_conflicts: []
          }
        }
      case 'FILE_LIST':
        return { type: 'FILE_LIST_RESPONSE', files: [] }
      default:
        return typeof frame.path === 'string' && frame.path !== ''
          ? { type: 'FILE_ERROR', path: frame.path, error: 'File not found' }
          : { type: 'FILE_ERROR', path: frame.path ?? null, error: 'path is required (a non-empty string)' }
    }
  }

  /**
   * Why an upgrade from `address` must be refused before it happens, given
   * the connections not admitted by a HELLO yet (issue 11.4: unauthenticated
   * resources are bounded): HTTP 503 past --max-prehello-connections, 429 past
   * --max-prehello-per-address. Undefined: go ahead.
   */
  prehelloRefusal (address: string): { readonly status: 429 | 503, readonly reason: string } | undefined {
    const limits = this.#opts.config.limits
    if (this.#prehelloTotal >= limits.maxPrehelloConnections) {
      return { status: 503, reason: `too many connections waiting for their HELLO (at most ${limits.maxPrehelloConnections}); retry shortly` }
    }
    if ((this.#prehello.get(address) ?? 0) >= limits.maxPrehelloPerAddress) {
      return { status: 429, reason: `too many connections from this address waiting for their HELLO (at most ${limits.maxPrehelloPerAddress}); retry shortly` }
    }
    return undefined
  }

  /** A connection ended its pre-HELLO phase (admitted, or closed before). */
  prehelloEnded (address: string): void {
    this.#prehelloTotal--
    const n = (this.#prehello.get(address) ?? 1) - 1
    if (n <= 0) this.#prehello.delete(address)
    else this.#prehello.set(address, n)
  }

  get prehelloCount (): number { return this.#prehelloTotal }

  connectionOpened (conn: TrackedConnection): void {
    this.#connsBySession.set(conn.sessionId, (this.#connsBySession.get(conn.sessionId) ?? 0) + 1)
    this.#prehelloTotal++
    this.#prehello.set(conn.address, (this.#prehello.get(conn.address) ?? 0) + 1)
    this.#connections.add(conn)
    this.#noteExpiry(conn.headerAuth?.digest)
    if (conn.headerAuth !== undefined) this.#trackToken(conn, conn.headerAuth.digest)
    this.onConnectionCount?.(this.#connections.size)
  }

  connectionClosed (conn: TrackedConnection): void {
    const left = (this.#connsBySession.get(conn.sessionId) ?? 1) - 1
    if (left <= 0) this.#connsBySession.delete(conn.sessionId)
    else this.#connsBySession.set(conn.sessionId, left)
    if (left <= 0 && this.#fleet !== undefined) {
      // A session claimed for an upgrade that never admitted anyone is given back (its provisional row deleted).
      const rt = this.#live.get(conn.sessionId)
      if (rt !== undefined && !rt.persisted && rt.peerCount === 0) void this.release(rt)
    }
    this.#connections.delete(conn)
    this.#untrack(conn)
    this.onConnectionCount?.(this.#connections.size)
  }

  /**
   * After a token-table reload, and when a token's `expires_at` passes:
   * closes connections whose token is gone, expired or no longer valid here
   * (4401), and admitted connections whose token's roles changed (4205: the
   * client reconnects and is granted the new roles). Re-arms the expiry timer.
   */
  revalidate (table: TokenTable | undefined): number {
    this.#table = table
    const now = this.#now()
    let closed = 0
    for (const conn of [...this.#connections]) {
      const digests = [conn.headerAuth?.digest, conn.helloDigest].filter((d): d is string => d !== undefined)
      if (digests.length === 0) continue
      const entries = digests.map(d => table?.entryOf(d))
      if (table === undefined || !digests.every(d => table.stillValid(d, conn.sessionId, conn.principalId, now))) {
        const expired = entries.some(e => e?.expiresAt !== undefined && now >= e.expiresAt)
        conn.log.info(expired ? 'token expired; closing connection' : 'token revoked; closing connection')
        conn.close(expired ? CLOSE.TOKEN_EXPIRED : CLOSE.TOKEN_REVOKED)
        closed++
        continue
      }
      const roles = conn.helloDigest === undefined ? undefined : table.entryOf(conn.helloDigest)?.roles
      if (conn.tokenRoles !== undefined && roles !== undefined && !sameRoles(conn.tokenRoles, roles)) {
        conn.log.info({ before: conn.tokenRoles, after: roles }, 'token roles changed; closing connection so it rejoins with the new roles')
        conn.close(CLOSE.ROLES_CHANGED)
        closed++
      }
    }
    this.#armExpiry()
    return closed
  }

  /** Arms one timer at the earliest `expires_at` among the tokens of open connections. */
  #armExpiry (): void {
    this.#setExpiryTimer(Infinity)
    const table = this.#table
    if (table === undefined) return
    let next = Infinity
    for (const conn of this.#connections) {
      for (const d of [conn.headerAuth?.digest, conn.helloDigest]) {
        const at = d === undefined ? undefined : table.entryOf(d)?.expiresAt
        if (at !== undefined && at < next) next = at
      }
    }
    this.#setExpiryTimer(next)
  }

  /** A connection now holds this token: fire earlier if it expires before the armed time (O(1)). */
  #noteExpiry (digest: string | undefined): void {
    const at = digest === undefined ? undefined : this.#table?.entryOf(digest)?.expiresAt
    if (at !== undefined && at < this.#expiryAt) this.#setExpiryTimer(at)
  }

  #setExpiryTimer (at: number): void {
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer)
    this.#expiryTimer = undefined
    this.#expiryAt = at
    if (at === Infinity) return
    // Node caps timer delays at 2^31-1 ms; a later expiry re-arms when this fires.
    const delay = Math.min(Math.max(0, at - this.#now()), 2_147_483_647)
    this.#expiryTimer = setTimeout(() => {
      this.#expiryTimer = undefined
      this.#expiryAt = Infinity
      this.revalidate(this.#table)
    }, delay)
    this.#expiryTimer.unref()
  }

  /** Unloads idle sessions and purges closed ones past retention. */
  sweep (): void {
    if (this.#fleet !== undefined) {
      this.#sweepFleet(this.#fleet)
      return
    }
    const { config, store, logger } = this.#opts
    const now = this.#now()
    const retentionMs = config.mode === 'single' || config.idleRetentionSec === 0 ? Infinity : config.idleRetentionSec * 1000
    for (const runtime of [...this.#live.values()]) {
      if (config.mode === 'single') break
      if (!runtime.persisted || runtime.peerCount > 0) continue
      if (now - runtime.idleSince >= retentionMs) {
        this.#deleteIdle(runtime.sessionId, runtime)
      } else if (now - runtime.idleSince >= config.sessionIdleUnloadSec * 1000) {
        runtime.unload()
        this.#drop(runtime)
        this.#lastActive.set(runtime.sessionId, runtime.idleSince)
        runtime.log.debug('session unloaded (idle)')
      }
    }
    for (const [id, at] of [...this.#lastActive]) {
      if (this.#live.has(id)) this.#lastActive.delete(id)
      else if (now - at >= retentionMs) this.#deleteIdle(id, undefined)
    }
    try {
      for (const id of store.purgeClosed(now - config.closedRetentionSec * 1000, config.mode === 'single' ? config.sessionId : undefined)) {
        const runtime = this.#live.get(id)
        if (runtime !== undefined && runtime.peerCount > 0) continue
        if (runtime !== undefined) this.#drop(runtime)
        this.#forget(id)
        logger.info({ sessionId: id }, 'closed session purged')
      }
    } catch (err) {
      logger.error({ err }, 'purging closed sessions failed')
    }
  }

  /**
   * --session-idle-retention: a session nobody connected to for that long is
   * closed and deleted from the store, so its owner's quota frees up.
   */
  #deleteIdle (sessionId: string, runtime: SessionRuntime | undefined): void {
    const { store, logger } = this.#opts
    try {
      if (runtime !== undefined) {
        runtime.flush()
        runtime.discard()
        this.#drop(runtime)
      }
      store.delete(sessionId)
      this.#forget(sessionId)
      logger.info({ sessionId, idleRetentionSec: this.#opts.config.idleRetentionSec }, 'idle session closed and deleted')
    } catch (err) {
      logger.error({ sessionId, err }, 'deleting an idle session failed')
    }
  }

  /** Shutdown: close every connection with `spec`, flush and snapshot every session. */
  shutdown (spec: CloseSpec): void {
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    this.#setExpiryTimer(Infinity)
    for (const runtime of this.#live.values()) runtime.flush()
    for (const conn of [...this.#connections]) conn.close(spec)
    for (const runtime of [...this.#live.values()]) {
      runtime.unload()
      this.#drop(runtime)
    }
  }

  #load (sessionId: string): SessionRuntime | undefined {
    const { store, logger } = this.#opts
    this.#lastActive.delete(sessionId)
    try {
      // The same epoch: an in-process reload of an idle session is not a restart (no `recovered`).
      const core = replaySession(store, sessionId, this.coreConfig(sessionId))
      if (core === undefined) {
        this.#stored.delete(sessionId)
        return undefined
      }
      return this.#newRuntime(sessionId, core, true)
    } catch (err) {
      if (err instanceof StoreDamagedError) {
        this.#quarantined.add(sessionId)
        this.#stored.delete(sessionId)
        logDamage(logger, err)
      } else {
        // Still stored: keep the id (isUnavailable) so nobody recreates it empty; retried on next access.
        logger.error({ sessionId, err }, 'loading session failed')
      }
      return undefined
    }
  }

  #newRuntime (sessionId: string, core: ReturnType<typeof createCore>, persisted: boolean): SessionRuntime {
    const fleet = this.#fleet
    const lanes = this.#lanes
    const runtime = new SessionRuntime({
      sessionId,
      core,
      ...(fleet === undefined || lanes === undefined
        ? {
            store: this.#opts.store,
            scheduleFlush: (rt: SessionRuntime) => this.#scheduleFlush(rt),
            onDiscard: (rt: SessionRuntime) => this.#drop(rt),
            onBroken: (rt: SessionRuntime) => this.#drop(rt)
          }
        : {
            lease: fleet.lease,
            scheduleFlush: (rt: SessionRuntime) => lanes.schedule(rt),
            holdProvisional: (rt: SessionRuntime) => (this.#connsBySession.get(rt.sessionId) ?? 0) > 0,
            onDiscard: (rt: SessionRuntime) => { void this.release(rt) },
            onBroken: (rt: SessionRuntime) => this.#dropOwned(rt),
            onFenced: (rt: SessionRuntime) => this.#dropOwned(rt)
          }),
      snapshotPolicy: this.#snapshotPolicy,
      logger: this.#opts.logger,
      metrics: this.#opts.metrics,
      heartbeatIntervalSec: this.#opts.config.heartbeatIntervalSec,
      maxJournalBytesPerMin: this.#opts.config.limits.maxJournalBytesPerMin,
      workspace: this.#workspace,
      persisted,
      now: this.#now
    })
    this.#live.set(sessionId, runtime)
    this.#opts.metrics.sessionsLoaded = this.#live.size
    runtime.armTimer()
    this.onRuntime?.(runtime)
    return runtime
  }

  #scheduleFlush (runtime: SessionRuntime): void {
    if (this.#dirty.size === 0) setImmediate(() => this.#flushAll())
    this.#dirty.add(runtime)
  }

  /**
   * Group commit across sessions: every session's journal of this turn is
   * appended first (inside one store batch when the store offers `batch`, so
   * they share one durable commit), and only then are outputs delivered.
   */
  #flushAll (): void {
    const list = [...this.#dirty]
    this.#dirty.clear()
    const taken = list.map(rt => rt.takeBatch())
    const batch = (this.#opts.store as { batch?: (fn: () => void) => void }).batch
    let committed = false
    if (typeof batch === 'function' && list.length > 1) {
      try {
        batch.call(this.#opts.store, () => { for (let i = 0; i < list.length; i++) commitSync(list[i] as SessionRuntime, taken[i]) })
        committed = true
      } catch (err) {
        this.#opts.logger.warn({ err }, 'batched journal append failed; retrying per session')
      }
    }
    if (!committed) {
      for (let i = 0; i < list.length; i++) {
        const rt = list[i] as SessionRuntime
        try {
          commitSync(rt, taken[i])
        } catch (err) {
          rt.failStore(err)
        }
      }
    }
    for (let i = 0; i < list.length; i++) {
      const b = taken[i]
      if (b !== undefined) (list[i] as SessionRuntime).settle(b.id, true)
    }
  }

  #drop (runtime: SessionRuntime): void {
    if (this.#live.get(runtime.sessionId) === runtime) this.#live.delete(runtime.sessionId)
    this.#opts.metrics.sessionsLoaded = this.#live.size
  }

  // ---- fleet mode ---------------------------------------------------------

  #startFleet (fleet: FleetOptions): void {
    const { logger, config } = this.#opts
    fleet.lease.on('lapsed', reason => this.#lapsed(reason))
    fleet.watcher.on('handover', request => this.#onHandover(fleet, request))
    fleet.store.listQuarantined().then(list => {
      for (const q of list) this.#quarantined.add(q.sessionId)
    }, (err: unknown) => { logger.warn({ err }, 'fleet: listing quarantined sessions failed') })
    const every = Math.max(1000, Math.min(60_000, config.sessionIdleUnloadSec * 1000 / 2))
    this.#sweepTimer = setInterval(() => this.sweep(), every)
    this.#sweepTimer.unref()
  }

  /** Served here now: loaded, owned under a live claim, and the lease valid. */
  isServedHere (sessionId: string): boolean {
    const rt = this.#live.get(sessionId)
    return rt !== undefined && !rt.broken && !this.#releasing.has(rt) && this.#lanes?.ownership(rt) !== undefined && this.#fleet?.lease.valid() === true
  }

  /**
   * Fleet mode: claims the session for this node and loads it (snapshot +
   * journal up to the claim's tail), applying `recovered` first when the
   * previous owner did not release it cleanly (epoch + 1, restart grace: as
   * after a restart). Concurrent calls for one session share one claim.
   * `{ ok: false, owner }` when a live node owns it.
   */
  async acquire (sessionId: string, tokenDigest?: string): Promise<AcquireResult> {
    if (this.isServedHere(sessionId)) return { ok: true }
    const running = this.#acquiring.get(sessionId)
    if (running !== undefined) return await running
    const p = this.#acquireNow(sessionId, tokenDigest).finally(() => this.#acquiring.delete(sessionId))
    this.#acquiring.set(sessionId, p)
    return await p
  }

  async #acquireNow (sessionId: string, tokenDigest: string | undefined): Promise<AcquireResult> {
    const fleet = this.#fleet
    const lanes = this.#lanes
    if (fleet === undefined || lanes === undefined) return { ok: false, owner: undefined, reason: 'not in fleet mode' }
    const { logger, config, metrics } = this.#opts
    if (!fleet.lease.valid()) return { ok: false, owner: undefined, reason: 'this node holds no valid lease right now' }
    if (this.#quarantined.has(sessionId)) return { ok: false, owner: undefined, reason: 'the session is quarantined (its stored state is damaged)' }
    if (this.#live.size >= config.limits.maxSessions) {
      logger.info({ sessionId, limit: config.limits.maxSessions }, 'fleet: upgrade refused at --max-sessions (sessions loaded on this node)')
      return { ok: false, owner: undefined, reason: `session limit of this node reached (at most ${config.limits.maxSessions}, --max-sessions)`, limit: true }
    }
    const store = fleet.store
    const node = fleet.lease.identity
    let claim
    try {
      claim = await store.claim(sessionId, node, tokenDigest === undefined ? {} : { createdBy: tokenDigest })
    } catch (err) {
      return this.#acquireFailed(sessionId, err)
    }
    if (!claim.ok) return { ok: false, owner: claim.owner }
    metrics.fleet?.claimed(claim.reason)
    if (!claim.persisted && tokenDigest !== undefined) {
      // --max-sessions-per-token counts the whole fleet's sessions of this token (the store's created_by).
      let count = 0
      try {
        count = await store.countSessionsCreatedBy(tokenDigest)
      } catch (err) {
        logger.warn({ err }, 'fleet: counting the token\'s sessions failed; the quota is not checked for this session')
      }
      if (count >= config.limits.maxSessionsPerToken) {
        await store.release(sessionId, claim.epoch, { clean: true }).catch(() => {})
        logger.info({ sessionId, limit: config.limits.maxSessionsPerToken }, 'fleet: upgrade refused at --max-sessions-per-token (counted across the fleet)')
        return { ok: false, owner: undefined, reason: `session limit for this token reached (at most ${config.limits.maxSessionsPerToken} across the fleet, --max-sessions-per-token)`, limit: true }
      }
    }
    let loaded
    try {
      loaded = await store.load(sessionId, claim.epoch)
    } catch (err) {
      return this.#acquireFailed(sessionId, err)
    }
    if (!fleet.lease.valid()) return { ok: false, owner: undefined, reason: 'the lease lapsed while the session was being claimed' }
    const stale = this.#live.get(sessionId)
    if (stale !== undefined) this.#dropOwned(stale, true)
    const cfg = this.coreConfig(sessionId)
    const core = loaded !== undefined && (loaded.snapshot !== undefined || loaded.journal.length > 0)
      ? restoreCore(cfg, loaded.snapshot, loaded.journal)
      : createCore(cfg)
    const persisted = claim.persisted || (loaded?.persisted ?? false)
    const rt = this.#newRuntime(sessionId, core, persisted)
    lanes.own(rt, claim.epoch, loaded?.lastSeq ?? claim.lastSeq, persisted)
    this.#claimedAt.set(rt, performance.now())
    if (persisted) this.#stored.add(sessionId)
    if (metrics.fleet !== undefined) metrics.fleet.ownedSessions = lanes.owned
    rt.log.info({ epoch: claim.epoch, reason: claim.reason, clean: claim.clean, entries: loaded?.journal.length ?? 0 }, 'fleet: session claimed')
    // Not released cleanly by its previous owner: a new coordinator epoch, as after a restart.
    if (persisted && !claim.clean) rt.applyInput({ kind: 'recovered', now: this.#now(), graceSec: config.restartGraceSec })
    return { ok: true }
  }

  #acquireFailed (sessionId: string, err: unknown): AcquireResult {
    const { logger } = this.#opts
    if (err instanceof StoreDamagedError) {
      this.#quarantined.add(sessionId)
      logDamage(logger, err)
      return { ok: false, owner: undefined, reason: 'the session is quarantined (its stored state is damaged)' }
    }
    if (err instanceof FenceLostError) return { ok: false, owner: undefined, reason: 'another node claimed the session meanwhile' }
    logger.error({ sessionId, err }, 'fleet: claiming or loading the session failed')
    return { ok: false, owner: undefined, reason: 'the store is unavailable' }
  }

  /** Resolves when the session was released (hint or poll), or after `ms`. */
  async waitForRelease (sessionId: string, ms: number): Promise<void> {
    await this.#fleet?.watcher.waitForRelease(sessionId, ms)
  }

  /**
   * Gives a session up (idle unload, handover, drain): lets its last batch
   * commit and its outputs leave, closes its connections with 1012 "session
   * moved", stores a fenced snapshot, and releases it (clean when the
   * snapshot was stored, so the next owner applies no `recovered`).
   * A provisional session's row is deleted by the store instead.
   */
  async release (rt: SessionRuntime): Promise<void> {
    const fleet = this.#fleet
    const lanes = this.#lanes
    if (fleet === undefined || lanes === undefined || this.#releasing.has(rt)) return
    this.#releasing.add(rt)
    try {
      await lanes.settledFor(rt)
      rt.closeAll(CLOSE.MOVED)
      await lanes.settledFor(rt)
      const own = lanes.ownership(rt)
      rt.discard()
      this.#dropOwned(rt)
      if (own === undefined || rt.broken) return
      let clean = false
      if (rt.persisted) {
        try {
          clean = await fleet.store.saveSnapshot(rt.sessionId, own.epoch, own.seq, rt.core.snapshot())
        } catch (err) {
          rt.log.warn({ err }, 'fleet: snapshot before release failed (the next owner replays the journal and starts a new epoch)')
        }
      }
      await fleet.store.release(rt.sessionId, own.epoch, { clean: clean || !rt.persisted })
      fleet.watcher.forget(rt.sessionId)
      rt.log.info({ epoch: own.epoch, clean }, 'fleet: session released')
    } catch (err) {
      rt.log.error({ err }, 'fleet: releasing the session failed (it becomes claimable when this node\'s lease expires)')
    } finally {
      this.#releasing.delete(rt)
    }
  }

  /** Shutdown in fleet mode (SIGTERM): every session released in parallel, so peers claim them at once. */
  async releaseAll (): Promise<void> {
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer)
    this.#setExpiryTimer(Infinity)
    await Promise.all([...this.#live.values()].map(rt => this.release(rt)))
  }

  /** Drops a runtime this node may no longer serve; with `fence`, closes it first (1012). */
  #dropOwned (rt: SessionRuntime, fence = false): void {
    if (fence) rt.fence(CLOSE.MOVED)
    this.#lanes?.disown(rt)
    this.#drop(rt)
    const fleet = this.#opts.metrics.fleet
    if (fleet !== undefined && this.#lanes !== undefined) fleet.ownedSessions = this.#lanes.owned
  }

  /** The lease lapsed: nothing more is delivered; every session is dropped (claimed again on demand, epoch + 1). */
  #lapsed (reason: string): void {
    const fleet = this.#opts.metrics.fleet
    if (fleet !== undefined) fleet.leaseLapses++
    this.#opts.logger.error({ reason, sessions: this.#live.size }, 'fleet: lease lapsed; closing every session (1012)')
    for (const rt of [...this.#live.values()]) this.#dropOwned(rt, true)
  }

  /**
   * Another node asks for a session we own. HAProxy's ring (or Fly Proxy's
   * failed replay) decides where clients land, so the request is honoured;
   * a session with connections only after the hold, against flapping.
   */
  #onHandover (fleet: FleetOptions, request: HandoverRequest): void {
    if (fleet.router === 'none') return
    const rt = this.#live.get(request.sessionId)
    const own = rt === undefined ? undefined : this.#lanes?.ownership(rt)
    if (rt === undefined || own === undefined || own.epoch !== request.epoch) return
    const held = performance.now() - (this.#claimedAt.get(rt) ?? 0)
    if (rt.peerCount > 0 && held < (fleet.handoverHoldMs ?? 30_000)) {
      rt.log.info({ to: request.to, heldMs: Math.round(held) }, 'fleet: handover request deferred (minimum hold)')
      fleet.watcher.forget(request.sessionId)
      return
    }
    const m = this.#opts.metrics.fleet
    if (m !== undefined) m.handoversHonoured++
    rt.log.info({ to: request.to }, 'fleet: handing the session over')
    void this.release(rt)
  }

  #sweepFleet (fleet: FleetOptions): void {
    const { config, logger } = this.#opts
    const now = this.#now()
    for (const rt of [...this.#live.values()]) {
      if (rt.peerCount > 0) continue
      const idle = now - rt.idleSince
      if (rt.persisted && idle >= config.sessionIdleUnloadSec * 1000) void this.release(rt)
      else if (!rt.persisted && (this.#connsBySession.get(rt.sessionId) ?? 0) === 0) void this.release(rt)
    }
    fleet.store.purgeClosed(now - config.closedRetentionSec * 1000).then(ids => {
      for (const id of ids) logger.info({ sessionId: id }, 'closed session purged')
    }, (err: unknown) => { logger.error({ err }, 'purging closed sessions failed') })
  }
}

function commitSync (runtime: SessionRuntime, batch: RuntimeBatch | undefined): void {
  if (batch !== undefined) runtime.commitSync(batch)
}

function sameRoles (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every(r => b.includes(r))
}

/** One error line per detected damage: the store logs it when it has a logger, else this does. */
function logDamage (logger: Logger, err: StoreDamagedError): void {
  if (err.logged) return
  logger.error({ sessionId: err.sessionId, ...(err.seq === undefined ? {} : { seq: err.seq }), reason: err.reason }, 'session quarantined: stored state is damaged')
}
