import type { CoreInput } from '../coordinator/types.js'
import type { QuarantinedSession } from './managed.js'
import type { JournalStats } from './types.js'

/**
 * The asynchronous store contract of fleet mode (docs/fleet.md,
 * shared scale-out design §5/§7): several coordinator processes ("nodes")
 * share one PostgreSQL database; each session has at most one owner node at a
 * time, and every write of an owner is fenced by the session's `epoch`.
 *
 * The synchronous `SessionStore` (SQLite, memory) stays the contract of
 * single-machine and local modes; nothing here changes it.
 *
 * Terms:
 * - A **node** is one process, named by `nodeId` (FLY_MACHINE_ID or
 *   `--node-id`); every start bumps its **incarnation**, so whatever its
 *   previous life owned is claimable at once.
 * - A node's **lease** is one row (`lease_until`, on the PostgreSQL clock).
 *   `NodeLease` (ownership.ts) renews it and keeps the local, monotonic
 *   deadline that gates replies.
 * - A session's **epoch** is its fencing token: +1 at every claim. Every
 *   append and snapshot names the epoch it was made under and the journal
 *   tail (`last_seq`) it expects; PostgreSQL applies it only when both still
 *   hold, in the same statement that inserts the rows.
 *
 * Failure model common to every method:
 * - `StoreDamagedError` (types.ts): the session's stored state fails its
 *   checksums or a row is missing; the session is quarantined (only it) and
 *   logged once. The caller refuses the session; other sessions go on.
 * - `StoreUnavailableError`: PostgreSQL could not be reached (or answered
 *   with an error) and the outcome of a *write* may be unknown. The caller
 *   must not deliver anything that depended on it; what committed is found
 *   by the next `claim` + `load` (the store never guesses).
 * - Any method may be called concurrently with any other, from one node or
 *   several; the database serialises what must be serialised (row locks).
 */
export interface FleetStore {
  /** Lanes for group commit (`--store-lanes`): `laneOf(sid)` is in `[0, lanes)`. */
  readonly lanes: number
  /** The lane a session's appends always use (stable hash of the id), so per-session order holds. */
  laneOf (sessionId: string): number

  // ---- nodes -------------------------------------------------------------

  /**
   * Registers this process: inserts the node row, or bumps its incarnation
   * when the id is known (a restart), sets `lease_until = now() + ttl` on the
   * PG clock and clears `draining`. Every session owned by an older
   * incarnation becomes claimable immediately.
   */
  registerNode (node: NodeSpec): Promise<NodeRegistration>
  /**
   * Extends the lease to `now() + ttl` (PG clock) when the row still carries
   * our incarnation. Resolves `true` on success, `false` when another process
   * registered the same node id since (the caller must stop serving: exit).
   * Rejects with `StoreUnavailableError` when PG did not answer: the lease
   * was not (known to be) extended.
   */
  renewNode (node: NodeIdentity, ttlMs: number): Promise<boolean>
  /**
   * Marks the node draining and ends its lease now (`lease_until = now()`),
   * so that whatever it still owns is claimable at once (SIGTERM, after the
   * releases). Only for our own incarnation; false when superseded.
   */
  retireNode (node: NodeIdentity): Promise<boolean>

  // ---- ownership ---------------------------------------------------------

  /** Who owns the session now; undefined when the session has no row. Never claims, never creates. */
  resolve (sessionId: string): Promise<SessionOwnership | undefined>
  /**
   * Claims the session for `node` (creating a provisional row when missing):
   * succeeds when it is unowned, released, owned by an older incarnation of
   * any node, or owned by a node whose lease expired on the PG clock. A
   * success raises the epoch by one and clears `handover_to`; the returned
   * `lastSeq` is complete (the row lock orders the claim after any append
   * in flight). Claiming a session we already own under our incarnation is
   * also a claim (epoch + 1): the previous runtime's writes are fenced.
   * `{ ok: false }` names the live owner. Throws `StoreDamagedError` for a
   * quarantined session, `LeaseExpiredError` when the claimant's own lease
   * is not live on the PG clock (lapsed, superseded or retired: renew or
   * register first; a node whose `NodeLease.valid()` holds never meets it).
   */
  claim (sessionId: string, node: NodeIdentity, options?: ClaimOptions): Promise<ClaimResult>
  /**
   * Asks the live owner to give the session to `node`: sets `handover_to`
   * (when the session still has `epoch`) and sends a `mpac_handover`
   * notification. False when the epoch moved on (re-resolve). The owner
   * sees it through `watch` or `handoverRequests`.
   */
  requestHandover (sessionId: string, node: NodeIdentity, epoch: number): Promise<boolean>
  /**
   * Gives the session up (idle unload, drain, handover): clears the owner
   * when it still has `epoch`, records `clean` (true when the caller flushed
   * and snapshotted everything; false makes the next claim apply
   * `recovered`), and notifies `mpac_released`. A session that was never
   * persisted (`persisted = false`, no HELLO admitted) is deleted instead.
   * False when the epoch moved on (someone claimed it since: nothing changed).
   */
  release (sessionId: string, epoch: number, options?: ReleaseOptions): Promise<boolean>
  /** Sessions this node incarnation owns that another node asked for (the polling fallback of `watch`). */
  handoverRequests (node: NodeIdentity): Promise<HandoverRequest[]>
  /** Sessions this node incarnation owns (for a drain). */
  ownedSessions (node: NodeIdentity): Promise<string[]>
  /**
   * Listens for `mpac_handover` and `mpac_released` notifications on a
   * dedicated connection (the direct URL: a transaction-mode pooler cannot
   * LISTEN). Notifications are hints only: they are lost while disconnected,
   * so callers also poll. Resolves to a function that stops listening.
   */
  watch (listener: FleetListener): Promise<() => Promise<void>>

