/**
 * Scope normalisation, overlap and containment (protocol.md §6.1, §6.2).
 *
 * `normalizeScope` runs once per intent and precomputes everything the
 * comparisons need; `scopesOverlap` runs for every pair of intents and does
 * not allocate for the common kinds (set lookups, a cached RegExp for
 * resource_path × file_set). Only resource_path × resource_path builds a
 * small product automaton per call.
 */

/** The wire scope object (protocol.md §6.1). Unknown kinds are opaque. */
export interface Scope {
  kind: string
  resources?: string[]
  pattern?: string
  task_ids?: string[]
  expression?: string
  language?: string
  entities?: string[]
  canonical_uris?: string[]
  extensions?: Record<string, unknown>
}

/** A scope with its comparison sets precomputed. Immutable. */
export interface NormalizedScope {
  readonly kind: string
  /** file_set: normalised paths; entity_set: entities; task_set: task ids; otherwise empty. */
  readonly items: ReadonlySet<string>
  /** Present only when `canonical_uris` is a non-empty array. */
  readonly canonicalUris: ReadonlySet<string> | undefined
  /** resource_path: the glob, normalised like a path. */
  readonly pattern: string | undefined
  readonly raw: Scope
}

/**
 * `strict` follows the SPEC rules (canonical URIs, then kinds, then globs).
 * `py` reproduces the Python runtime: canonical URIs are ignored, different
 * kinds and resource_path pairs always overlap.
 */
export type OverlapMode = 'strict' | 'py'

const EMPTY: ReadonlySet<string> = new Set()
const SLASH_RUN = /\/{2,}/g

/**
 * Strip ONE leading `./`, collapse runs of `/`, strip trailing `/` (the
 * string `/` itself stays). No backslash conversion, no `..` resolution.
 */
export function normalizePath (p: string): string {
  let s = p.startsWith('./') ? p.slice(2) : p
  if (s.includes('//')) s = s.replace(SLASH_RUN, '/')
  if (s.length > 1 && s.endsWith('/')) {
    let end = s.length
    while (end > 0 && s.charCodeAt(end - 1) === 47) end--
    s = s.slice(0, end)
  }
  return s
}

export function isIndexableKind (kind: string): boolean {
  return kind === 'file_set' || kind === 'entity_set' || kind === 'task_set'
}

function stringSet (values: unknown, normalise: boolean): Set<string> {
  const out = new Set<string>()
  if (!Array.isArray(values)) return out
  for (const v of values) {
    if (typeof v === 'string') out.add(normalise ? normalizePath(v) : v)
  }
  return out
}

export function normalizeScope (scope: Scope): NormalizedScope {
  const kind = scope.kind
  let items: ReadonlySet<string> = EMPTY
  if (kind === 'file_set') items = stringSet(scope.resources, true)
  else if (kind === 'entity_set') items = stringSet(scope.entities, false)
  else if (kind === 'task_set') items = stringSet(scope.task_ids, false)
  const uris = stringSet(scope.canonical_uris, false)
  const pattern = kind === 'resource_path' && typeof scope.pattern === 'string'
    ? normalizePath(scope.pattern)
    : undefined
  const n: NormalizedScope = Object.freeze({
    kind,
    items,
    canonicalUris: uris.size > 0 ? uris : undefined,
    pattern,
    raw: scope
  })
  if (pattern !== undefined) compiledFor(n)
  return n
}

function intersects (a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size > b.size) return intersects(b, a)
  for (const x of a) if (b.has(x)) return true
  return false
}

function isSubset (inner: ReadonlySet<string>, outer: ReadonlySet<string>): boolean {
  if (inner.size > outer.size) return false
  for (const x of inner) if (!outer.has(x)) return false
  return true
}

