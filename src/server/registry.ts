import type { Logger } from 'pino'
import type { CoordinatorConfig } from '../coordinator/types.js'
import { recoverSession, replaySession, SnapshotPolicy, StoreDamagedError, type ManagedSessionStore } from '../store/index.js'
import { CLOSE, type CloseSpec } from './close-codes.js'
import type { ServerConfig } from './config.js'
import type { Connection } from './connection.js'
import { createCore, type SessionCore } from './core.js'
import type { Metrics } from './metrics.js'
import { SessionRuntime } from './session-runtime.js'
import type { TokenTable } from './token-table.js'
import { DiskWorkspace } from './workspace.js'

export interface RegistryOptions {
  readonly config: ServerConfig
  readonly store: ManagedSessionStore
  readonly logger: Logger
  readonly metrics: Metrics
  readonly now?: () => number
}

/**
 * Every session of the process: loaded ones (in memory, with a runtime),
 * stored ones (unloaded after being idle, reloaded on demand), and the
 * provisional ones a first HELLO is creating. Also the set of open
 * connections (shutdown, idle exit, token revocation).
 */
export class SessionRegistry {
  readonly #opts: RegistryOptions
  readonly #now: () => number
  readonly #live = new Map<string, SessionRuntime>()
  /** Ids with stored state (loaded or not). */
  readonly #stored = new Set<string>()
  /** Sessions whose stored state is damaged: refused (4503), never recreated. */
  readonly #quarantined = new Set<string>()
  /** Sessions created by each token (digest), for --max-sessions-per-token. */
  readonly #byToken = new Map<string, Set<string>>()
  readonly #connections = new Set<Connection>()
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
  /** Called whenever the number of open connections changes (idle exit). */
  onConnectionCount: ((count: number) => void) | undefined

  constructor (opts: RegistryOptions) {
    this.#opts = opts
    this.#now = opts.now ?? Date.now
    this.#table = opts.config.tokenTable
  }

