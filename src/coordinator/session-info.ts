/**
 * HELLO admission (protocol.md §4.1, §8.2, §10.2), the SESSION_INFO payload
 * with exactly the PY field set (§4.2), the sideband session summary
 * (§11.3) and the SESSION_CLOSE summary (§4.5).
 */
import type { Payload } from '../protocol/schemas.js'
import { formatTs } from '../protocol/time.js'
import { fail, type Ctx, type Terminal } from './envelopes.js'
import { ownerRejoin } from './claims.js'
import type { CoreState, Intent, Participant } from './state.js'
import type { Credential, Verdict } from './types.js'

/** SPEC §8.2 role policy evaluation (the joining principal is excluded from max_count). */
function evaluatePolicy (st: CoreState, pid: string, ptype: string, requested: readonly string[], leaving: string | undefined): string[] {
  const policy = st.s.rolePolicy as NonNullable<CoreState['s']['rolePolicy']>
  // Own keys only: a principal id such as `constructor` must not find Object.prototype members.
  const assigned = policy.role_assignments !== undefined && Object.hasOwn(policy.role_assignments, pid) ? policy.role_assignments[pid] : undefined
  const allowed = assigned ?? [policy.default_role]
  const out: string[] = []
  for (const role of requested) {
    if (!allowed.includes(role) || out.includes(role)) continue
    const c = policy.role_constraints !== undefined && Object.hasOwn(policy.role_constraints, role) ? policy.role_constraints[role] : undefined
    if (c?.allowed_principal_types !== undefined && !c.allowed_principal_types.includes(ptype)) continue
    if (c?.max_count !== undefined) {
      let n = 0
      for (const p of st.participants.values()) if (p.principal_id !== pid && p.principal_id !== leaving && p.roles.includes(role)) n++
      if (n >= c.max_count) continue
    }
    out.push(role)
  }
  return out.length > 0 ? out : [policy.default_role]
}

function grantRoles (st: CoreState, pid: string, ptype: string, requested: readonly string[], verdict: Verdict | undefined, leaving: string | undefined): string[] {
  if (verdict?.accepted === true && verdict.grantedRoles !== undefined) return [...verdict.grantedRoles]
  if (st.s.rolePolicy !== undefined) return evaluatePolicy(st, pid, ptype, requested, leaving)
  // SPEC §23.1.2: requested roles are never granted blindly in the authenticated profile.
  if (st.s.securityProfile !== 'open') return []
  // Open profile: the requested roles; none requested → contributor (fix W8; PY says "participant").
  return requested.length > 0 ? [...new Set(requested)] : ['contributor']
}

/**
 * The participant a full session forgets to admit a newcomer: the first (in
 * roster order) that is gone (GOODBYE or unavailable) and holds nothing
 * (CoreState.forgettableParticipant). It must HELLO again.
 */
function forgettable (st: CoreState): string | undefined {
  for (const p of st.participants.values()) if (st.forgettableParticipant(p)) return p.principal_id
  return undefined
}

/** What admitting a HELLO needs once it passed every check (helloGate). */
interface Admission { readonly verdict: Verdict | undefined, readonly leaving: string | undefined, readonly roles: string[] }

/**
 * The admission checks of a HELLO, read-only: the refusal (credential,
 * binding, a full session, no grantable role), or what admitting needs.
 * Shared by handleHello and Coordinator.helloRefusal, so the server's
 * pre-admission check and the core's own decision cannot differ.
 */
