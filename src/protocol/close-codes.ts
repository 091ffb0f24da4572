/**
 * WebSocket close codes the sidecar uses. The 44xx codes mirror HTTP
 * statuses (hocuspocus style); 1009/1011/1012 are the RFC 6455 codes.
 * Documented in docs/coordinator.md (Close codes).
 */
export const CLOSE = {
  /** A frame larger than --max-frame-bytes. */
  TOO_BIG: { code: 1009, reason: 'frame too large' },
  INTERNAL: { code: 1011, reason: 'internal error' },
  /** Graceful shutdown (SIGTERM/SIGINT): reconnect with backoff. */
  RESTART: { code: 1012, reason: 'service restart' },
  /**
   * Fleet mode: this node no longer owns the session (another node claimed it,
   * the node's lease lapsed, or it released the session for a handover or a
   * drain). Nothing unacknowledged was delivered; reconnect and re-HELLO.
   */
  MOVED: { code: 1012, reason: 'session moved' },
  /** Sideband query before HELLO without a bearer header, in the authenticated profile. */
  UNAUTHORIZED: { code: 4401, reason: 'authentication required' },
  /** The connection's token was removed from the token table (or expired). */
  TOKEN_REVOKED: { code: 4401, reason: 'token revoked' },
  /** The connection's token reached its `expires_at` (closed at that instant, not at the next reload). */
  TOKEN_EXPIRED: { code: 4401, reason: 'token expired' },
  /**
   * A token-table reload changed the roles of the connection's token: the
   * client reconnects (retryable, like 1012) and its new HELLO is granted the
   * new roles, so no message is ever judged with roles the table took away.
   */
  ROLES_CHANGED: { code: 4205, reason: 'token roles changed; reconnect' },
  /** No such path or session id. */
  NOT_FOUND: { code: 4004, reason: 'unknown path; use /session/<id>' },
  /** No admitted HELLO within --prehello-timeout. */
  PREHELLO_TIMEOUT: { code: 4408, reason: 'no HELLO in time' },
  /** Another connection was admitted for the same principal. */
  REPLACED: { code: 4409, reason: 'replaced by a newer connection' },
  /** Rate limit, pre-HELLO frame cap, session caps, slow consumer. */
  RATE_LIMITED: { code: 4429, reason: 'rate limit exceeded' },
  PREHELLO_FRAMES: { code: 4429, reason: 'too many frames before HELLO' },
  SLOW_CONSUMER: { code: 4429, reason: 'slow consumer: send buffer full' },
  TOO_MANY_SESSIONS: { code: 4429, reason: 'session limit reached' },
  TOO_MANY_TOKEN_SESSIONS: { code: 4429, reason: 'session limit for this token reached' },
  TOO_MANY_ADDRESS_SESSIONS: { code: 4429, reason: 'session limit for this address reached' },
  /** --max-connections-per-token / --max-connections-per-address (HTTP 429 before the upgrade when known there). */
  TOO_MANY_TOKEN_CONNECTIONS: { code: 4429, reason: 'connection limit for this token reached' },
  TOO_MANY_ADDRESS_CONNECTIONS: { code: 4429, reason: 'connection limit for this address reached' },
  /** The session's stored state is damaged (quarantined) or cannot be loaded right now. */
  SESSION_UNAVAILABLE: { code: 4503, reason: 'session unavailable' }
} as const

/**
 * Close codes the shim meets or sends that this coordinator never sends
 * (docs/coordinator.md, Close codes: how `mpac-mcp` treats them).
 */
export const PEER_CLOSE = {
  /** Other MPAC coordinators close with 4403 for a token not allowed any more (ours refuses it with HTTP 403 before the upgrade). */
  FORBIDDEN: { code: 4403, reason: 'forbidden' },
  /** The shim drops a connection that stopped answering (a request or heartbeat got no reply in time), then reconnects. */
  UNRESPONSIVE: { code: 4000, reason: 'unresponsive' }
} as const

export type CloseSpec = { readonly code: number, readonly reason: string }
