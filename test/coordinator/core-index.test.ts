/**
 * Internals: the scope index (candidates are a superset of every overlapping
 * live intent, and never a scan for file_set sessions) and the deadline heap.
 */
import t from 'tap'
import { normalizeScope, scopesOverlap, type Scope } from '../../src/protocol/scope.js'
import { DeadlineHeap } from '../../src/coordinator/heap.js'
import { impactFiles, ScopeIndex } from '../../src/coordinator/scope-index.js'
import { Harness, assertRejected, conflictIdsOf, refOf, type Json } from '../helpers/mpac.js'

function add (ix: ScopeIndex, id: string, scope: Scope): void {
  ix.add(id, normalizeScope(scope), impactFiles(scope))
}

t.test('item hits only for a file_set session', async t => {
  const ix = new ScopeIndex()
  add(ix, 'i1', { kind: 'file_set', resources: ['a.py', './b.py'] })
  add(ix, 'i2', { kind: 'file_set', resources: ['c.py'] })
  const out = new Set<string>()
  ix.overlapCandidates(normalizeScope({ kind: 'file_set', resources: ['b.py'] }), out)
  t.same([...out], ['i1'], 'normalised paths are indexed')
  t.same([...(ix.holders('file_set', 'a.py') ?? [])], ['i1'])
  t.equal(ix.holders('file_set', 'zzz'), undefined)
  t.equal(ix.holders('entity_set', 'a.py'), undefined)
})

t.test('cross-kind, non-indexable kinds and canonical URIs are candidates', async t => {
  const ix = new ScopeIndex()
  add(ix, 'f', { kind: 'file_set', resources: ['a.py'] })
  add(ix, 'e', { kind: 'entity_set', entities: ['users'] })
  add(ix, 'q', { kind: 'query', expression: 'select' })
  add(ix, 'r1', { kind: 'resource_path', pattern: 'src/**' })
  add(ix, 'u', { kind: 'file_set', resources: ['z.py'], canonical_uris: ['resource://x/1'] })
  const of = (s: Scope): string[] => {
    const out = new Set<string>()
    ix.overlapCandidates(normalizeScope(s), out)
    return [...out].sort()
  }
  t.same(of({ kind: 'file_set', resources: ['a.py'] }), ['e', 'f', 'q', 'r1'])
  t.same(of({ kind: 'file_set', resources: ['q.py'], canonical_uris: ['resource://x/1'] }), ['e', 'q', 'r1', 'u'])
  t.same(of({ kind: 'resource_path', pattern: 'lib/*' }), ['e', 'f', 'q', 'r1', 'u'], 'same non-indexable kind: all of it')
  t.same(of({ kind: 'entity_set', entities: ['orders'] }), ['f', 'q', 'r1', 'u'], 'no same-kind item hit')
})

t.test('the candidate set never misses an overlapping intent (randomised)', async t => {
  let seed = 7
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  }
  const kinds = ['file_set', 'entity_set', 'task_set', 'resource_path', 'custom']
  const make = (): Scope => {
    const kind = kinds[rnd(kinds.length)] as string
    const items = Array.from({ length: 1 + rnd(3) }, () => `x${rnd(8)}`)
    const s: Scope = kind === 'file_set'
      ? { kind, resources: items.map(i => `${i}.py`) }
      : kind === 'entity_set' ? { kind, entities: items } : kind === 'task_set' ? { kind, task_ids: items } : kind === 'resource_path' ? { kind, pattern: `${items[0]}*` } : { kind }
    if (rnd(5) === 0) s.canonical_uris = [`u${rnd(4)}`]
    return s
  }
  const ix = new ScopeIndex()
  const live = new Map<string, Scope>()
  for (let k = 0; k < 300; k++) {
    const id = `i${k}`
    const s = make()
    add(ix, id, s)
    live.set(id, s)
    if (rnd(3) === 0) {
      const victim = [...live.keys()][rnd(live.size)] as string
      const vs = live.get(victim) as Scope
      ix.remove(victim, normalizeScope(vs), impactFiles(vs))
      live.delete(victim)
    }
  }
  let checked = 0
  for (let q = 0; q < 200; q++) {
    const s = make()
    const n = normalizeScope(s)
    const out = new Set<string>()
    ix.overlapCandidates(n, out)
    for (const [id, other] of live) {
      if (scopesOverlap(n, normalizeScope(other))) {
        checked++
        if (!out.has(id)) t.fail(`missed ${id}: ${JSON.stringify(s)} vs ${JSON.stringify(other)}`)
      }
    }
    for (const id of out) if (!live.has(id)) t.fail(`removed intent ${id} still indexed`)
  }
  t.ok(checked > 100, `checked ${checked} overlapping pairs`)
})

