/**
 * PROTOCOL_ERROR `error_code` values: SPEC §22.1 plus the Python runtime's
 * STALE_INTENT (v0.1.15 race lock) and STALE_STATE_REF (optimistic
 * concurrency), which the published JSON Schema lacks (protocol.md §4.22).
 */
export const ERROR_CODES = [
  'MALFORMED_MESSAGE',
  'UNKNOWN_MESSAGE_TYPE',
  'INVALID_REFERENCE',
  'VERSION_MISMATCH',
  'CAPABILITY_UNSUPPORTED',
  'AUTHORIZATION_FAILED',
  'PARTICIPANT_UNAVAILABLE',
  'RESOLUTION_TIMEOUT',
  'SCOPE_FROZEN',
  'CLAIM_CONFLICT',
  'COORDINATOR_CONFLICT',
  'STATE_DIVERGENCE',
  'SESSION_CLOSED',
  'CREDENTIAL_REJECTED',
  'REPLAY_DETECTED',
  'RESOLUTION_CONFLICT',
  'CAUSAL_GAP',
  'INTENT_BACKOFF',
  'STALE_INTENT',
  'BACKEND_SWITCH_DENIED',
  'STALE_STATE_REF'
] as const

export type ErrorCode = typeof ERROR_CODES[number]

const ERROR_CODE_SET: ReadonlySet<string> = new Set(ERROR_CODES)

export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && ERROR_CODE_SET.has(value)
}