export function helloGate (st: CoreState, sender: { principal_id: string, principal_type: string }, p: Payload<'HELLO'>, verdictIn: Verdict | undefined): Terminal | Admission {
  const pid = sender.principal_id
  let verdict: Verdict | undefined
  const cred = p.credential
  if (st.s.securityProfile === 'authenticated') {
    // SPEC §23.1.2: identity is verified from the HELLO credential before admission.
    if (cred === undefined || typeof cred.type !== 'string' || cred.type === '' || typeof cred.value !== 'string' || cred.value === '') {
      return fail('CREDENTIAL_REJECTED', 'a credential with type and value is required in the authenticated profile')
    }
    if (verdictIn !== undefined) verdict = verdictIn
    else if (st.s.verifier !== undefined) {
      try {
        verdict = st.s.verifier(cred, st.clock.sessionId, pid)
      } catch (err) {
        verdict = { accepted: false, reason: `credential verifier failed: ${(err as Error).message}` }
      }
    }
    if (verdict !== undefined && !verdict.accepted) return fail('CREDENTIAL_REJECTED', verdict.reason)
    if (verdict?.accepted === true && verdict.principalId !== undefined && verdict.principalId !== pid) {
      return fail('CREDENTIAL_REJECTED', `the credential is bound to principal ${verdict.principalId}, not ${pid}`)
    }
  }
  const existing = st.participants.get(pid)
  let leaving: string | undefined
  if (existing === undefined && st.participants.size >= st.s.maxParticipants) {
    leaving = forgettable(st)
    if (leaving === undefined) return fail('AUTHORIZATION_FAILED', `the session is full (at most ${st.s.maxParticipants} participants)`)
  }
  const roles = grantRoles(st, pid, sender.principal_type, p.roles ?? [], verdict, leaving)
  if (roles.length === 0) return fail('AUTHORIZATION_FAILED', 'no role could be granted (no role policy and no roles from the credential)')
  return { verdict, leaving, roles }
}

export function handleHello (st: CoreState, ctx: Ctx, sender: { principal_id: string, principal_type: string, sender_instance_id?: string }, p: Payload<'HELLO'>, verdictIn: Verdict | undefined, messageId: string): Terminal {
  const pid = sender.principal_id
  const gate = helloGate(st, sender, p, verdictIn)
  if ('kind' in gate) return gate
  const { leaving, roles } = gate
  const cred = p.credential
  const existing = st.participants.get(pid)
  if (leaving !== undefined) st.forgetParticipant(leaving)
  const backend = p.backend
  const rec: Participant = {
    principal_id: pid,
    principal_type: sender.principal_type,
    display_name: p.display_name,
    roles,
    capabilities: [...(p.capabilities ?? [])],
    status: 'idle',
    is_available: true,
    last_seen: ctx.now,
    last_message_id: messageId,
    sender_instance_id: sender.sender_instance_id ?? null,
    joined_at: existing?.joined_at ?? ctx.now,
    backend_model_id: backend?.model_id ?? null,
    backend_provider: backend?.provider ?? null,
    backend_provider_status: backend !== undefined ? 'operational' : 'unknown'
  }
  // A re-HELLO replaces the record and keeps its roster position (Map.set on an existing key).
  st.participants.set(pid, rec)
  st.arrive(pid)
  ctx.dirty = true
  ownerRejoin(st, ctx, pid)
  return { kind: 'info', payload: sessionInfo(st, roles, cred) }
}

export function sessionInfo (st: CoreState, roles: readonly string[], cred: Credential | undefined): Record<string, unknown> {
  const s = st.s
  const liveness: Record<string, unknown> = {
    heartbeat_interval_sec: s.heartbeatIntervalSec,
    unavailability_timeout_sec: s.unavailabilityTimeoutSec,
    intent_claim_grace_period_sec: s.intentClaimGraceSec,
    resolution_timeout_sec: s.resolutionTimeoutSec
  }
  if (s.backendHealthPolicy !== undefined) liveness.backend_health_policy = { ...s.backendHealthPolicy }
  return {
    session_id: st.clock.sessionId,
    protocol_version: st.clock.version,
    security_profile: s.securityProfile,
    compliance_profile: s.complianceProfile,
    watermark_kind: 'lamport_clock',
    execution_model: s.executionModel,
    state_ref_format: 'sha256',
    governance_policy: { require_acknowledgment: true, intent_expiry_grace_sec: s.intentExpiryGraceSec },
    liveness_policy: liveness,
    participant_count: st.participants.size,
    granted_roles: [...roles],
    identity_verified: true,
    identity_method: cred?.type ?? null,
    identity_issuer: cred?.issuer ?? null,
    compatibility_errors: []
  }
}

