/**
 * Liveness (protocol.md §9): HEARTBEAT (status, return of an unavailable
 * participant, backend health §9.7 with the L1/L6 fixes), GOODBYE
 * dispositions (§9.6, fix L5: transfer freezes referencing ops; the GOODBYE
 * itself is relayed to all), unavailability detection (§9.2; refers_to = the last message
 * id, plus a `principal_id` key: fix W7), and the coordinator's own
 * COORDINATOR_STATUS heartbeat (§9.1, §12.1).
 */
import type { Payload } from '../protocol/schemas.js'
import { protocolErrorPayload } from '../protocol/protocol-error.js'
import { ALL, ECHO, fail, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { restoreIntent, settle, suspendIntent, terminateIntent } from './cascades.js'
import { ownerRejoin } from './claims.js'
import { isLive, type CoreState, type Participant } from './state.js'

function providerOf (modelId: string): string {
  const slash = modelId.indexOf('/')
  return slash > 0 ? modelId.slice(0, slash) : modelId
}

export function statusPayload (st: CoreState, event: string): Record<string, unknown> {
  return {
    event,
    coordinator_id: st.coordinatorId,
    session_health: st.sessionHealth(),
    active_participants: st.availableCount(),
    open_conflicts: st.openConflictCount()
  }
}

type BackendHealth = NonNullable<Payload<'HEARTBEAT'>['backend_health']>

export function handleHeartbeat (st: CoreState, ctx: Ctx, p: Payload<'HEARTBEAT'>, sender: string): Terminal {
  const part = st.participants.get(sender) as Participant
  const bh = p.backend_health
  const policy = st.s.backendHealthPolicy
  if (bh !== undefined && policy?.enabled === true && bh.switched_from !== undefined) {
    if (policy.auto_switch === 'forbidden') return fail('BACKEND_SWITCH_DENIED', `backend switch from ${bh.switched_from} to ${bh.model_id} is forbidden by the session policy`)
    const allowed = policy.allowed_providers
    if (allowed !== undefined && !allowed.includes(providerOf(bh.model_id))) {
      return fail('BACKEND_SWITCH_DENIED', `provider ${providerOf(bh.model_id)} is not in the session's allowed_providers`)
    }
  }
  part.status = p.status ?? 'idle'
  ctx.dirty = true
  // SPEC §9.3: a resumed HEARTBEAT restores the participant and its SUSPENDED intents.
  if (!part.is_available) {
    part.is_available = true
    st.arrive(sender)
    ownerRejoin(st, ctx, sender)
  }
  if (bh !== undefined) backendHealth(st, ctx, part, bh)
  return ECHO
}

function backendHealth (st: CoreState, ctx: Ctx, part: Participant, bh: BackendHealth): void {
  const prev = part.backend_provider_status
  part.backend_model_id = bh.model_id
  part.backend_provider = providerOf(bh.model_id)
  part.backend_provider_status = bh.provider_status
  const policy = st.s.backendHealthPolicy
  if (policy?.enabled !== true || bh.provider_status === prev) return
  const status = bh.provider_status
  const alert = (): void => {
    st.emit(ctx, 'COORDINATOR_STATUS', {
      ...statusPayload(st, 'backend_alert'),
      affected_principal: part.principal_id,
      backend_detail: { model_id: bh.model_id, provider_status: status, status_detail: bh.status_detail ?? null, alternatives: bh.alternatives ?? [] }
    }, ALL)
  }
  if (status === 'down' || status === 'degraded') {
    const action = status === 'down' ? policy.on_down ?? 'suspend_and_claim' : policy.on_degraded ?? 'warn'
    if (action === 'ignore') return
    alert()
    if (action !== 'suspend_and_claim') return
    for (const i of st.liveIntentsOf(part.principal_id)) {
      if (i.state !== 'ACTIVE') continue
      suspendIntent(st, ctx, i)
      i.backend_suspended = true
      st.emit(ctx, 'INTENT_UPDATE', { intent_id: i.intent_id, objective: `[SUSPENDED: backend ${status}] ${i.objective}` }, ALL)
    }
  } else if (status === 'operational' && (prev === 'down' || prev === 'degraded')) {
    // TS-REC §9.7: announce the recovery; fix L6: undo backend suspensions.
    alert()
    if (!part.is_available) return
    for (const i of st.liveIntentsOf(part.principal_id)) {
      if (i.state === 'SUSPENDED' && i.backend_suspended && i.claimed_by === null) restoreIntent(st, ctx, i)
    }
  }
}

export function handleGoodbye (st: CoreState, ctx: Ctx, p: Payload<'GOODBYE'>, sender: string): Terminal {
  const part = st.participants.get(sender) as Participant
  part.is_available = false
  part.status = 'offline'
  st.depart(sender)
  ctx.dirty = true
  if (st.closed) return RELAY
  const disposition = p.intent_disposition ?? 'withdraw'
  const listed = p.active_intents !== undefined && p.active_intents.length > 0
    ? p.active_intents.map(id => st.intents.get(id)).filter(i => i !== undefined)
    : st.liveIntentsOf(sender)
  for (const i of listed) {
    // Only the departing participant's own intents (SPEC §8.1).
    if (i.principal_id !== sender || !isLive(i)) continue
    if (disposition === 'transfer') {
      if (i.state === 'ACTIVE') suspendIntent(st, ctx, i)
    } else if (disposition !== 'expire') {
      terminateIntent(st, ctx, i, 'WITHDRAWN')
    }
  }
  // SPEC §4.4: the departing participant's in-flight proposals are ABANDONED. No OP_REJECT is
  // emitted (the op is not REJECTED); peers learn of it from the GOODBYE relay, which now goes to all.
  for (const o of st.pendingOps(st.pendingByPrincipal, sender)) {
    st.setOpState(ctx, o, 'ABANDONED')
    ctx.needsSweep = true
  }
  settle(st, ctx)
  return RELAY
}

/** SPEC §5.4 D: silent for longer than the timeout (strictly greater), not offline. */
export function checkLiveness (st: CoreState, ctx: Ctx): void {
  const limit = st.s.unavailabilityTimeoutSec * 1000
  for (const part of st.participants.values()) {
    if (!part.is_available || part.status === 'offline' || ctx.now - part.last_seen <= limit) continue
    part.is_available = false
    st.depart(part.principal_id)
    ctx.dirty = true
    for (const o of st.pendingOps(st.pendingByPrincipal, part.principal_id)) st.setOpState(ctx, o, 'ABANDONED')
    for (const i of st.liveIntentsOf(part.principal_id)) if (i.state === 'ACTIVE') suspendIntent(st, ctx, i)
    st.emit(ctx, 'PROTOCOL_ERROR', protocolErrorPayload({
      code: 'PARTICIPANT_UNAVAILABLE',
      refersTo: part.last_message_id,
      description: `Participant ${part.principal_id} has been silent for more than ${st.s.unavailabilityTimeoutSec} s and is unavailable; its intents are suspended`,
      extra: { principal_id: part.principal_id }
    }), ALL)
    ctx.needsSweep = true
  }
}

export function nextLivenessDeadline (st: CoreState): number | undefined {
  const limit = st.s.unavailabilityTimeoutSec * 1000
  let min: number | undefined
  for (const part of st.participants.values()) {
    if (!part.is_available || part.status === 'offline') continue
    const t = part.last_seen + limit + 1
    if (min === undefined || t < min) min = t
  }
  return min
}

/** SPEC §8.1.1.1: COORDINATOR_STATUS at least once per heartbeat interval. */
export function statusHeartbeat (st: CoreState, ctx: Ctx): void {
  if (st.statusDueAt === null || ctx.now < st.statusDueAt) return
  st.emit(ctx, 'COORDINATOR_STATUS', { ...statusPayload(st, 'heartbeat'), snapshot_lamport_clock: st.clock.lamport }, ALL)
  st.statusDueAt = ctx.now + st.s.heartbeatIntervalSec * 1000
}