  get connectionCount (): number { return this.#connections.size }
  get loadedCount (): number { return this.#live.size }
  get sessionCount (): number {
    let n = this.#stored.size
    for (const id of this.#live.keys()) if (!this.#stored.has(id)) n++
    return n
  }

  connections (): IterableIterator<Connection> { return this.#connections.values() }

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
        else this.#newRuntime(id, recovered.coordinator as unknown as SessionCore, true)
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
      logger.error({ sessionId: config.sessionId }, 'the session of this single-session sidecar cannot be restored; connections are refused (4503) (see README.md, Quarantined sessions)')
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
    for (const runtime of this.#live.values()) runtime.flush()
    const every = Math.max(1000, Math.min(60_000, config.sessionIdleUnloadSec * 1000 / 2))
    this.#sweepTimer = setInterval(() => this.sweep(), every)
    this.#sweepTimer.unref()
  }

  /** The loaded session, loading it from the store when it is stored but unloaded. */
  get (sessionId: string): SessionRuntime | undefined {
    const live = this.#live.get(sessionId)
    if (live !== undefined) return live
    if (!this.#stored.has(sessionId)) return undefined
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
  provisional (sessionId: string, tokenDigest: string | undefined): SessionRuntime | CloseSpec {
    const limits = this.#opts.config.limits
    if (this.sessionCount >= limits.maxSessions) return CLOSE.TOO_MANY_SESSIONS
    if (tokenDigest !== undefined && (this.#byToken.get(tokenDigest)?.size ?? 0) >= limits.maxSessionsPerToken) {
      return CLOSE.TOO_MANY_TOKEN_SESSIONS
    }
    return this.#newRuntime(sessionId, createCore(this.coreConfig(sessionId)), false)
  }

  /** A HELLO was admitted on `conn`. */
  admitted (conn: Connection, runtime: SessionRuntime, tokenDigest: string | undefined): void {
    this.#noteExpiry(tokenDigest)
    if (!this.#stored.has(runtime.sessionId)) {
      this.#stored.add(runtime.sessionId)
      if (tokenDigest !== undefined) {
        let set = this.#byToken.get(tokenDigest)
        if (set === undefined) this.#byToken.set(tokenDigest, set = new Set())
        set.add(runtime.sessionId)
      }
      conn.log.info('session created')
    }
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

  connectionOpened (conn: Connection): void {
    this.#prehelloTotal++
    this.#prehello.set(conn.address, (this.#prehello.get(conn.address) ?? 0) + 1)
    this.#connections.add(conn)
    this.#noteExpiry(conn.headerAuth?.digest)
    this.onConnectionCount?.(this.#connections.size)
  }

  connectionClosed (conn: Connection): void {
    this.#connections.delete(conn)
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
    const { config, store, logger } = this.#opts
    const now = this.#now()
    for (const runtime of [...this.#live.values()]) {
      if (config.mode === 'single') break
      if (runtime.persisted && runtime.peerCount === 0 && now - runtime.idleSince >= config.sessionIdleUnloadSec * 1000) {
        runtime.unload()
        this.#drop(runtime)
        runtime.log.debug('session unloaded (idle)')
      }
    }
    try {
      for (const id of store.purgeClosed(now - config.closedRetentionSec * 1000)) {
        const runtime = this.#live.get(id)
        if (runtime !== undefined && runtime.peerCount > 0) continue
        if (runtime !== undefined) this.#drop(runtime)
        this.#stored.delete(id)
        for (const set of this.#byToken.values()) set.delete(id)
        logger.info({ sessionId: id }, 'closed session purged')
      }
    } catch (err) {
      logger.error({ err }, 'purging closed sessions failed')
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
    try {
      // The same epoch: an in-process reload of an idle session is not a restart (no `recovered`).
      const core = replaySession(store, sessionId, this.coreConfig(sessionId))
      if (core === undefined) {
        this.#stored.delete(sessionId)
        return undefined
      }
      return this.#newRuntime(sessionId, core as unknown as SessionCore, true)
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
    const runtime = new SessionRuntime({
      sessionId,
      core,
      store: this.#opts.store,
      snapshotPolicy: this.#snapshotPolicy,
      logger: this.#opts.logger,
      metrics: this.#opts.metrics,
      heartbeatIntervalSec: this.#opts.config.heartbeatIntervalSec,
      workspace: this.#workspace,
      persisted,
      now: this.#now,
      scheduleFlush: (rt) => this.#scheduleFlush(rt),
      onDiscard: (rt) => this.#drop(rt),
      onBroken: (rt) => this.#drop(rt)
    })
    this.#live.set(sessionId, runtime)
    this.#opts.metrics.sessionsLoaded = this.#live.size
    runtime.armTimer()
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
    const batch = (this.#opts.store as { batch?: (fn: () => void) => void }).batch
    let committed = false
    if (typeof batch === 'function' && list.length > 1) {
      try {
        batch.call(this.#opts.store, () => { for (const rt of list) rt.appendJournal() })
        committed = true
      } catch (err) {
        this.#opts.logger.warn({ err }, 'batched journal append failed; retrying per session')
      }
    }
    if (!committed) {
      for (const rt of list) {
        try {
          rt.appendJournal()
        } catch (err) {
          rt.failStore(err)
        }
      }
    }
    for (const rt of list) rt.deliver()
  }

  #drop (runtime: SessionRuntime): void {
    if (this.#live.get(runtime.sessionId) === runtime) this.#live.delete(runtime.sessionId)
    this.#opts.metrics.sessionsLoaded = this.#live.size
  }
}

function sameRoles (a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every(r => b.includes(r))
}

/** One error line per detected damage: the store logs it when it has a logger, else this does. */
function logDamage (logger: Logger, err: StoreDamagedError): void {
  if (err.logged) return
  logger.error({ sessionId: err.sessionId, ...(err.seq === undefined ? {} : { seq: err.seq }), reason: err.reason }, 'session quarantined: stored state is damaged')
}
