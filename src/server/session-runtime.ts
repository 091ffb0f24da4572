import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { ApplyResult, CoreInput, Output, Verdict } from '../coordinator/types.js'
import type { ErrorCode } from '../protocol/error-codes.js'
import type { ManagedSessionStore, SnapshotPolicy } from '../store/index.js'
import { CLOSE, type CloseSpec } from '../protocol/close-codes.js'
import type { SessionCore } from './core.js'
import type { Metrics } from './metrics.js'
import { serverErrorFrame } from './server-error.js'
import { vcsSegment, type DiskWorkspace } from './workspace.js'
import { checkWorkspacePath } from '../protocol/workspace-path.js'

/** What a session runtime needs from a connection. */
export interface Peer {
  readonly connId: string
  /** The principal this connection is bound to by an admitted HELLO. */
  principalId: string | undefined
  readonly isOpen: boolean
  /**
   * Hands a frame to the socket; false when it was not sent (the connection
   * is closed, or was just cut as a slow consumer by this very frame's bytes).
   */
  send (data: string): boolean
  /** Optional: hold writes until `uncork` (one syscall for several frames). */
  cork? (): void
  uncork? (): void
  close (spec: CloseSpec): void
}

/**
 * What every delivery checks first (fleet mode: the node lease, valid until
 * its local deadline). When it says no, nothing more is delivered and the
 * session is fenced (closed with 1012 and dropped).
 */
export interface DeliveryGate {
  valid (): boolean
}

/**
 * The inputs of one commit: everything applied since the previous batch was
 * taken (empty when only replies that write nothing are waiting). The outputs
 * queued up to `takeBatch` wait for `settle(id, …)`; outputs queued later wait
 * for a later batch.
 */
export interface RuntimeBatch {
  readonly id: number
  readonly inputs: readonly CoreInput[]
  /** The core's snapshot right after these inputs, when `takeBatch` was asked for one. */
  readonly snapshot?: unknown
}

export interface RuntimeOptions {
  readonly sessionId: string
  readonly core: SessionCore
  /**
   * The synchronous store `flush` commits to (SQLite, memory). Absent in fleet
   * mode: the registry commits each `takeBatch()` to the asynchronous store
   * and reports the outcome with `settle`.
   */
  readonly store?: ManagedSessionStore
  /** Checked before every delivery (fleet mode); absent = always valid (one machine). */
  readonly lease?: DeliveryGate
  /** Called once when the session was fenced (ownership lost): drop it. */
  readonly onFenced?: (runtime: SessionRuntime) => void
  readonly snapshotPolicy: SnapshotPolicy
  readonly logger: Logger
  readonly metrics: Metrics
  readonly heartbeatIntervalSec: number
  readonly workspace: DiskWorkspace | undefined
  /** False for a session created by a HELLO that is not admitted yet: nothing is stored until one is. */
  readonly persisted: boolean
  readonly now: () => number
  /** Called after a flush when a provisional session admitted nobody: drop it. */
  readonly onDiscard?: (runtime: SessionRuntime) => void
  /** Fleet mode: a provisional session is kept while this says so (a connection that claimed it is still open). */
  readonly holdProvisional?: (runtime: SessionRuntime) => boolean
  /** Group commit across sessions: called once per runtime with pending work; the caller flushes it later in this turn. */
  readonly scheduleFlush?: (runtime: SessionRuntime) => void
  /** Called when the store failed: the session is unloaded and its connections closed. */
  readonly onBroken?: (runtime: SessionRuntime) => void
  /** --max-journal-bytes-per-min (unlimited when absent). */
  readonly maxJournalBytesPerMin?: number
}

/**
 * What a subscriber (the dashboard) is told, after the frames of an input
 * went out (so only what is journaled): the frames the input broadcast
 * (every output not addressed to the sender alone, each frame once), and
 * the participant an admitted HELLO joined (a HELLO broadcasts nothing).
 * `stopped`: the runtime was unloaded, discarded or failed; no more notices.
 */
export type RuntimeNotice =
  | { readonly kind: 'frames', readonly at: number, readonly frames: ReadonlyArray<Readonly<Record<string, unknown>>>, readonly joined: { readonly principal_id: string, readonly display_name: string } | undefined }
  | { readonly kind: 'stopped' }
export type RuntimeListener = (notice: RuntimeNotice) => void

/** Messages never refused by the journal budget: membership and liveness must not suffer from a flood. */
const ALWAYS_ADMITTED: ReadonlySet<unknown> = new Set(['HELLO', 'HEARTBEAT', 'GOODBYE'])
const JOURNAL_WINDOW_MS = 60_000

