import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { AppendBatch, AppendResult, FleetStore, JournalStats, SnapshotPolicy } from '../store/index.js'
import type { Metrics } from './metrics.js'
import type { RuntimeBatch, SessionRuntime } from './session-runtime.js'

/** What the lanes need of the fleet store: group commit, fenced snapshots and close marks. */
export type LaneStore = Pick<FleetStore, 'lanes' | 'laneOf' | 'appendBatch' | 'saveSnapshot' | 'markClosed'>

/** Ownership of one loaded session under this node: the claim's epoch and the journal tail committed so far. */
export interface LaneOwnership {
  readonly epoch: number
  /** The last committed seq: the `fromSeq` of the next append. */
  seq: number
  /** The store knows the session as persisted (a HELLO was admitted). */
  persisted: boolean
  closedMarked: boolean
}

export interface CommitLanesOptions {
  readonly store: LaneStore
  readonly snapshotPolicy: SnapshotPolicy
  readonly logger: Logger
  readonly metrics: Metrics
  readonly now: () => number
}

interface Lane {
  readonly dirty: Set<SessionRuntime>
  busy: boolean
  scheduled: boolean
}

/**
 * Fleet mode's group commit (scale-out design §5.5): every session with
 * work is in one lane (`store.laneOf`), each lane has at most one
 * `appendBatch` in flight, and a lane's next call takes everything that
 * queued up meanwhile, so batches grow by themselves under load (no timer).
 * A committed batch is settled (its outputs leave, behind the lease gate), a
 * lost one fences its session, and a call the store could not decide fails
 * its sessions (1011): nothing of it is delivered.
 *
 * Per session, batches are taken in order and never overlap: the session is
 * in one lane, and the lane takes the next batch only after the previous
 * call settled. Batches without inputs (replies that write nothing) are
 * settled when taken: every earlier batch of the session has settled by then.
 */
export class CommitLanes {
  readonly #opts: CommitLanesOptions
  readonly #lanes: Lane[]
  readonly #owned = new Map<SessionRuntime, LaneOwnership>()
  readonly #idleWaiters: Array<() => void> = []
  /** Sessions whose batch is in a call now. */
  readonly #inFlight = new Set<SessionRuntime>()
  readonly #settleWaiters = new Map<SessionRuntime, Array<() => void>>()

  constructor (opts: CommitLanesOptions) {
    this.#opts = opts
    this.#lanes = Array.from({ length: Math.max(1, opts.store.lanes) }, () => ({ dirty: new Set<SessionRuntime>(), busy: false, scheduled: false }))
  }

  /** Registers a session this node claimed (epoch) whose journal ends at `lastSeq`. */
  own (runtime: SessionRuntime, epoch: number, lastSeq: number, persisted: boolean): void {
    this.#owned.set(runtime, { epoch, seq: lastSeq, persisted, closedMarked: false })
  }

  ownership (runtime: SessionRuntime): LaneOwnership | undefined {
    return this.#owned.get(runtime)
  }

  /** Forgets a session (released or dropped); a later batch of it is fenced, never appended. */
  disown (runtime: SessionRuntime): void {
    this.#owned.delete(runtime)
  }

