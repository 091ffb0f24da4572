/**
 * INTENT_DEFERRED (protocol.md §4.10): a non-claiming "stepping back" hint.
 * One resolution rule is used both at arrival and on every intent
 * termination (fix I7): a deferral with at least one observation resolves
 * when every observed intent id is terminal or unknown and no observed
 * principal (from `observed_principals`, or a principal id mislabelled in
 * `observed_intent_ids`) still holds a live intent.
 */
import type { Scope } from '../protocol/scope.js'
import { formatTsOffset } from '../protocol/time.js'
import { ALL, ECHO, fail, nextId, type Ctx, type Terminal } from './envelopes.js'
import { copyJson, isLive, TERMINAL_INTENT, type CoreState, type Deferral } from './state.js'

interface DeferredPayload {
  deferral_id?: string
  scope: Scope
  reason?: string
  observed_intent_ids?: string[]
  observed_principals?: string[]
  ttl_sec?: number
  category?: string
}

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
  st.deferrals.delete(d.deferral_id)
  st.emit(ctx, 'INTENT_DEFERRED', { deferral_id: d.deferral_id, principal_id: d.principal_id, status, reason }, ALL)
}

export function handleDeferred (st: CoreState, ctx: Ctx, p: DeferredPayload, sender: string): Terminal {
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
    expires_at: ctx.now + Math.round(ttl * 1000)
  }
  // Re-using an id replaces that deferral (idempotent retry).
  st.deferrals.delete(d.deferral_id)
  st.deferrals.set(d.deferral_id, d)
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

/** Termination path (every one, fix I6): re-evaluate deferrals that mention the intent or its owner. */
export function cleanupDeferrals (st: CoreState, ctx: Ctx, done: ReadonlyArray<{ intentId: string, principalId: string }>): void {
  if (st.deferrals.size === 0) return
  for (const d of [...st.deferrals.values()]) {
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
        d.observed_intent_ids = pruned
        ctx.dirty = true
      }
    }
  }
}

/** SPEC §5.4 H: an INTENT_ANNOUNCE by P resolves every deferral held by P. */
export function resolveForPrincipal (st: CoreState, ctx: Ctx, pid: string): void {
  if (st.deferrals.size === 0) return
  for (const d of [...st.deferrals.values()]) if (d.principal_id === pid) resolve(st, ctx, d, 'resolved', 'principal_announced')
}

export function expireDeferrals (st: CoreState, ctx: Ctx): void {
  for (const d of [...st.deferrals.values()]) if (ctx.now >= d.expires_at) resolve(st, ctx, d, 'expired', 'ttl')
}

export function nextDeferralDeadline (st: CoreState): number | undefined {
  let min: number | undefined
  for (const d of st.deferrals.values()) if (min === undefined || d.expires_at < min) min = d.expires_at
  return min
}
