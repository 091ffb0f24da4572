/**
 * Conflict detection (protocol.md §6.3–§6.5), the coordinator's
 * CONFLICT_REPORT (PY keys plus the spec keys, §4.18 TS-REC), participant
 * reports in both shapes (fix G1), auto-dismiss (§5.4 C) and the
 * frozen-scope tests (§7.5).
 */
import type { Payload } from '../protocol/schemas.js'
import { dependencyConflict, dependencyDetail } from '../protocol/dependency.js'
import { normalizeScope, scopeContains, isIndexableKind, type NormalizedScope, type Scope } from '../protocol/scope.js'
import { ALL, fail, nextId, principals, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { overlaps } from './overlap.js'
import { DEAD_OP, isLive, TERMINAL_INTENT, type Conflict, type CoreState, type Intent } from './state.js'

/**
 * Symbol comparisons the dependency test may make for one pair of scopes.
 * The protocol helper compares every declared symbol with every used one
 * (quadratic); past this budget the pair is judged at file level, as if no
 * symbols were declared (the conservative answer: `symbols: null`).
 */
export const SYMBOL_PAIR_BUDGET = 1 << 14

interface SymbolSizes { affects: number, used: number, dependsOn: number, impact: number }

const sizes = new WeakMap<Scope, SymbolSizes>()

function lengthOf (v: unknown): number {
  return Array.isArray(v) ? v.length : 0
}

function symbolSizes (scope: Scope): SymbolSizes {
  let s = sizes.get(scope)
  if (s === undefined) {
    const ext = scope.extensions ?? {}
    let used = 0
    const imp = ext.impact_symbols
    if (typeof imp === 'object' && imp !== null && !Array.isArray(imp)) for (const k of Object.keys(imp)) used += lengthOf((imp as Record<string, unknown>)[k])
    s = { affects: lengthOf(ext.affects_symbols), used, dependsOn: lengthOf(ext.depends_on_symbols), impact: lengthOf(ext.impact) }
    sizes.set(scope, s)
  }
  return s
}

/** The scope without its symbol hints (file-level dependency analysis). */
function fileLevel (scope: Scope): Scope {
  const ext = { ...scope.extensions }
  delete ext.affects_symbols
  delete ext.impact_symbols
  delete ext.depends_on_symbols
  return { ...scope, extensions: ext }
}

/** The two scopes as the dependency test should see them: as given, or both at file level when too costly. */
function dependencyScopes (a: Scope, b: Scope): [Scope, Scope] {
  const x = symbolSizes(a)
  const y = symbolSizes(b)
  // Upper bound of the string comparisons in both directions: symbolMatch pairs, merging the
  // importer's depends_on into each reached file's used list, and deduplicating each list.
  const work = x.affects * (x.used + y.dependsOn * x.impact) + y.affects * (y.used + x.dependsOn * y.impact) +
    y.dependsOn * (x.used + x.impact * y.dependsOn) + x.dependsOn * (y.used + y.impact * x.dependsOn) +
    x.affects * x.affects + y.affects * y.affects + x.dependsOn * x.dependsOn + y.dependsOn * y.dependsOn
  return work <= SYMBOL_PAIR_BUDGET ? [a, b] : [fileLevel(a), fileLevel(b)]
}

function hasLivePair (st: CoreState, a: string, b: string): boolean {
  const ids = st.conflictsByIntent.get(a)
  if (ids === undefined) return false
  for (const cid of ids) {
    if (!st.openConflicts.has(cid)) continue
    const c = st.conflicts.get(cid)
    if (c !== undefined && c.related_intents.includes(b)) return true
  }
  return false
}

/**
 * Runs detection for `intent` (the new or updated side, `principal_a`)
 * against every other principal's live intent, through the indexes.
 * One CONFLICT_REPORT per conflicting pair, in registration order.
 */
export function detectConflicts (st: CoreState, ctx: Ctx, intent: Intent, skipExisting: boolean): void {
  for (const h of conflictHits(st, intent, skipExisting)) report(st, ctx, intent, h.other, h.dep)
}

/** What `detectConflicts` would report for `intent` (registered or not yet), without reporting. */
export function conflictHits (
  st: CoreState,
  intent: Pick<Intent, 'intent_id' | 'principal_id' | 'norm' | 'impact' | 'scope'>,
  skipExisting: boolean
): Array<{ other: Intent, dep: boolean }> {
  const cands = new Set<string>()
  st.index.overlapCandidates(intent.norm, cands)
  const fileSet = intent.norm.kind === 'file_set'
  if (fileSet) st.index.dependencyCandidates(intent.norm.items, intent.impact, cands)
  if (cands.size === 0) return []
  const hits: Array<{ other: Intent, dep: boolean }> = []
  for (const id of cands) {
    if (id === intent.intent_id) continue
    const other = st.intents.get(id)
    if (other === undefined || other.principal_id === intent.principal_id || !isLive(other)) continue
    if (overlaps(intent.norm, other.norm)) hits.push({ other, dep: false })
    // protocol.md §6.5: only when there is no direct overlap and both are file_set.
    else if (fileSet && other.norm.kind === 'file_set' && dependencyConflict(...dependencyScopes(intent.scope, other.scope))) hits.push({ other, dep: true })
  }
  if (hits.length > 1) hits.sort((x, y) => x.other.seq - y.other.seq)
  return skipExisting ? hits.filter(h => !hasLivePair(st, intent.intent_id, h.other.intent_id)) : hits
}

/**
 * The --max-open-conflicts ceiling: refuses an input that would open `adding`
 * more conflicts than the session may hold (undefined = within the limit).
 */
export function openConflictCeiling (st: CoreState, adding: number): Terminal | undefined {
  if (adding === 0 || st.openConflicts.size + adding <= st.s.maxOpenConflicts) return undefined
  return fail('AUTHORIZATION_FAILED',
    `open conflict limit reached: the session may hold at most ${st.s.maxOpenConflicts} open conflicts (max_open_conflicts) and this would open ${adding} more; resolve or withdraw first`,
    { limit: 'max_open_conflicts', limit_value: st.s.maxOpenConflicts })
}

function report (st: CoreState, ctx: Ctx, a: Intent, b: Intent, dep: boolean): void {
  const conflictId = nextId(st.clock)
  const category = dep ? 'dependency_breakage' : 'scope_overlap'
  const description = dep
    ? `Intent ${a.intent_id} (principal ${a.principal_id}) changes code that intent ${b.intent_id} (principal ${b.principal_id}) depends on, or the reverse`
    : `Intent ${a.intent_id} (principal ${a.principal_id}) overlaps the scope of intent ${b.intent_id} (principal ${b.principal_id})`
  const payload: Record<string, unknown> = {
    conflict_id: conflictId,
    category,
    severity: 'medium',
    principal_a: a.principal_id,
    principal_b: b.principal_id,
    intent_a: a.intent_id,
    intent_b: b.intent_id
  }
  if (dep) payload.dependency_detail = dependencyDetail(...dependencyScopes(a.scope, b.scope))
  payload.related_intents = [a.intent_id, b.intent_id]
  payload.related_ops = []
  payload.basis = { kind: 'rule', rule_id: dep ? 'dependency.breakage.v1' : 'scope.overlap.v1' }
  payload.based_on_watermark = { kind: 'lamport_clock', value: st.clock.lamport }
  payload.description = description
  const env = st.emit(ctx, 'CONFLICT_REPORT', payload, principals([a.principal_id, b.principal_id, ...st.authorities()]))
  st.addConflict(ctx, {
    conflict_id: conflictId,
    state: 'OPEN',
    category,
    severity: 'medium',
    principal_a: a.principal_id,
    principal_b: b.principal_id,
    intent_a: a.intent_id,
    intent_b: b.intent_id,
    related_intents: [a.intent_id, b.intent_id],
    related_ops: [],
    created_at: ctx.now,
    escalated_to: null,
    escalated_at: null,
    resolution_id: null,
    resolved_by: null,
    decision: null,
    scope_frozen: false,
    timeout_reported: false,
    message_id: env.message_id as string,
    reporter: st.coordinatorId,
    seq: 0
  })
}

/** A participant CONFLICT_REPORT, spec shape or PY shape (fix G1). */
export function handleReport (st: CoreState, ctx: Ctx, p: Payload<'CONFLICT_REPORT'>, sender: string, messageId: string): Terminal {
  if (st.conflicts.has(p.conflict_id)) return fail('INVALID_REFERENCE', `conflict ${p.conflict_id} already exists`)
  const ceiling = openConflictCeiling(st, 1)
  if (ceiling !== undefined) return ceiling
  const related = [...new Set([...(p.related_intents ?? []), ...[p.intent_a, p.intent_b].filter((x): x is string => typeof x === 'string')])]
  const ops = [...new Set(p.related_ops ?? [])]
  if (related.length === 0 && ops.length === 0) return fail('MALFORMED_MESSAGE', 'CONFLICT_REPORT must name at least one related intent or operation')
  const ownerOf = (id: string | undefined): string | null => id === undefined ? null : st.intents.get(id)?.principal_id ?? null
  const pa = p.principal_a ?? p.involved_principals?.[0] ?? ownerOf(related[0]) ?? null
  const pb = p.principal_b ?? p.involved_principals?.[1] ?? ownerOf(related[1]) ?? null
  st.addConflict(ctx, {
    conflict_id: p.conflict_id,
    state: 'OPEN',
    category: p.category,
    severity: p.severity,
    principal_a: pa,
    principal_b: pb,
    intent_a: p.intent_a ?? related[0] ?? null,
    intent_b: p.intent_b ?? related[1] ?? null,
    related_intents: related,
    related_ops: ops,
    created_at: ctx.now,
    escalated_to: null,
    escalated_at: null,
    resolution_id: null,
    resolved_by: null,
    decision: null,
    scope_frozen: false,
    timeout_reported: false,
    message_id: messageId,
    reporter: sender,
    seq: 0
  })
  return RELAY
}

function allDead (st: CoreState, c: Conflict): boolean {
  for (const id of c.related_intents) {
    const i = st.intents.get(id)
    if (i !== undefined && !TERMINAL_INTENT.has(i.state)) return false
  }
  for (const id of c.related_ops) {
    const o = st.ops.get(id)
    if (o !== undefined && !DEAD_OP.has(o.state)) return false
  }
  return true
}

/**
 * SPEC §5.4 C: dismiss when every related intent is terminal and every
 * related op is dead; releases freezes (fix G7). Only the candidates (open
 * conflicts that lost an entity since the last sweep, and new reports) can
 * qualify; they are judged in creation order.
 */
export function autoDismiss (st: CoreState, ctx: Ctx): void {
  if (st.dismissCandidates.size === 0) return
  const cands: Conflict[] = []
  for (const cid of st.dismissCandidates) {
    const c = st.conflicts.get(cid)
    if (c !== undefined && st.openConflicts.has(cid)) cands.push(c)
  }
  st.dismissCandidates.clear()
  if (cands.length > 1) cands.sort((a, b) => a.seq - b.seq)
  for (const c of cands) {
    if (!allDead(st, c)) continue
    const cid = c.conflict_id
    const rid = nextId(st.clock)
    c.resolution_id = rid
    c.resolved_by = st.coordinatorId
    c.decision = 'dismissed'
    st.setConflictState(ctx, c, 'DISMISSED')
    st.emit(ctx, 'RESOLUTION', { resolution_id: rid, conflict_id: cid, decision: 'dismissed', rationale: 'all_related_entities_terminated' }, ALL)
  }
}

function conflictIntents (st: CoreState, c: Conflict): Intent[] {
  const out: Intent[] = []
  const ids = c.intent_a !== null || c.intent_b !== null ? [c.intent_a, c.intent_b] : c.related_intents.slice(0, 2)
  for (const id of ids) {
    if (id === null) continue
    const i = st.intents.get(id)
    if (i !== undefined && !out.includes(i)) out.push(i)
  }
  return out
}

/** protocol.md §7.5: the union scope of a frozen conflict for the INTENT_ANNOUNCE containment test. */
function frozenUnion (st: CoreState, c: Conflict): NormalizedScope | undefined {
  const [a, b] = conflictIntents(st, c)
  if (a === undefined) return undefined
  if (b === undefined || a.norm.kind !== b.norm.kind || !isIndexableKind(a.norm.kind)) return a.norm
  const items = [...new Set([...a.norm.items, ...b.norm.items])]
  const key = a.norm.kind === 'file_set' ? 'resources' : a.norm.kind === 'entity_set' ? 'entities' : 'task_ids'
  return normalizeScope({ kind: a.norm.kind, [key]: items })
}

/** SPEC §7.5: 'reject' when fully inside a frozen scope, 'warn' on a partial overlap. */
export function announceFrozen (st: CoreState, norm: NormalizedScope): 'reject' | 'warn' | undefined {
  if (st.frozen.size === 0) return undefined
  let warn = false
  for (const c of st.frozenConflicts()) {
    const u = frozenUnion(st, c)
    if (u === undefined) continue
    if (scopeContains(u, norm)) return 'reject'
    if (overlaps(u, norm)) warn = true
  }
  return warn ? 'warn' : undefined
}

/**
 * SPEC §7.5: an op target (tested as a one-file file_set) overlapping a frozen conflict's intents.
 * A conflict whose phase-2 priority bypass (§8.5) names `sender` does not block that sender.
 */
export function frozenTarget (st: CoreState, targets: readonly string[], sender?: string): string | undefined {
  if (st.frozen.size === 0) return undefined
  const frozen = st.frozenConflicts().filter(c => sender === undefined || c.bypass_principal !== sender)
  if (frozen.length === 0) return undefined
  for (const t of targets) {
    const n = normalizeScope({ kind: 'file_set', resources: [t] })
    for (const c of frozen) {
      for (const i of conflictIntents(st, c)) if (overlaps(i.norm, n)) return c.conflict_id
    }
  }
  return undefined
}

/** The SCOPE_FROZEN description for a write blocked by `conflictId`, explaining a phase-2 partial unfreeze (§8.5). */
export function frozenDescription (st: CoreState, conflictId: string, base: string): string {
  const c = st.conflicts.get(conflictId)
  if (c?.bypass_principal === undefined) return base
  return `${base}; conflict ${conflictId} is partially unfrozen (frozen-scope phase 2): only ${c.bypass_principal}, owner of the higher-priority intent, may write there until the conflict is resolved`
}
