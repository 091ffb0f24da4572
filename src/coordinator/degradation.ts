/**
 * Progressive degradation of a frozen scope (protocol.md §8.5 step 2),
 * behind `CoordinatorConfig.frozenScopePhases` (absent = disabled). Measured
 * from the freeze (`Conflict.frozen_at`):
 * - phase 2 (after phase1Sec): a system CONFLICT_ESCALATE to an available
 *   arbiter when one exists; the owner of the one intent with strictly the
 *   highest priority may write in the frozen scope; with no such intent, one
 *   RESOLUTION_TIMEOUT reminder;
 * - phase 3 (after phase1Sec + phase2Sec, unless disabled): first committer
 *   wins, a coordinator RESOLUTION{policy_override} closes the conflict,
 *   the other pending related ops get OP_REJECT{frozen_scope_fallback}, and
 *   the freeze is released.
 * Auto-dismiss runs before (settle), so it pre-empts every phase.
 */
import { protocolErrorPayload } from '../protocol/protocol-error.js'
import { rejectOp } from './cascades.js'
import { escalateToArbiter } from './governance.js'
import { ALL, nextId, type Ctx } from './envelopes.js'
import { isPendingOp, type Conflict, type CoreState, type Intent, type Operation } from './state.js'

const RANK: Readonly<Record<string, number>> = { low: 0, normal: 1, high: 2, critical: 3 }

function rank (i: Intent): number {
  return RANK[i.priority ?? 'normal'] ?? 1
}

/** The conflict's two intents (intent_a, intent_b, else the first two related ones). */
function sides (st: CoreState, c: Conflict): Intent[] {
  const ids = c.intent_a !== null || c.intent_b !== null ? [c.intent_a, c.intent_b] : c.related_intents.slice(0, 2)
  const out: Intent[] = []
  for (const id of ids) {
    const i = id === null ? undefined : st.intents.get(id)
    if (i !== undefined && !out.includes(i)) out.push(i)
  }
  return out
}

/** The owner of the one intent with strictly the highest priority, if any. */
function priorityWinner (st: CoreState, c: Conflict): string | undefined {
  const [a, b] = sides(st, c)
  if (a === undefined || b === undefined) return undefined
  const ra = rank(a)
  const rb = rank(b)
  if (ra === rb || a.principal_id === b.principal_id) return undefined
  return ra > rb ? a.principal_id : b.principal_id
}

/** The time of the next phase of `c`, or undefined when it has none left. */
function phaseDue (st: CoreState, c: Conflict): number | undefined {
  const cfg = st.s.frozenScopePhases
  if (cfg === undefined || c.frozen_at === undefined || !c.scope_frozen) return undefined
  const phase = c.phase ?? 1
  if (phase < 2) return c.frozen_at + cfg.phase1Sec * 1000
  if (phase < 3 && cfg.phase3) return c.frozen_at + (cfg.phase1Sec + cfg.phase2Sec) * 1000
  return undefined
}

function phase2 (st: CoreState, ctx: Ctx, c: Conflict): void {
  const cid = c.conflict_id
  c.phase = 2
  ctx.dirty = true
  if (c.state !== 'ESCALATED') escalateToArbiter(st, ctx, c, 'frozen_scope_phase_2')
  const winner = priorityWinner(st, c)
  if (winner !== undefined) {
    c.bypass_principal = winner
    return
  }
  st.emit(ctx, 'PROTOCOL_ERROR', protocolErrorPayload({
    code: 'RESOLUTION_TIMEOUT',
    refersTo: c.message_id,
    description: `Conflict ${cid} is still unresolved (frozen-scope phase 2); its intents have equal priority, so its scope stays frozen until it is resolved`,
    extra: { conflict_id: cid }
  }), ALL)
}

function phase3 (st: CoreState, ctx: Ctx, c: Conflict): void {
  const cid = c.conflict_id
  c.phase = 3
  let winner: string | undefined
  const losers: Operation[] = []
  for (const id of c.related_ops) {
    const o = st.ops.get(id)
    if (o === undefined) continue
    if (o.state === 'COMMITTED' && winner === undefined) winner = id
    else if (isPendingOp(o)) losers.push(o)
  }
  const rid = nextId(st.clock)
  c.resolution_id = rid
  c.resolved_by = st.coordinatorId
  c.decision = 'policy_override'
  delete c.bypass_principal
  st.closeResolved(ctx, c)
  st.emit(ctx, 'RESOLUTION', {
    resolution_id: rid,
    conflict_id: cid,
    decision: 'policy_override',
    rationale: 'frozen_scope_progressive_fallback_phase_3',
    outcome: { accepted: winner === undefined ? [] : [winner], rejected: losers.map(o => o.op_id) }
  }, ALL)
  for (const o of losers) rejectOp(st, ctx, o, 'frozen_scope_fallback', c.message_id, { conflict_id: cid })
}

/** Runs every phase that is due, in conflict creation order. */
export function degradeFrozenScopes (st: CoreState, ctx: Ctx): void {
  if (st.s.frozenScopePhases === undefined || st.frozen.size === 0) return
  const due: Conflict[] = []
  for (const c of st.frozenConflicts()) {
    const t = phaseDue(st, c)
    if (t !== undefined && t <= ctx.now) due.push(c)
  }
  if (due.length > 1) due.sort((a, b) => a.seq - b.seq)
  const cfg = st.s.frozenScopePhases
  for (const c of due) {
    if (!st.frozen.has(c.conflict_id)) continue
    const p3At = cfg.phase3 ? (c.frozen_at as number) + (cfg.phase1Sec + cfg.phase2Sec) * 1000 : undefined
    // A late tick past both deadlines goes straight to phase 3.
    if (p3At !== undefined && p3At <= ctx.now) phase3(st, ctx, c)
    else if ((c.phase ?? 1) < 2) phase2(st, ctx, c)
  }
}

export function nextDegradationDeadline (st: CoreState): number | undefined {
  if (st.s.frozenScopePhases === undefined || st.frozen.size === 0) return undefined
  let min: number | undefined
  for (const c of st.frozenConflicts()) {
    const t = phaseDue(st, c)
    if (t !== undefined && (min === undefined || t < min)) min = t
  }
  return min
}
