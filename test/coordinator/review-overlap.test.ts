/**
 * The core's bounded overlap test (src/coordinator/overlap.ts) gives the same
 * answers as protocol `scopesOverlap` on every input small enough for the
 * protocol helper, and a fixed answer when its budget runs out.
 */
import t from 'tap'
import { GLOB_MATCH_BUDGET, GLOB_PRODUCT_BUDGET, overlaps } from '../../src/coordinator/overlap.js'
import { normalizeScope, scopesOverlap, type Scope } from '../../src/protocol/scope.js'
import { Harness, assertRejected, type Json } from '../helpers/mpac.js'

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

t.test('glob × file_set and glob × glob agree with protocol scopesOverlap', async t => {
  const r = rng(20260501)
  let hits = 0
  let disagreements = 0
  for (let k = 0; k < 4000; k++) {
    const g: Scope = { kind: 'resource_path', pattern: word(r, PATTERN_ATOMS, 8) }
    const other: Scope = r() < 0.7
      ? { kind: 'file_set', resources: [word(r, PATH_ATOMS, 8), word(r, PATH_ATOMS, 8)] }
      : { kind: 'resource_path', pattern: word(r, PATTERN_ATOMS, 8) }
    const a = normalizeScope(g)
    const b = normalizeScope(other)
    const want = scopesOverlap(a, b)
    if (want) hits++
    for (const [x, y] of [[a, b], [b, a]] as const) {
      if (overlaps(x, y) !== want || overlaps(x, y, false) !== want) {
        disagreements++
        t.fail('disagreement', { a: x.raw, b: y.raw, want })
      }
    }
  }
  t.equal(disagreements, 0)
  t.ok(hits > 400 && hits < 3600, `both answers occur (${hits} overlaps)`)
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
  t.ok(4097 * 4097 > GLOB_PRODUCT_BUDGET)
  t.equal(overlaps(huge, huge2), true, 'glob × glob: potentially overlapping')
  t.equal(overlaps(huge, huge2, false), false)
  const files = normalizeScope({ kind: 'file_set', resources: Array.from({ length: 3 }, (_, k) => 'b'.repeat(1000 + k)) })
  t.ok(4097 * 3000 > GLOB_MATCH_BUDGET)
  t.equal(overlaps(huge, files), true, 'glob × many long files: potentially overlapping')
  t.equal(overlaps(files, huge, false), false)
})

t.test('a file write is not granted by a glob too costly to decide', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 })
  h.join('A')
  h.announce('A', 'g', { kind: 'resource_path', pattern: '*a'.repeat(2048) })
  h.announce('A', 'ok', { kind: 'resource_path', pattern: 'docs/**' })
  const path = [...Array(5).fill('a'.repeat(200)), 'a'.repeat(19)].join('/')
  t.equal(path.length, 1024)
  const r = h.commit('A', 'o1', 'other.txt', 'r0', 'r1', 'g', { file_changes: { [path]: { content: 'x' } } as Json })
  assertRejected(t, r, 'AUTHORIZATION_FAILED')
  const ok = h.commit('A', 'o2', 'other.txt', 'r0', 'r1', 'ok', { file_changes: { 'docs/a/b.md': { content: 'x' } } as Json })
  t.equal(ok.accepted, true, 'a decidable glob still grants')
})
