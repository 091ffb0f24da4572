/**
 * protocol.md §14 scenarios 43–47: conflicts, governance and frozen scope.
 */
import t from 'tap'
import type { ApplyResult, CoordinatorConfig } from '../../src/coordinator/types.js'
import {
  Harness,
  assertNoOutput,
  assertRejected,
  assertRelayed,
  entitySet,
  errorsOf,
  fileSet,
  outputsOfType,
  payloadsOfType,
  show
} from '../helpers/mpac.js'
import type { Json, Tap } from '../helpers/mpac.js'

/** Scenario 16's conflict: A and B announce entity_set [e1]. */
function conflict16 (config: Partial<CoordinatorConfig> = {}, others: Array<string | [string, string[]]> = []): { h: Harness, cid: string } {
  const h = new Harness(config)
  h.join('A', 'B', ...others)
  h.announce('A', 'i-a', entitySet('e1'))
  const b = h.announce('B', 'i-b', entitySet('e1'))
  const ids = payloadsOfType(b, 'CONFLICT_REPORT').map(p => String(p.conflict_id))
  if (ids.length !== 1) throw new Error(`expected one CONFLICT_REPORT, got ${show(b)}`)
  return { h, cid: ids[0]! }
}

/** Scenario 17's dependency conflict: A on utils.py (impact main.py), B on main.py. */
function conflict17 (config: Partial<CoordinatorConfig> = {}, others: Array<string | [string, string[]]> = []): { h: Harness, cid: string } {
  const h = new Harness(config)
  h.join('A', 'B', ...others)
  h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'] } })
  const b = h.announce('B', 'i-b', fileSet('main.py'))
  const ids = payloadsOfType(b, 'CONFLICT_REPORT').map(p => String(p.conflict_id))
  if (ids.length !== 1) throw new Error(`expected one CONFLICT_REPORT, got ${show(b)}`)
  return { h, cid: ids[0]! }
}

function escalationsOf (r: ApplyResult): Json[] {
  return payloadsOfType(r, 'CONFLICT_ESCALATE')
}

t.test('43. ack and resolve', async t => {
  const { h, cid } = conflict16({}, ['C', ['O', ['owner']], ['R', ['arbiter']]])
  await t.test('A → CONFLICT_ACK{seen} ⇐ no output, ACKED', async t => {
    assertNoOutput(t, h.ack('A', cid, 'seen'))
    t.equal(h.conflictState(cid), 'ACKED')
  })
  await t.test('a contributor → RESOLUTION ⇐ AUTHORIZATION_FAILED', async t => {
    assertRejected(t, h.resolve('A', cid, 'approved'), 'AUTHORIZATION_FAILED')
    assertRejected(t, h.resolve('C', cid, 'approved'), 'AUTHORIZATION_FAILED')
    t.equal(h.conflictState(cid), 'ACKED')
  })
  await t.test('O → RESOLUTION{approved} ⇐ no output, CLOSED, relayed', async t => {
    assertNoOutput(t, h.resolve('O', cid, 'approved'))
    t.equal(h.conflictState(cid), 'CLOSED')
  })
  await t.test('a second resolution from R ⇐ RESOLUTION_CONFLICT', async t => {
    assertRejected(t, h.resolve('R', cid, 'rejected'), 'RESOLUTION_CONFLICT')
    t.equal(h.conflictState(cid), 'CLOSED')
  })
  await t.test('a RESOLUTION for an unknown conflict ⇐ INVALID_REFERENCE', async t => {
    assertRejected(t, h.resolve('O', 'no-such-conflict', 'approved'), 'INVALID_REFERENCE')
  })
})

t.test('44. escalation authority', async t => {
  const { h, cid } = conflict16({}, [['O', ['owner']], ['O2', ['owner']], ['R', ['arbiter']]])
  await t.test('O → CONFLICT_ESCALATE{to R} ⇐ ESCALATED', async t => {
    assertNoOutput(t, h.escalate('O', cid, 'R'))
    t.equal(h.conflictState(cid), 'ESCALATED')
    t.equal(h.conflict(cid)?.escalated_to, 'R')
  })
  await t.test('another owner → RESOLUTION ⇐ AUTHORIZATION_FAILED', async t => {
    assertRejected(t, h.resolve('O2', cid, 'approved'), 'AUTHORIZATION_FAILED')
    assertRejected(t, h.resolve('O', cid, 'approved'), 'AUTHORIZATION_FAILED')
    t.equal(h.conflictState(cid), 'ESCALATED')
  })
  await t.test('R → RESOLUTION{dismissed} ⇐ DISMISSED', async t => {
    assertNoOutput(t, h.resolve('R', cid, 'dismissed'))
    t.equal(h.conflictState(cid), 'DISMISSED')
  })
})

