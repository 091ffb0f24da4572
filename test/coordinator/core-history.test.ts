/**
 * Op-id reuse by the Python `mpac` agent (docs/compatibility.md, O7) and the
 * bounded history of finished intents and operations (CoordinatorConfig
 * maxFinishedRecords).
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { CoordinatorSnapshot } from '../../src/coordinator/types.js'
import { Harness, assertRejected, assertRelayed, payloadsOfType, type Json } from '../helpers/mpac.js'

const QUIET = { unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 }

/** A restored copy's snapshot equals the original's (the restore is exact). */
function restoresExactly (h: Harness): boolean {
  const snap = JSON.parse(JSON.stringify(h.snap())) as CoordinatorSnapshot
  const again = Coordinator.restore(snap, h.config).snapshot(h.now)
  return JSON.stringify(again) === JSON.stringify(h.snap())
}

t.test('op-id reuse: a post_commit OP_COMMIT re-using an op id its own principal COMMITTED is a new commit', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B')
  h.announce('A', 'i1', ['a.py'])
  assertRelayed(t, h.commit('A', 'op-agent-a.py', 'a.py', 'r0', 'r1', 'i1'), 'first task')
  h.withdraw('A', 'i1')
  h.announce('A', 'i2', ['a.py'])
  const again = h.commit('A', 'op-agent-a.py', 'a.py', 'r1', 'r2', 'i2', { summary: 'second task' })
  assertRelayed(t, again, 'second task re-using the op id')
  t.match(h.op('op-agent-a.py'), { state: 'COMMITTED', intent_id: 'i2', state_ref_before: 'r1', state_ref_after: 'r2', summary: 'second task' }, 'the record is replaced')
  t.equal(h.snap().operations.filter(o => o.op_id === 'op-agent-a.py').length, 1, 'one record per op id')
  t.equal((h.snap().state_refs as Json)['a.py'], 'r2', 'the ref map advanced')
  // Every check still applies to the re-used id: a stale before-ref is refused and changes nothing.
  const before = h.op('op-agent-a.py')
  assertRejected(t, h.commit('A', 'op-agent-a.py', 'a.py', 'r1', 'r3', 'i2'), 'STALE_STATE_REF')
  t.same(h.op('op-agent-a.py'), before, 'a refused re-use leaves the record')
  t.ok(restoresExactly(h), 'restore is exact after a re-use')
})

t.test('op-id reuse stays INVALID_REFERENCE for another principal\'s op, a non-COMMITTED op, pre_commit and batch members (O7)', async t => {
  const h = new Harness(QUIET)
  h.join('A', ['R', ['reviewer']])
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.join('B')
  h.announce('B', 'i-b', ['c.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  const o1 = h.op('o1')
  const foreign = assertRejected(t, h.commit('B', 'o1', 'c.py', 'x0', 'x1', 'i-b'), 'INVALID_REFERENCE', 'B re-using A\'s committed op id')
  t.match(foreign.description, /already exists \(COMMITTED\)/)
  t.same(h.op('o1'), o1, 'A\'s record is untouched')
  h.propose('A', 'p1', 'b.py', 'i')
  h.opReject('R', 'p1')
  t.equal(h.opState('p1'), 'REJECTED')
  assertRejected(t, h.commit('A', 'p1', 'b.py', 'y0', 'y1', 'i'), 'INVALID_REFERENCE', 'own REJECTED op id')
  t.equal(h.opState('p1'), 'REJECTED')
  h.batch('A', 'bt', [{ op_id: 'm1', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1' }], 'all_or_nothing', 'i')
  t.equal(h.opState('m1'), 'COMMITTED')
  assertRejected(t, h.commit('A', 'm1', 'b.py', 'q1', 'q2', 'i'), 'INVALID_REFERENCE', 'own committed batch member')

  const g = new Harness({ ...QUIET, complianceProfile: 'governance', executionModel: 'pre_commit' })
  g.join('A')
  g.announce('A', 'i', ['a.py'])
  g.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  g.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  t.equal(g.opState('o1'), 'COMMITTED', 'pre_commit: proposed, authorized and completed')
  assertRejected(t, g.commit('A', 'o1', 'a.py', 'r1', 'r2', 'i'), 'INVALID_REFERENCE', 'pre_commit: re-use refused')
})

t.test('op-id reuse keeps conflicts\' related_ops consistent', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B', 'C')
  h.announce('A', 'i1', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i1')
  assertRelayed(t, h.report('C', { conflict_id: 'k1', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-b'], related_ops: ['o1'] }))
  t.same(h.conflict('k1')?.related_ops, ['o1'])
  h.withdraw('A', 'i1')
  h.announce('A', 'i2', ['a.py'])
  assertRelayed(t, h.commit('A', 'o1', 'a.py', 'r1', 'r2', 'i2'), 're-use while a conflict names the old commit')
  t.same(h.conflict('k1')?.related_ops, [], 'the open conflict no longer names the replaced record')
  t.equal(h.conflictState('k1'), 'OPEN', 'i-b is still live')
  t.ok(restoresExactly(h), 'restore is exact')
  // With i-b gone the conflict has no live entity left and is dismissed.
  h.withdraw('B', 'i-b')
  t.equal(h.conflictState('k1'), 'DISMISSED')
  // A conflict on the new intent links the re-used op again.
  assertRelayed(t, h.report('C', { conflict_id: 'k2', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i2'] }))
  assertRelayed(t, h.commit('A', 'o1', 'a.py', 'r2', 'r3', 'i2'))
  t.same(h.conflict('k2')?.related_ops, ['o1'], 'the new commit is linked to its intent\'s conflict')
  t.same(payloadsOfType(h.tick(), 'PROTOCOL_ERROR'), [])
  t.ok(restoresExactly(h), 'restore is exact')
})
