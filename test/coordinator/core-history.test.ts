/**
 * Op-id reuse by the Python `mpac` agent (docs/compatibility.md, O7) and the
 * bounded history of finished intents and operations (CoordinatorConfig
 * maxFinishedRecords).
 */
import t, { type Test } from 'tap'
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

/** One finished task: announce, commit, withdraw (one terminal intent, one COMMITTED op). */
function task (h: Harness, pid: string, k: number): void {
  const file = `f${k % 7}.py`
  h.announce(pid, `i-${pid}-${k}`, [file])
  const before = (h.c.readFile(file) ?? { state_ref: 'r0' }).state_ref
  const ok = h.commit(pid, `o-${pid}-${k}`, file, String((h.snap().state_refs as Json)[file] ?? before), `r-${k}`, `i-${pid}-${k}`)
  if (!ok.accepted) throw new Error(`commit ${k} refused: ${JSON.stringify(ok.outputs)}`)
  h.withdraw(pid, `i-${pid}-${k}`)
}

t.test('bounded history: a long session keeps at most maxFinishedRecords terminal intents and settled ops', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 50 })
  h.join('A')
  const sizes: number[] = []
  for (let k = 0; k < 600; k++) {
    task(h, 'A', k)
    if (k === 199 || k === 599) sizes.push(JSON.stringify(h.snap()).length)
  }
  const snap = h.snap()
  t.equal(snap.intents.length, 50, 'terminal intents kept')
  t.equal(snap.operations.length, 50, 'settled ops kept')
  t.same(snap.intents.map(i => i.intent_id), Array.from({ length: 50 }, (_, j) => `i-A-${550 + j}`), 'the most recently finished ones, in order')
  t.same(snap.operations.map(o => o.op_id), Array.from({ length: 50 }, (_, j) => `o-A-${550 + j}`))
  t.ok(Math.abs((sizes[1] as number) - (sizes[0] as number)) < 200, `the snapshot does not grow with the history (${sizes.join(' → ')} bytes)`)
  t.equal(Object.keys(snap.state_refs as Json).length, 7, 'the per-target ref map keeps every target')
  // The ref map is state, not history: a stale before-ref is still refused after its op was forgotten.
  h.announce('A', 'i-late', ['f3.py'])
  t.equal(h.commit('A', 'o-late', 'f3.py', 'r-3', 'r-late', 'i-late').accepted, false, 'stale against the kept ref of f3.py')
  // A forgotten id may be re-used.
  assertRelayed(t, h.announce('A', 'i-A-0', ['zz.py']), 'a forgotten intent id is free again')
  assertRelayed(t, h.commit('A', 'o-A-0', 'zz.py', 'q0', 'q1', 'i-A-0'), 'a forgotten op id is free again')
  // SESSION_CLOSE totals still count forgotten records.
  const summary = payloadsOfType(h.close(), 'SESSION_CLOSE')[0]?.summary as Json
  t.match(summary, { total_intents: 602, withdrawn_intents: 602, total_operations: 601, committed_operations: 601 })
  t.ok(restoresExactly(h), 'restore is exact')
})

t.test('bounded history: records an open conflict or a pending op refers to survive; freed, they are forgotten', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 5 })
  h.join('A', 'B', 'C', ['R', ['arbiter']])
  h.announce('A', 'i-old', ['old.py'])
  h.commit('A', 'o-old', 'old.py', 's0', 's1', 'i-old')
  h.announce('B', 'i-b', ['b.py'])
  assertRelayed(t, h.report('C', { conflict_id: 'k1', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-old', 'i-b'], related_ops: ['o-old'] }))
  h.withdraw('A', 'i-old')
  for (let k = 0; k < 40; k++) task(h, 'C', k)
  t.equal(h.intentState('i-old'), 'WITHDRAWN', 'the open conflict keeps its intent')
  t.equal(h.opState('o-old'), 'COMMITTED', 'the open conflict keeps its op')
  t.equal(h.snap().intents.filter(i => i.state !== 'ACTIVE').length, 5, 'still at most the maximum (the pinned record counts)')
  t.equal(h.snap().operations.length, 5)
  t.equal(h.snap().intents.filter(i => i.state !== 'ACTIVE')[0]?.intent_id, 'i-old', 'the pinned record is the oldest kept')
  t.ok(restoresExactly(h), 'restore is exact with pinned records')
  h.withdraw('B', 'i-b')
  t.equal(h.conflictState('k1'), 'OPEN', 'o-old is COMMITTED: the conflict stays open')
  t.equal(h.intentState('i-b'), 'WITHDRAWN', 'the conflict keeps i-b too')
  assertRelayed(t, h.resolve('R', 'k1', 'dismissed'))
  t.equal(h.conflictState('k1'), 'DISMISSED')
  t.equal(h.intentState('i-old'), 'WITHDRAWN', 'kept until the maximum is exceeded again')
  task(h, 'C', 99)
  t.equal(h.intentState('i-old'), undefined, 'no longer referenced: the oldest, forgotten first')
  t.equal(h.intentState('i-b'), 'WITHDRAWN', 'i-b finished recently: kept')
  t.equal(h.opState('o-old'), undefined)
  t.equal(h.snap().intents.length, 5)
  t.equal(h.snap().operations.length, 5)
  t.same(h.conflict('k1')?.related_intents, ['i-old', 'i-b'], 'the resolved conflict keeps the ids it named')
})

t.test('bounded history: a restored coordinator continues exactly like the original while pruning', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 8 })
  h.join('A', 'B', ['R', ['reviewer']])
  for (let k = 0; k < 30; k++) task(h, k % 2 === 0 ? 'A' : 'B', k)
  h.propose('A', 'p-1', 'f1.py')
  h.opReject('R', 'p-1')
  const copy = Coordinator.restore(JSON.parse(JSON.stringify(h.snap())) as CoordinatorSnapshot, h.config)
  const start = h.inputs.length
  for (let k = 30; k < 60; k++) {
    task(h, k % 2 === 0 ? 'A' : 'B', k)
    if (k % 5 === 0) h.propose('B', `p-${k}`, `f${k % 7}.py`)
    if (k % 10 === 0) h.opReject('R', `p-${k}`)
  }
  const later = h.inputs.slice(start)
  const outs = later.map(i => copy.apply(i).outputs)
  t.same(copy.snapshot(h.now), h.snap(), 'same state after the same inputs')
  t.ok(outs.flat().length > 0)
  t.equal(h.snap().operations.filter(o => o.state !== 'PROPOSED').length, 8)
  // Replaying every input from the start gives the same state as well (the journal path).
  const replay = new Coordinator(h.config)
  for (const i of h.inputs) replay.apply(i)
  t.same(replay.snapshot(h.now), h.snap(), 'a full replay forgets the same records')
})

