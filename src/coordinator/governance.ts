/**
 * Governance (protocol.md §8): CONFLICT_ACK and CONFLICT_ESCALATE with
 * authority checks (fix G4), RESOLUTION in the SPEC order (authority before
 * already-resolved, fix G3) with the rollback rule, and the resolution
 * timeout (§8.5 step 1; 0 disables, fix G5; a non-party arbiter, fix G9;
 * RESOLUTION_TIMEOUT once per conflict).
 */
import type { Payload } from '../protocol/schemas.js'
import { protocolErrorPayload } from '../protocol/protocol-error.js'
import { ALL, fail, nextId, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { MAX_CONFLICT_ACKS, TERMINAL_CONFLICT, type Conflict, type CoreState } from './state.js'

function relatedParticipants (st: CoreState, c: Conflict): Set<string> {
  const out = new Set<string>()
  if (c.principal_a !== null) out.add(c.principal_a)
  if (c.principal_b !== null) out.add(c.principal_b)
  for (const id of c.related_intents) {
    const i = st.intents.get(id)
    if (i !== undefined) out.add(i.principal_id)
  }
  for (const id of c.related_ops) {
    const o = st.ops.get(id)
    if (o !== undefined) out.add(o.principal_id)
  }
  out.add(c.reporter)
  if (c.escalated_to !== null) out.add(c.escalated_to)
  return out
}

function liveConflict (st: CoreState, id: string): Conflict | Terminal {
  const c = st.conflicts.get(id)
  if (c === undefined) return fail('INVALID_REFERENCE', `unknown conflict ${id}`)
  if (TERMINAL_CONFLICT.has(c.state)) return fail('INVALID_REFERENCE', `conflict ${id} is ${c.state}`)
  return c
}

function isTerminalResult (x: Conflict | Terminal): x is Terminal {
  return (x as Terminal).kind !== undefined
}

export function handleAck (st: CoreState, ctx: Ctx, p: Payload<'CONFLICT_ACK'>, sender: string): Terminal {
  const c = liveConflict(st, p.conflict_id)
  if (isTerminalResult(c)) return c
  // SPEC §17.8.1: the acker is a related participant.
  if (!relatedParticipants(st, c).has(sender)) return fail('AUTHORIZATION_FAILED', `${sender} is not a party to conflict ${c.conflict_id}`)
  // SPEC: OPEN → ACKED on seen or accepted; disputed leaves it OPEN.
  if (c.state === 'OPEN' && (p.ack_type === 'seen' || p.ack_type === 'accepted')) st.setConflictState(ctx, c, 'ACKED')
  const acks = c.acks ??= []
  acks.push({ principal_id: sender, ack_type: p.ack_type, at: ctx.now })
  if (acks.length > MAX_CONFLICT_ACKS) acks.splice(0, acks.length - MAX_CONFLICT_ACKS)
  ctx.dirty = true
  return RELAY
}

export function handleEscalate (st: CoreState, ctx: Ctx, p: Payload<'CONFLICT_ESCALATE'>, sender: string): Terminal {
  const c = liveConflict(st, p.conflict_id)
  if (isTerminalResult(c)) return c
  const authority = st.hasRole(sender, 'owner', 'arbiter')
  if (!authority && !relatedParticipants(st, c).has(sender)) return fail('AUTHORIZATION_FAILED', `${sender} may not escalate conflict ${c.conflict_id}`)
  if (c.state === 'ESCALATED' && sender !== c.escalated_to && !st.hasRole(sender, 'arbiter')) {
    return fail('AUTHORIZATION_FAILED', `conflict ${c.conflict_id} is already escalated to ${String(c.escalated_to)}`)
  }
  if (!st.participants.has(p.escalate_to)) return fail('INVALID_REFERENCE', `unknown principal ${p.escalate_to}`)
  // SPEC §8.3: the target should hold authority (owner or arbiter).
  if (!st.hasRole(p.escalate_to, 'owner', 'arbiter')) return fail('AUTHORIZATION_FAILED', `${p.escalate_to} holds neither the owner nor the arbiter role`)
  c.escalated_to = p.escalate_to
  c.escalated_at = ctx.now
  st.setConflictState(ctx, c, 'ESCALATED')
  return RELAY
}

export function handleResolution (st: CoreState, ctx: Ctx, p: Payload<'RESOLUTION'>, sender: string, hasWatermark: boolean): Terminal {
  const c = st.conflicts.get(p.conflict_id)
  // SPEC §17.8: a RESOLUTION must reference a known conflict.
  if (c === undefined) return fail('INVALID_REFERENCE', `unknown conflict ${p.conflict_id}`)
  // SPEC §18.4: the resolver must be authorized for the current phase; checked before the race (fix G3).
  const allowed = c.state === 'ESCALATED'
    ? sender === c.escalated_to || st.hasRole(sender, 'arbiter')
    : st.hasRole(sender, 'owner', 'arbiter')
  if (!allowed) {
    return fail('AUTHORIZATION_FAILED', c.state === 'ESCALATED'
      ? `conflict ${c.conflict_id} is escalated to ${String(c.escalated_to)}; only that principal or an arbiter may resolve it`
      : 'RESOLUTION requires the owner or arbiter role')
  }
  if (c.resolution_id !== null || TERMINAL_CONFLICT.has(c.state)) return fail('RESOLUTION_CONFLICT', `conflict ${c.conflict_id} is already resolved`)
  // SPEC §23.1.2 (authenticated): a RESOLUTION without a watermark SHOULD be rejected (fix G11).
  if (st.s.securityProfile === 'authenticated' && !hasWatermark) return fail('MALFORMED_MESSAGE', 'RESOLUTION requires a watermark in the authenticated profile')
  // SPEC §18.4: rejecting a COMMITTED op requires outcome.rollback.
  const rejected = p.outcome?.rejected ?? []
  if (p.outcome?.rollback === undefined || p.outcome.rollback === null) {
    for (const id of rejected) {
      if (st.ops.get(id)?.state === 'COMMITTED') return fail('MALFORMED_MESSAGE', `outcome.rejected names the COMMITTED operation ${id}; outcome.rollback is required`)
    }
  }
  c.resolution_id = p.resolution_id ?? nextId(st.clock)
  c.resolved_by = sender
  c.decision = p.decision
  if (p.decision === 'dismissed') st.setConflictState(ctx, c, 'DISMISSED')
  else st.closeResolved(ctx, c)
  return RELAY
}

/**
 * The conflicts whose resolution timeout has passed (now > created_at +
 * timeout), in creation order. Each conflict has one heap entry; entries of
 * conflicts that can no longer time out are dropped (a conflict never becomes
 * eligible again).
 */
/** A heap entry is the conflict's own (not one of a forgotten conflict whose id was reused) and still eligible. */
function timeoutCurrent (st: CoreState, c: Conflict, t: number): boolean {
  return st.timeoutEligible(c) && t === c.created_at + st.s.resolutionTimeoutSec * 1000
}

function dueTimeouts (st: CoreState, now: number): Conflict[] {
  const due: Conflict[] = []
  for (;;) {
    const t = st.timeouts.peekTime()
    if (t === undefined || t >= now) break
    const c = st.conflicts.get(st.timeouts.peekId() as string)
    st.timeouts.pop()
    if (c !== undefined && timeoutCurrent(st, c, t)) due.push(c)
  }
  return due.sort((a, b) => a.seq - b.seq)
}

/**
 * A system escalation: to the first available arbiter (in join order) that is
 * not one of the conflict's two principals (fix G9). False when there is none.
 */
export function escalateToArbiter (st: CoreState, ctx: Ctx, c: Conflict, reason: string): boolean {
  for (const p of st.participants.values()) {
    if (p.is_available && p.roles.includes('arbiter') && p.principal_id !== c.principal_a && p.principal_id !== c.principal_b) {
      c.escalated_to = p.principal_id
      c.escalated_at = ctx.now
      st.setConflictState(ctx, c, 'ESCALATED')
      st.emit(ctx, 'CONFLICT_ESCALATE', { conflict_id: c.conflict_id, escalate_to: p.principal_id, reason }, ALL)
      return true
    }
  }
  return false
}

/** SPEC §18.6 step 1: escalate to an available non-party arbiter, else freeze and report once. */
export function resolutionTimeouts (st: CoreState, ctx: Ctx): void {
  for (const c of dueTimeouts(st, ctx.now)) {
    const cid = c.conflict_id
    if (!escalateToArbiter(st, ctx, c, 'resolution_timeout')) {
      c.timeout_reported = true
      st.freeze(ctx, c)
      st.emit(ctx, 'PROTOCOL_ERROR', protocolErrorPayload({
        code: 'RESOLUTION_TIMEOUT',
        refersTo: c.message_id,
        description: `Conflict ${cid} was not resolved within ${st.s.resolutionTimeoutSec} s and no arbiter is available; its scope is frozen until it is resolved`,
        extra: { conflict_id: cid }
      }), ALL)
    }
  }
}

export function nextResolutionDeadline (st: CoreState): number | undefined {
  for (;;) {
    const t = st.timeouts.peekTime()
    if (t === undefined) return undefined
    const c = st.conflicts.get(st.timeouts.peekId() as string)
    if (c !== undefined && timeoutCurrent(st, c, t)) return t + 1
    st.timeouts.pop()
  }
}