t.test('dependency candidates come from impact files in both directions', async t => {
  const ix = new ScopeIndex()
  add(ix, 'utils', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['./main.py', 7] as unknown as string[] } })
  add(ix, 'main', { kind: 'file_set', resources: ['main.py'] })
  add(ix, 'other', { kind: 'file_set', resources: ['other.py'] })
  const a = new Set<string>()
  ix.dependencyCandidates(new Set(['main.py']), [], a)
  t.same([...a], ['utils'], 'an intent whose impact names my file')
  const b = new Set<string>()
  ix.dependencyCandidates(new Set(['lib.py']), ['main.py'], b)
  t.same([...b], ['main'], 'an intent holding a file my impact names')
  t.same(impactFiles({ kind: 'entity_set', entities: ['x'], extensions: { impact: ['a'] } }), [])
  t.same(impactFiles({ kind: 'file_set', resources: [], extensions: { impact: 'a.py' as unknown as string[] } }), [])
  t.same(impactFiles({ kind: 'file_set', resources: [] }), [])
  const empty = new ScopeIndex()
  const c = new Set<string>()
  empty.dependencyCandidates(new Set(['x']), ['y'], c)
  t.equal(c.size, 0)
  empty.remove('nothing', normalizeScope({ kind: 'entity_set', entities: ['a'] }), ['z'])
})

t.test('deadline heap pops in time order', async t => {
  const h = new DeadlineHeap()
  t.equal(h.peekTime(), undefined)
  h.pop()
  const times: number[] = []
  let seed = 3
  for (let k = 0; k < 500; k++) {
    seed = (seed * 69069 + 1) % 1000003
    times.push(seed % 1000)
    h.push(seed % 1000, `id${k}`)
  }
  t.equal(h.size, 500)
  const out: number[] = []
  while (h.size > 0) {
    out.push(h.peekTime() as number)
    t.type(h.peekId(), 'string')
    h.pop()
  }
  t.same(out, times.sort((a, b) => a - b))
  h.push(1, 'x')
  h.clear()
  t.equal(h.size, 0)
})

t.test('indexes in queries: summary, next resolution deadline, batch completion stale file', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 100 })
  h.join('A', 'B', ['R', ['arbiter']])
  h.announce('A', 'i-a', { kind: 'entity_set', entities: ['e'] })
  const first = conflictIdsOf(h.announce('B', 'i-b', { kind: 'entity_set', entities: ['e'] }))[0] as string
  h.clock.advance(10)
  h.announce('A', 'i-c', { kind: 'entity_set', entities: ['f'] })
  const second = conflictIdsOf(h.announce('B', 'i-d', { kind: 'entity_set', entities: ['f'] }))[0] as string
  t.match(h.c.summary(h.now), { open_conflict_count: 2, active_intent_count: 4, open_conflicts: [{ conflict_id: first }, { conflict_id: second }] })
  t.same((h.c.summary(h.now).active_intents as Json[]).map(i => i.intent_id), ['i-a', 'i-b', 'i-c', 'i-d'], 'registration order')
  t.equal(h.c.nextDeadline(), h.now - 10_000 + 100_001)
  h.escalate('A', first, 'R')
  t.equal(h.c.nextDeadline(), h.now + 100_001, 'an escalated conflict no longer times out')
  const p = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit' })
  p.join('A')
  p.announce('A', 'i', ['a.py'])
  p.batch('A', 'bt', [{ op_id: 'o1', target: 'a.py', state_ref_before: refOf(''), state_ref_after: refOf('x') }], 'all_or_nothing', 'i')
  p.fileSync('a.py', 'disk')
  assertRejected(t, p.batch('A', 'bt', [{ op_id: 'o1', target: 'a.py', state_ref_before: refOf('disk'), state_ref_after: refOf('x'), file_changes: { 'a.py': { content: 'x', state_ref_before: refOf('old') } } }]), 'STALE_STATE_REF')
  t.equal(p.opState('o1'), 'PROPOSED')
})
