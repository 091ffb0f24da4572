/**
 * Scope overlap with bounded work. Same answers as protocol `scopesOverlap`
 * (strict mode), except where a resource_path glob is involved:
 *
 * - glob × file: decided by simulating the glob's NFA over the path, linear
 *   in (NFA states × path length). The protocol helper uses a backtracking
 *   RegExp, which is exponential on patterns such as `*a*a*a*a*a*a*a*a*b`
 *   (seconds to hours for one 40-character path), so a single announce could
 *   stall the process.
 * - glob × glob: the exact product-automaton test of the protocol helper when
 *   the product is small; a larger product (only hostile or absurd patterns
 *   reach it) is not decided.
 *
 * When the work budget runs out the answer is `undecided`: true ("potentially
 * overlapping", SPEC §6.2) for conflict detection and frozen-scope checks,
 * false where an overlap would grant something (a file write inside an
 * intent's scope).
 */
import { scopesOverlap, type NormalizedScope } from '../protocol/scope.js'

/** Pairs of states the exact glob × glob test may explore. */
export const GLOB_PRODUCT_BUDGET = 1 << 18
/** NFA steps (states × characters) one glob × file_set test may take. */
export const GLOB_MATCH_BUDGET = 1 << 22

const enum Lab { Eps, Lit, NonSlash, AnyChar }

interface Nfa {
  /** per state: labels, literal code points, targets (parallel arrays) */
  readonly lab: Lab[][]
  readonly lit: string[][]
  readonly to: number[][]
  readonly accept: number
  readonly size: number
}

const GLOBSTAR_SEGMENT = /^\*{2,}$/

// The grammar of protocol/scope.ts (`*`, `?`, `**` segments, `a**b`), compiled
// to the same Thompson NFA; see the grammar comment there.
function compile (pattern: string): Nfa {
  const segs: string[] = []
  for (const s of pattern.split('/')) {
    const star = GLOBSTAR_SEGMENT.test(s)
    if (star && segs.length > 0 && segs[segs.length - 1] === '**') continue
    segs.push(star ? '**' : s)
  }
  const cs = Array.from(segs.join('/'))
  const lab: Lab[][] = [[]]
  const lit: string[][] = [[]]
  const to: number[][] = [[]]
  const fresh = (): number => { lab.push([]); lit.push([]); to.push([]); return lab.length - 1 }
  const add = (from: number, l: Lab, c: string, t: number): void => {
    (lab[from] as Lab[]).push(l); (lit[from] as string[]).push(c); (to[from] as number[]).push(t)
  }
  const loopOf = (from: number, l: Lab): number => { const s = fresh(); add(from, Lab.Eps, '', s); add(s, l, '', s); return s }
  let cur = 0
  const n = cs.length
  let i = 0
  while (i < n) {
    const c = cs[i] as string
    if (c === '*') {
      let j = i
      while (j < n && cs[j] === '*') j++
      const atStart = i === 0 || cs[i - 1] === '/'
      const atEnd = j === n || cs[j] === '/'
      if (j - i >= 2 && atStart && atEnd && j < n) {
        // `**/`: (?:.*/)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, '', end); add(cur, Lab.Eps, '', loop)
        add(loop, Lab.AnyChar, '', loop); add(loop, Lab.Lit, '/', end)
        cur = end
        j++
      } else {
        cur = loopOf(cur, j - i >= 2 ? Lab.AnyChar : Lab.NonSlash)
      }
      i = j
      continue
    }
    if (c === '/') {
      let j = i + 1
      while (j < n && cs[j] === '*') j++
      if (j === n && j - (i + 1) >= 2) {
        // `/**` at the end: (?:/.*)?
        const loop = fresh(); const end = fresh()
        add(cur, Lab.Eps, '', end); add(cur, Lab.Lit, '/', loop)
        add(loop, Lab.AnyChar, '', loop); add(loop, Lab.Eps, '', end)
        cur = end
        break
      }
    }
    const s = fresh()
    add(cur, c === '?' ? Lab.NonSlash : Lab.Lit, c === '?' ? '' : c, s)
    cur = s
    i++
  }
  return { lab, lit, to, accept: cur, size: lab.length }
}

const nfas = new WeakMap<NormalizedScope, Nfa>()

function nfaOf (n: NormalizedScope): Nfa {
  let a = nfas.get(n)
  if (a === undefined) {
    a = compile(n.pattern as string)
    nfas.set(n, a)
  }
  return a
}

/** Does the NFA accept `path` (a normalised path)? Set simulation, no backtracking. */
function accepts (a: Nfa, path: string): boolean {
  const mark = new Int32Array(a.size).fill(-1)
  let cur: number[] = []
  let step = 0
  const close = (list: number[], s: number): void => {
    if (mark[s] === step) return
    mark[s] = step
    list.push(s)
    const labs = a.lab[s] as Lab[]
    const tos = a.to[s] as number[]
    for (let k = 0; k < labs.length; k++) if (labs[k] === Lab.Eps) close(list, tos[k] as number)
  }
  close(cur, 0)
  for (const ch of path) {
    step++
    const next: number[] = []
    for (const s of cur) {
      const labs = a.lab[s] as Lab[]
      for (let k = 0; k < labs.length; k++) {
        const l = labs[k]
        if (l === Lab.Eps) continue
        const ok = l === Lab.AnyChar || (l === Lab.NonSlash ? ch !== '/' : (a.lit[s] as string[])[k] === ch)
        if (ok) close(next, (a.to[s] as number[])[k] as number)
      }
    }
    if (next.length === 0) return false
    cur = next
  }
  return cur.includes(a.accept)
}

function globHitsFiles (p: NormalizedScope, files: ReadonlySet<string>, undecided: boolean): boolean {
  if (p.pattern === undefined) return true
  const a = nfaOf(p)
  let work = 0
  for (const f of files) {
    work += a.size * (f.length + 1)
    if (work > GLOB_MATCH_BUDGET) return undecided
    if (accepts(a, f)) return true
  }
  return false
}

/**
 * `scopesOverlap(a, b)` (strict) with bounded work; `undecided` is the answer
 * when the budget is exceeded.
 */
export function overlaps (a: NormalizedScope, b: NormalizedScope, undecided = true): boolean {
  const ga = a.kind === 'resource_path'
  const gb = b.kind === 'resource_path'
  if (!ga && !gb) return scopesOverlap(a, b)
  if (a.canonicalUris !== undefined && b.canonicalUris !== undefined) return scopesOverlap(a, b)
  if (ga && gb) {
    if (a.pattern === undefined || b.pattern === undefined || a.pattern === b.pattern) return true
    if (nfaOf(a).size * nfaOf(b).size > GLOB_PRODUCT_BUDGET) return undecided
    return scopesOverlap(a, b)
  }
  if (ga && b.kind === 'file_set') return globHitsFiles(a, b.items, undecided)
  if (gb && a.kind === 'file_set') return globHitsFiles(b, a.items, undecided)
  return true
}
