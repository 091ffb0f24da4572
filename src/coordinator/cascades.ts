/**
 * Cross-lifecycle rules (protocol.md §5.4): the intent termination cascade
 * (A), suspension and restore (B), and the settle step every handler runs at
 * its end (deferral cleanup for every terminated intent, then auto-dismiss).
 */
import { ALL, type Ctx } from './envelopes.js'
import { autoDismiss } from './conflicts.js'
import { cleanupDeferrals } from './deferrals.js'
import type { CoreState, Intent, IntentState, Operation } from './state.js'

/**
 * SPEC §5.4 A: every PROPOSED/FROZEN op on the intent, whoever proposed it,
 * becomes REJECTED with OP_REJECT{intent_terminated}. COMMITTED ops stay.
 */
export function terminateIntent (st: CoreState, ctx: Ctx, i: Intent, state: IntentState): void {
  st.setIntentState(ctx, i, state)
  for (const o of st.pendingOps(st.pendingByIntent, i.intent_id)) rejectOp(st, ctx, o, 'intent_terminated', i.last_message_id)
  ctx.terminated.push({ intentId: i.intent_id, principalId: i.principal_id })
  ctx.needsSweep = true
}

export function rejectOp (st: CoreState, ctx: Ctx, o: Operation, reason: string, refersTo?: string, extra?: Record<string, unknown>): void {
  st.setOpState(ctx, o, 'REJECTED')
  st.emit(ctx, 'OP_REJECT', { op_id: o.op_id, reason, refers_to: refersTo ?? null, ...extra }, ALL)
  ctx.needsSweep = true
}

/** SPEC §5.4 B: ACTIVE → SUSPENDED, referencing PROPOSED ops → FROZEN (no message). */
export function suspendIntent (st: CoreState, ctx: Ctx, i: Intent): void {
  st.setIntentState(ctx, i, 'SUSPENDED')
  for (const o of st.pendingOps(st.pendingByIntent, i.intent_id)) if (o.state === 'PROPOSED') st.setOpState(ctx, o, 'FROZEN')
}

/** SUSPENDED → ACTIVE, FROZEN ops back to PROPOSED. */
export function restoreIntent (st: CoreState, ctx: Ctx, i: Intent): void {
  st.setIntentState(ctx, i, 'ACTIVE')
  i.backend_suspended = false
  for (const o of st.pendingOps(st.pendingByIntent, i.intent_id)) if (o.state === 'FROZEN') st.setOpState(ctx, o, 'PROPOSED')
}

/** End-of-input step: deferral cleanup for every terminated intent (fix I6), then auto-dismiss (§5.4 C). */
export function settle (st: CoreState, ctx: Ctx): void {
  if (ctx.terminated.length > 0) {
    const done = ctx.terminated.splice(0)
    cleanupDeferrals(st, ctx, done)
  }
  if (ctx.needsSweep) {
    ctx.needsSweep = false
    autoDismiss(st, ctx)
  }
}
