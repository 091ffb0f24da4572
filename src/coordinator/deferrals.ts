/**
 * INTENT_DEFERRED (protocol.md §4.10): a non-claiming "stepping back" hint.
 * One resolution rule is used both at arrival and on every intent
 * termination (fix I7): a deferral with at least one observation resolves
 * when every observed intent id is terminal or unknown and no observed
 * principal (from `observed_principals`, or a principal id mislabelled in
 * `observed_intent_ids`) still holds a live intent.
 */
import type { IntentDeferredActivePayload } from '../protocol/schemas.js'
import { formatTsOffset } from '../protocol/time.js'
import { ALL, ECHO, fail, nextId, type Ctx, type Terminal } from './envelopes.js'
import { addTo, copyJson, isLive, removeFrom, TERMINAL_INTENT, type CoreState, type Deferral } from './state.js'

function principalHasLive (st: CoreState, pid: string): boolean {
  const s = st.liveByPrincipal.get(pid)
  return s !== undefined && s.size > 0
}

function isPrincipal (st: CoreState, id: string): boolean {
  return st.participants.has(id) || st.liveByPrincipal.has(id)
}

/** Is this observed id still "alive" (a live intent, or a principal with a live intent)? */
function idAlive (st: CoreState, id: string): boolean {
  const i = st.intents.get(id)
  if (i !== undefined) return isLive(i)
  return isPrincipal(st, id) && principalHasLive(st, id)
}

export function deferralSatisfied (st: CoreState, d: Deferral): boolean {
  if (d.observed_intent_ids.length === 0 && d.observed_principals.length === 0) return false
  for (const id of d.observed_intent_ids) if (idAlive(st, id)) return false
  for (const pid of d.observed_principals) if (principalHasLive(st, pid)) return false
  return true
}

function resolve (st: CoreState, ctx: Ctx, d: Deferral, status: 'resolved' | 'expired', reason: string): void {
  removeDeferral(st, d)
  st.emit(ctx, 'INTENT_DEFERRED', { deferral_id: d.deferral_id, principal_id: d.principal_id, status, reason }, ALL)
}

function indexDeferral (st: CoreState, d: Deferral): void {
  for (const id of d.observed_intent_ids) addTo(st.deferralsByObserved, id, d.deferral_id)
  for (const id of d.observed_principals) addTo(st.deferralsByObserved, id, d.deferral_id)
}

function unindexDeferral (st: CoreState, d: Deferral): void {
  for (const id of d.observed_intent_ids) removeFrom(st.deferralsByObserved, id, d.deferral_id)
  for (const id of d.observed_principals) removeFrom(st.deferralsByObserved, id, d.deferral_id)
}

/** Registers a deferral (new: a fresh `seq`; from a snapshot: its own) with its indexes and TTL. */
export function addDeferral (st: CoreState, d: Deferral): void {
  if (!(d.seq > 0)) d.seq = ++st.deferralSeq
  else if (d.seq > st.deferralSeq) st.deferralSeq = d.seq
  st.deferrals.set(d.deferral_id, d)
  addTo(st.deferralsByPrincipal, d.principal_id, d.deferral_id)
  indexDeferral(st, d)
  st.deferralExpiry.pushCompacting(d.expires_at, d.deferral_id, (t, id) => current(st, id, t) !== undefined)
}

function removeDeferral (st: CoreState, d: Deferral): void {
  st.deferrals.delete(d.deferral_id)
  removeFrom(st.deferralsByPrincipal, d.principal_id, d.deferral_id)
  unindexDeferral(st, d)
}

export function clearDeferrals (st: CoreState): void {
  st.deferrals.clear()
  st.deferralsByPrincipal.clear()
  st.deferralsByObserved.clear()
  st.deferralExpiry.clear()
}