  get owned (): number { return this.#owned.size }

  /** The runtime has queued work: commit it with the lane's next call. */
  schedule (runtime: SessionRuntime): void {
    const lane = this.#laneOf(runtime)
    lane.dirty.add(runtime)
    if (lane.busy || lane.scheduled) return
    lane.scheduled = true
    setImmediate(() => { void this.#run(lane) })
  }

  /** Resolves once no lane has work queued or in flight. */
  async idle (): Promise<void> {
    if (this.#isIdle()) return
    await new Promise<void>(resolve => this.#idleWaiters.push(resolve))
  }

  /** Resolves once the session has nothing queued or in flight (everything applied so far is committed, delivered or discarded). */
  async settledFor (runtime: SessionRuntime): Promise<void> {
    if (this.#quiet(runtime)) return
    await new Promise<void>(resolve => {
      const list = this.#settleWaiters.get(runtime)
      if (list === undefined) this.#settleWaiters.set(runtime, [resolve])
      else list.push(resolve)
    })
  }

  #quiet (rt: SessionRuntime): boolean {
    return rt.broken || (!this.#laneOf(rt).dirty.has(rt) && !this.#inFlight.has(rt) && rt.uncommittedInputs === 0 && rt.batchesInFlight === 0)
  }

  #wakeSettled (): void {
    for (const [rt, list] of [...this.#settleWaiters]) {
      if (!this.#quiet(rt)) continue
      this.#settleWaiters.delete(rt)
      for (const resolve of list) resolve()
    }
  }

  #isIdle (): boolean {
    return this.#lanes.every(l => !l.busy && !l.scheduled && l.dirty.size === 0)
  }

  #laneOf (runtime: SessionRuntime): Lane {
    const i = this.#opts.store.laneOf(runtime.sessionId)
    return this.#lanes[i % this.#lanes.length] as Lane
  }

  async #run (lane: Lane): Promise<void> {
    lane.scheduled = false
    if (lane.busy) return
    lane.busy = true
    try {
      while (lane.dirty.size > 0) {
        const list = [...lane.dirty]
        lane.dirty.clear()
        await this.#commit(list)
        this.#wakeSettled()
      }
    } finally {
      lane.busy = false
      this.#wakeSettled()
      if (this.#isIdle()) for (const resolve of this.#idleWaiters.splice(0)) resolve()
    }
  }

  async #commit (list: readonly SessionRuntime[]): Promise<void> {
    const { store, metrics, logger } = this.#opts
    const appends: AppendBatch[] = []
    const waiting: Array<readonly [SessionRuntime, RuntimeBatch, LaneOwnership, boolean]> = []
    for (const rt of list) {
      const batch = rt.takeBatch()
      if (batch === undefined) continue
      const own = this.#owned.get(rt)
      if (own === undefined) {
        // Released or dropped meanwhile: this node may no longer write it, so nothing of it leaves.
        rt.fence()
        continue
      }
      if (batch.inputs.length === 0) {
        rt.settle(batch.id, true)
        continue
      }
      const persist = rt.persisted && !own.persisted
      appends.push({ sessionId: rt.sessionId, epoch: own.epoch, fromSeq: own.seq, inputs: batch.inputs, ...(persist ? { persist: true } : {}) })
      waiting.push([rt, batch, own, persist])
    }
    if (appends.length === 0) return
    const t0 = performance.now()
    let result: AppendResult
    for (const [rt] of waiting) this.#inFlight.add(rt)
    try {
      result = await store.appendBatch(appends)
    } catch (err) {
      for (const [rt] of waiting) this.#inFlight.delete(rt)
      // Undecided (PG unreachable past the store's retry budget): deliver nothing, drop the sessions.
      logger.error({ err, sessions: appends.length }, 'fleet store: a group commit failed; its sessions are closed and reloaded on the next connection')
      for (const [rt] of waiting) {
        this.#owned.delete(rt)
        rt.failStore(err)
      }
      return
    }
    for (const [rt] of waiting) this.#inFlight.delete(rt)
    const fleet = metrics.fleet
    metrics.journalAppends++
    if (fleet !== undefined) {
      fleet.observeCommit((performance.now() - t0) / 1000, appends.reduce((n, a) => n + a.inputs.length, 0))
      fleet.ambiguousCommits += result.ambiguous
    }
    const committed = new Set(result.committed)
    for (const [rt, batch, own, persist] of waiting) {
      if (!committed.has(rt.sessionId)) {
        if (fleet !== undefined) fleet.fenceRejections++
        this.#owned.delete(rt)
        rt.settle(batch.id, false)
        continue
      }
      own.seq += batch.inputs.length
      if (persist) own.persisted = true
      rt.settle(batch.id, true)
      this.#afterCommit(rt, own, result.stats.get(rt.sessionId))
    }
  }

  /** Snapshot when due (only when nothing newer is applied: the snapshot must be the state at `own.seq`), and the close mark. */
  #afterCommit (rt: SessionRuntime, own: LaneOwnership, stats: JournalStats | undefined): void {
    const { store, snapshotPolicy, logger, now } = this.#opts
    if (rt.broken) return
    if (stats !== undefined && rt.uncommittedInputs === 0 && snapshotPolicy.due(stats)) {
      const seq = own.seq
      store.saveSnapshot(rt.sessionId, own.epoch, seq, rt.core.snapshot()).then(
        ok => { if (!ok) logger.debug({ sessionId: rt.sessionId, seq }, 'fleet snapshot skipped: the journal moved on (or the session moved)') },
        err => { logger.warn({ err, sessionId: rt.sessionId }, 'fleet snapshot failed (the journal still holds everything)') }
      )
    }
    if (rt.core.closed && !own.closedMarked) {
      own.closedMarked = true
      store.markClosed(rt.sessionId, own.epoch, now()).catch((err: unknown) => {
        own.closedMarked = false
        logger.warn({ err, sessionId: rt.sessionId }, 'fleet store: marking the session closed failed (retried after its next commit)')
      })
    }
  }
}
