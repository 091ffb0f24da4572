/**
 * The core's overlap entry point (src/coordinator/overlap.ts) is protocol
 * `scopesOverlap` in strict mode with an explicit answer for undecidable
 * (over-budget) globs: exact answers on ordinary inputs, checked here against
 * a brute-force reference, and the caller's fixed answer past the budget.
 */
import t from 'tap'
import { GLOB_MATCH_BUDGET, GLOB_PRODUCT_BUDGET, overlaps } from '../../src/coordinator/overlap.js'
import * as protocol from '../../src/protocol/scope.js'
import { normalizePath, normalizeScope, scopesOverlap, type Scope } from '../../src/protocol/scope.js'
import { Harness, assertRejected } from '../helpers/mpac.js'

function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

const PATTERN_ATOMS = ['a', 'b', '/', '*', '?', '**', 'é', '.']
const PATH_ATOMS = ['a', 'b', '/', 'é', '.', 'ab']

function pick<T> (r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T
}

function word (r: () => number, atoms: readonly string[], max: number): string {
  let s = ''
  const n = 1 + Math.floor(r() * max)
  for (let k = 0; k < n; k++) s += pick(r, atoms)
  return s
}

// A test-local reference matcher: the glob grammar of protocol/scope.ts read
// literally, by backtracking over code points (fine for these short inputs).
function refMatch (pattern: string, path: string): boolean {
  const segs: string[] = []
  for (const seg of normalizePath(pattern).split('/')) {
    const globstar = /^\*{2,}$/.test(seg)
    if (globstar && segs.at(-1) === '**') continue
    segs.push(globstar ? '**' : seg)
  }
  const p = Array.from(segs.join('/'))
  const s = Array.from(normalizePath(path))
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === s.length
    const c = p[i] as string
    if (c === '*') {
      let k = i
      while (p[k] === '*') k++
      const wholeSeg = (i === 0 || p[i - 1] === '/') && (k === p.length || p[k] === '/')
      if (k - i >= 2 && wholeSeg && k < p.length) {
        // `**/`: zero segments, or any run ending in `/`
        if (go(k + 1, j)) return true
        for (let m = j; m < s.length; m++) if (s[m] === '/' && go(k + 1, m + 1)) return true
        return false
      }
      for (let m = j; m <= s.length; m++) {
        if (go(k, m)) return true
        if (m < s.length && s[m] === '/' && k - i < 2) return false
      }
      return false
    }
    if (c === '/' && p.length - i >= 3 && p.slice(i + 1).every(x => x === '*')) {
      // `/**` at the end: nothing more, or `/` and anything
      return j === s.length || (s[j] === '/')
    }
    if (j === s.length) return false
    if (c === '?') return s[j] !== '/' && go(i + 1, j + 1)
    return s[j] === c && go(i + 1, j + 1)
  }
  return go(0, 0)
}

t.test('glob × file_set: exact, both undecided answers, against the reference matcher', async t => {
  const r = rng(20260501)
  let hits = 0
  let disagreements = 0
  for (let k = 0; k < 4000; k++) {
    const g: Scope = { kind: 'resource_path', pattern: word(r, PATTERN_ATOMS, 8) }
    const resources = [word(r, PATH_ATOMS, 8), word(r, PATH_ATOMS, 8)]
    const a = normalizeScope(g)
    const b = normalizeScope({ kind: 'file_set', resources })
    const want = resources.some(f => refMatch(g.pattern as string, f))
    if (want) hits++
    for (const [x, y] of [[a, b], [b, a]] as const) {
      if (overlaps(x, y) !== want || overlaps(x, y, false) !== want) {
        disagreements++
        if (disagreements < 10) t.fail('disagreement', { a: x.raw, b: y.raw, want })
      }
    }
  }
  t.equal(disagreements, 0)
  t.ok(hits > 400 && hits < 3600, `both answers occur (${hits} overlaps)`)
})

t.test('glob × glob: exact on small patterns, symmetric, witnessed by a matching path', async t => {
  const r = rng(7)
  let positives = 0
  for (let k = 0; k < 1500; k++) {
    const p = word(r, PATTERN_ATOMS, 6)
    const q = word(r, PATTERN_ATOMS, 6)
    const a = normalizeScope({ kind: 'resource_path', pattern: p })
    const b = normalizeScope({ kind: 'resource_path', pattern: q })
    const got = overlaps(a, b)
    if (got) positives++
    if (overlaps(b, a) !== got || overlaps(a, b, false) !== got) t.fail('asymmetric or undecided', { p, q })
    if (a.pattern !== b.pattern && got !== protocol.globsOverlap(p, q, false)) t.fail('differs from globsOverlap', { p, q })
    // Any path matching both is a witness: then the answer must be true.
    for (let w = 0; w < 6; w++) {
      const path = word(r, PATH_ATOMS, 6)
      if (refMatch(p, path) && refMatch(q, path) && path === normalizePath(path) && path !== '' && !got) t.fail('missed witness', { p, q, path })
    }
  }
  t.ok(positives > 100 && positives < 1400, `both answers occur (${positives} overlaps)`)
})