/**
 * One frame to send: its recipients, the frame, and its JSON text. Core
 * outputs are serialised when applied (later inputs of the same turn may
 * change the objects they reference); sideband replies are built from fresh
 * objects and serialised only if a recipient is still open at delivery, so a
 * burst of large replies to a client that stopped reading costs nothing past
 * the slow-consumer ceiling.
 */
type Send = readonly [readonly Peer[], string | undefined, Readonly<Record<string, unknown>>]

interface Pending {
  readonly sends: readonly Send[]
  readonly writes: ApplyResult['fileWrites']
  readonly after: (() => void) | undefined
  readonly receivedAt: number | undefined
  /** The batch whose commit these sends wait for. */
  readonly batch: number
}

type Queued = Omit<Pending, 'batch'>

const MIN_TIMER_MS = 50

/** Thrown out of the runtime after the core failed on an input (the session is already torn down). */
export class CoreFailure extends Error {
  constructor () {
    super('the coordinator core failed on an input')
    this.name = 'CoreFailure'
  }
}
const NO_PEERS: readonly Peer[] = Object.freeze([])

/**
 * One session in memory: feeds inputs to the core one at a time, journals
 * them (group commit: every input applied in one event-loop turn is appended
 * in one `store.append`), and only then sends their outputs, in order, to the
 * connections their audiences name. Drives the core's timers with a single
 * timer armed at `core.nextDeadline()`.
 *
 * The output gate: a commit is a batch, `takeBatch()` then `settle(id, ok)`.
 * Every output waits for the batch that was open when it was queued, so no
 * output leaves before the inputs applied up to it are durable, and outputs
 * leave in the order they were queued. `flush()` does both steps on the
 * synchronous store at once (one machine); in fleet mode the registry commits
 * batches to PostgreSQL and settles them later. Every delivery first asks the
 * lease gate; a lost batch (`settle(id, false)`) or a lapsed lease fences the
 * session: that batch and every later one are discarded, its connections
 * closed with 1012 "session moved", and it is dropped.
 */
export class SessionRuntime {
  readonly sessionId: string
  readonly core: SessionCore
  readonly log: Logger
  #persisted: boolean
  #admittedEver = false
  #markedClosed = false
  #broken = false
  #fenced = false
  readonly #opts: RuntimeOptions
  readonly #peers = new Set<Peer>()
  readonly #byPrincipal = new Map<string, Peer>()
  #journal: CoreInput[] = []
  #pending: Pending[] = []
  #flushScheduled = false
  /** The batch collecting inputs and outputs now (taken by the next `takeBatch`). */
  #openBatch = 1
  /** Every batch up to this one committed: its outputs may leave. */
  #settled = 0
  /** Batches settled out of order, above `#settled` (rare: one batch in flight per session). */
  readonly #settledAhead = new Set<number>()
  /** Workspace files written by applied inputs but not yet flushed to disk. */
  readonly #overlay = new Map<string, string>()
  #timer: NodeJS.Timeout | undefined
  #timerAt = Infinity
  #idleSince: number
  /** Unloaded, discarded or failed: no timer is armed again. */
  #disposed = false
  /** Digest of the token that created the session, recorded in the store with its first append. */
  owner: string | undefined
  #ownerStored = false
  /** Journal bytes appended in the last minute: [at, bytes] in order, and their sum. */
  readonly #journalWindow: Array<[number, number]> = []
  #journalWindowBytes = 0
  /** `bytesSinceSnapshot` after the previous append (to measure each append). */
  #bytesSinceSnapshot = 0
  /** Read-only subscribers (subscribe); nothing is computed for them while there are none. */
  readonly #listeners = new Set<RuntimeListener>()
  #recoveredAt: number | undefined

  constructor (opts: RuntimeOptions) {
    this.#opts = opts
    this.sessionId = opts.sessionId
    this.core = opts.core
    this.log = opts.logger.child({ sessionId: opts.sessionId })
    this.#persisted = opts.persisted
    this.#idleSince = opts.now()
  }