const OPEN_STATES = new Set(['OPEN', 'ACKED', 'ESCALATED'])

/** The SESSION_SUMMARY_RESPONSE `session` object (protocol.md §11.3). */
export function summary (st: CoreState, now: number, workspaceDir: string | null): Record<string, unknown> {
  const participants = [...st.participants.values()].map(p => ({
    principal_id: p.principal_id,
    display_name: p.display_name,
    roles: [...p.roles],
    status: p.status,
    is_available: p.is_available,
    last_seen: formatTs(p.last_seen)
  }))
  // Live intents in registration order and open conflicts in creation order, through the indexes.
  const live: Intent[] = []
  for (const ids of st.liveByPrincipal.values()) {
    for (const id of ids) {
      const i = st.intents.get(id)
      if (i !== undefined) live.push(i)
    }
  }
  live.sort((a, b) => a.seq - b.seq)
  const active = live.map(i => ({ intent_id: i.intent_id, principal_id: i.principal_id, objective: i.objective, state: i.state, scope: structuredClone(i.scope), claimed_by: i.claimed_by }))
  const open: Array<Record<string, unknown>> = []
  for (const id of st.openConflicts) {
    const c = st.conflicts.get(id)
    if (c !== undefined && OPEN_STATES.has(c.state)) {
      open.push({ conflict_id: c.conflict_id, category: c.category, severity: c.severity, state: c.state, principal_a: c.principal_a, principal_b: c.principal_b, intent_a: c.intent_a, intent_b: c.intent_b, scope_frozen: c.scope_frozen })
    }
  }
  return {
    session_id: st.clock.sessionId,
    workspace_dir: workspaceDir,
    captured_at: formatTs(now),
    participant_count: participants.length,
    active_intent_count: active.length,
    open_conflict_count: open.length,
    participants,
    active_intents: active,
    open_conflicts: open
  }
}

/** SESSION_CLOSE.summary: the 12 integer keys of protocol.md §4.5. */
export function closeSummary (st: CoreState, now: number): Record<string, number> {
  // Forgotten history (CoordinatorConfig.maxFinishedRecords) still counts.
  const count = <T extends { state: string }>(m: Map<string, T>, gone: Map<string, number>, ...states: string[]): number => {
    let n = 0
    for (const x of m.values()) if (states.includes(x.state)) n++
    for (const s of states) n += gone.get(s) ?? 0
    return n
  }
  const sum = (gone: Map<string, number>): number => {
    let n = 0
    for (const v of gone.values()) n += v
    return n
  }
  const fi = st.forgotten.intents
  const fo = st.forgotten.ops
  const fc = st.forgotten.conflicts
  return {
    total_intents: st.intents.size + sum(fi),
    completed_intents: count(st.intents, fi, 'SUPERSEDED', 'TRANSFERRED'),
    expired_intents: count(st.intents, fi, 'EXPIRED'),
    withdrawn_intents: count(st.intents, fi, 'WITHDRAWN'),
    total_operations: st.ops.size + sum(fo),
    committed_operations: count(st.ops, fo, 'COMMITTED'),
    rejected_operations: count(st.ops, fo, 'REJECTED'),
    abandoned_operations: count(st.ops, fo, 'ABANDONED'),
    total_conflicts: st.conflicts.size + sum(fc),
    resolved_conflicts: count(st.conflicts, fc, 'RESOLVED', 'CLOSED'),
    total_participants: st.participants.size + st.forgotten.participants,
    duration_sec: Math.max(0, Math.floor((now - (st.startedAt ?? now)) / 1000))
  }
}
