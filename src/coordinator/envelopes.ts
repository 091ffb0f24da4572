/**
 * Coordinator-authored envelopes, invented ids and the per-input context
 * (outputs, file writes, terminal frame) every handler writes into.
 *
 * Ids the coordinator invents are derived from the session id, the epoch and
 * a sequence number held in the state (a SHA-256 formatted as a UUID), so a
 * replay of the same inputs reproduces them (DESIGN.md §4.2).
 */
import { createHash } from 'node:crypto'
import type { ErrorCode } from '../protocol/error-codes.js'
import type { MessageType } from '../protocol/message-types.js'
import { formatTs } from '../protocol/time.js'
import { clampLamport } from '../protocol/watermark.js'
import type { Audience, FileWrite, Output } from './types.js'

export const ALL: Audience = Object.freeze({ kind: 'all' })
export const SENDER: Audience = Object.freeze({ kind: 'sender' })
export const OTHERS: Audience = Object.freeze({ kind: 'others' })

export function principals (ids: Iterable<string>): Audience {
  return { kind: 'principals', ids: [...new Set(ids)] }
}

/** The mutable clock/id part of the state that envelope building advances. */
export interface Clock {
  readonly sessionId: string
  readonly coordinatorId: string
  readonly version: string
  epoch: number
  lamport: number
  seq: number
}

export function nextId (c: Clock): string {
  c.seq++
  const h = createHash('sha256').update(`${c.sessionId}\u0000${c.epoch}\u0000${c.seq}`).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`
}

/**
 * SPEC §12.7 rule 2 (before each send, increment and stamp) and protocol.md
 * §2.5: exactly PY's ten envelope keys, top-level null payload values removed.
 */
export function buildEnvelope (c: Clock, type: MessageType, payload: Record<string, unknown>, now: number): Record<string, unknown> {
  const clean: Record<string, unknown> = {}
  for (const k in payload) {
    const v = payload[k]
    if (v !== null && v !== undefined) clean[k] = v
  }
  // Saturates at MAX_LAMPORT, the largest value coordinators accept: a clock at the ceiling repeats it.
  c.lamport = clampLamport(c.lamport + 1)
  return {
    protocol: 'MPAC',
    version: c.version,
    message_type: type,
    message_id: nextId(c),
    session_id: c.sessionId,
    sender: {
      principal_id: c.coordinatorId,
      principal_type: 'service',
      sender_instance_id: `${c.coordinatorId}:epoch-${c.epoch}`
    },
    ts: formatTs(now),
    payload: clean,
    watermark: { kind: 'lamport_clock', value: c.lamport },
    coordinator_epoch: c.epoch
  }
}

/** How a message input ends (DESIGN.md §4.3, docs/architecture.md). */
export type Terminal =
  | { readonly kind: 'relay' }
  | { readonly kind: 'echo' }
  | { readonly kind: 'info'; readonly payload: Record<string, unknown> }
  | { readonly kind: 'error'; readonly code: ErrorCode; readonly description: string; readonly extra?: Record<string, unknown> }

export const RELAY: Terminal = Object.freeze({ kind: 'relay' })
export const ECHO: Terminal = Object.freeze({ kind: 'echo' })

export function fail (code: ErrorCode, description: string, extra?: Record<string, unknown>): Terminal {
  return extra === undefined ? { kind: 'error', code, description } : { kind: 'error', code, description, extra }
}

/** Everything one `apply` produces. Handlers push outputs in order. */
export class Ctx {
  readonly out: Output[] = []
  readonly fileWrites: FileWrite[] = []
  /** Set by every state mutation that a snapshot would see (used for `changed` on ticks). */
  dirty = false
  /** FILE_UPDATED frames: to the peers right after their copy of the relay, to the sender after its terminal relay. */
  readonly afterRelay: Array<Record<string, unknown>> = []
  /** Intents terminated by this input, for deferral cleanup (SPEC §5.4 A step 3). */
  readonly terminated: Array<{ intentId: string, principalId: string }> = []
  /** Set when an intent or op reached a terminal state: the auto-dismiss sweep must run. */
  needsSweep = false
  constructor (readonly now: number, readonly sender: string | undefined, readonly messageId: string | undefined) {}
}
