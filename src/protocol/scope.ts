/**
 * Scope normalisation, overlap and containment (protocol.md §6.1, §6.2).
 *
 * `normalizeScope` runs once per intent and precomputes everything the
 * comparisons need (for a resource_path, its glob automaton);
 * `scopesOverlap` runs for every pair of intents and does not allocate for
 * the common kinds (set lookups). Globs are matched by simulating their NFA,
 * never by a backtracking RegExp, so every glob decision is polynomial and
 * capped by a work budget (see "Work bounds" below).
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

/**
 * Do two scopes potentially overlap (§6.2)? Decisions involving a
 * resource_path glob are bounded by GLOB_MATCH_BUDGET / GLOB_PRODUCT_BUDGET;
 * past a budget the answer is `undecided`: true ("potentially overlapping")
 * for conflict detection and frozen-scope checks, false where an overlap
 * would grant something (a file write inside an intent's scope).
 */
export function scopesOverlap (a: NormalizedScope, b: NormalizedScope, mode: OverlapMode = 'strict', undecided = true): boolean {
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
      return a.pattern === b.pattern || intersectGlobs(compiledFor(a), compiledFor(b), undecided)
    }
    return true
  }
  if (a.kind === 'resource_path' && b.kind === 'file_set') return patternHitsFile(a, b.items, undecided)
  if (b.kind === 'resource_path' && a.kind === 'file_set') return patternHitsFile(b, a.items, undecided)
  return true
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

// NFA edge labels. Lit carries a code point; NonSlash = any but `/`; AnyChar = any.
const enum Lab { Eps, Lit, NonSlash, AnyChar }

const SLASH = 47

/**
 * Thompson NFA of a token list, in flat arrays. The edges of state `s` are
 * `off[s] .. off[s + 1] - 1`. Every ε-edge goes from a lower to a higher
 * state number (states are created left to right), so ε-closures terminate
 * and the automaton has at most 2 states per token plus one.
 */
interface Nfa {
  readonly size: number
  readonly off: Int32Array
  readonly lab: Uint8Array
  /** the code point of a Lit edge; -1 otherwise */
  readonly cp: Int32Array
  readonly to: Int32Array
  readonly accept: number
}

function tokensToNfa (tokens: readonly Token[]): Nfa {
  const edges: number[][] = [[]] // per state: [lab, cp, to, lab, cp, to, …]
  const add = (from: number, l: Lab, cp: number, to: number): void => { (edges[from] as number[]).push(l, cp, to) }
  const fresh = (): number => { edges.push([]); return edges.length - 1 }
  let cur = 0
  for (const tok of tokens) {
    switch (tok.t) {
      case Tok.Lit: { const s = fresh(); add(cur, Lab.Lit, (tok.c as string).codePointAt(0) as number, s); cur = s; break }
      case Tok.Qmark: { const s = fresh(); add(cur, Lab.NonSlash, -1, s); cur = s; break }
      case Tok.Star: { const s = fresh(); add(cur, Lab.Eps, -1, s); add(s, Lab.NonSlash, -1, s); cur = s; break }
      case Tok.Any:
      case Tok.All: { const s = fresh(); add(cur, Lab.Eps, -1, s); add(s, Lab.AnyChar, -1, s); cur = s; break }
      case Tok.SegsPrefix: { // (?:.*/)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, -1, end); add(cur, Lab.Eps, -1, loop)
        add(loop, Lab.AnyChar, -1, loop); add(loop, Lab.Lit, SLASH, end)
        cur = end
        break
      }
      case Tok.SegsSuffix: { // (?:/.*)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, -1, end); add(cur, Lab.Lit, SLASH, loop)
        add(loop, Lab.AnyChar, -1, loop); add(loop, Lab.Eps, -1, end)
        cur = end
        break
      }
    }
  }
  const size = edges.length
  let total = 0
  for (const e of edges) total += e.length / 3
  const off = new Int32Array(size + 1)
  const lab = new Uint8Array(total)
  const cp = new Int32Array(total)
  const to = new Int32Array(total)
  let k = 0
  for (let s = 0; s < size; s++) {
    off[s] = k
    const e = edges[s] as number[]
    for (let x = 0; x < e.length; x += 3) {
      lab[k] = e[x] as number; cp[k] = e[x + 1] as number; to[k] = e[x + 2] as number
      k++
    }
  }
  off[size] = k
  return { size, off, lab, cp, to, accept: cur }
}

/** A compiled glob and the scratch space of its path matcher (single-threaded, never re-entered). */
interface CompiledGlob {
  readonly nfa: Nfa
  /** The literal characters the pattern starts / ends with: a cheap filter before the NFA runs. */
  readonly prefix: string
  readonly suffix: string
  scratch: MatchScratch | undefined
}

