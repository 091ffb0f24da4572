/**
 * INTENT_ANNOUNCE, INTENT_UPDATE, INTENT_WITHDRAW (protocol.md §4.7–§4.9)
 * with the cross-principal race lock (§6.4, fix I2; in admission.ts), the
 * same-principal auto-supersede (§6.7, same kind only: fix I10) and TTL expiry (§9.4).
 */
import type { Payload } from '../protocol/schemas.js'
import { normalizeScope, isIndexableKind, type NormalizedScope } from '../protocol/scope.js'
import { protocolErrorPayload } from '../protocol/protocol-error.js'
import { fail, RELAY, SENDER, type Ctx, type Terminal } from './envelopes.js'
import { resolveForPrincipal } from './deferrals.js'
import { announceFrozen, conflictHits, detectConflicts, openConflictCeiling } from './conflicts.js'
import { settle, terminateIntent } from './cascades.js'
import { raceLock, reservedByClaim, staleIntent, ttlDeadline } from './admission.js'
import { overlaps } from './overlap.js'
import { impactFiles } from './scope-index.js'
import { copyJson, isLive, type CoreState, type Intent } from './state.js'

/** Same-principal ACTIVE intents of the same kind whose scope overlaps (fix I10). */
function supersedable (st: CoreState, norm: NormalizedScope, pid: string): Intent[] {
  const out: Intent[] = []
  if (isIndexableKind(norm.kind)) {
    const seen = new Set<string>()
    for (const item of norm.items) {
      const ids = st.index.holders(norm.kind, item)
      if (ids !== undefined) for (const id of ids) seen.add(id)
    }
    if (norm.canonicalUris !== undefined) for (const i of st.liveIntentsOf(pid)) seen.add(i.intent_id)
    for (const id of seen) {
      const i = st.intents.get(id)
      if (i !== undefined && i.principal_id === pid && i.state === 'ACTIVE' && i.norm.kind === norm.kind && overlaps(i.norm, norm, false)) out.push(i)
    }
  } else {
    for (const i of st.liveIntentsOf(pid)) {
      if (i.state === 'ACTIVE' && i.norm.kind === norm.kind && overlaps(i.norm, norm, false)) out.push(i)
    }
  }
  return out.sort((a, b) => a.seq - b.seq)
}

/** --max-scope-files: a scope naming more resources than one intent may hold. */
function scopeCeiling (st: CoreState, norm: NormalizedScope): Terminal | undefined {
  if (norm.items.size <= st.s.maxScopeFiles) return undefined
  return fail('MALFORMED_MESSAGE',
    `payload.scope names ${norm.items.size} resources; an intent scope may name at most ${st.s.maxScopeFiles} (max_scope_files); split the work into several intents`,
    { limit: 'max_scope_files', limit_value: st.s.maxScopeFiles })
}

/** --max-intents-per-participant and --max-intents-per-session for an announce that ends `ending` live intents of the sender. */
function intentCeiling (st: CoreState, sender: string, ending: number): Terminal | undefined {
  const own = (st.liveByPrincipal.get(sender)?.size ?? 0) - ending
  if (own >= st.s.maxIntentsPerParticipant) {
    return fail('AUTHORIZATION_FAILED',
      `live intent limit reached: a participant may hold at most ${st.s.maxIntentsPerParticipant} live intents (max_intents_per_participant); withdraw one first`,
      { limit: 'max_intents_per_participant', limit_value: st.s.maxIntentsPerParticipant })
  }
  if (st.liveIntentCount() - ending >= st.s.maxIntentsPerSession) {
    return fail('AUTHORIZATION_FAILED',
      `live intent limit reached: the session may hold at most ${st.s.maxIntentsPerSession} live intents (max_intents_per_session)`,
      { limit: 'max_intents_per_session', limit_value: st.s.maxIntentsPerSession })
  }
  return undefined
}

