/**
 * The one builder of PROTOCOL_ERROR payloads (protocol.md §4.22), used by the
 * coordinator core for the errors it sequences (state.emit → buildEnvelope)
 * and by the server for the ones it authors before the core sees an input
 * (src/server/server-error.ts). Key order, as the Python coordinator writes
 * it: error_code, refers_to, description, then PY's extra top-level keys
 * (duplicate_candidate, conflict_id, limit, …), then `extensions`.
 */
import type { ErrorCode } from './error-codes.js'

export interface ProtocolError {
  readonly code: ErrorCode
  readonly description: string
  /** The offending message_id (PY-style, sometimes another id); kept only when it is a string. */
  readonly refersTo?: unknown
  /** Extra top-level payload keys. */
  readonly extra?: Readonly<Record<string, unknown>>
  /** `payload.extensions` (SPEC: `retry_after_sec` on INTENT_BACKOFF). */
  readonly extensions?: Readonly<Record<string, unknown>>
}

export function protocolErrorPayload (e: ProtocolError): Record<string, unknown> {
  const payload: Record<string, unknown> = { error_code: e.code }
  if (typeof e.refersTo === 'string') payload.refers_to = e.refersTo
  payload.description = e.description
  if (e.extra !== undefined) Object.assign(payload, e.extra)
  if (e.extensions !== undefined) payload.extensions = e.extensions
  return payload
}
