/**
 * Duplicate-candidate advisory attached to a STALE_INTENT rejection
 * (protocol.md §6.6, a Python-runtime extension). The coordinator does not
 * decide that two objectives are the same; it only says when structured
 * hints (symbols, postconditions, actions) make duplicate work likely, so
 * the rejected agent re-reads the file before writing.
 */
import { compareCodePoints, normalizePath, type Scope } from './scope.js'

export interface IntentLike {
  intent_id: string
  principal_id: string
  objective: string
  scope: Scope
}

interface Summary {
  action: string | null
  symbols: string[]
  postconditions: string[]
  normalizedPostconditions: string[]
}

const GUIDANCE = 'This intent may duplicate work the other intent is already doing. ' +
  'Defer it, and once the other intent ends re-read the shared files and check whether ' +
  'your target symbols or postconditions are already satisfied before writing anything.'

const POSTCONDITION_KEYS = ['text', 'behavior', 'expected', 'description'] as const

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Non-empty trimmed strings from a string-or-list value. */
function strings (v: unknown): string[] {
  if (typeof v === 'string') {
    const s = v.trim()
    return s === '' ? [] : [s]
  }
  const out: string[] = []
  if (Array.isArray(v)) {
    for (const x of v) {
      if (typeof x === 'string' && x.trim() !== '') out.push(x.trim())
    }
  }
  return out
}

function normalizeText (s: string): string {
  return s.trim().toLowerCase().replace(/\s+/g, ' ')
}

// An identifier with at most one dotted level, not preceded by a word
// character or a dot, then either `(` or one of the marker words.
const HINT = /(?<![A-Za-z0-9_.])([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)(?:\(|\s+(?:function|func|method|handler|endpoint|symbol)(?![A-Za-z0-9_])|\s*函数)/gi

/** Symbol hints from free text (§6.6): `name(`, `name function`, `mod.name method`, `name 函数`. */
export function objectiveSymbolHints (objective: string): string[] {
  const out = new Set<string>()
  for (const m of objective.matchAll(HINT)) {
    const name = m[1] as string
    if (!name.endsWith('.py')) out.add(name)
  }
  return [...out]
}

/** Dotted module names of the scope's `.py` resources: `a/b.py` → `a.b`, `pkg/__init__.py` → `pkg`. */
export function pythonModules (scope: Scope): string[] {
  const out = new Set<string>()
  if (!Array.isArray(scope.resources)) return []
  for (const r of scope.resources) {
    if (typeof r !== 'string') continue
    const p = normalizePath(r)
    if (!p.endsWith('.py')) continue
    let base = p.slice(0, -3)
    if (base === '__init__') continue
    if (base.endsWith('/__init__')) base = base.slice(0, -9)
    const segs = base.split('/')
    if (segs.some(s => s === '')) continue
    out.add(segs.join('.'))
  }
  return [...out]
}

function summarize (intent: IntentLike): Summary {
  const scope: Partial<Scope> = isRecord(intent.scope) ? intent.scope : {}
  const ext = isRecord(scope.extensions) ? scope.extensions : {}
  const sem = isRecord(ext.intent_semantics) ? ext.intent_semantics : {}

  const rawAction = typeof sem.action === 'string' ? sem.action.trim() : ''
  const action = rawAction === '' ? null : rawAction.toLowerCase()

  const symbols: string[] = [...strings(sem.symbol), ...strings(sem.symbols)]
  if (Array.isArray(sem.targets)) {
    for (const t of sem.targets) {
      if (!isRecord(t)) continue
      symbols.push(...strings(t.symbol), ...strings(t.symbols))
    }
  }
  symbols.push(...strings(ext.affects_symbols))
  const hints = objectiveSymbolHints(typeof intent.objective === 'string' ? intent.objective : '')
  if (hints.length > 0) {
    const modules = pythonModules(scope as Scope)
    for (const h of hints) {
      if (h.includes('.') || modules.length === 0) symbols.push(h)
      else for (const m of modules) symbols.push(`${m}.${h}`)
    }
  }

  let rawPosts: unknown = sem.postconditions
  if ((rawPosts === undefined || rawPosts === null) && 'postcondition' in sem) rawPosts = [sem.postcondition]
  if (rawPosts !== undefined && rawPosts !== null && !Array.isArray(rawPosts)) rawPosts = [rawPosts]
  const posts: string[] = []
  if (Array.isArray(rawPosts)) {
    for (const item of rawPosts) {
      if (typeof item === 'string') posts.push(...strings(item))
      else if (isRecord(item)) for (const k of POSTCONDITION_KEYS) posts.push(...strings(item[k]))
    }
  }

  const cleanSymbols = [...new Set(symbols)]
  const postconditions: string[] = []
  const normalizedPostconditions: string[] = []
  const seen = new Set<string>()
  for (const p of posts) {
    const n = normalizeText(p)
    if (seen.has(n)) continue
    seen.add(n)
    postconditions.push(p)
    normalizedPostconditions.push(n)
  }
  return { action, symbols: cleanSymbols, postconditions, normalizedPostconditions }
}

/**
 * The `duplicate_candidate` object for a STALE_INTENT, comparing the
 * rejected intent (`current`) with the holder (`other`); undefined when
 * there is no candidate (the key is then omitted).
 */
export function duplicateCandidate (current: IntentLike, other: IntentLike, sharedFiles: readonly string[]): Record<string, unknown> | undefined {
  const cur = summarize(current)
  const oth = summarize(other)
  const compatible = cur.action === null || oth.action === null || cur.action === oth.action
  if (!compatible) return undefined
  const confidence = cur.action !== null && cur.action === oth.action ? 'high' : 'medium'

  const otherSymbols = new Set(oth.symbols)
  const matchedSymbols = cur.symbols.filter(s => otherSymbols.has(s)).sort(compareCodePoints)
  let reason: string
  let matchedPostconditions: string[] = []
  if (matchedSymbols.length > 0) {
    reason = confidence === 'high' ? 'same_symbol_and_action' : 'same_symbol'
  } else {
    const otherPosts = new Set(oth.normalizedPostconditions)
    matchedPostconditions = cur.postconditions.filter((_, i) => otherPosts.has(cur.normalizedPostconditions[i] as string))
    if (matchedPostconditions.length === 0) return undefined
    reason = confidence === 'high' ? 'same_postcondition_and_action' : 'same_postcondition'
  }

  return {
    candidate: true,
    confidence,
    reason,
    other_intent_id: other.intent_id,
    other_principal_id: other.principal_id,
    shared_files: [...sharedFiles],
    matched_symbols: matchedSymbols,
    matched_postconditions: matchedPostconditions,
    current: { action: cur.action, symbols: cur.symbols, postconditions: cur.postconditions },
    other: { action: oth.action, symbols: oth.symbols, postconditions: oth.postconditions },
    verification_required: true,
    guidance: GUIDANCE
  }
}