t.test('45. rollback rule', async t => {
  const { h, cid } = conflict16({}, [['O', ['owner']]])
  h.commit('A', 'op-a1', 'a.py', 'r0', 'r1', 'i-a')
  t.ok(h.conflict(cid)?.related_ops.includes('op-a1'), 'the commit is linked into the conflict')
  await t.test('rejecting a COMMITTED op without rollback ⇐ MALFORMED_MESSAGE', async t => {
    assertRejected(t, h.resolve('O', cid, 'human_override', { outcome: { rejected: ['op-a1'] } }), 'MALFORMED_MESSAGE')
    t.equal(h.conflictState(cid), 'OPEN')
  })
  await t.test('with rollback "not_required" ⇐ accepted', async t => {
    assertNoOutput(t, h.resolve('O', cid, 'human_override', { outcome: { rejected: ['op-a1'], rollback: 'not_required' } }))
    t.equal(h.conflictState(cid), 'CLOSED')
  })
})

t.test('46. resolution timeout', async t => {
  const LONG = { unavailabilityTimeoutSec: 100_000 }
  await t.test('with an arbiter online: +301 s ⇐ CONFLICT_ESCALATE to R', async t => {
    const { h, cid } = conflict16(LONG, [['R', ['arbiter']]])
    const early = h.tick(299)
    t.same(escalationsOf(early), [], 'nothing before the timeout')
    const r = h.tick(2)
    const esc = outputsOfType(r, 'CONFLICT_ESCALATE')
    t.equal(esc.length, 1, { outputs: show(r) })
    t.match(esc[0]?.frame.payload, { conflict_id: cid, escalate_to: 'R', reason: 'resolution_timeout' })
    t.same(esc[0]?.audience, { kind: 'all' })
    t.equal(h.conflictState(cid), 'ESCALATED')
    t.equal(h.conflict(cid)?.scope_frozen, false, 'escalated, not frozen')
  })

  await t.test('without an arbiter: RESOLUTION_TIMEOUT and an entity_set freeze', async t => {
    const { h, cid } = conflict16(LONG, ['C', ['O', ['owner']]])
    const r = h.tick(301)
    const to = outputsOfType(r, 'PROTOCOL_ERROR').filter(o => (o.frame.payload as Json).error_code === 'RESOLUTION_TIMEOUT')
    t.equal(to.length, 1, { outputs: show(r) })
    t.same(to[0]?.audience, { kind: 'all' })
    t.equal(h.conflict(cid)?.scope_frozen, true)
    t.equal(h.conflictState(cid), 'OPEN')
    const commit = { op_id: 'oc', target: 'zzz.py', op_kind: 'replace', state_ref_before: 'z0', state_ref_after: 'z1' }

    await t.test('an ANNOUNCE fully inside ⇐ SCOPE_FROZEN, not registered', async t => {
      assertRejected(t, h.announce('C', 'i-c1', entitySet('e1')), 'SCOPE_FROZEN')
      t.equal(h.intent('i-c1'), undefined)
    })
    await t.test('a partial overlap ⇐ registered, with a SCOPE_FROZEN warning before the relay', async t => {
      const s = h.announce('C', 'i-c2', entitySet('e1', 'e3'))
      assertRelayed(t, s)
      const warn = outputsOfType(s, 'PROTOCOL_ERROR').filter(o => (o.frame.payload as Json).error_code === 'SCOPE_FROZEN')
      t.equal(warn.length, 1, 'one warning', { outputs: show(s) })
      t.not(warn[0]?.terminal, true, 'the warning is not the terminal frame')
      t.equal(h.intentState('i-c2'), 'ACTIVE')
    })
    await t.test('a disjoint entity_set ⇐ accepted; a file_set ⇐ SCOPE_FROZEN', async t => {
      const ok = h.announce('C', 'i-c3', entitySet('e9'))
      assertRelayed(t, ok)
      t.same(errorsOf(ok), [], { outputs: show(ok) })
      t.equal(h.intentState('i-c3'), 'ACTIVE')
      assertRejected(t, h.announce('C', 'i-c4', fileSet('x.py')), 'SCOPE_FROZEN')
      t.equal(h.intent('i-c4'), undefined)
    })
    await t.test('every OP_PROPOSE, post_commit OP_COMMIT or batch ⇐ SCOPE_FROZEN, whatever the target', async t => {
      assertRejected(t, h.propose('C', 'op-p', 'zzz.py'), 'SCOPE_FROZEN')
      assertRejected(t, h.send('OP_COMMIT', 'C', commit), 'SCOPE_FROZEN')
      assertRejected(t, h.batch('C', 'bt', [{ op_id: 'ob', target: 'other/file.txt' }], 'best_effort'), 'SCOPE_FROZEN')
      t.equal(h.op('op-p'), undefined)
      t.equal(h.op('oc'), undefined)
      t.equal(h.op('ob'), undefined)
    })
    await t.test('the snapshot and a recovery keep the frozen flag', async t => {
      const s = JSON.parse(JSON.stringify(h.snap())) as { conflicts: Array<{ conflict_id: string, scope_frozen: boolean }> }
      t.equal(s.conflicts.find(c => c.conflict_id === cid)?.scope_frozen, true)
      const copy = new Harness(h.config, h.clock)
      for (const i of h.inputs) copy.apply(i)
      copy.restore()
      t.equal(copy.conflict(cid)?.scope_frozen, true)
      assertRejected(t, copy.send('OP_COMMIT', 'C', { ...commit, op_id: 'oc-r' }), 'SCOPE_FROZEN')
    })
    await t.test('after O resolves, the same OP_COMMIT is accepted', async t => {
      assertNoOutput(t, h.resolve('O', cid, 'approved'))
      t.equal(h.conflictState(cid), 'CLOSED')
      assertNoOutput(t, h.send('OP_COMMIT', 'C', commit))
      t.equal(h.opState('oc'), 'COMMITTED')
    })
  })

  await t.test('file_set freeze: only the conflict\'s files are blocked', async t => {
    const { h, cid } = conflict17(LONG, ['C'])
    const r = h.tick(301)
    t.equal(errorsOf(r, 'RESOLUTION_TIMEOUT').length, 1, { outputs: show(r) })
    t.equal(h.conflict(cid)?.scope_frozen, true)
    assertRejected(t, h.propose('C', 'p1', 'utils.py'), 'SCOPE_FROZEN')
    assertRejected(t, h.commit('C', 'c1', 'main.py', 'm0', 'm1'), 'SCOPE_FROZEN')
    assertRejected(t, h.batch('C', 'bt', [{ op_id: 'b1', target: 'other.py' }, { op_id: 'b2', target: 'main.py' }], 'best_effort'), 'SCOPE_FROZEN')
    t.equal(h.op('b1'), undefined, 'no entry of the refused batch is registered')
    assertRelayed(t, h.propose('C', 'p2', 'other.py'))
    assertNoOutput(t, h.commit('C', 'c2', 'other.py', 'x0', 'x1'))
    t.equal(h.opState('c2'), 'COMMITTED')
  })

  await t.test('a timeout of 0 means no timeout', async t => {
    for (const others of [[], [['R', ['arbiter']]]] as Array<Array<[string, string[]]>>) {
      const { h, cid } = conflict16({ ...LONG, resolutionTimeoutSec: 0 }, others)
      const r1 = h.tick(1)
      const r2 = h.tick(10_000)
      for (const r of [r1, r2]) {
        t.same(escalationsOf(r), [], { outputs: show(r) })
        t.same(errorsOf(r, 'RESOLUTION_TIMEOUT'), [])
      }
      t.equal(h.conflictState(cid), 'OPEN')
      t.equal(h.conflict(cid)?.scope_frozen, false)
    }
  })
})

