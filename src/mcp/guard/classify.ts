/**
 * The guard's decision (agent-hooks-and-dashboard.md §7.8), pure: which of a
 * commit's paths are blocked and which only warned about, from a session
 * summary (the coordinator's SESSION_SUMMARY_RESPONSE `session`) or from
 * the shim's `guard_check` reply, and how the findings read.
 *
 * Contract:
 * - Per path, the worst finding wins: another principal's ACTIVE intent on
 *   the file (`held`), or an open conflict with a frozen scope whose intents
 *   cover it (`frozen`), is a block; covered by one of my live intents is
 *   nothing; covered only by another principal's SUSPENDED intent is a warn
 *   (`suspended`); otherwise, for an agent, a warn (`unannounced`). A human
 *   committer has no intents: nothing is unannounced for them, and their
 *   blocks become warns unless `humansBlock`.
 * - Only `file_set` scopes name files; other kinds never match a path.
 * - Paths compare after `normalizePath` (and lower-cased with
 *   core.ignorecase).
 * - Other agents' text is sanitised and quoted (`quoteText`): it is data.
 */
import { quoteText, sanitizeText, type HookFrozen, type HookHolder, type HookReply } from '../../hooks/protocol.js'

export type FindingKind = 'held' | 'frozen' | 'suspended' | 'unannounced'

export interface Finding {
  readonly path: string
  readonly kind: FindingKind
  readonly holder?: HookHolder
  readonly conflict?: HookFrozen
}

export interface Decision {
  readonly block: Finding[]
  readonly warn: Finding[]
}

/** Who commits: an agent (its principal ids and names) or a human (no identity). */
export type Committer =
  | { readonly kind: 'agent', readonly principalIds: ReadonlySet<string>, readonly names: ReadonlySet<string> }
  | { readonly kind: 'human' }

type Rec = Record<string, unknown>
const recs = (v: unknown): Rec[] => Array.isArray(v) ? v.filter((x): x is Rec => x !== null && typeof x === 'object') : []
const str = (v: unknown): string => typeof v === 'string' ? v : ''

/** Strip one leading `./`, collapse `//`, drop a trailing `/` (the protocol's file path rule). */
export function normalizePath (p: string): string {
  let s = p.startsWith('./') ? p.slice(2) : p
  s = s.replace(/\/{2,}/g, '/')
  while (s.length > 1 && s.endsWith('/')) s = s.slice(0, -1)
  return s
}

function fileScope (scope: unknown): string[] {
  if (scope === null || typeof scope !== 'object') return []
  const s = scope as Rec
  if (s['kind'] !== 'file_set' || !Array.isArray(s['resources'])) return []
  return s['resources'].filter((r): r is string => typeof r === 'string').map(normalizePath)
}

/** Does a participant (principal id, display name) belong to the committer? */
function isMine (committer: Committer, principalId: string, displayName: string): boolean {
  if (committer.kind === 'human') return false
  if (committer.principalIds.has(principalId)) return true
  for (const name of committer.names) {
    // The shim's default ids: agent:<name>@<digest>, and agent:<name>-<slot>@<digest> for slot ≥ 2.
    if (principalId.startsWith(`agent:${name}@`) || new RegExp(`^agent:${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d+@`).test(principalId)) return true
    if (displayName === name) return true
  }
  return false
}

interface Covering { readonly mine: boolean, readonly holder: HookHolder }

