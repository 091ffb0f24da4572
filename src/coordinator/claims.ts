/**
 * INTENT_CLAIM and the pending-claim sweep (protocol.md §4.11, §9.5, §5.4 E/F)
 * with the TS validation (fix L7): the original owner must be named
 * correctly, the claimer must hold contributor or higher, the new scope must
 * equal or narrow the original, and the race lock applies. Core sessions
 * approve after the grace period; governance sessions approve when an
 * available owner or arbiter other than the claimer exists (PY-style
 * automatic approval, recorded in approved_by).
 */
import type { Payload } from '../protocol/schemas.js'
import { isDeepStrictEqual } from 'node:util'
import { isIndexableKind, normalizeScope, scopeContains, type NormalizedScope } from '../protocol/scope.js'
import { ALL, fail, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { detectConflicts } from './conflicts.js'
import { restoreIntent, terminateIntent } from './cascades.js'
import { raceLock, reservedByClaim, staleIntent, ttlDeadline } from './admission.js'
import { overlaps } from './overlap.js'
import { copyJson, isLive, type Claim, type CoreState } from './state.js'

/**
 * Does `inner` equal or narrow `outer`? Same indexable kind: a subset. Files
 * inside a glob: each file matches it. The same glob, or an identical scope
 * of another kind. Anything else (another kind, a wider or different glob)
 * is not known to be narrower, so it is not.
 */
function narrows (outer: NormalizedScope, inner: NormalizedScope): boolean {
  if (outer.kind === inner.kind && isIndexableKind(outer.kind)) return scopeContains(outer, inner)
  if (outer.kind === 'resource_path' && inner.kind === 'file_set') {
    for (const f of inner.items) if (!overlaps(outer, normalizeScope({ kind: 'file_set', resources: [f] }), false)) return false
    return true
  }
  if (outer.kind === 'resource_path' && inner.kind === 'resource_path') return outer.pattern === inner.pattern
  return outer.kind === inner.kind && isDeepStrictEqual(outer.raw, inner.raw)
}

export function handleClaim (st: CoreState, ctx: Ctx, p: Payload<'INTENT_CLAIM'>, sender: string, messageId: string): Terminal {
  const orig = st.intents.get(p.original_intent_id)
  if (orig === undefined) return fail('INVALID_REFERENCE', `unknown intent ${p.original_intent_id}`)
  // SPEC §15.6.2: first claim wins.
  if (st.claims.has(orig.intent_id)) return fail('CLAIM_CONFLICT', `intent ${orig.intent_id} already has a pending claim`)
  if (orig.state === 'TRANSFERRED') return fail('CLAIM_CONFLICT', `intent ${orig.intent_id} was already transferred`)
  // SPEC: a claim must target a SUSPENDED intent.
  if (orig.state !== 'SUSPENDED') return fail('INVALID_REFERENCE', `intent ${orig.intent_id} is ${orig.state}, not SUSPENDED`)
  if (orig.principal_id !== p.original_principal_id) return fail('INVALID_REFERENCE', `intent ${orig.intent_id} is owned by ${orig.principal_id}, not ${p.original_principal_id}`)
  if (orig.principal_id === sender) return fail('INVALID_REFERENCE', 'the owner resumes its own intent by HELLO or HEARTBEAT, not by a claim')
  if (!st.hasRole(sender, 'contributor', 'reviewer', 'owner', 'arbiter')) return fail('AUTHORIZATION_FAILED', 'claiming an intent requires the contributor role or higher')
  if (st.intents.has(p.new_intent_id)) return fail('INVALID_REFERENCE', `intent ${p.new_intent_id} already exists`)
  if (reservedByClaim(st, p.new_intent_id) !== undefined) return fail('INVALID_REFERENCE', `intent id ${p.new_intent_id} is reserved by another pending claim`)
  const norm = normalizeScope(p.scope)
  // SPEC §15.6.2: the new scope must equal or narrow the original.
  if (!narrows(orig.norm, norm)) return fail('INVALID_REFERENCE', `the claimed scope is not contained in the scope of intent ${orig.intent_id}`)
  const hit = raceLock(st, norm, sender, norm.items, orig.intent_id)
  if (hit !== undefined) return staleIntent(hit)
  st.claims.set(orig.intent_id, {
    claim_id: p.claim_id,
    original_intent_id: orig.intent_id,
    original_principal_id: orig.principal_id,
    new_intent_id: p.new_intent_id,
    claimer: sender,
    objective: p.objective,
    scope: copyJson(p.scope),
    justification: p.justification ?? null,
    submitted_at: ctx.now,
    message_id: messageId
  })
  orig.claimed_by = sender
  ctx.dirty = true
  return RELAY
}

function status (st: CoreState, ctx: Ctx, c: Claim, decision: string, extra: Record<string, unknown>): void {
  st.emit(ctx, 'INTENT_CLAIM_STATUS', { claim_id: c.claim_id, original_intent_id: c.original_intent_id, ...extra, decision }, ALL)
}

function approver (st: CoreState, c: Claim): string | undefined {
  for (const p of st.participants.values()) {
    if (p.is_available && p.principal_id !== c.claimer && (p.roles.includes('owner') || p.roles.includes('arbiter'))) return p.principal_id
  }
  return undefined
}

function approve (st: CoreState, ctx: Ctx, c: Claim, approvedBy: string | null): void {
  const orig = st.intents.get(c.original_intent_id)
  st.claims.delete(c.original_intent_id)
  if (orig === undefined) return
  if (st.intents.has(c.new_intent_id)) {
    // Unreachable while pending claims reserve their id; never overwrite an intent.
    orig.claimed_by = null
    status(st, ctx, c, 'rejected', { reason: 'new_intent_id_taken' })
    return
  }
  status(st, ctx, c, 'approved', { new_intent_id: c.new_intent_id, approved_by: approvedBy })
  // SPEC §5.4 F: original → TRANSFERRED (cascade), replacement ACTIVE, overlap detection.
  terminateIntent(st, ctx, orig, 'TRANSFERRED')
  const intent = st.newIntent({
    intent_id: c.new_intent_id,
    principal_id: c.claimer,
    state: 'ACTIVE',
    objective: c.objective,
    scope: c.scope,
    received_at: ctx.now,
    expires_at: ttlDeadline(st, ctx.now, undefined),
    ttl_sec: null,
    last_message_id: c.message_id,
    claimed_by: null,
    priority: orig.priority,
    assumptions: [],
    parent_intent_id: orig.intent_id
  })
  st.addIntent(ctx, intent)
  detectConflicts(st, ctx, intent, false)
}

/** protocol.md §3 step 8: re-evaluate every pending claim. */
export function sweepClaims (st: CoreState, ctx: Ctx): void {
  if (st.claims.size === 0) return
  for (const c of [...st.claims.values()]) {
    const orig = st.intents.get(c.original_intent_id)
    if (orig === undefined || orig.state !== 'SUSPENDED') {
      st.claims.delete(c.original_intent_id)
      if (orig !== undefined && isLive(orig)) orig.claimed_by = null
      status(st, ctx, c, 'rejected', { reason: orig === undefined ? 'original_intent_missing' : 'intent_no_longer_suspended' })
      continue
    }
    if (st.s.complianceProfile === 'governance') {
      const who = approver(st, c)
      if (who !== undefined) approve(st, ctx, c, who)
    } else if (ctx.now - c.submitted_at >= st.s.intentClaimGraceSec * 1000) {
      approve(st, ctx, c, null)
    }
  }
}

export function nextClaimDeadline (st: CoreState): number | undefined {
  if (st.s.complianceProfile === 'governance') return undefined
  let min: number | undefined
  for (const c of st.claims.values()) {
    const t = c.submitted_at + st.s.intentClaimGraceSec * 1000
    if (min === undefined || t < min) min = t
  }
  return min
}

/**
 * SPEC §5.4 E: pending claims on intents really owned by the returning
 * principal are withdrawn (matched by the intent's owner, fix L7), then its
 * unclaimed SUSPENDED intents become ACTIVE with their FROZEN ops PROPOSED.
 */
export function ownerRejoin (st: CoreState, ctx: Ctx, pid: string): void {
  for (const c of [...st.claims.values()]) {
    const orig = st.intents.get(c.original_intent_id)
    if (orig === undefined || orig.principal_id !== pid) continue
    st.claims.delete(c.original_intent_id)
    orig.claimed_by = null
    status(st, ctx, c, 'withdrawn', { reason: 'original_owner_rejoined' })
    if (orig.state === 'SUSPENDED') restoreIntent(st, ctx, orig)
  }
  for (const i of st.liveIntentsOf(pid)) {
    if (i.state === 'SUSPENDED' && i.claimed_by === null) restoreIntent(st, ctx, i)
  }
}