t.test('47. auto-dismiss', async t => {
  function dismissals (r: ApplyResult, cid: string): Json[] {
    return payloadsOfType(r, 'RESOLUTION').filter(p => p.conflict_id === cid)
  }
  function expectDismissed (t: Tap, r: ApplyResult, h: Harness, cid: string): void {
    const res = outputsOfType(r, 'RESOLUTION').filter(o => (o.frame.payload as Json).conflict_id === cid)
    t.equal(res.length, 1, { outputs: show(r) })
    t.match(res[0]?.frame.payload, { decision: 'dismissed', rationale: 'all_related_entities_terminated', resolution_id: String })
    t.same(res[0]?.audience, { kind: 'all' })
    t.match(res[0]?.frame.sender, { principal_id: h.coordinatorId })
    t.equal(h.conflictState(cid), 'DISMISSED')
  }
  await t.test('both intents withdraw ⇐ RESOLUTION dismissed', async t => {
    const { h, cid } = conflict16()
    t.same(dismissals(h.withdraw('A', 'i-a'), cid), [], 'not after the first')
    expectDismissed(t, h.withdraw('B', 'i-b'), h, cid)
  })
  await t.test('both intents expire ⇐ RESOLUTION dismissed on the tick', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', entitySet('e1'), { ttl_sec: 10 })
    const b = h.announce('B', 'i-b', entitySet('e1'), { ttl_sec: 10 })
    const cid = String(payloadsOfType(b, 'CONFLICT_REPORT')[0]?.conflict_id)
    expectDismissed(t, h.tick(11), h, cid)
  })
  await t.test('an op on i-a COMMITTED after the conflict formed blocks the dismissal', async t => {
    const { h, cid } = conflict16()
    h.commit('A', 'op-a', 'a.py', 'r0', 'r1', 'i-a')
    h.withdraw('A', 'i-a')
    const w = h.withdraw('B', 'i-b')
    t.same(dismissals(w, cid), [], { outputs: show(w) })
    t.equal(h.conflictState(cid), 'OPEN')
  })
  await t.test('only one intent terminal ⇐ no dismissal', async t => {
    const { h, cid } = conflict16()
    t.same(dismissals(h.withdraw('A', 'i-a'), cid), [])
    t.same(dismissals(h.tick(1), cid), [])
    t.equal(h.conflictState(cid), 'OPEN')
  })
  await t.test('related ops all REJECTED ⇐ dismissal', async t => {
    const { h, cid } = conflict16()
    h.propose('A', 'op-a', 'a.py', 'i-a')
    t.ok(h.conflict(cid)?.related_ops.includes('op-a'), 'the proposal is linked')
    h.withdraw('A', 'i-a')
    t.equal(h.opState('op-a'), 'REJECTED')
    expectDismissed(t, h.withdraw('B', 'i-b'), h, cid)
  })
})
