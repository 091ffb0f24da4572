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