  // ---- journal and snapshots ----------------------------------------------

  /**
   * Loads a session we own under `epoch`: the latest snapshot and every
   * journal entry after it, up to the session's `last_seq`, every row
   * checksum-verified. Undefined when the session has no row. Throws
   * `FenceLostError` when the epoch moved on, `StoreDamagedError` (the
   * session is quarantined) when a row fails its checksum or is missing.
   * Also starts the per-session counters returned in `AppendResult.stats`.
   */
  load (sessionId: string, epoch: number): Promise<FleetStoredSession | undefined>
  /**
   * Group commit: appends every batch of `batches` (at most one per session)
   * fenced, one statement per lane. A lane has at most one statement in
   * flight: a call's lanes wait for the previous statement of the same lane,
   * so callers that want independent lanes call once per lane (`laneOf`).
   * Per batch: committed only when the session still has `epoch` and its
   * `last_seq` is `fromSeq`; then its rows `fromSeq + 1 ..` are durable.
   * - `committed`: deliver the outputs of those batches, in order.
   * - `lost`: the fence did not match (claimed by another node, or this
   *   node's previous runtime): discard the outputs, close the session's
   *   connections, drop the runtime. Nothing of the batch is stored.
   * An ambiguous outcome (the connection broke during the commit) is
   * resolved inside: the store re-reads `epoch, last_seq` of the lane's
   * sessions on a new connection and decides per session (tail = new →
   * committed; tail = old and same epoch → the same batch is sent again,
   * which the fence makes idempotent; epoch moved → lost). It never applies
   * an input twice. Rejects with `StoreUnavailableError` only when it could
   * not decide within its retry budget (`ambiguousRetryMs`): then nothing of
   * the call may be delivered, and the caller drops the sessions.
   */
  appendBatch (batches: readonly AppendBatch[]): Promise<AppendResult>
  /**
   * Stores a snapshot taken after every input up to `seq` (the session's
   * current `last_seq`) and deletes the journal it covers, in one fenced
   * statement. False when the fence did not match (epoch moved on, or `seq`
   * is not the tail): nothing changed.
   */
  saveSnapshot (sessionId: string, epoch: number, seq: number, snapshot: unknown): Promise<boolean>
  /** Records that the session was closed at `at` (epoch ms), fenced by `epoch`; false when it moved on. */
  markClosed (sessionId: string, epoch: number, at: number): Promise<boolean>
  /**
   * Deletes every closed session closed before `olderThan` (epoch ms) that
   * no live node owns, and returns their ids.
   */
  purgeClosed (olderThan: number): Promise<string[]>
  /** Sessions refused because their stored state is damaged. */
  listQuarantined (): Promise<QuarantinedSession[]>
  /** Persisted, not closed sessions created under the token digest `createdBy` (fleet-wide per-token quota). */
  countSessionsCreatedBy (createdBy: string): Promise<number>
  /** Ends every connection (lanes, control, listener). Idempotent. */
  close (): Promise<void>
}

/** `--store-lanes` default. */
export const DEFAULT_STORE_LANES = 4

/** Who a node is: its id and the incarnation `registerNode` returned. */
export interface NodeIdentity {
  readonly nodeId: string
  readonly incarnation: number
}

export interface NodeSpec {
  readonly nodeId: string
  /** host:port, for operators and metrics only (never used to route). */
  readonly addr: string
  readonly ttlMs: number
}

export interface NodeRegistration extends NodeIdentity {
  /** `lease_until` as PG set it (epoch ms on the PG clock; informative only). */
  readonly leaseUntil: number
}