export function handleAnnounce (st: CoreState, ctx: Ctx, p: Payload<'INTENT_ANNOUNCE'>, sender: string, messageId: string): Terminal {
  // Fix I1: an intent id is never re-used (another principal's would be a hijack).
  if (st.intents.has(p.intent_id)) return fail('INVALID_REFERENCE', `intent ${p.intent_id} already exists`)
  const claim = reservedByClaim(st, p.intent_id)
  if (claim !== undefined) return fail('INVALID_REFERENCE', `intent id ${p.intent_id} is reserved by the pending claim ${claim.claim_id}`)
  let explicit: Intent | undefined
  if (p.supersedes_intent_id !== undefined) {
    explicit = st.intents.get(p.supersedes_intent_id)
    if (explicit === undefined || !isLive(explicit)) return fail('INVALID_REFERENCE', `supersedes_intent_id ${p.supersedes_intent_id} is not a live intent`)
    // SPEC §15.6.1: the superseded intent must have the same owner.
    if (explicit.principal_id !== sender) return fail('AUTHORIZATION_FAILED', `intent ${explicit.intent_id} is not owned by ${sender}`)
  }
  const scope = copyJson(p.scope)
  const norm = normalizeScope(scope)
  const tooBig = scopeCeiling(st, norm)
  if (tooBig !== undefined) return tooBig
  // SPEC §7.5: an announce fully inside a frozen scope MUST be rejected.
  const frozen = announceFrozen(st, norm)
  if (frozen === 'reject') return fail('SCOPE_FROZEN', 'the announced scope lies inside a frozen scope')
  // SPEC §15.3.2: an overlap with another principal's ACTIVE intent MUST be rejected with STALE_INTENT.
  const hit = raceLock(st, norm, sender, norm.items)
  if (hit !== undefined) return staleIntent(hit, { intent_id: p.intent_id, principal_id: sender, objective: p.objective, scope: p.scope })

  const old = supersedable(st, norm, sender)
  if (explicit !== undefined && !old.includes(explicit)) old.push(explicit)
  // Ceilings, checked before anything changes (superseded intents make room).
  const full = intentCeiling(st, sender, old.length)
  if (full !== undefined) return full
  const opening = conflictHits(st, { intent_id: p.intent_id, principal_id: sender, norm, impact: impactFiles(scope), scope }, false).length
  const conflicted = openConflictCeiling(st, opening)
  if (conflicted !== undefined) return conflicted
  for (const i of old) terminateIntent(st, ctx, i, 'SUPERSEDED')

  const intent = st.newIntent({
    intent_id: p.intent_id,
    principal_id: sender,
    state: 'ACTIVE',
    objective: p.objective,
    scope,
    received_at: ctx.now,
    expires_at: ttlDeadline(st, ctx.now, p.ttl_sec, p.expiry_ms),
    ttl_sec: typeof p.ttl_sec === 'number' ? p.ttl_sec : null,
    last_message_id: messageId,
    claimed_by: null,
    priority: p.priority ?? null,
    assumptions: p.assumptions !== undefined ? [...p.assumptions] : [],
    parent_intent_id: p.parent_intent_id ?? null
  })
  st.addIntent(ctx, intent)
  detectConflicts(st, ctx, intent, false)
  settle(st, ctx)
  resolveForPrincipal(st, ctx, sender)
  // SPEC §7.5: a partial overlap with a frozen scope is accepted with a warning.
  if (frozen === 'warn') {
    st.emit(ctx, 'PROTOCOL_ERROR', protocolErrorPayload({ code: 'SCOPE_FROZEN', refersTo: messageId, description: 'the announced scope partially overlaps a frozen scope (warning; the intent is registered)' }), SENDER)
  }
  return RELAY
}

