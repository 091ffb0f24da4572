/**
 * The part of the session registry a connection uses, and the part of a
 * connection the registry uses. Both sides depend on these interfaces, not on
 * each other: `SessionRegistry` (registry.ts) implements `SessionDirectory`,
 * `Connection` (connection.ts) implements `TrackedConnection`, and neither
 * file imports the other.
 */
import type { Logger } from 'pino'
import type { CloseSpec } from '../protocol/close-codes.js'
import type { SessionRuntime } from './session-runtime.js'

/** What the registry reads of an open connection (limits, quotas, token revalidation). */
export interface TrackedConnection {
  readonly sessionId: string
  /** The client address (`request.ip`). */
  readonly address: string
  /** The token of the upgrade's `Authorization: Bearer` header, if any. */
  readonly headerAuth: { readonly digest: string } | undefined
  /** The principal an admitted HELLO bound the connection to. */
  readonly principalId: string | undefined
  /** Digest of the HELLO credential token that admitted the connection. */
  readonly helloDigest: string | undefined
  /** The roles the token table gave that token at admission. */
  readonly tokenRoles: readonly string[] | undefined
  readonly log: Logger
  close (spec: CloseSpec): void
}

/** What a connection asks of the registry: sessions, admission limits, and its own lifecycle. */
export interface SessionDirectory {
  /** The loaded session, loading it from the store when it is stored but unloaded. */
  get (sessionId: string): SessionRuntime | undefined
  /** The loaded session only (no loading). */
  peek (sessionId: string): SessionRuntime | undefined
  /** The session exists but cannot be served (quarantined, or loading failed): close 4503. */
  isUnavailable (sessionId: string): boolean
  /** A session for a first HELLO (in memory until one is admitted), or why none may be created. */
  provisional (sessionId: string, tokenDigest: string | undefined, conn?: TrackedConnection): SessionRuntime | CloseSpec
  /** Why a HELLO on `conn` must be refused at a per-token connection limit, if it must. */
  admissionLimit (conn: TrackedConnection, tokenDigest: string | undefined, principalId: unknown): CloseSpec | undefined
  /** --max-msgs-per-sec-per-token: false when this frame is over the token's share. */
  takeTokenShare (conn: TrackedConnection): boolean
  /** A HELLO was admitted on `conn`. */
  admitted (conn: TrackedConnection, runtime: SessionRuntime, tokenDigest: string | undefined): void
  /** Reply to a sideband query for a session that does not exist (nothing is created). */
  missingSessionReply (sessionId: string, frame: Record<string, unknown>): Record<string, unknown>
  /** A connection ended its pre-HELLO phase (admitted, or closed before). */
  prehelloEnded (address: string): void
  connectionOpened (conn: TrackedConnection): void
  connectionClosed (conn: TrackedConnection): void
}