export function scopesOverlap (a: NormalizedScope, b: NormalizedScope, mode: OverlapMode = 'strict'): boolean {
  if (mode === 'py') {
    return a.kind === b.kind && isIndexableKind(a.kind) ? intersects(a.items, b.items) : true
  }
  if (a.canonicalUris !== undefined && b.canonicalUris !== undefined) {
    return intersects(a.canonicalUris, b.canonicalUris)
  }
  if (a.kind === b.kind) {
    if (isIndexableKind(a.kind)) return intersects(a.items, b.items)
    if (a.kind === 'resource_path') {
      if (a.pattern === undefined || b.pattern === undefined) return true
      return a.pattern === b.pattern || intersectGlobs(compiledFor(a), compiledFor(b))
    }
    return true
  }
  if (a.kind === 'resource_path' && b.kind === 'file_set') return patternHitsFile(a, b.items)
  if (b.kind === 'resource_path' && a.kind === 'file_set') return patternHitsFile(b, a.items)
  return true
}

function patternHitsFile (p: NormalizedScope, files: ReadonlySet<string>): boolean {
  if (p.pattern === undefined) return true
  const re = compiledFor(p).regex
  for (const f of files) if (re.test(f)) return true
  return false
}

/** Containment for frozen-scope checks: same indexable kind → subset; otherwise true (conservative, §6.2). */
export function scopeContains (outer: NormalizedScope, inner: NormalizedScope): boolean {
  if (outer.kind === inner.kind && isIndexableKind(outer.kind)) return isSubset(inner.items, outer.items)
  return true
}

/** Python-compatible ordering: by Unicode code point, not UTF-16 unit. */
export function compareCodePoints (x: string, y: string): number {
  if (x === y) return 0
  const n = Math.min(x.length, y.length)
  for (let i = 0; i < n; i++) {
    const cx = x.codePointAt(i) as number
    const cy = y.codePointAt(i) as number
    if (cx !== cy) return cx - cy
    if (cx > 0xffff) i++
  }
  return x.length - y.length
}

/** Sorted intersection of the items of two scopes of the same indexable kind; otherwise []. */
export function sharedItems (a: NormalizedScope, b: NormalizedScope): string[] {
  if (a.kind !== b.kind || !isIndexableKind(a.kind)) return []
  const out: string[] = []
  for (const x of a.items) if (b.items.has(x)) out.push(x)
  return out.sort(compareCodePoints)
}

// ---------------------------------------------------------------------------
// Globs
//
// Grammar (after normalizePath on the pattern):
//   `*`          any run of characters except `/` (possibly empty)
//   `?`          exactly one character except `/`
//   `**`         as a whole segment: zero or more whole segments, so `**/x`
//                matches `x` and `a/b/x`, `a/**` matches `a` and `a/b/c`,
//                and `a/**/b` matches `a/b`. A run of two or more `*` inside a
//                segment (`a**b`) is any run of characters including `/`.
//   other        itself (no escapes, no `[...]` classes, no braces)
// Characters are Unicode code points. Paths are normalised before matching.
// ---------------------------------------------------------------------------

const enum Tok { Lit, Star, Qmark, Any, SegsPrefix, SegsSuffix, All }

interface Token { t: Tok; c?: string }

const GLOBSTAR_SEGMENT = /^\*{2,}$/

// Consecutive globstar segments mean the same as one (`a/**` twice over is `a/**`).
function simplify (pattern: string): string {
  const segs = pattern.split('/')
  const out: string[] = []
  for (const s of segs) {
    const star = GLOBSTAR_SEGMENT.test(s)
    if (star && out.length > 0 && out[out.length - 1] === '**') continue
    out.push(star ? '**' : s)
  }
  return out.join('/')
}