export function handleUpdate (st: CoreState, ctx: Ctx, p: Payload<'INTENT_UPDATE'>, sender: string, messageId: string): Terminal {
  const i = st.intents.get(p.intent_id)
  if (i === undefined) return fail('INVALID_REFERENCE', `unknown intent ${p.intent_id}`)
  // Fix I8: only the owner may update (SPEC §15.6.1).
  if (i.principal_id !== sender) return fail('AUTHORIZATION_FAILED', `intent ${p.intent_id} is owned by ${i.principal_id}`)
  if (i.state !== 'ACTIVE') return fail('INVALID_REFERENCE', `intent ${p.intent_id} is ${i.state}`)
  let norm: NormalizedScope | undefined
  const scope = p.scope !== undefined ? copyJson(p.scope) : undefined
  if (scope !== undefined) {
    norm = normalizeScope(scope)
    const tooBig = scopeCeiling(st, norm)
    if (tooBig !== undefined) return tooBig
    // Fix I3: the race lock also applies to the newly added resources of an update.
    const added: string[] = []
    for (const item of norm.items) if (i.norm.kind !== norm.kind || !i.norm.items.has(item)) added.push(item)
    const hit = raceLock(st, norm, sender, added, i.intent_id)
    if (hit !== undefined) return staleIntent(hit)
    const opening = conflictHits(st, { intent_id: i.intent_id, principal_id: sender, norm, impact: impactFiles(scope), scope }, true).length
    const conflicted = openConflictCeiling(st, opening)
    if (conflicted !== undefined) return conflicted
  }
  if (p.objective !== undefined) i.objective = p.objective
  if (p.assumptions !== undefined) i.assumptions = [...p.assumptions]
  if (typeof p.ttl_sec === 'number') {
    i.ttl_sec = p.ttl_sec
    st.setExpiry(ctx, i, ttlDeadline(st, ctx.now, p.ttl_sec))
  }
  i.last_message_id = messageId
  ctx.dirty = true
  if (scope !== undefined && norm !== undefined) {
    st.rescope(ctx, i, scope, norm)
    detectConflicts(st, ctx, i, true)
  }
  return RELAY
}

export function handleWithdraw (st: CoreState, ctx: Ctx, p: Payload<'INTENT_WITHDRAW'>, sender: string): Terminal {
  const i = st.intents.get(p.intent_id)
  if (i === undefined) return fail('INVALID_REFERENCE', `unknown intent ${p.intent_id}`)
  if (i.principal_id !== sender) return fail('AUTHORIZATION_FAILED', `intent ${p.intent_id} is owned by ${i.principal_id}`)
  if (!isLive(i)) return fail('INVALID_REFERENCE', `intent ${p.intent_id} is ${i.state}`)
  terminateIntent(st, ctx, i, 'WITHDRAWN')
  settle(st, ctx)
  return RELAY
}

/**
 * SPEC §9.4: every live intent with now ≥ expires_at → EXPIRED, with its
 * cascade, earliest deadline first and then in registration order. The heap
 * alone does not fix the order of equal deadlines (it depends on its history,
 * which a restored coordinator does not share), so due intents are sorted.
 */
export function expireIntents (st: CoreState, ctx: Ctx): void {
  const due: Intent[] = []
  const seen = new Set<string>()
  for (;;) {
    const t = st.expiry.peekTime()
    if (t === undefined || t > ctx.now) break
    const id = st.expiry.peekId() as string
    st.expiry.pop()
    const i = st.intents.get(id)
    if (i === undefined || !isLive(i) || i.expires_at !== t || seen.has(id)) continue
    seen.add(id)
    due.push(i)
  }
  if (due.length > 1) due.sort((a, b) => (a.expires_at as number) - (b.expires_at as number) || a.seq - b.seq)
  for (const i of due) terminateIntent(st, ctx, i, 'EXPIRED')
}

export function nextExpiry (st: CoreState): number | undefined {
  for (;;) {
    const t = st.expiry.peekTime()
    if (t === undefined) return undefined
    const i = st.intents.get(st.expiry.peekId() as string)
    if (i !== undefined && isLive(i) && i.expires_at === t) return t
    st.expiry.pop()
  }
}