/** The findings for `paths` against a session summary. */
export function classifySummary (summary: unknown, committer: Committer, paths: readonly string[], opts: { ignoreCase: boolean, humansBlock: boolean }): Decision {
  const s = (summary !== null && typeof summary === 'object' ? summary : {}) as Rec
  const key = (p: string): string => opts.ignoreCase ? normalizePath(p).toLowerCase() : normalizePath(p)
  const names = new Map<string, string>()
  for (const p of recs(s['participants'])) names.set(str(p['principal_id']), str(p['display_name']))

  const byPath = new Map<string, Covering[]>()
  const intentFiles = new Map<string, string[]>()
  for (const i of recs(s['active_intents'])) {
    const pid = str(i['principal_id'])
    const files = fileScope(i['scope'])
    intentFiles.set(str(i['intent_id']), files)
    const holder: HookHolder = {
      principal_id: sanitizeText(pid, 200),
      display_name: sanitizeText(names.get(pid) ?? pid),
      intent_id: sanitizeText(i['intent_id'], 200),
      objective: sanitizeText(i['objective']),
      state: str(i['state']),
      files
    }
    const mine = isMine(committer, pid, names.get(pid) ?? '')
    for (const f of files) {
      const k = key(f)
      const list = byPath.get(k) ?? []
      list.push({ mine, holder })
      byPath.set(k, list)
    }
  }
  const frozenByPath = new Map<string, HookFrozen>()
  for (const c of recs(s['open_conflicts'])) {
    if (c['scope_frozen'] !== true) continue
    const ids = [c['intent_a'], c['intent_b']].filter((x): x is string => typeof x === 'string')
    const files = ids.flatMap(id => intentFiles.get(id) ?? [])
    const conflict: HookFrozen = {
      conflict_id: sanitizeText(c['conflict_id'], 200),
      category: str(c['category']),
      state: str(c['state']),
      intent_ids: ids,
      principals: [c['principal_a'], c['principal_b']].filter((x): x is string => typeof x === 'string').map(p => sanitizeText(names.get(p) ?? p)),
      files
    }
    for (const f of files) if (!frozenByPath.has(key(f))) frozenByPath.set(key(f), conflict)
  }

  const block: Finding[] = []
  const warn: Finding[] = []
  const blockOrWarn = (f: Finding): void => {
    if (committer.kind === 'human' && !opts.humansBlock) warn.push(f)
    else block.push(f)
  }
  for (const path of paths) {
    const covering = byPath.get(key(path)) ?? []
    const held = covering.find(c => !c.mine && c.holder.state === 'ACTIVE')
    if (held !== undefined) {
      blockOrWarn({ path, kind: 'held', holder: held.holder })
      continue
    }
    const frozen = frozenByPath.get(key(path))
    if (frozen !== undefined) {
      blockOrWarn({ path, kind: 'frozen', conflict: frozen })
      continue
    }
    if (covering.some(c => c.mine)) continue
    const suspended = covering.find(c => !c.mine && c.holder.state === 'SUSPENDED')
    if (suspended !== undefined) {
      warn.push({ path, kind: 'suspended', holder: suspended.holder })
      continue
    }
    if (committer.kind === 'agent') warn.push({ path, kind: 'unannounced' })
  }
  return { block, warn }
}

/** The findings from the shim's `guard_check` reply (the shim knows its own intents). */
export function classifyShimReply (reply: HookReply, paths: readonly string[], opts: { ignoreCase: boolean }): Decision {
  const key = (p: string): string => opts.ignoreCase ? normalizePath(p).toLowerCase() : normalizePath(p)
  const blocked = new Set((reply.block ?? []).map(key))
  const warned = new Set((reply.warn ?? []).map(key))
  const covers = (files: readonly string[] | undefined, path: string): boolean => (files ?? []).some(f => key(f) === key(path))
  const block: Finding[] = []
  const warn: Finding[] = []
  for (const path of paths) {
    if (blocked.has(key(path))) {
      const holder = (reply.holders ?? []).find(h => h.state === 'ACTIVE' && covers(h.files, path))
      const conflict = (reply.frozen ?? []).find(c => covers(c.files, path))
      block.push(holder !== undefined ? { path, kind: 'held', holder } : conflict !== undefined ? { path, kind: 'frozen', conflict } : { path, kind: 'held' })
    } else if (warned.has(key(path))) {
      const holder = (reply.suspended ?? []).find(h => covers(h.files, path))
      warn.push(holder !== undefined ? { path, kind: 'suspended', holder } : { path, kind: 'unannounced' })
    }
  }
  return { block, warn }
}

/** One line per finding: `src/db.py — held by Alice (intent-…, "objective")`. */
export function describe (f: Finding): string {
  const h = f.holder
  switch (f.kind) {
    case 'held':
      return h === undefined
        ? `${f.path} — held by another agent's ACTIVE intent`
        : `${f.path} — held by ${quoteText(h.display_name)} (${h.intent_id}, ${quoteText(h.objective)})`
    case 'frozen': {
      const c = f.conflict
      return c === undefined
        ? `${f.path} — in the frozen scope of an open conflict`
        : `${f.path} — frozen by conflict ${c.conflict_id} (${sanitizeText(c.category)} between ${c.principals.map(p => quoteText(p)).join(' and ')}) until it is resolved`
    }
    case 'suspended':
      return h === undefined
        ? `${f.path} — belongs to another agent's SUSPENDED intent`
        : `${f.path} — belongs to SUSPENDED intent ${h.intent_id} of ${quoteText(h.display_name)} (${quoteText(h.objective)}); take_over_task(${h.intent_id}) continues that work`
    case 'unannounced':
      return `${f.path} — in none of your intents (begin_task announces it)`
  }
}

export const MAX_LINES = 20

/** At most MAX_LINES lines, then "…and N more". */
export function describeAll (findings: readonly Finding[], indent = '  '): string[] {
  const lines = findings.slice(0, MAX_LINES).map(f => indent + describe(f))
  if (findings.length > MAX_LINES) lines.push(`${indent}…and ${findings.length - MAX_LINES} more`)
  return lines
}
