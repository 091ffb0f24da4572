/**
 * What both a new intent (INTENT_ANNOUNCE, INTENT_UPDATE) and a claimed
 * replacement intent (INTENT_CLAIM) must pass before they take a scope and an
 * id: the cross-principal race lock on normalised paths (protocol.md §6.4,
 * fix I2) with its STALE_INTENT rejection, the ids reserved by pending claims,
 * and the TTL deadline a new intent gets (§9.4). Shared by intents.ts and
 * claims.ts, which would otherwise import each other.
 */
import { compareCodePoints, type NormalizedScope, type Scope } from '../protocol/scope.js'
import { duplicateCandidate } from '../protocol/semantics.js'
import { fail, type Terminal } from './envelopes.js'
import type { Claim, CoreState, Intent } from './state.js'

/** Python `repr()` of a list of strings, e.g. `['a.py', 'b.py']` (clients parse it). */
export function pyListRepr (items: readonly string[]): string {
  return '[' + items.map(s => {
    const q = s.includes('\'') && !s.includes('"') ? '"' : '\''
    let body = ''
    for (const ch of s) {
      const cp = ch.codePointAt(0) as number
      if (ch === '\\') body += '\\\\'
      else if (ch === q) body += '\\' + q
      else if (ch === '\n') body += '\\n'
      else if (ch === '\r') body += '\\r'
      else if (ch === '\t') body += '\\t'
      else if (cp < 0x20 || cp === 0x7f) body += '\\x' + cp.toString(16).padStart(2, '0')
      else body += ch
    }
    return q + body + q
  }).join(', ') + ']'
}

export interface RaceHit { holder: Intent, files: string[] }

/**
 * SPEC §15.3.2: the first ACTIVE intent (registration order) of another
 * principal whose normalised file_set shares one of `items`.
 */
export function raceLock (st: CoreState, norm: NormalizedScope, pid: string, items: Iterable<string>, exclude?: string): RaceHit | undefined {
  if (norm.kind !== 'file_set') return undefined
  let holder: Intent | undefined
  for (const item of items) {
    const ids = st.index.holders('file_set', item)
    if (ids === undefined) continue
    for (const id of ids) {
      if (id === exclude) continue
      const h = st.intents.get(id)
      if (h === undefined || h.state !== 'ACTIVE' || h.principal_id === pid) continue
      if (holder === undefined || h.seq < holder.seq) holder = h
    }
  }
  if (holder === undefined) return undefined
  const files: string[] = []
  for (const item of items) if (holder.norm.items.has(item)) files.push(item)
  files.sort(compareCodePoints)
  return { holder, files }
}

export function staleIntent (hit: RaceHit, current?: { intent_id: string, principal_id: string, objective: string, scope: Scope }): Terminal {
  const h = hit.holder
  const description = `Files ${pyListRepr(hit.files)} are already being modified by intent ${h.intent_id} (principal ${h.principal_id}). ` +
    'Defer with INTENT_DEFERRED and wait for that intent to finish, or retry after it is withdrawn.'
  const extra: Record<string, unknown> = { holder_intent_id: h.intent_id, holder_principal_id: h.principal_id, shared_files: hit.files }
  if (current !== undefined) {
    const dup = duplicateCandidate(current, { intent_id: h.intent_id, principal_id: h.principal_id, objective: h.objective, scope: h.scope }, hit.files)
    if (dup !== undefined) extra.duplicate_candidate = dup
  }
  return fail('STALE_INTENT', description, extra)
}

export function ttlDeadline (st: CoreState, now: number, ttlSec: unknown, expiryMs?: unknown): number | null {
  if (typeof ttlSec === 'number' && ttlSec > 0) return now + Math.round(ttlSec * 1000)
  if (typeof expiryMs === 'number' && expiryMs > 0) return now + Math.round(expiryMs)
  return st.s.defaultIntentTtlSec > 0 ? now + Math.round(st.s.defaultIntentTtlSec * 1000) : null
}

/** The pending claim whose replacement intent will take this id, if any (ids are reserved until approval). */
export function reservedByClaim (st: CoreState, intentId: string): Claim | undefined {
  if (st.claims.size === 0) return undefined
  for (const c of st.claims.values()) if (c.new_intent_id === intentId) return c
  return undefined
}