  get persisted (): boolean { return this.#persisted }
  get peerCount (): number { return this.#peers.size }
  get idleSince (): number { return this.#idleSince }
  get broken (): boolean { return this.#broken }
  /** Dropped because this node no longer owns the session (fleet mode). */
  get fenced (): boolean { return this.#fenced }
  /** Inputs applied since the last batch was taken (not committed yet). */
  get uncommittedInputs (): number { return this.#journal.length }
  /** Batches taken and not yet settled. */
  get batchesInFlight (): number { return this.#openBatch - 1 - this.#settled - this.#settledAhead.size }
  get participantCount (): number { return this.#byPrincipal.size }
  get timerArmed (): boolean { return this.#timer !== undefined }
  /** When the session was recovered at process start, if it was (the `recovered` input, epoch + 1). */
  get recoveredAt (): number | undefined { return this.#recoveredAt }

  /** The registry marks a runtime it recovered at process start (the dashboard's timeline says so). */
  markRecovered (at: number): void {
    this.#recoveredAt = at
  }

  /**
   * Read-only subscription to what the session broadcasts (RuntimeNotice),
   * for the dashboard. Returns the unsubscribe function. A listener never
   * changes the session; one that throws is logged and kept.
   */
  subscribe (listener: RuntimeListener): () => void {
    if (this.#disposed) {
      listener({ kind: 'stopped' })
      return () => {}
    }
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  #notify (notice: RuntimeNotice): void {
    for (const l of [...this.#listeners]) {
      try {
        l(notice)
      } catch (err) {
        this.log.error({ err }, 'a runtime subscriber failed')
      }
    }
  }

  /** The notice of an applied input, or undefined when it broadcast nothing. */
  #noticeOf (input: CoreInput, result: ApplyResult): RuntimeNotice | undefined {
    const frames: Array<Readonly<Record<string, unknown>>> = []
    for (const o of result.outputs) if (o.audience.kind !== 'sender' && !frames.includes(o.frame)) frames.push(o.frame)
    let joined: { principal_id: string, display_name: string } | undefined
    if (input.kind === 'message' && result.accepted) {
      const env = input.envelope as Record<string, unknown>
      if (env.message_type === 'HELLO') {
        const pid = (env.sender as Record<string, unknown>).principal_id
        const name = (env.payload as Record<string, unknown>).display_name
        if (typeof pid === 'string') joined = { principal_id: pid, display_name: typeof name === 'string' ? name : pid }
      }
    }
    if (frames.length === 0 && joined === undefined) return undefined
    return { kind: 'frames', at: input.now, frames, joined }
  }

  attach (peer: Peer): void {
    this.#peers.add(peer)
  }

  /** Disconnect cleanup: the binding is removed only if it still points at this peer (protocol.md §13.6 S11). */
  detach (peer: Peer): void {
    this.#peers.delete(peer)
    if (peer.principalId !== undefined && this.#byPrincipal.get(peer.principalId) === peer) {
      this.#byPrincipal.delete(peer.principalId)
    }
    if (this.#peers.size === 0) this.#idleSince = this.#opts.now()
  }

  /** Every connection of the session (admitted or not). */
  peers (): IterableIterator<Peer> {
    return this.#peers.values()
  }

  /**
   * An MPAC envelope from `peer`, already checked against the connection's
   * binding. Returns the core's result (`accepted` for a HELLO = admitted).
   */
  handleMessage (peer: Peer, envelopeIn: Record<string, unknown>, verdict: Verdict | undefined, receivedAt: number): ApplyResult | undefined {
    if (this.#broken) return undefined
    let envelope = envelopeIn
    const now = this.#opts.now()
    const type = envelope.message_type
    if (this.#opts.workspace !== undefined && (type === 'INTENT_ANNOUNCE' || type === 'INTENT_UPDATE')) {
      const reason = this.#refusedScope(envelope)
      if (reason !== undefined) {
        this.#refuse(peer, envelope, 'AUTHORIZATION_FAILED', `${reason}; the intent was not ${type === 'INTENT_ANNOUNCE' ? 'announced' : 'updated'}`, receivedAt)
        return undefined
      }
    }
    const retryAfter = ALWAYS_ADMITTED.has(type) ? undefined : this.#journalBackoff(now)
    if (retryAfter !== undefined) {
      this.#refuse(peer, envelope, 'INTENT_BACKOFF', `journal budget of this session exhausted (at most ${this.#opts.maxJournalBytesPerMin as number} bytes per minute, max_journal_bytes_per_min); retry after ${retryAfter} s`, receivedAt, { retry_after_sec: retryAfter, limit: 'max_journal_bytes_per_min', limit_value: this.#opts.maxJournalBytesPerMin })
      return undefined
    }
    if (this.#opts.workspace !== undefined && (type === 'OP_COMMIT' || type === 'OP_BATCH_COMMIT')) {
      const refused = this.#opts.workspace.refusals(changedPaths(envelope).filter(p => this.#opts.workspace?.resolve(p) !== undefined))
      const first = refused.entries().next()
      if (first.done !== true) {
        this.#refuse(peer, envelope, 'AUTHORIZATION_FAILED', `file_changes: ${first.value[1]}; nothing was written`, receivedAt)
        return undefined
      }
      const unsafe = this.#unwritablePath(envelope)
      if (unsafe !== undefined) {
        this.#refuse(peer, envelope, 'MALFORMED_MESSAGE', `file_changes path ${JSON.stringify(unsafe)} cannot be written inside the workspace (a symbolic link leading outside the workspace, a file or a directory is in the way); nothing was written`, receivedAt)
        return undefined
      }
      this.#syncBeforeCommit(envelope, now)
    }
    if (type === 'HELLO') envelope = withoutSecret(envelope)
    const input: CoreInput = verdict === undefined
      ? { kind: 'message', now, envelope }
      : { kind: 'message', now, envelope, verdict }
    let after: (() => void) | undefined
    const result = this.#apply(input, peer, receivedAt, (res) => {
      if (type !== 'HELLO' || !res.accepted) return
      const sender = envelope.sender as Record<string, unknown>
      const principalId = sender.principal_id as string
      const previous = this.#byPrincipal.get(principalId)
      this.#byPrincipal.set(principalId, peer)
      peer.principalId = principalId
      this.#admittedEver = true
      if (previous !== undefined && previous !== peer) {
        previous.principalId = undefined
        after = () => previous.close(CLOSE.REPLACED)
      }
    }, () => after)
    return result
  }

  /** A sideband query (protocol.md §11.3), answered in order with the session's other outputs. */
  /**
   * Why the core would refuse this HELLO from a connection that was never
   * admitted, without applying it (issue 11.2: such input changes nothing).
   */
  helloRefusal (envelope: Record<string, unknown>, verdict: Verdict | undefined): { readonly code: ErrorCode, readonly description: string } | undefined {
    if (this.#broken) return undefined // handleMessage ignores input to a failed session
    return this.core.helloRefusal(envelope, this.#opts.now(), verdict)
  }

  handleSideband (peer: Peer, frame: Record<string, unknown>, receivedAt: number): void {
    if (this.#broken) return
    const now = this.#opts.now()
    let reply: Record<string, unknown>
    switch (frame.type) {
      case 'SESSION_SUMMARY':
        reply = { type: 'SESSION_SUMMARY_RESPONSE', session: this.core.summary(now, this.#opts.workspace?.root ?? null) }
        break
      case 'FILE_LIST': {
        const files = this.core.listFiles()
        const ws = this.#opts.workspace
        if (ws === undefined) {
          reply = { type: 'FILE_LIST_RESPONSE', files }
        } else {
          // Workspace rules can change under a loaded file (a new .gitignore line): list only what is served now.
          const allowed = new Set(ws.allowed(files.map(f => f.path)))
          reply = { type: 'FILE_LIST_RESPONSE', files: files.filter(f => allowed.has(f.path)) }
        }
        break
      }
      default: {
        const path = frame.path
        if (typeof path !== 'string' || path === '') {
          reply = { type: 'FILE_ERROR', path: path ?? null, error: 'path is required (a non-empty string)' }
          break
        }
        const refusedBecause = this.#opts.workspace?.refusal(path)
        if (refusedBecause !== undefined) {
          this.log.info({ path, reason: refusedBecause }, 'FILE_READ refused by the workspace rules')
          reply = { type: 'FILE_ERROR', path, error: refusedBecause }
          break
        }
        if (this.#opts.workspace !== undefined) this.#syncPaths([path], now)
        const file = this.core.readFile(path)
        reply = file === undefined
          ? { type: 'FILE_ERROR', path, error: 'File not found' }
          : { type: 'FILE_CONTENT', path, content: file.content, state_ref: file.state_ref }
      }
    }
    this.#queue({ sends: [[[peer], undefined, reply]], writes: [], after: undefined, receivedAt })
  }

  /** Feeds `file_sync` inputs (workspace mode at creation and after a restart). */
  syncFiles (files: ReadonlyArray<{ readonly path: string, readonly content: string | null }>): void {
    const now = this.#opts.now()
    for (const f of files) {
      if ((this.core.readFile(f.path)?.content ?? null) === f.content) continue
      this.#apply({ kind: 'file_sync', now, path: f.path, content: f.content }, undefined, undefined)
    }
  }

  /** Applies a non-message input (tick, recovered, close) and sends its outputs. */
  applyInput (input: CoreInput): ApplyResult | undefined {
    if (this.#broken) return undefined
    return this.#apply(input, undefined, undefined)
  }

  /** Sends raw frames to one peer in order with everything else (server-authored errors). */
  sendDirect (peer: Peer, frame: Record<string, unknown>, after?: () => void): void {
    this.#queue({ sends: [[[peer], undefined, frame]], writes: [], after, receivedAt: undefined })
  }

  /** Runs `fn` after everything queued so far has been sent. */
  defer (fn: () => void): void {
    this.#queue({ sends: [], writes: [], after: fn, receivedAt: undefined })
  }

  /** Writes everything pending now on the synchronous store: journal, then disk, then sockets. */
  flush (): void {
    if (this.#opts.store === undefined) return // fleet mode: the registry's lanes commit
    const batch = this.takeBatch()
    if (batch === undefined) return
    try {
      this.commitSync(batch)
    } catch (err) {
      this.#fail(err)
      return
    }
    this.settle(batch.id, true)
  }

  /**
   * Closes the open batch: returns the inputs applied since the previous one
   * (none for a provisional session nobody was admitted to: it stores
   * nothing), and makes every output queued so far wait for this batch's
   * `settle`. Undefined once the session failed or was fenced. With
   * `withSnapshot`, the batch carries the core's snapshot taken after its
   * inputs (the state a fenced snapshot at its last seq must hold).
   */
  takeBatch (withSnapshot = false): RuntimeBatch | undefined {
    if (this.#broken) return undefined
    this.#flushScheduled = false
    if (!this.#persisted && this.#admittedEver) this.#persisted = true
    const id = this.#openBatch++
    const inputs = this.#persisted ? this.#journal : []
    this.#journal = []
    return withSnapshot && inputs.length > 0 ? { id, inputs, snapshot: this.core.snapshot() } : { id, inputs }
  }

  /**
   * Appends a batch to the synchronous store (and snapshots when due). Throws
   * when the store fails; the caller then fails the session (`failStore`).
   * The registry calls this for every session with pending work inside one
   * store batch, so several sessions share one durable commit.
   */
  commitSync (batch: RuntimeBatch): void {
    const store = this.#opts.store
    if (this.#broken || store === undefined || batch.inputs.length === 0) return
    const ws = this.#opts.workspace
    if (ws !== undefined) {
      // Write-ahead: name the files about to be written before the commit is journaled,
      // so a crash from here on makes the next start write them from the journal.
      const paths = this.#pending.flatMap(p => p.batch === batch.id ? p.writes.map(w => w.path) : [])
      if (paths.length > 0) {
        try {
          ws.beginCommit(paths)
        } catch (err) {
          // The disk, not the store, failed: the commit still stands; its write will fail and be logged.
          this.log.error({ err, paths }, 'workspace: the commit manifest could not be written')
        }
      }
    }
    const stats = store.append(this.sessionId, batch.inputs)
    this.#opts.metrics.journalAppends++
    if (!this.#ownerStored && this.owner !== undefined) {
      store.setOwner(this.sessionId, this.owner)
      this.#ownerStored = true
    }
    this.#countJournal(stats.bytesSinceSnapshot)
    if (this.#opts.snapshotPolicy.due(stats)) {
      store.saveSnapshot(this.sessionId, this.core.snapshot())
      this.#bytesSinceSnapshot = 0
    }
    if (this.core.closed && !this.#markedClosed) {
      this.#markedClosed = true
      store.markClosed(this.sessionId, this.#opts.now())
    }
  }

  /**
   * The outcome of a batch's commit. `true`: it is durable; every output that
   * waited for it (and for no later batch) is delivered now, in order.
   * `false`: ownership was lost (the fence refused the append): this batch
   * and every later one are discarded and the session is fenced.
   */
  settle (batchId: number, ok: boolean): void {
    if (this.#broken) return
    if (!ok) {
      this.fence()
      return
    }
    if (batchId === this.#settled + 1) {
      this.#settled = batchId
      while (this.#settledAhead.delete(this.#settled + 1)) this.#settled++
    } else if (batchId > this.#settled && batchId < this.#openBatch) {
      this.#settledAhead.add(batchId)
    }
    this.deliver()
  }

  /**
   * Ownership lost (fleet mode): discards every output and input not yet
   * delivered, closes every connection with `spec` (1012 "session moved") and
   * tells the registry to drop the session. Idempotent.
   */
  fence (spec: CloseSpec = CLOSE.MOVED): void {
    if (this.#broken) return
    this.#broken = true
    this.#fenced = true
    this.#pending = []
    this.#journal = []
    this.#dispose()
    this.log.warn({ code: spec.code, reason: spec.reason }, 'ownership of the session lost; its undelivered outputs are discarded and its connections closed')
    this.closeAll(spec)
    this.#opts.onFenced?.(this)
  }

  /** The store failed for this session: close its connections and drop it from memory. */
  failStore (err: unknown): void {
    if (!this.#broken) this.#fail(err)
  }

  /** Delivers, in order, every pending output whose batch is settled: disk writes, then frames. */
  deliver (): void {
    if (this.#broken) return
    const all = this.#pending
    let n = all.length
    if (n > 0 && (all[n - 1] as Pending).batch > this.#settled) {
      n = 0
      while ((all[n] as Pending).batch <= this.#settled) n++
    }
    if (n === 0) {
      this.releaseIfProvisional()
      return
    }
    const gate = this.#opts.lease
    if (gate !== undefined && !gate.valid()) {
      this.fence()
      return
    }
    const pending = n === all.length ? all : all.slice(0, n)
    this.#pending = n === all.length ? [] : all.slice(n)
    const metrics = this.#opts.metrics
    // Cork every socket written in this flush: its frames leave in one write.
    const corked = new Set<Peer>()
    const writes = pending.flatMap(p => p.writes)
    if (writes.length > 0) this.#writeWorkspace(writes)
    for (const p of pending) {
      for (const [peers, text, frame] of p.sends) {
        let data = text
        let sent = 0
        for (const peer of peers) {
          if (!peer.isOpen) continue
          data ??= JSON.stringify(frame)
          if (!corked.has(peer)) {
            corked.add(peer)
            peer.cork?.()
          }
          if (peer.send(data)) sent++
        }
        if (sent === 0) continue
        const type = frame.message_type ?? frame.type
        metrics.messageOut(type, sent)
        if (type === 'PROTOCOL_ERROR') metrics.protocolError((frame.payload as Record<string, unknown> | undefined)?.error_code)
      }
      p.after?.()
      if (p.receivedAt !== undefined) metrics.observeHandling((performance.now() - p.receivedAt) / 1000)
    }
    for (const peer of corked) peer.uncork?.()
    this.releaseIfProvisional()
  }

  /** A provisional session nobody was admitted to is forgotten entirely (no timer keeps it alive). */
  releaseIfProvisional (): void {
    if (!this.#persisted && !this.#admittedEver && this.#pending.length === 0 && !this.#disposed && this.#opts.holdProvisional?.(this) !== true) {
      this.#dispose()
      this.#opts.onDiscard?.(this)
    }
  }

  /** Flushes, stores a snapshot and stops the timer (unload or shutdown; fleet mode: the registry releases). */
  unload (): void {
    this.flush()
    this.#dispose()
    const store = this.#opts.store
    if (store !== undefined && this.#persisted && !this.#broken) {
      try {
        store.saveSnapshot(this.sessionId, this.core.snapshot())
      } catch (err) {
        this.log.error({ err }, 'snapshot at unload failed')
      }
    }
  }

  /** Stops the session without a snapshot (it is about to be deleted). */
  discard (): void {
    this.#dispose()
  }

  #countJournal (bytesSinceSnapshot: number): void {
    if (this.#opts.maxJournalBytesPerMin === undefined) return
    const added = bytesSinceSnapshot - this.#bytesSinceSnapshot
    this.#bytesSinceSnapshot = bytesSinceSnapshot
    if (added <= 0) return
    this.#journalWindow.push([this.#opts.now(), added])
    this.#journalWindowBytes += added
  }

  /** Seconds until the journal budget allows writes again, or undefined when it does now. */
  #journalBackoff (now: number): number | undefined {
    const max = this.#opts.maxJournalBytesPerMin
    if (max === undefined) return undefined
    const w = this.#journalWindow
    let drop = 0
    while (drop < w.length && now - (w[drop] as [number, number])[0] >= JOURNAL_WINDOW_MS) {
      this.#journalWindowBytes -= (w[drop] as [number, number])[1]
      drop++
    }
    if (drop > 0) w.splice(0, drop)
    if (this.#journalWindowBytes < max) return undefined
    // The budget frees up once enough of the oldest appends leave the window.
    let bytes = this.#journalWindowBytes
    for (const [at, n] of w) {
      bytes -= n
      if (bytes < max) return Math.max(1, Math.ceil((at + JOURNAL_WINDOW_MS - now) / 1000))
    }
    return 60
  }

  /** Closes every connection of the session. */
  closeAll (spec: CloseSpec): void {
    for (const peer of [...this.#peers]) peer.close(spec)
  }

  /** Arms the one timer at the core's next deadline (≥ 50 ms, ≤ the heartbeat interval). */
  armTimer (): void {
    if (this.#broken || this.#disposed) return
    const now = Date.now()
    const maxMs = Math.max(MIN_TIMER_MS, this.#opts.heartbeatIntervalSec * 1000)
    const deadline = this.core.nextDeadline()
    let delay = typeof deadline === 'number' ? deadline - this.#opts.now() : maxMs
    delay = Math.min(maxMs, Math.max(MIN_TIMER_MS, delay))
    const at = now + delay
    if (this.#timer !== undefined && this.#timerAt <= at) return
    this.#clearTimer()
    this.#timerAt = at
    this.#opts.metrics.sessionTimers++
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#timerAt = Infinity
      this.#opts.metrics.sessionTimers--
      try {
        this.applyInput({ kind: 'tick', now: this.#opts.now() })
        this.armTimer()
      } catch (err) {
        if (!(err instanceof CoreFailure)) this.log.error({ err }, 'tick failed')
      }
    }, delay)
    this.#timer.unref()
  }

  #clearTimer (): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#opts.metrics.sessionTimers--
    }
    this.#timer = undefined
    this.#timerAt = Infinity
  }

  #dispose (): void {
    this.#disposed = true
    this.#clearTimer()
    if (this.#listeners.size > 0) {
      this.#notify({ kind: 'stopped' })
      this.#listeners.clear()
    }
  }

  /** A server-authored rejection of an input the core never sees (nothing journaled). */
  #refuse (peer: Peer, envelope: Record<string, unknown>, code: ErrorCode, description: string, receivedAt: number, extensions?: Record<string, unknown>): void {
    const frame = serverErrorFrame({
      sessionId: this.sessionId,
      coordinatorId: this.core.coordinatorId,
      ...(typeof envelope.version === 'string' ? { version: envelope.version } : {}),
      now: this.#opts.now(),
      code,
      description,
      refersTo: envelope.message_id,
      extensions
    })
    this.#queue({ sends: [[[peer], undefined, frame]], writes: [], after: undefined, receivedAt })
  }

  /**
   * Workspace mode: the files of this flush's commits, written together
   * (DiskWorkspace.commit). A file that could not be written (its directory
   * was swapped for a symlink leading outside since validation, say) is
   * logged and read back from the disk, so the session does not claim
   * content the disk lacks.
   */
  #writeWorkspace (writes: ApplyResult['fileWrites']): void {
    const ws = this.#opts.workspace
    if (ws === undefined) return
    let failed: string[]
    try {
      if (!this.#persisted) ws.beginCommit(writes.map(w => w.path))
      failed = ws.commit(writes)
    } catch (err) {
      this.log.error({ err, paths: writes.map(w => w.path) }, 'workspace commit failed')
      failed = writes.map(w => w.path)
    }
    for (const w of writes) if (this.#overlay.get(w.path) === w.content) this.#overlay.delete(w.path)
    if (failed.length > 0) {
      this.log.error({ paths: failed }, 'workspace write refused or failed (a directory on the way left the workspace?); the session reads these files from the disk again')
      const now = this.#opts.now()
      for (const path of failed) {
        const disk = ws.read(path)
        if ((this.core.readFile(path)?.content ?? null) !== disk) this.#apply({ kind: 'file_sync', now, path, content: disk }, undefined, undefined)
      }
    }
  }

  /**
   * Workspace mode: why an INTENT_ANNOUNCE (or INTENT_UPDATE) scope names something that is not
   * a workspace file (outside the directory, VCS metadata), or undefined.
   * Hosted sessions (no workspace) accept any resource name.
   */
  #refusedScope (envelope: Record<string, unknown>): string | undefined {
    const payload = envelope.payload
    if (payload === null || typeof payload !== 'object') return undefined
    const scope = (payload as Record<string, unknown>).scope
    if (scope === null || typeof scope !== 'object') return undefined
    const sc = scope as Record<string, unknown>
    const names: string[] = []
    if (sc.kind === 'file_set' && Array.isArray(sc.resources)) names.push(...sc.resources.filter((r): r is string => typeof r === 'string'))
    if (sc.kind === 'resource_path' && typeof sc.pattern === 'string') names.push(sc.pattern)
    for (const name of names) {
      const pc = checkWorkspacePath(name)
      if (!pc.ok) return `scope: ${JSON.stringify(name)} is not a path inside the workspace (${pc.reason}); in workspace mode an intent covers workspace files only`
      const vcs = vcsSegment(pc.path)
      if (vcs !== undefined) return `scope: ${pc.path} is VCS metadata (${vcs}); workspace mode never reads or writes it`
    }
    return undefined
  }

  /** Workspace mode: the first file_changes path that cannot be written inside the workspace, if any. */
  #unwritablePath (envelope: Record<string, unknown>): string | undefined {
    const ws = this.#opts.workspace
    if (ws === undefined) return undefined
    for (const path of changedPaths(envelope)) {
      // Paths that are not even syntactically safe are the core's to refuse (MALFORMED_MESSAGE).
      if (ws.resolve(path) !== undefined && !ws.writable(path)) return path
    }
    return undefined
  }

  #apply (
    input: CoreInput,
    peer: Peer | undefined,
    receivedAt: number | undefined,
    beforeRouting?: (result: ApplyResult) => void,
    afterFn?: () => (() => void) | undefined
  ): ApplyResult {
    let result: ApplyResult
    try {
      result = this.core.apply(input)
    } catch (err) {
      // The core must not throw on input; if it does, its state may be half
      // changed. Send what was applied before (journaled), then drop this
      // session from memory so the next access reloads it from the store.
      this.log.error({ err, kind: input.kind }, 'the core threw; reloading the session from the store')
      this.flush()
      this.#fail(err)
      throw new CoreFailure()
    }
    if (result.changed) this.#journal.push(input)
    beforeRouting?.(result)
    // A relay is one frame object in two outputs (the peers' copy and the sender's terminal one): serialised once.
    const texts = new Map<object, string>()
    const sends = result.outputs.map(o => {
      let text = texts.get(o.frame)
      if (text === undefined) texts.set(o.frame, text = JSON.stringify(o.frame))
      return [this.#recipients(o, peer), text, o.frame] as const
    })
    for (const w of result.fileWrites) this.#overlay.set(w.path, w.content)
    let after = afterFn?.()
    if (this.#listeners.size > 0) {
      // Subscribers hear of an input once its frames are sent (after the journal append).
      const notice = this.#noticeOf(input, result)
      if (notice !== undefined) {
        const first = after
        after = () => { first?.(); this.#notify(notice) }
      }
    }
    this.#queue({ sends, writes: result.fileWrites, after, receivedAt })
    this.armTimer()
    return result
  }

  #recipients (output: Output, peer: Peer | undefined): readonly Peer[] {
    const audience = output.audience
    switch (audience.kind) {
      case 'sender': return peer === undefined ? NO_PEERS : [peer]
      case 'all': return [...this.#byPrincipal.values()]
      case 'others': {
        const out: Peer[] = []
        for (const p of this.#byPrincipal.values()) if (p !== peer) out.push(p)
        return out
      }
      case 'principals': {
        const out: Peer[] = []
        for (const id of audience.ids) {
          const p = this.#byPrincipal.get(id)
          if (p !== undefined && !out.includes(p)) out.push(p)
        }
        return out
      }
    }
  }

  #queue (q: Queued): void {
    const p: Pending = { sends: q.sends, writes: q.writes, after: q.after, receivedAt: q.receivedAt, batch: this.#openBatch }
    this.#pending.push(p)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      if (this.#opts.scheduleFlush !== undefined) this.#opts.scheduleFlush(this)
      else setImmediate(() => this.flush())
    }
  }

  /** Before a commit with file_changes: make the core see the disk as it is now. */
  #syncBeforeCommit (envelope: Record<string, unknown>, now: number): void {
    const paths = changedPaths(envelope)
    const target = (envelope.payload as Record<string, unknown> | null | undefined)?.target
    if (typeof target === 'string' && paths.length > 0 && !paths.includes(target)) paths.push(target)
    this.#syncPaths(paths.slice(0, 256), now)
  }

  #syncPaths (paths: readonly string[], now: number): void {
    const ws = this.#opts.workspace
    if (ws === undefined) return
    for (const path of paths) {
      if (ws.resolve(path) === undefined) continue
      const disk = this.#overlay.has(path) ? this.#overlay.get(path) as string : ws.read(path)
      const known = this.core.readFile(path)?.content ?? null
      if (disk !== known) this.#apply({ kind: 'file_sync', now, path, content: disk }, undefined, undefined)
    }
  }

  #fail (err: unknown): void {
    this.#broken = true
    this.#dispose()
    this.log.error({ err }, 'session failed; closing its connections')
    this.closeAll(CLOSE.INTERNAL)
    this.#opts.onBroken?.(this)
  }
}

/** The paths of a commit's `file_changes` (OP_COMMIT, and each operation of OP_BATCH_COMMIT). */
function changedPaths (envelope: Record<string, unknown>): string[] {
  const payload = envelope.payload
  if (payload === null || typeof payload !== 'object') return []
  const paths: string[] = []
  const collect = (changes: unknown): void => {
    if (changes !== null && typeof changes === 'object' && !Array.isArray(changes)) paths.push(...Object.keys(changes))
  }
  const p = payload as Record<string, unknown>
  collect(p.file_changes)
  if (Array.isArray(p.operations)) {
    for (const op of p.operations) {
      if (op !== null && typeof op === 'object') collect((op as Record<string, unknown>).file_changes)
    }
  }
  return paths
}

/** Stands in for a HELLO credential's secret in what the core sees and the store journals. */
export const REDACTED_CREDENTIAL = '[redacted]'

/**
 * The HELLO with its credential's secret replaced. The runtime has already
 * checked the credential and passes its verdict with the input, so the core
 * (and a replay of the journal) never needs the token itself; this keeps
 * bearer tokens out of the journal, the snapshots and their backups. The
 * credential's `type` and `issuer` stay (SESSION_INFO reports them).
 */
function withoutSecret (envelope: Record<string, unknown>): Record<string, unknown> {
  const payload = envelope.payload
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return envelope
  const cred = (payload as Record<string, unknown>).credential
  if (cred === null || typeof cred !== 'object' || Array.isArray(cred)) return envelope
  const value = (cred as Record<string, unknown>).value
  if (typeof value !== 'string' || value === '') return envelope
  return { ...envelope, payload: { ...payload, credential: { ...cred, value: REDACTED_CREDENTIAL } } }
}