function tokenize (pattern: string): Token[] {
  const cs = Array.from(simplify(pattern))
  const out: Token[] = []
  const n = cs.length
  let i = 0
  while (i < n) {
    const c = cs[i] as string
    if (c === '*') {
      let j = i
      while (j < n && cs[j] === '*') j++
      const run = j - i
      const atStart = i === 0 || cs[i - 1] === '/'
      const atEnd = j === n || cs[j] === '/'
      if (run >= 2 && atStart && atEnd) {
        // A trailing `/**` was already turned into SegsSuffix at its slash, so
        // reaching the end here means the whole rest of the pattern is `**`.
        if (j < n) { out.push({ t: Tok.SegsPrefix }); j++ } else out.push({ t: Tok.All })
      } else {
        out.push({ t: run >= 2 ? Tok.Any : Tok.Star })
      }
      i = j
      continue
    }
    if (c === '/') {
      // `/**` at the end: optional suffix of whole segments.
      let j = i + 1
      while (j < n && cs[j] === '*') j++
      if (j === n && j - (i + 1) >= 2) {
        out.push({ t: Tok.SegsSuffix })
        i = n
        continue
      }
    }
    if (c === '?') out.push({ t: Tok.Qmark })
    else out.push({ t: Tok.Lit, c })
    i++
  }
  return out
}

const REGEX_META = /[.*+?^${}()|[\]\\]/g

function tokensToRegex (tokens: readonly Token[]): RegExp {
  let src = ''
  for (const tok of tokens) {
    switch (tok.t) {
      case Tok.Lit: src += (tok.c as string).replace(REGEX_META, '\\$&'); break
      case Tok.Star: src += '[^/]*'; break
      case Tok.Qmark: src += '[^/]'; break
      case Tok.Any: src += '.*'; break
      case Tok.SegsPrefix: src += '(?:.*/)?'; break
      case Tok.SegsSuffix: src += '(?:/.*)?'; break
      case Tok.All: src += '.*'; break
    }
  }
  return new RegExp('^' + src + '$', 'su')
}

// NFA edge labels. Lit carries a code point; NonSlash = any but `/`; AnyChar = any.
const enum Lab { Eps, Lit, NonSlash, AnyChar }

interface Edge { l: Lab; c: string; to: number }

interface Nfa { edges: Edge[][]; start: number; accept: number }

function tokensToNfa (tokens: readonly Token[]): Nfa {
  const edges: Edge[][] = [[]]
  const add = (from: number, l: Lab, c: string, to: number): void => { (edges[from] as Edge[]).push({ l, c, to }) }
  const fresh = (): number => { edges.push([]); return edges.length - 1 }
  let cur = 0
  for (const tok of tokens) {
    switch (tok.t) {
      case Tok.Lit: { const s = fresh(); add(cur, Lab.Lit, tok.c as string, s); cur = s; break }
      case Tok.Qmark: { const s = fresh(); add(cur, Lab.NonSlash, '', s); cur = s; break }
      case Tok.Star: { const s = fresh(); add(cur, Lab.Eps, '', s); add(s, Lab.NonSlash, '', s); cur = s; break }
      case Tok.Any:
      case Tok.All: { const s = fresh(); add(cur, Lab.Eps, '', s); add(s, Lab.AnyChar, '', s); cur = s; break }
      case Tok.SegsPrefix: { // (?:.*/)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, '', end); add(cur, Lab.Eps, '', loop)
        add(loop, Lab.AnyChar, '', loop); add(loop, Lab.Lit, '/', end)
        cur = end
        break
      }
      case Tok.SegsSuffix: { // (?:/.*)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, '', end); add(cur, Lab.Lit, '/', loop)
        add(loop, Lab.AnyChar, '', loop); add(loop, Lab.Eps, '', end)
        cur = end
        break
      }
    }
  }
  return { edges, start: 0, accept: cur }
}

interface CompiledGlob { regex: RegExp; nfa: Nfa }

function compile (normalisedPattern: string): CompiledGlob {
  const tokens = tokenize(normalisedPattern)
  return { regex: tokensToRegex(tokens), nfa: tokensToNfa(tokens) }
}

const byScope = new WeakMap<NormalizedScope, CompiledGlob>()

function compiledFor (n: NormalizedScope): CompiledGlob {
  let c = byScope.get(n)
  if (c === undefined) {
    c = compile(n.pattern as string)
    byScope.set(n, c)
  }
  return c
}

