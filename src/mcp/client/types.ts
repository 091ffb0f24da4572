/**
 * The shapes the parts of the coordinator client share: MPAC envelopes and
 * sideband frames as the shim sees them on the wire, the outcome of one
 * request, and the timer source.
 *
 * Contract:
 * - Owns: type definitions, the protocol version the shim announces, and the
 *   real timer source (`systemTimers`, whose timers never keep the process
 *   alive).
 * - Promises: nothing here does I/O or holds state.
 * - Never: validates frames (the coordinator is the authority on the wire
 *   format; the client reads only the fields it needs).
 */

export const PROTOCOL_VERSION = '0.1.13'

export type Frame = Record<string, unknown>

export interface Envelope {
  readonly protocol: string
  readonly version: string
  readonly message_type: string
  readonly message_id: string
  readonly session_id: string
  readonly sender: { readonly principal_id: string, readonly principal_type: string, readonly sender_instance_id: string }
  readonly ts: string
  readonly payload: Frame
  readonly watermark?: { readonly kind: string, readonly value: unknown }
  readonly [key: string]: unknown
}

export interface ErrorPayload {
  readonly error_code: string
  readonly description?: string
  readonly refers_to?: string
  readonly [key: string]: unknown
}

/** The outcome of one request, read from the coordinator's frames. */
export interface Reply {
  readonly accepted: boolean
  /** The terminal frame: the relay/echo of our message, or the rejecting PROTOCOL_ERROR. */
  readonly terminal: Envelope
  /** The rejection (only when `accepted` is false). */
  readonly error: ErrorPayload | undefined
  /** PROTOCOL_ERRORs referring to our message that did not stop it (e.g. a partial SCOPE_FROZEN). */
  readonly warnings: readonly ErrorPayload[]
  /** Every envelope received between the send and the terminal frame (CONFLICT_REPORT, INTENT_CLAIM_STATUS, …). */
  readonly seen: readonly Envelope[]
  readonly messageId: string
}

export interface SessionInfo {
  readonly session_id: string
  readonly granted_roles?: readonly string[]
  readonly liveness_policy?: { readonly heartbeat_interval_sec?: number }
  readonly [key: string]: unknown
}

export type SidebandRequest =
  | { readonly type: 'SESSION_SUMMARY' }
  | { readonly type: 'FILE_READ', readonly path: string }
  | { readonly type: 'FILE_LIST' }
  | { readonly type: 'LOCAL_PROOF', readonly nonce: string }

/** Timer source, injectable for tests. */
export interface Timers {
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
  setInterval (fn: () => void, ms: number): unknown
  clearInterval (handle: unknown): void
  random (): number
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms)
    h.unref()
    return h
  },
  clearTimeout: h => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => {
    const h = setInterval(fn, ms)
    h.unref()
    return h
  },
  clearInterval: h => clearInterval(h as NodeJS.Timeout),
  random: Math.random
}