t.test('one tokenizer, one matcher: the core re-exports the protocol budgets', async t => {
  t.equal(GLOB_MATCH_BUDGET, protocol.GLOB_MATCH_BUDGET)
  t.equal(GLOB_PRODUCT_BUDGET, protocol.GLOB_PRODUCT_BUDGET)
})

t.test('kinds without globs and canonical URIs are delegated unchanged', async t => {
  const cases: Array<[Scope, Scope]> = [
    [{ kind: 'file_set', resources: ['a.py'] }, { kind: 'file_set', resources: ['./a.py'] }],
    [{ kind: 'entity_set', entities: ['e1'] }, { kind: 'task_set', task_ids: ['t'] }],
    [{ kind: 'resource_path', pattern: 'x/*' }, { kind: 'entity_set', entities: ['e'] }],
    [{ kind: 'resource_path', pattern: 'x/*', canonical_uris: ['u1'] }, { kind: 'file_set', resources: ['x/y'], canonical_uris: ['u2'] }],
    [{ kind: 'resource_path', pattern: 'x/*' }, { kind: 'resource_path', pattern: 'x/*' }],
    [{ kind: 'resource_path', pattern: 'x/**' }, { kind: 'resource_path', pattern: 'y/**' }]
  ]
  for (const [x, y] of cases) {
    const a = normalizeScope(x)
    const b = normalizeScope(y)
    t.equal(overlaps(a, b), scopesOverlap(a, b), JSON.stringify([x, y]))
  }
})

t.test('over budget: undecided answers', async t => {
  const huge = normalizeScope({ kind: 'resource_path', pattern: '*a'.repeat(2048) })
  const huge2 = normalizeScope({ kind: 'resource_path', pattern: '*b'.repeat(2048) })
  const before = protocol.globWork.productStates
  t.equal(overlaps(huge, huge2), true, 'glob × glob: potentially overlapping')
  t.equal(overlaps(huge, huge2, false), false)
  t.ok(protocol.globWork.productStates - before <= 2 * GLOB_PRODUCT_BUDGET, 'each decision stayed within the product budget')
  const files = normalizeScope({ kind: 'file_set', resources: Array.from({ length: 20 }, (_, k) => 'a'.repeat(1000 + k)) })
  const steps = protocol.globWork.matchSteps
  t.equal(overlaps(huge, files), true, 'glob × many long files: potentially overlapping')
  t.equal(overlaps(files, huge, false), false)
  t.ok(protocol.globWork.matchSteps - steps <= 2 * (GLOB_MATCH_BUDGET + 4 * 4097), 'each decision stayed within the match budget')
  const shortFiles = normalizeScope({ kind: 'file_set', resources: Array.from({ length: 3 }, (_, k) => 'b'.repeat(1000 + k)) })
  t.equal(overlaps(huge, shortFiles), false, 'a cheap decision is exact whatever the undecided answer')
})

t.test('a file write is not granted by a glob that does not match it, however hostile the glob', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 })
  h.join('A')
  // A backtracking RegExp would take exponential time on this pattern
  // (`a**` is any run, `/` included) against a path of a's.
  h.announce('A', 'g', { kind: 'resource_path', pattern: 'a' + '**a'.repeat(300) + '**b**' })
  h.announce('A', 'ok', { kind: 'resource_path', pattern: 'docs/**' })
  const path = Array(4).fill('a'.repeat(250)).join('/')
  const r = h.commit('A', 'o1', 'other.txt', 'r0', 'r1', 'g', { file_changes: { [path]: { content: 'x' } } })
  assertRejected(t, r, 'AUTHORIZATION_FAILED')
  const hit = h.commit('A', 'o2', 'other.txt', 'r0', 'r1', 'g', { file_changes: { [path + '/b']: { content: 'x' } } })
  t.equal(hit.accepted, true, 'the same glob grants a path it matches')
  const ok = h.commit('A', 'o3', 'other2.txt', 'r0', 'r1', 'ok', { file_changes: { 'docs/a/b.md': { content: 'x' } } })
  t.equal(ok.accepted, true, 'an ordinary glob grants')
})
