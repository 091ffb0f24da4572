import type { CoreInput } from '../coordinator/types.js'
import { StoreDamaged } from '../errors.js'

/**
 * Durable state of sessions: per session, the latest snapshot and the journal
 * of inputs applied after it. Synchronous by design (better-sqlite3): when
 * `append` returns, the entries are durable, so the runtime may send the
 * outputs of those inputs.
 */
export interface SessionStore {
  /** Ids of every session with stored state (quarantined ones excluded). */
  listSessions (): string[]
  /**
   * The latest snapshot (undefined when none was taken yet) and every journal
   * entry after it, in order; undefined when the session is unknown.
   * Throws `StoreDamagedError` when a row fails its checksum or is missing (the session is quarantined).
   */
  load (sessionId: string): StoredSession | undefined
  /**
   * Appends inputs to the session's journal, durably, in one transaction
   * (group commit). Returns the size of the journal since the last snapshot,
   * so the caller can decide when to snapshot.
   */
  append (sessionId: string, inputs: readonly CoreInput[]): JournalStats
  /** Stores a snapshot taken after every input appended so far and drops the journal it covers. */
  saveSnapshot (sessionId: string, snapshot: unknown): void
  /** Removes everything stored for the session. */
  delete (sessionId: string): void
  close (): void
}

export interface JournalStats {
  readonly entriesSinceSnapshot: number
  readonly bytesSinceSnapshot: number
  /** Bytes of the latest snapshot (0 or absent when none), for the amortised snapshot policy. */
  readonly snapshotBytes?: number
}

export interface StoredSession {
  readonly snapshot: unknown
  readonly journal: readonly CoreInput[]
}

export class StoreDamagedError extends StoreDamaged {
  /** What is wrong, e.g. `journal entry 812: checksum mismatch`. */
  readonly reason: string
  /** The sequence number of the damaged (or missing) row, when one row is to blame. */
  readonly seq: number | undefined
  /** True when the store already logged the damage (the caller need not log it again). */
  readonly logged: boolean
  constructor (readonly sessionId: string, detail: string, info: { readonly seq?: number, readonly logged?: boolean } = {}) {
    super(sessionId, detail)
    this.name = 'StoreDamagedError'
    this.reason = detail
    this.seq = info.seq
    this.logged = info.logged ?? false
  }
}
