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
  /** Records that the session was closed at `at` (epoch ms); retention counts from there. */
  markClosed (sessionId: string, at: number): void
  /** Deletes every session closed before `olderThan` (epoch ms) and returns their ids. */
  purgeClosed (olderThan: number): string[]
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