interface MatchScratch {
  mark: Int32Array
  cur: Int32Array
  next: Int32Array
  stack: Int32Array
  gen: number
}

function compile (normalisedPattern: string): CompiledGlob {
  const tokens = tokenize(normalisedPattern)
  let i = 0
  let prefix = ''
  while (i < tokens.length && (tokens[i] as Token).t === Tok.Lit) prefix += (tokens[i++] as Token).c as string
  let j = tokens.length
  let suffix = ''
  while (j > i && (tokens[j - 1] as Token).t === Tok.Lit) suffix = ((tokens[--j] as Token).c as string) + suffix
  return { nfa: tokensToNfa(tokens), prefix, suffix, scratch: undefined }
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

// ---------------------------------------------------------------------------
// Work bounds
//
// Matching one path simulates the NFA with a set of live states (no
// backtracking): at most O(states × path length) steps, and since every
// state needs one character to be reached from the previous token, at most
// O(path length²) steps as well. A glob × file_set decision may take
// GLOB_MATCH_BUDGET steps over all the files; a glob × glob decision may
// visit GLOB_PRODUCT_BUDGET states of the product automaton. Past a budget
// the answer is the caller's `undecided` value: by default true
// ("potentially overlapping", SPEC §6.2). Only hostile or absurd inputs get
// there: `src/**/*.ts` against a 200-character path takes a few hundred
// steps, and a pair of ordinary globs visits a few dozen product states.
// ---------------------------------------------------------------------------

/** NFA steps (live states and edges examined) one glob × file_set decision may take. */
export const GLOB_MATCH_BUDGET = 1 << 22
/** Product-automaton states one glob × glob decision may visit. */
export const GLOB_PRODUCT_BUDGET = 1 << 16

/**
 * Running totals of glob work, for complexity tests and diagnostics only:
 * `matchSteps` counts NFA steps of path matching, `productStates` the
 * product states visited by glob intersection. Callers may reset them.
 */
export const globWork = { matchSteps: 0, productStates: 0 }

function scratchOf (g: CompiledGlob): MatchScratch {
  let sc = g.scratch
  if (sc === undefined) {
    const n = g.nfa.size
    sc = {
      mark: new Int32Array(n),
      cur: new Int32Array(n),
      next: new Int32Array(n),
      stack: new Int32Array(g.nfa.lab.length + 1),
      gen: 0
    }
    g.scratch = sc
  }
  return sc
}

let lastSteps = 0

/**
 * Does the glob accept `path` (already normalised)? 1 yes, 0 no, -1 when
 * more than `limit` steps would be needed. The steps taken are left in
 * `lastSteps`. Linear in (states × code points of the path).
 */
function run (g: CompiledGlob, path: string, limit: number): number {
  if (!path.startsWith(g.prefix) || !path.endsWith(g.suffix)) {
    lastSteps = 1 + g.prefix.length + g.suffix.length
    globWork.matchSteps += lastSteps
    return 0
  }
  const { off, lab, cp, to, accept } = g.nfa
  const sc = scratchOf(g)
  const { mark, stack } = sc
  let cur = sc.cur
  let next = sc.next
  if (sc.gen > 0x3fffffff) { mark.fill(0); sc.gen = 0 }
  let gen = ++sc.gen
  let steps = 0

  // Adds the ε-closure of `s` to `list` (states marked with `gen`); returns the new length.
  const close = (s: number, list: Int32Array, n: number): number => {
    let sp = 0
    stack[sp++] = s
    while (sp > 0) {
      const u = stack[--sp] as number
      steps++
      if (mark[u] === gen) continue
      mark[u] = gen
      list[n++] = u
      for (let e = off[u] as number, end = off[u + 1] as number; e < end; e++) {
        if (lab[e] === Lab.Eps) stack[sp++] = to[e] as number
      }
    }
    return n
  }

  let nCur = close(0, cur, 0)
  let result = -2
  for (let i = 0; i < path.length && result === -2;) {
    const ch = path.codePointAt(i) as number
    i += ch > 0xffff ? 2 : 1
    gen = ++sc.gen
    let nNext = 0
    for (let k = 0; k < nCur; k++) {
      const s = cur[k] as number
      for (let e = off[s] as number, end = off[s + 1] as number; e < end; e++) {
        steps++
        const l = lab[e]
        if (l === Lab.Eps) continue
        if (l === Lab.AnyChar || (l === Lab.NonSlash ? ch !== SLASH : cp[e] === ch)) nNext = close(to[e] as number, next, nNext)
      }
    }
    if (steps > limit) result = -1
    else if (nNext === 0) result = 0
    const t = cur; cur = next; next = t
    nCur = nNext
  }
  if (result === -2) result = mark[accept] === gen ? 1 : 0
  globWork.matchSteps += steps
  lastSteps = steps
  return result
}

/**
 * Does `path` (normalised first) match the glob `pattern` (normalised
 * first)? Exact, no budget: O(pattern × path) time.
 */
export function globMatch (pattern: string, path: string): boolean {
  return run(compiledPattern(pattern), normalizePath(path), Infinity) === 1
}

/**
 * Is there a normalised path that both globs match? Exact when the product
 * automaton search stays within GLOB_PRODUCT_BUDGET states; beyond it the
 * answer is `undecided` (default true, "potentially overlapping").
 */
export function globsOverlap (a: string, b: string, undecided = true): boolean {
  return intersectGlobs(compiledPattern(a), compiledPattern(b), undecided)
}

function patternHitsFile (p: NormalizedScope, files: ReadonlySet<string>, undecided: boolean): boolean {
  if (p.pattern === undefined) return true
  const g = compiledFor(p)
  let left = GLOB_MATCH_BUDGET
  for (const f of files) {
    const r = run(g, f, left)
    if (r === 1) return true
    if (r === -1) return undecided
    left -= lastSteps
  }
  return false
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

/** Product spaces up to this many entries use a flat visited array; larger ones a Set. */
const FLAT_SEEN_MAX = 1 << 18

/**
 * Emptiness test of L(a) ∩ L(b) ∩ {normalised paths} by breadth-first
 * search over the product of the two NFAs and a 4-state path-shape automaton.
 * Edge labels are character sets (one code point, any-but-`/`, any); two
 * labels can fire together when their sets intersect, and the alphabet is
 * unbounded, so any-but-`/` ∩ any-but-`/` is never empty.
 *
 * Exact while at most GLOB_PRODUCT_BUDGET product states are visited
 * (each costs at most 3 × 3 edge pairs); past that the answer is `undecided`.
 * Memory is bounded by the budget too, whatever the automaton sizes.
 */
function intersectGlobs (ca: CompiledGlob, cb: CompiledGlob, undecided: boolean): boolean {
  const A = ca.nfa; const B = cb.nfa
  const nb = B.size
  const space = A.size * nb * 4
  const flat = space <= FLAT_SEEN_MAX ? new Uint8Array(space) : undefined
  const set = flat === undefined ? new Set<number>() : undefined
  const queue: number[] = []
  let over = false
  const push = (p: number, q: number, f: number): void => {
    const k = (p * nb + q) * 4 + f
    if (flat !== undefined) {
      if (flat[k] === 1) return
      flat[k] = 1
    } else {
      if ((set as Set<number>).has(k)) return
      (set as Set<number>).add(k)
    }
    if (queue.length >= GLOB_PRODUCT_BUDGET) { over = true; return }
    queue.push(k)
  }
  push(0, 0, F_START)
  let head = 0
  let found = false
  for (; head < queue.length && !over; head++) {
    const k = queue[head] as number
    const f = k % 4
    const pq = (k - f) / 4
    const q = pq % nb
    const p = (pq - q) / nb
    if (p === A.accept && q === B.accept && (f === F_OTHER || f === F_ROOT)) { found = true; break }
    const a0 = A.off[p] as number; const a1 = A.off[p + 1] as number
    const b0 = B.off[q] as number; const b1 = B.off[q + 1] as number
    for (let x = a0; x < a1; x++) if (A.lab[x] === Lab.Eps) push(A.to[x] as number, q, f)
    for (let y = b0; y < b1; y++) if (B.lab[y] === Lab.Eps) push(p, B.to[y] as number, f)
    for (let x = a0; x < a1; x++) {
      const lx = A.lab[x]
      if (lx === Lab.Eps) continue
      const cx = A.cp[x] as number
      for (let y = b0; y < b1; y++) {
        const ly = B.lab[y]
        if (ly === Lab.Eps) continue
        const cy = B.cp[y] as number
        // Which kinds of character (slash / other) can both edges consume?
        let canSlash: boolean; let canOther: boolean
        if (lx === Lab.Lit && ly === Lab.Lit) {
          if (cx !== cy) continue
          canSlash = cx === SLASH; canOther = !canSlash
        } else if (lx === Lab.Lit || ly === Lab.Lit) {
          const c = lx === Lab.Lit ? cx : cy
          const other = lx === Lab.Lit ? ly : lx
          if (c === SLASH) { canSlash = other === Lab.AnyChar; canOther = false } else { canSlash = false; canOther = true }
        } else {
          canSlash = lx === Lab.AnyChar && ly === Lab.AnyChar
          canOther = true
        }
        if (canSlash) { const g = afterSlash(f); if (g >= 0) push(A.to[x] as number, B.to[y] as number, g) }
        if (canOther) push(A.to[x] as number, B.to[y] as number, F_OTHER)
      }
    }
  }
  globWork.productStates += head
  if (found) return true
  return over ? undecided : false
}