/** Restoring the snapshot and replaying every input from the start both end in the original's state. */
function restoreAndReplayAgree (t: Test, h: Harness): void {
  t.ok(restoresExactly(h), 'restore is exact')
  const replay = new Coordinator(h.config)
  for (const i of h.inputs) replay.apply(i)
  t.same(replay.snapshot(h.now), h.snap(), 'a full replay forgets the same records')
}

/** One conflict reported on the live intents i-a / i-b and resolved at once by the arbiter. */
function conflictRound (h: Harness, k: number): void {
  const r = h.report('C', { conflict_id: `k-${k}`, category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-a', 'i-b'] })
  if (!r.accepted) throw new Error(`report ${k} refused: ${JSON.stringify(r.outputs)}`)
  const s = h.resolve('R', `k-${k}`, k % 3 === 0 ? 'dismissed' : 'approved')
  if (!s.accepted) throw new Error(`resolution ${k} refused: ${JSON.stringify(s.outputs)}`)
}

t.test('bounded history: terminal conflicts beyond maxFinishedRecords are forgotten, earliest finished first', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 5 })
  h.join('A', 'B', 'C', ['R', ['arbiter']])
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  const sizes: number[] = []
  for (let k = 0; k < 300; k++) {
    conflictRound(h, k)
    if (k === 49 || k === 299) sizes.push(JSON.stringify(h.snap()).length)
  }
  const snap = h.snap()
  t.same(snap.conflicts.map(c => c.conflict_id), ['k-295', 'k-296', 'k-297', 'k-298', 'k-299'], 'the most recently finished conflicts are kept')
  t.same(snap.finished_conflicts, ['k-295', 'k-296', 'k-297', 'k-298', 'k-299'], 'finish order is in the snapshot')
  t.ok(Math.abs((sizes[1] as number) - (sizes[0] as number)) < 200, `the snapshot does not grow with resolved conflicts (${sizes.join(' → ')} bytes)`)
  // An open conflict is never forgotten, however old; the forgotten order is the finish order, not the creation order.
  assertRelayed(t, h.report('C', { conflict_id: 'k-old', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-a', 'i-b'] }))
  for (let k = 300; k < 320; k++) conflictRound(h, k)
  t.equal(h.conflictState('k-old'), 'OPEN', 'the open conflict is kept')
  assertRelayed(t, h.resolve('R', 'k-old', 'approved'))
  t.same(h.snap().finished_conflicts, ['k-316', 'k-317', 'k-318', 'k-319', 'k-old'], 'finished last: kept, the earliest finished forgotten')
  // Messages naming a forgotten conflict.
  for (const s of [h.resolve('R', 'k-0', 'approved'), h.ack('A', 'k-1'), h.escalate('A', 'k-2', 'R')]) {
    const p = assertRejected(t, s, 'INVALID_REFERENCE')
    t.match(p.description, /unknown conflict k-\d/)
  }
  // A forgotten conflict id may be reported again: a new conflict.
  assertRelayed(t, h.report('C', { conflict_id: 'k-0', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-a', 'i-b'] }), 'a forgotten conflict id is free again')
  t.equal(h.conflictState('k-0'), 'OPEN')
  assertRejected(t, h.report('C', { conflict_id: 'k-319', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-a'] }), 'INVALID_REFERENCE', 'a kept terminal conflict id is still taken')
  restoreAndReplayAgree(t, h)
  const summary = payloadsOfType(h.close(), 'SESSION_CLOSE')[0]?.summary as Json
  // 321 finished + the reused k-0; k % 3 === 0 dismissed (107 of 0..319), the rest and k-old CLOSED.
  t.match(summary, { total_conflicts: 322, resolved_conflicts: 214, total_participants: 4 }, 'close totals count forgotten conflicts')
})

t.test('bounded history: a re-used conflict id does not inherit the forgotten conflict\'s resolution timeout', async t => {
  const h = new Harness({ ...QUIET, resolutionTimeoutSec: 100, maxFinishedRecords: 1 })
  h.join('A', 'B', 'C', ['R', ['arbiter']])
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  conflictRound(h, 0)
  conflictRound(h, 1)
  t.equal(h.conflict('k-0'), undefined, 'k-0 forgotten')
  h.tick(60)
  assertRelayed(t, h.report('C', { conflict_id: 'k-0', category: 'semantic_goal_conflict', severity: 'high', related_intents: ['i-a', 'i-b'] }))
  t.same(payloadsOfType(h.tick(50), 'CONFLICT_ESCALATE'), [], 'the old entry (due at 100 s) does not time the new k-0 out')
  t.equal(h.conflictState('k-0'), 'OPEN')
  t.equal(payloadsOfType(h.tick(51), 'CONFLICT_ESCALATE').length, 1, 'its own timeout (100 s after its report) does')
  t.equal(h.conflictState('k-0'), 'ESCALATED')
  restoreAndReplayAgree(t, h)
})

t.test('bounded history: departed participants holding nothing are forgotten beyond the bound; close totals stay exact', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 3 })
  h.join('A')
  // P-keep leaves with its intent suspended for transfer: it holds a live intent and is never forgotten.
  h.join('P-keep')
  h.announce('P-keep', 'i-keep', ['keep.py'])
  assertRelayed(t, h.goodbye('P-keep', { intent_disposition: 'transfer' }))
  for (let k = 0; k < 20; k++) {
    h.join(`P${k}`)
    h.announce(`P${k}`, `i-p${k}`, [`p${k}.py`])
    assertRelayed(t, h.goodbye(`P${k}`))
  }
  const ids = (): string[] => h.snap().participants.map(p => p.principal_id)
  t.same(ids(), ['A', 'P-keep', 'P18', 'P19'], 'the one holding an intent (it counts) and the latest departures are kept')
  t.same(h.snap().departed_participants, ['P-keep', 'P18', 'P19'], 'departure order is in the snapshot')
  // A kept departed participant that comes back leaves the departed list.
  h.heartbeat('P18')
  t.same(h.snap().departed_participants, ['P-keep', 'P19'])
  // A forgotten participant must HELLO again; then it is a participant as before.
  assertRejected(t, h.heartbeat('P0'), 'INVALID_REFERENCE', 'a forgotten participant must HELLO first')
  h.join('P0')
  t.equal(h.participant('P0')?.is_available, true, 'a forgotten participant may join again')
  restoreAndReplayAgree(t, h)
  const summary = payloadsOfType(h.close(), 'SESSION_CLOSE')[0]?.summary as Json
  t.match(summary, { total_participants: 23 }, 'forgotten participants still count (P0, forgotten and back, counts twice)')
})

t.test('bounded history: batch records go with their last op, member-less batches beyond the bound', async t => {
  const h = new Harness({ ...QUIET, maxFinishedRecords: 3 })
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.commit('A', 'seed', 'a.py', 'r0', 'r1', 'i')
  for (let k = 0; k < 10; k++) {
    // Every entry stale: nothing is recorded, the batch record alone remains.
    h.batch('A', `empty-${k}`, [{ op_id: `e-${k}`, target: 'a.py', state_ref_before: 'stale', state_ref_after: 'x' }], 'best_effort', 'i')
    h.batch('A', `full-${k}`, [{ op_id: `m-${k}`, target: 'b.py', state_ref_before: `b${k}`, state_ref_after: `b${k + 1}` }], 'all_or_nothing', 'i')
  }
  t.equal(h.opState('e-0'), undefined, 'a refused entry is not recorded')
  const batches = (): string[] => (h.snap().batches as Array<{ batch_id: string }>).map(b => b.batch_id)
  t.same(batches().filter(id => id.startsWith('empty')), ['empty-7', 'empty-8', 'empty-9'], 'member-less batches are bounded')
  t.same(batches().filter(id => id.startsWith('full')), ['full-7', 'full-8', 'full-9'], 'a batch goes with its last forgotten op')
  t.same(h.snap().operations.map(o => o.op_id), ['m-7', 'm-8', 'm-9'])
  assertRelayed(t, h.batch('A', 'empty-0', [{ op_id: 'e-again', target: 'a.py', state_ref_before: 'r1', state_ref_after: 'r2' }], 'best_effort', 'i'), 'a forgotten batch id is free again')
  assertRejected(t, h.batch('A', 'empty-9', [{ op_id: 'e-dup', target: 'a.py', state_ref_before: 'r2', state_ref_after: 'r3' }], 'best_effort', 'i'), 'INVALID_REFERENCE', 'a kept batch id is taken')
  restoreAndReplayAgree(t, h)
})
