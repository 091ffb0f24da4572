/**
 * The coordinator's records (participants, intents, operations, conflicts,
 * claims, deferrals, batches, workspace files), their states, and the state
 * predicates every handler shares. Plain data: the indexes over them live in
 * CoreState (state.ts).
 */
import type { NormalizedScope, Scope } from '../protocol/scope.js'
import { CONFLICT_STATES, INTENT_STATES, isTerminalConflict, isTerminalIntent, isTerminalOperation, OPERATION_STATES } from '../protocol/state-machines.js'

export type IntentState = 'ACTIVE' | 'SUSPENDED' | 'EXPIRED' | 'WITHDRAWN' | 'SUPERSEDED' | 'TRANSFERRED'
export type OpState = 'PROPOSED' | 'FROZEN' | 'COMMITTED' | 'REJECTED' | 'ABANDONED' | 'SUPERSEDED'
export type ConflictState = 'OPEN' | 'ACKED' | 'ESCALATED' | 'RESOLVED' | 'CLOSED' | 'DISMISSED'

export interface Participant {
  principal_id: string
  principal_type: string
  display_name: string
  roles: string[]
  capabilities: string[]
  status: string
  is_available: boolean
  last_seen: number
  last_message_id: string | null
  sender_instance_id: string | null
  joined_at: number
  backend_model_id: string | null
  backend_provider: string | null
  backend_provider_status: string
}

export interface Intent {
  intent_id: string
  principal_id: string
  state: IntentState
  objective: string
  scope: Scope
  received_at: number
  expires_at: number | null
  ttl_sec: number | null
  last_message_id: string
  claimed_by: string | null
  priority: string | null
  assumptions: string[]
  parent_intent_id: string | null
  /** Registration order (the race lock reports the earliest holder). */
  seq: number
  /** Suspended by backend health (§9.7), restored on provider recovery. */
  backend_suspended: boolean
  norm: NormalizedScope
  impact: string[]
}

export interface Operation {
  op_id: string
  intent_id: string | null
  principal_id: string
  state: OpState
  target: string
  op_kind: string
  state_ref_before: string | null
  state_ref_after: string | null
  batch_id: string | null
  authorized_at: number | null
  authorized_by: string | null
  created_at: number
  change_ref: string | null
  summary: string | null
  /** SPEC §7.7: no live intent referenced. */
  uncoordinated: boolean
}

export interface Conflict {
  conflict_id: string
  state: ConflictState
  category: string
  severity: string
  principal_a: string | null
  principal_b: string | null
  intent_a: string | null
  intent_b: string | null
  related_intents: string[]
  related_ops: string[]
  created_at: number
  escalated_to: string | null
  escalated_at: number | null
  resolution_id: string | null
  resolved_by: string | null
  decision: string | null
  scope_frozen: boolean
  timeout_reported: boolean
  /** §8.5 progressive degradation (only when configured): when the scope froze, the phase reached, the owner allowed to write in phase 2. */
  frozen_at?: number
  phase?: number
  bypass_principal?: string
  /** CONFLICT_ACKs received, oldest first (the last MAX_CONFLICT_ACKS; absent in records stored before acks were kept). */
  acks?: Array<{ principal_id: string, ack_type: string, at: number }>
  /** The message that created it (the CONFLICT_REPORT's message_id). */
  message_id: string
  reporter: string
  /** Creation order (0 when created: `addConflict` assigns it). Sweeps act in this order. */
  seq: number
}

/** Acknowledgements kept per conflict (the dashboard shows them; older ones are dropped). */
export const MAX_CONFLICT_ACKS = 16

export interface Claim {
  claim_id: string
  original_intent_id: string
  original_principal_id: string
  new_intent_id: string
  claimer: string
  objective: string
  scope: Scope
  justification: string | null
  submitted_at: number
  message_id: string
}

export interface Deferral {
  deferral_id: string
  principal_id: string
  scope: Scope
  reason: string
  observed_intent_ids: string[]
  observed_principals: string[]
  category: string
  received_at: number
  expires_at: number
  /** Insertion order (0 when created: `addDeferral` assigns it; a replacement gets a new one). */
  seq: number
}

export interface Batch {
  batch_id: string
  principal_id: string
  atomicity: string
  op_ids: string[]
}

export interface FileRec { content: string; state_ref: string; bytes: number }

// Derived from the lifecycle tables of src/protocol/state-machines.ts (terminal = no way out), never re-declared.
export const TERMINAL_INTENT: ReadonlySet<string> = new Set(INTENT_STATES.filter(isTerminalIntent))
export const TERMINAL_CONFLICT: ReadonlySet<string> = new Set(CONFLICT_STATES.filter(isTerminalConflict))
export const DEAD_OP: ReadonlySet<string> = new Set(OPERATION_STATES.filter(isTerminalOperation))

/** Operation states after which an op only changes by OP_SUPERSEDE: history that may be forgotten. */
export const SETTLED_OP: ReadonlySet<string> = new Set([...DEAD_OP, 'COMMITTED'])

export function isLive (i: Intent): boolean { return i.state === 'ACTIVE' || i.state === 'SUSPENDED' }
export function isPendingOp (o: Operation): boolean { return o.state === 'PROPOSED' || o.state === 'FROZEN' }
