/**
 * Watermark helpers (protocol.md §2.4). The envelope schema has already
 * checked that a `lamport_clock` value and any `lamport_value` are
 * non-negative safe integers; these helpers re-check cheaply so they are
 * safe on unvalidated values too.
 */

/** The wire watermark object. `value` depends on `kind`: an integer for lamport_clock. */
export interface Watermark {
  kind: string
  value: unknown
  lamport_value?: number
  extensions?: Record<string, unknown>
}

/**
 * The largest Lamport value a coordinator accepts in an inbound watermark
 * (2^52). MPAC's receive rule, max(local, received) + 1, would otherwise let
 * one client push a session's clock to 2^53, past which a double no longer
 * holds every integer and the clock stops increasing. Larger values are
 * refused (`MALFORMED_MESSAGE`), and clients clamp their own clock to it
 * (the shim's receive and send rules never go past it).
 */
export const MAX_LAMPORT = 2 ** 52

/** A Lamport clock step that never passes MAX_LAMPORT (saturates there). */
export function clampLamport (value: number): number {
  return value > MAX_LAMPORT ? MAX_LAMPORT : value
}

function isLamport (v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/**
 * The Lamport value to use for the receive rule: `value` of a lamport_clock
 * watermark, the `lamport_value` fallback of any other kind, else undefined.
 */
export function lamportOf (w: Watermark | undefined): number | undefined {
  if (w === undefined) return undefined
  const v = w.kind === 'lamport_clock' ? w.value : w.lamport_value
  return isLamport(v) ? v : undefined
}

/** The watermark every coordinator-authored envelope carries. */
export function lamportWatermark (value: number): { kind: 'lamport_clock'; value: number } {
  return { kind: 'lamport_clock', value }
}