export interface SessionOwnership {
  readonly sessionId: string
  /** Undefined when unowned (released, or never claimed). */
  readonly owner: NodeIdentity | undefined
  /** True when the owner's node row has that incarnation and an unexpired lease (PG clock). */
  readonly ownerLive: boolean
  /** The owner's `addr` (for `fly-replay`: on fly.io the node id is the Machine id). */
  readonly ownerAddr: string | undefined
  readonly epoch: number
  readonly lastSeq: number
  readonly clean: boolean
  readonly persisted: boolean
  readonly handoverTo: string | undefined
  readonly quarantined: boolean
  readonly closedAt: number | undefined
}

export interface ClaimOptions {
  /** Token digest recorded on a session this claim creates (fleet-wide quota). */
  readonly createdBy?: string
}

/** Why a claim succeeded (the `reason` label of `mpac_claims_total`). */
export type ClaimReason =
  /** The session had never been owned (epoch 0), or this claim created it. */
  | 'new'
  /** Its owner released it. */
  | 'released'
  /** Its owner's lease expired on the PG clock. */
  | 'expired'
  /** Its owner's node registered again since (a restarted process: new incarnation). */
  | 'restart'
  /** We owned it already under this incarnation (after a lease lapse dropped our runtime). */
  | 'reclaim'

export type ClaimResult =
  | {
    readonly ok: true
    readonly reason: ClaimReason
    readonly epoch: number
    /** The journal tail: `load` returns entries up to here; the first append uses it as `fromSeq`. */
    readonly lastSeq: number
    /** False: the previous owner did not release cleanly; apply `recovered` as the first input of this epoch. */
    readonly clean: boolean
    /** False: no HELLO was admitted yet (a provisional row). */
    readonly persisted: boolean
  }
  | { readonly ok: false, readonly owner: SessionOwnership }

export interface ReleaseOptions {
  /** Everything was flushed and snapshotted (default false: the next claim applies `recovered`). */
  readonly clean?: boolean
}

export interface HandoverRequest {
  readonly sessionId: string
  readonly epoch: number
  /** The node id asking for the session. */
  readonly to: string
}

export interface FleetListener {
  /** `requestHandover` was called for `sessionId` by node `to`. */
  handover? (sessionId: string, to: string): void
  /** `sessionId` was released (claim it now if you were waiting). */
  released? (sessionId: string): void
  /** The listening connection failed; notifications are lost until it is back (poll meanwhile). */
  error? (err: Error): void
}

export interface FleetStoredSession {
  readonly snapshot: unknown
  /** Sequence number the snapshot covers (0 when none). */
  readonly snapshotSeq: number
  readonly journal: readonly CoreInput[]
  /** = snapshotSeq + journal.length: the `fromSeq` of the next append. */
  readonly lastSeq: number
  readonly persisted: boolean
}

export interface AppendBatch {
  readonly sessionId: string
  /** The epoch the session was claimed with. */
  readonly epoch: number
  /** The journal tail this batch extends (the previous committed batch's end, or the claim's `lastSeq`). */
  readonly fromSeq: number
  /** At least one input; stored as rows `fromSeq + 1 ..`. */
  readonly inputs: readonly CoreInput[]
  /** Marks the session persisted (a HELLO was admitted) in the same statement. */
  readonly persist?: boolean
}

export interface AppendResult {
  /** Session ids whose batch is durable. */
  readonly committed: string[]
  /** Session ids whose fence did not match: nothing stored. */
  readonly lost: string[]
  /** Journal size since the last snapshot, per committed session (for the snapshot policy). */
  readonly stats: ReadonlyMap<string, JournalStats>
  /** Commits whose outcome had to be resolved after a broken connection (metrics). */
  readonly ambiguous: number
}

/** PostgreSQL could not be reached or failed; a write's outcome may be unknown. */
export class StoreUnavailableError extends Error {
  readonly code = 'MPAC_ERR_STORE_UNAVAILABLE'
  constructor (message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StoreUnavailableError'
  }
}

/** The session's epoch moved on: another claim superseded ours. */
export class FenceLostError extends Error {
  readonly code = 'MPAC_ERR_FENCE_LOST'
  constructor (readonly sessionId: string, readonly epoch: number) {
    super(`session ${sessionId}: ownership under epoch ${epoch} was lost`)
    this.name = 'FenceLostError'
  }
}

/** The claimant's own node lease is not live (expired, superseded or retired) on the PostgreSQL clock. */
export class LeaseExpiredError extends Error {
  readonly code = 'MPAC_ERR_LEASE_EXPIRED'
  constructor (readonly node: NodeIdentity) {
    super(`node ${node.nodeId} (incarnation ${node.incarnation}) has no live lease: it may not claim sessions`)
    this.name = 'LeaseExpiredError'
  }
}