export function handleDeferred (st: CoreState, ctx: Ctx, p: IntentDeferredActivePayload, sender: string): Terminal {
  const existing = p.deferral_id !== undefined ? st.deferrals.get(p.deferral_id) : undefined
  if (existing !== undefined && existing.principal_id !== sender) {
    return fail('INVALID_REFERENCE', `deferral ${existing.deferral_id} belongs to another principal`)
  }
  const ttl = typeof p.ttl_sec === 'number' && p.ttl_sec >= 0 ? p.ttl_sec : st.s.deferralTtlSec
  const d: Deferral = {
    deferral_id: p.deferral_id ?? nextId(st.clock),
    principal_id: sender,
    scope: copyJson(p.scope),
    reason: p.reason ?? 'yielded',
    observed_intent_ids: [...(p.observed_intent_ids ?? [])],
    observed_principals: [...(p.observed_principals ?? [])],
    category: p.category === 'duplicate_yield' ? 'duplicate_yield' : 'queue',
    received_at: ctx.now,
    expires_at: ctx.now + Math.round(ttl * 1000),
    seq: 0
  }
  // Re-using an id replaces that deferral (idempotent retry).
  if (existing !== undefined) removeDeferral(st, existing)
  addDeferral(st, d)
  st.emit(ctx, 'INTENT_DEFERRED', {
    deferral_id: d.deferral_id,
    principal_id: d.principal_id,
    scope: copyJson(d.scope),
    reason: d.reason,
    observed_intent_ids: [...d.observed_intent_ids],
    observed_principals: [...d.observed_principals],
    expires_at: formatTsOffset(d.expires_at),
    category: d.category
  }, ALL)
  // SPEC v0.1.15: the rules are also evaluated at arrival.
  if (deferralSatisfied(st, d)) resolve(st, ctx, d, 'resolved', 'observed_intents_terminated')
  return ECHO
}

function bySeq (st: CoreState, ids: Iterable<string>): Deferral[] {
  const out: Deferral[] = []
  for (const id of ids) {
    const d = st.deferrals.get(id)
    if (d !== undefined) out.push(d)
  }
  return out.sort((a, b) => a.seq - b.seq)
}

/**
 * Termination path (every one, fix I6): re-evaluate deferrals that mention
 * the intent or its owner (found through the observed-id index), in
 * insertion order.
 */
export function cleanupDeferrals (st: CoreState, ctx: Ctx, done: ReadonlyArray<{ intentId: string, principalId: string }>): void {
  if (st.deferrals.size === 0) return
  const ids = new Set<string>()
  for (const t of done) {
    for (const key of [t.intentId, t.principalId]) {
      const s = st.deferralsByObserved.get(key)
      if (s !== undefined) for (const id of s) ids.add(id)
    }
  }
  if (ids.size === 0) return
  for (const d of bySeq(st, ids)) {
    let mentioned = false
    for (const t of done) {
      if (d.observed_intent_ids.includes(t.intentId) || d.observed_intent_ids.includes(t.principalId) || d.observed_principals.includes(t.principalId)) {
        mentioned = true
        break
      }
    }
    if (!mentioned) continue
    if (deferralSatisfied(st, d)) {
      resolve(st, ctx, d, 'resolved', 'observed_intents_terminated')
    } else {
      const pruned = d.observed_intent_ids.filter(id => {
        const i = st.intents.get(id)
        return i === undefined ? !isPrincipal(st, id) || principalHasLive(st, id) : !TERMINAL_INTENT.has(i.state)
      })
      if (pruned.length !== d.observed_intent_ids.length) {
        unindexDeferral(st, d)
        d.observed_intent_ids = pruned
        indexDeferral(st, d)
        ctx.dirty = true
      }
    }
  }
}

/** SPEC §5.4 H: an INTENT_ANNOUNCE by P resolves every deferral held by P. */
export function resolveForPrincipal (st: CoreState, ctx: Ctx, pid: string): void {
  const ids = st.deferralsByPrincipal.get(pid)
  if (ids === undefined) return
  for (const d of bySeq(st, ids)) resolve(st, ctx, d, 'resolved', 'principal_announced')
}

/** A heap entry is current when its deferral still exists with that deadline. */
function current (st: CoreState, id: string, t: number): Deferral | undefined {
  const d = st.deferrals.get(id)
  return d !== undefined && d.expires_at === t ? d : undefined
}

export function expireDeferrals (st: CoreState, ctx: Ctx): void {
  const due = new Set<string>()
  for (;;) {
    const t = st.deferralExpiry.peekTime()
    if (t === undefined || t > ctx.now) break
    const id = st.deferralExpiry.peekId() as string
    st.deferralExpiry.pop()
    if (current(st, id, t) !== undefined) due.add(id)
  }
  for (const d of bySeq(st, due)) resolve(st, ctx, d, 'expired', 'ttl')
}

export function nextDeferralDeadline (st: CoreState): number | undefined {
  for (;;) {
    const t = st.deferralExpiry.peekTime()
    if (t === undefined) return undefined
    if (current(st, st.deferralExpiry.peekId() as string, t) !== undefined) return t
    st.deferralExpiry.pop()
  }
}