const CACHE_MAX = 256
const byPattern = new Map<string, CompiledGlob>()

function compiledPattern (pattern: string): CompiledGlob {
  const key = normalizePath(pattern)
  let c = byPattern.get(key)
  if (c === undefined) {
    if (byPattern.size >= CACHE_MAX) byPattern.clear()
    c = compile(key)
    byPattern.set(key, c)
  }
  return c
}

/** Does `path` (normalised first) match the glob `pattern` (normalised first)? */
export function globMatch (pattern: string, path: string): boolean {
  return compiledPattern(pattern).regex.test(normalizePath(path))
}

/** Is there a normalised path that both globs match? Exact (see intersectGlobs). */
export function globsOverlap (a: string, b: string): boolean {
  return intersectGlobs(compiledPattern(a), compiledPattern(b))
}

// Witness-shape tracker so that only normalised paths count as witnesses:
// not empty, no empty segment (`//`), no trailing `/` except the root `/`.
const F_START = 0 // nothing consumed
const F_ROOT = 1 // consumed exactly "/"
const F_SLASH = 2 // last char `/` (after something else)
const F_OTHER = 3 // last char not `/`

/** The shape after consuming a `/`, or -1 when that would make `//`. */
function afterSlash (f: number): number {
  if (f === F_START) return F_ROOT
  if (f === F_OTHER) return F_SLASH
  return -1
}

/**
 * Exact emptiness test of L(a) ∩ L(b) ∩ {normalised paths} by breadth-first
 * search over the product of the two NFAs and a 4-state path-shape automaton.
 * Edge labels are character sets (one code point, any-but-`/`, any); two
 * labels can fire together when their sets intersect, and the alphabet is
 * unbounded, so any-but-`/` ∩ any-but-`/` is never empty.
 */
function intersectGlobs (ca: CompiledGlob, cb: CompiledGlob): boolean {
  const A = ca.nfa; const B = cb.nfa
  const nb = B.edges.length
  const seen = new Uint8Array(A.edges.length * nb * 4)
  const queue: number[] = []
  const push = (p: number, q: number, f: number): void => {
    const k = (p * nb + q) * 4 + f
    if (seen[k] === 0) { seen[k] = 1; queue.push(k) }
  }
  push(A.start, B.start, F_START)
  for (let head = 0; head < queue.length; head++) {
    const k = queue[head] as number
    const f = k % 4
    const pq = (k - f) / 4
    const q = pq % nb
    const p = (pq - q) / nb
    if (p === A.accept && q === B.accept && (f === F_OTHER || f === F_ROOT)) return true
    const ea = A.edges[p] as Edge[]
    const eb = B.edges[q] as Edge[]
    for (const e of ea) if (e.l === Lab.Eps) push(e.to, q, f)
    for (const e of eb) if (e.l === Lab.Eps) push(p, e.to, f)
    for (const x of ea) {
      if (x.l === Lab.Eps) continue
      for (const y of eb) {
        if (y.l === Lab.Eps) continue
        // Which kinds of character (slash / other) can both edges consume?
        let canSlash: boolean; let canOther: boolean
        if (x.l === Lab.Lit && y.l === Lab.Lit) {
          if (x.c !== y.c) continue
          canSlash = x.c === '/'; canOther = !canSlash
        } else if (x.l === Lab.Lit || y.l === Lab.Lit) {
          const lit = x.l === Lab.Lit ? x : y
          const other = x.l === Lab.Lit ? y : x
          if (lit.c === '/') { canSlash = other.l === Lab.AnyChar; canOther = false } else { canSlash = false; canOther = true }
        } else {
          canSlash = x.l === Lab.AnyChar && y.l === Lab.AnyChar
          canOther = true
        }
        if (canSlash) { const g = afterSlash(f); if (g >= 0) push(x.to, y.to, g) }
        if (canOther) push(x.to, y.to, F_OTHER)
      }
    }
  }
  return false
}
