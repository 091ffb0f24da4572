import type { CoreInput } from '../coordinator/types.js'
import type { SessionStore } from './types.js'

/** The pino-compatible subset of a logger the store writes to. */
export interface StoreLogger {
  info (obj: object, msg: string): void
  warn (obj: object, msg: string): void
  error (obj: object, msg: string): void
}

/** A session the store refuses to load because its stored state is damaged. */
export interface QuarantinedSession {
  readonly sessionId: string
  readonly reason: string
}

/**
 * What the server runtime needs beyond `SessionStore`: retention of closed
 * sessions, the per-session disk bound and the list of quarantined sessions.
 * Both `MemoryStore` and `SqliteStore` implement it.
 */
export interface ManagedSessionStore extends SessionStore {
  /**
   * `load` without building the journal array: calls `begin` with the latest
   * snapshot (undefined when none), then the function `begin` returned with
   * every journal entry in order, as it is read. Returns the number of
   * entries, or undefined when the session is unknown. Same checks as `load`:
   * it throws `StoreDamagedError` (possibly after some entries were handed
   * over; discard what was built from them).
   */
  replay (sessionId: string, begin: (snapshot: unknown) => (input: CoreInput) => void): number | undefined
  /**
   * Runs `fn`, making every `append` and `saveSnapshot` inside it durable
   * together with one sync (SQLite: one transaction; if `fn` throws, none of
   * them is stored).
   */
  batch<T> (fn: () => T): T
  /** Records that the session was closed at `at` (epoch ms); retention counts from there. */
  markClosed (sessionId: string, at: number): void
  /**
   * Records the digest of the token that created the session (the per-token
   * session quota counts what the store holds, so it survives restarts).
   * Call after the session's first `append`; unknown sessions are ignored.
   */
  setOwner (sessionId: string, owner: string): void
  /** Every stored session with a recorded owner. */
  listOwners (): Array<{ sessionId: string, owner: string }>
  /**
   * Deletes every session closed before `olderThan` (epoch ms) and returns
   * their ids; with `only`, at most that session (a single-session sidecar
   * shares its data directory with other workspaces' sidecars).
   */
  purgeClosed (olderThan: number, only?: string): string[]
  /** Bytes (UTF-8) of the session's stored snapshot plus journal; 0 when unknown. */
  sessionBytes (sessionId: string): number
  /** Sessions excluded from `listSessions` because their stored state is damaged. */
  listQuarantined (): QuarantinedSession[]
}

export const silentLogger: StoreLogger = {
  info () {},
  warn () {},
  error () {}
}
