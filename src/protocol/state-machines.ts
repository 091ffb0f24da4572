/**
 * Lifecycle tables of intents, operations and conflicts (protocol.md §5.1–5.3):
 * the SPEC transition tables plus the extra edges our documented behaviour
 * needs. An edge missing from a table must be refused. Self-loops (an
 * INTENT_UPDATE that keeps an intent ACTIVE, a pre-commit authorization that
 * keeps an op PROPOSED) are not state changes and are not listed.
 */

export const INTENT_STATES = ['ACTIVE', 'SUSPENDED', 'EXPIRED', 'WITHDRAWN', 'SUPERSEDED', 'TRANSFERRED'] as const
export type IntentState = typeof INTENT_STATES[number]

export const OPERATION_STATES = ['PROPOSED', 'FROZEN', 'COMMITTED', 'REJECTED', 'ABANDONED', 'SUPERSEDED'] as const
export type OperationState = typeof OPERATION_STATES[number]

export const CONFLICT_STATES = ['OPEN', 'ACKED', 'ESCALATED', 'RESOLVED', 'CLOSED', 'DISMISSED'] as const
export type ConflictState = typeof CONFLICT_STATES[number]

export const INTENT_TRANSITIONS: { readonly [S in IntentState]: readonly IntentState[] } = Object.freeze({
  // withdraw, TTL, supersedes_intent_id / auto-supersede, owner unavailable or GOODBYE transfer
  ACTIVE: Object.freeze(['WITHDRAWN', 'EXPIRED', 'SUPERSEDED', 'SUSPENDED'] as const),
  // owner returns, claim approved, TTL; SUSPENDED → WITHDRAWN is the documented PY allowance
  // (withdraw or GOODBYE while suspended, §5.1)
  SUSPENDED: Object.freeze(['ACTIVE', 'TRANSFERRED', 'EXPIRED', 'WITHDRAWN'] as const),
  EXPIRED: Object.freeze([] as const),
  WITHDRAWN: Object.freeze([] as const),
  SUPERSEDED: Object.freeze([] as const),
  TRANSFERRED: Object.freeze([] as const)
})

export const OPERATION_TRANSITIONS: { readonly [S in OperationState]: readonly OperationState[] } = Object.freeze({
  // commit (post or pre_commit completion), OP_REJECT / intent terminated / phase 3,
  // intent suspended, proposer unavailable or gone
  PROPOSED: Object.freeze(['COMMITTED', 'REJECTED', 'FROZEN', 'ABANDONED'] as const),
  // intent back to ACTIVE, intent terminated while suspended; FROZEN → ABANDONED is the
  // documented extra for a departing or unavailable proposer and for session close (§5.2, §5.4 D, G)
  FROZEN: Object.freeze(['PROPOSED', 'REJECTED', 'ABANDONED'] as const),
  // COMMITTED is stable but not terminal: OP_SUPERSEDE
  COMMITTED: Object.freeze(['SUPERSEDED'] as const),
  REJECTED: Object.freeze([] as const),
  ABANDONED: Object.freeze([] as const),
  SUPERSEDED: Object.freeze([] as const)
})

export const CONFLICT_TRANSITIONS: { readonly [S in ConflictState]: readonly ConflictState[] } = Object.freeze({
  // ack, escalate, resolve, auto-dismiss (or a `dismissed` RESOLUTION), frozen-scope phase 3
  OPEN: Object.freeze(['ACKED', 'ESCALATED', 'RESOLVED', 'DISMISSED', 'CLOSED'] as const),
  ACKED: Object.freeze(['ESCALATED', 'RESOLVED', 'DISMISSED'] as const),
  ESCALATED: Object.freeze(['RESOLVED', 'DISMISSED'] as const),
  // RESOLVED is transient: it is archived as CLOSED at once
  RESOLVED: Object.freeze(['CLOSED'] as const),
  CLOSED: Object.freeze([] as const),
  DISMISSED: Object.freeze([] as const)
})

const TABLES: Readonly<Record<'intent' | 'operation' | 'conflict', Readonly<Record<string, readonly string[]>>>> = {
  intent: INTENT_TRANSITIONS,
  operation: OPERATION_TRANSITIONS,
  conflict: CONFLICT_TRANSITIONS
}

/** Whether the machine allows `from` → `to`. Unknown states (and unknown machines) are never allowed. */
export function canTransition (machine: 'intent' | 'operation' | 'conflict', from: string, to: string): boolean {
  const table = Object.hasOwn(TABLES, machine) ? TABLES[machine] : undefined
  if (table === undefined || !Object.hasOwn(table, from)) return false
  return (table[from] as readonly string[]).includes(to)
}

/** A state is terminal when its table lists no way out of it. */
function isTerminal (machine: 'intent' | 'operation' | 'conflict', s: string): boolean {
  const table = TABLES[machine]
  return Object.hasOwn(table, s) && (table[s] as readonly string[]).length === 0
}

export function isTerminalIntent (s: string): boolean {
  return isTerminal('intent', s)
}

/** COMMITTED is not terminal (it can still be superseded); only REJECTED, ABANDONED and SUPERSEDED are. */
export function isTerminalOperation (s: string): boolean {
  return isTerminal('operation', s)
}

export function isTerminalConflict (s: string): boolean {
  return isTerminal('conflict', s)
}
