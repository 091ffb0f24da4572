/** Bounded history: forgetting finished records nothing live refers to (the coordinator calls it after every input). */
import { isPendingOp, SETTLED_OP, TERMINAL_CONFLICT, TERMINAL_INTENT, type Intent, type Operation } from './records.js'
import type { CoreState } from './state.js'

/**
 * Bounded history (CoordinatorConfig.maxFinishedRecords): while more than
 * the maximum of terminal intents (or settled operations, terminal
 * conflicts, member-less batches, departed participants) are kept, forgets
 * the earliest finished ones that nothing live refers to. Runs at the end of
 * every input; deterministic (finish order is part of the snapshot).
 * Returns whether anything was forgotten.
 */
export function pruneHistory (st: CoreState): boolean {
  const max = st.s.maxFinishedRecords
  let changed = false
  let excess = st.finishedIntents.size - max
  if (excess > 0) {
    for (const id of st.finishedIntents) {
      if (excess <= 0) break
      const i = st.intents.get(id)
      if (i !== undefined && intentPinned(st, i)) continue
      st.finishedIntents.delete(id)
      if (i !== undefined) {
        st.intents.delete(id)
        bump(st.forgotten.intents, i.state)
      }
      excess--
      changed = true
    }
  }
  excess = st.finishedOps.size - max
  if (excess > 0) {
    for (const id of st.finishedOps) {
      if (excess <= 0) break
      const o = st.ops.get(id)
      if (o !== undefined && opPinned(st, o)) continue
      st.finishedOps.delete(id)
      if (o !== undefined) {
        st.ops.delete(id)
        bump(st.forgotten.ops, o.state)
        if (o.batch_id !== null) dropBatchIfEmpty(st, o.batch_id)
      }
      excess--
      changed = true
    }
  }
  // Terminal conflicts: nothing refers to one any more (RESOLUTION/ACK/ESCALATE need a live one).
  excess = st.finishedConflicts.size - max
  if (excess > 0) {
    for (const id of st.finishedConflicts) {
      if (excess <= 0) break
      st.finishedConflicts.delete(id)
      const c = st.conflicts.get(id)
      if (c !== undefined && TERMINAL_CONFLICT.has(c.state)) {
        st.conflicts.delete(id)
        bump(st.forgotten.conflicts, c.state)
      }
      excess--
      changed = true
    }
  }
  excess = st.emptyBatches.size - max
  if (excess > 0) {
    for (const id of st.emptyBatches) {
      if (excess <= 0) break
      st.emptyBatches.delete(id)
      dropBatchIfEmpty(st, id)
      excess--
      changed = true
    }
  }
  excess = st.departed.size - max
  if (excess > 0) {
    for (const pid of st.departed) {
      if (excess <= 0) break
      const p = st.participants.get(pid)
      if (p !== undefined && !st.forgettableParticipant(p)) continue
      if (p === undefined) st.departed.delete(pid)
      else st.forgetParticipant(pid)
      excess--
      changed = true
    }
  }
  return changed
}

/** Still referenced by an open conflict, a pending claim, a deferral or a pending op. */
function intentPinned (st: CoreState, i: Intent): boolean {
  const id = i.intent_id
  if (!TERMINAL_INTENT.has(i.state)) return true
  if (st.conflictsByIntent.has(id) || st.deferralsByObserved.has(id) || st.pendingByIntent.has(id) || st.claims.has(id)) return true
  for (const c of st.claims.values()) if (c.new_intent_id === id) return true
  return false
}

/** Still referenced by an open conflict, or a member of a batch with a pending op. */
function opPinned (st: CoreState, o: Operation): boolean {
  if (!SETTLED_OP.has(o.state) || st.conflictsByOp.has(o.op_id)) return true
  if (o.batch_id === null) return false
  const b = st.batches.get(o.batch_id)
  if (b === undefined) return false
  for (const id of b.op_ids) {
    const x = st.ops.get(id)
    if (x !== undefined && isPendingOp(x)) return true
  }
  return false
}

function dropBatchIfEmpty (st: CoreState, batchId: string): void {
  const b = st.batches.get(batchId)
  if (b === undefined) return
  for (const id of b.op_ids) if (st.ops.get(id)?.batch_id === batchId) return
  st.batches.delete(batchId)
  st.emptyBatches.delete(batchId)
}

function bump (m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1)
}
