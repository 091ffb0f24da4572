/**
 * protocol.md §14 scenarios 37–42: operations and optimistic concurrency.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import {
  Harness,
  SID,
  assertNoOutput,
  assertRejected,
  assertRelayed,
  coordinatorIdOf,
  errorsOf,
  outputsOfType,
  payloadsOfType,
  refOf,
  show,
  matchEach
} from '../helpers/mpac.js'
import type { Json } from '../helpers/mpac.js'

const GOV_PRE = { complianceProfile: 'governance', executionModel: 'pre_commit' } as const

t.test('37. stale ref: a commit whose before-ref is not the last after-ref ⇐ STALE_STATE_REF', async t => {
  await t.test('the second commit on a target is checked against the first one\'s after-ref', async t => {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    const first = h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
    assertNoOutput(t, first)
    t.equal(h.opState('o1'), 'COMMITTED')
    const stale = h.commit('A', 'o4', 'a.py', 'WRONG', 'r9', 'i')
    const p = assertRejected(t, stale, 'STALE_STATE_REF')
    t.match(p.description, 'WRONG')
    t.match(p.description, 'r1')
    t.not(h.opState('o4'), 'COMMITTED')
    assertNoOutput(t, h.commit('A', 'o5', 'a.py', 'r1', 'r2', 'i'))
  })
  await t.test('the first commit on a target nobody knows is accepted whatever its before-ref', async t => {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['fresh.py'])
    assertNoOutput(t, h.commit('A', 'o1', 'fresh.py', 'anything', 'r1', 'i'))
  })
  await t.test('strict: a first commit on a file the workspace holds is checked against its content', async t => {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    h.fileSync('a.py', 'print(1)\n')
    assertRejected(t, h.commit('A', 'o1', 'a.py', 'WRONG', 'r1', 'i'), 'STALE_STATE_REF')
    assertNoOutput(t, h.commit('A', 'o2', 'a.py', refOf('print(1)\n'), 'r1', 'i'))
  })
})

t.test('38. pre-commit round trip', async t => {
  function setup (): Harness {
    const h = new Harness(GOV_PRE)
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    return h
  }
  const coord = coordinatorIdOf(SID)
  await t.test('OP_PROPOSE ⇐ COORDINATOR_STATUS{authorization} broadcast', async t => {
    const h = setup()
    const s = h.propose('A', 'op1', 'a.py', 'i')
    assertRelayed(t, s)
    const st = outputsOfType(s, 'COORDINATOR_STATUS')
    t.equal(st.length, 1, { outputs: show(s) })
    t.same(st[0]?.audience, { kind: 'all' })
    t.match(st[0]?.frame.payload, { event: 'authorization', authorized_op_id: 'op1', authorized_by: coord, coordinator_id: coord, session_health: 'healthy' })
    t.equal(h.opState('op1'), 'PROPOSED')
  })
  await t.test('OP_COMMIT of the authorized op ⇐ no output, COMMITTED', async t => {
    const h = setup()
    h.propose('A', 'op1', 'a.py', 'i')
    const s = h.commit('A', 'op1', 'a.py', 'r0', 'r1', 'i')
    assertNoOutput(t, s)
    t.equal(h.opState('op1'), 'COMMITTED')
    t.equal(h.op('op1')?.state_ref_after, 'r1')
  })
  await t.test('OP_COMMIT of an unknown op ⇐ its authorization; the op is PROPOSED', async t => {
    const h = setup()
    const s = h.commit('A', 'op9', 'a.py', 'r0', 'r1', 'i')
    t.equal(s.accepted, true, { outputs: show(s) })
    matchEach(t, payloadsOfType(s, 'COORDINATOR_STATUS'), [{ event: 'authorization', authorized_op_id: 'op9' }])
    t.equal(h.opState('op9'), 'PROPOSED')
  })
  await t.test('the constructor refuses pre_commit with the core profile', async t => {
    t.throws(() => new Coordinator({ sessionId: SID, executionModel: 'pre_commit' }))
    t.throws(() => new Coordinator({ sessionId: SID, executionModel: 'pre_commit', complianceProfile: 'core' }))
    t.doesNotThrow(() => new Coordinator({ sessionId: SID, ...GOV_PRE }))
  })
})

t.test('39. batch atomicity', async t => {
  function setup (): Harness {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['a.py', 'b.py'])
    h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
    return h
  }
  const entries = [
    { op_id: 'o2', target: 'a.py', state_ref_before: 'WRONG', state_ref_after: 'r2', intent_id: 'i' },
    { op_id: 'o3', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1', intent_id: 'i' }
  ]
  await t.test('all_or_nothing with a stale entry ⇐ one batch OP_REJECT, nothing committed', async t => {
    const h = setup()
    const s = h.batch('A', 'bt1', entries, 'all_or_nothing', 'i')
    const rej = outputsOfType(s, 'OP_REJECT')
    t.equal(rej.length, 1, 'a single OP_REJECT', { outputs: show(s) })
    t.match(rej[0]?.frame.payload, { op_id: 'bt1', reason: 'batch_validation_failed', rejected_ops: ['o2'] })
    t.same((rej[0]?.frame.payload as Json).rejected_ops, ['o2'])
    t.not(h.opState('o2'), 'COMMITTED')
    t.not(h.opState('o3'), 'COMMITTED')
    assertNoOutput(t, h.commit('A', 'o5', 'a.py', 'r1', 'r5', 'i'))
  })
  await t.test('best_effort ⇐ o3 COMMITTED, o2 not, and an error for o2', async t => {
    const h = setup()
    const s = h.batch('A', 'bt1', entries, 'best_effort', 'i')
    t.equal(h.opState('o3'), 'COMMITTED')
    t.not(h.opState('o2'), 'COMMITTED')
    const staleErrs = errorsOf(s, 'STALE_STATE_REF').filter(p => JSON.stringify(p).includes('o2'))
    const rejects = payloadsOfType(s, 'OP_REJECT').filter(p => p.op_id === 'o2' || (Array.isArray(p.rejected_ops) && p.rejected_ops.includes('o2')))
    t.ok(staleErrs.length + rejects.length >= 1, 'o2 is reported to the client', { outputs: show(s) })
  })
  await t.test('empty operations ⇐ MALFORMED_MESSAGE', async t => {
    const h = setup()
    assertRejected(t, h.batch('A', 'bt1', [], 'all_or_nothing', 'i'), 'MALFORMED_MESSAGE')
  })
})

t.test('40. pre-commit batch', async t => {
  function setup (): Harness {
    const h = new Harness(GOV_PRE)
    h.join('A')
    h.announce('A', 'i', ['a.py', 'b.py', 'c.py'])
    return h
  }
  const two = [
    { op_id: 'o1', target: 'a.py', state_ref_before: 'r0', state_ref_after: 'r1', intent_id: 'i' },
    { op_id: 'o2', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1', intent_id: 'i' }
  ]
  await t.test('initial request ⇐ one authorization per entry, with authorized_batch_id', async t => {
    const h = setup()
    const s = h.batch('A', 'bt', two, 'all_or_nothing', 'i')
    t.equal(s.accepted, true, { outputs: show(s) })
    const auth = payloadsOfType(s, 'COORDINATOR_STATUS').filter(p => p.event === 'authorization')
    t.equal(auth.length, 2, { outputs: show(s) })
    t.same(auth.map(p => p.authorized_op_id).sort(), ['o1', 'o2'])
    for (const p of auth) t.equal(p.authorized_batch_id, 'bt')
    t.equal(h.opState('o1'), 'PROPOSED')
    t.equal(h.opState('o2'), 'PROPOSED')
  })
  await t.test('completion with the same ids ⇐ no output, both COMMITTED', async t => {
    const h = setup()
    h.batch('A', 'bt', two, 'all_or_nothing', 'i')
    const s = h.batch('A', 'bt', two, 'all_or_nothing', 'i')
    assertNoOutput(t, s)
    t.equal(h.opState('o1'), 'COMMITTED')
    t.equal(h.opState('o2'), 'COMMITTED')
  })
  await t.test('a completion naming an op of another batch ⇐ INVALID_REFERENCE', async t => {
    const h = setup()
    h.batch('A', 'bt', two, 'all_or_nothing', 'i')
    h.batch('A', 'bt2', [{ op_id: 'o3', target: 'c.py', state_ref_before: 's0', state_ref_after: 's1', intent_id: 'i' }], 'all_or_nothing', 'i')
    const s = h.batch('A', 'bt', [two[0]!, { op_id: 'o3', target: 'c.py', state_ref_before: 's0', state_ref_after: 's1', intent_id: 'i' }], 'all_or_nothing', 'i')
    assertRejected(t, s, 'INVALID_REFERENCE')
    t.equal(h.opState('o1'), 'PROPOSED')
    t.equal(h.opState('o3'), 'PROPOSED')
  })
})

t.test('41. supersede', async t => {
  function setup (): Harness {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
    return h
  }
  await t.test('OP_SUPERSEDE ⇐ no output; old SUPERSEDED, new COMMITTED with the chained refs', async t => {
    const h = setup()
    const s = h.supersede('A', 'o5', 'o1', 'a.py', { state_ref_after: 'r5', intent_id: 'i' })
    assertNoOutput(t, s)
    t.equal(h.opState('o1'), 'SUPERSEDED')
    const o5 = h.op('o5')
    t.equal(o5?.state, 'COMMITTED')
    t.equal(o5?.state_ref_before, 'r1')
    t.equal(o5?.state_ref_after, 'r5')
    t.equal(o5?.target, 'a.py')
  })
  await t.test('superseding an unknown or a PROPOSED op ⇐ INVALID_REFERENCE', async t => {
    const h = setup()
    assertRejected(t, h.supersede('A', 'o5', 'nope', 'a.py', { state_ref_after: 'r5' }), 'INVALID_REFERENCE')
    h.propose('A', 'o7', 'a.py', 'i')
    assertRejected(t, h.supersede('A', 'o8', 'o7', 'a.py', { state_ref_after: 'r8' }), 'INVALID_REFERENCE')
    t.equal(h.opState('o7'), 'PROPOSED')
    t.equal(h.op('o8'), undefined)
  })
  await t.test('a chain of supersessions works', async t => {
    const h = setup()
    assertNoOutput(t, h.supersede('A', 'o5', 'o1', 'a.py', { state_ref_after: 'r5' }))
    assertNoOutput(t, h.supersede('A', 'o6', 'o5', 'a.py', { state_ref_after: 'r6' }))
    t.equal(h.opState('o1'), 'SUPERSEDED')
    t.equal(h.opState('o5'), 'SUPERSEDED')
    t.equal(h.opState('o6'), 'COMMITTED')
    t.equal(h.op('o6')?.state_ref_before, 'r5')
  })
  await t.test('strict: a later commit based on the superseding after-ref succeeds', async t => {
    const h = setup()
    h.supersede('A', 'o5', 'o1', 'a.py', { state_ref_after: 'r5' })
    assertRejected(t, h.commit('A', 'o9', 'a.py', 'r1', 'r10', 'i'), 'STALE_STATE_REF')
    assertNoOutput(t, h.commit('A', 'o10', 'a.py', 'r5', 'r10', 'i'))
  })
})

t.test('42. reviewer rejection', async t => {
  function setup (): Harness {
    const h = new Harness({ complianceProfile: 'governance' })
    h.join('A', 'C', ['V', ['reviewer']])
    h.announce('A', 'i', ['a.py'])
    h.propose('A', 'op', 'a.py', 'i')
    return h
  }
  await t.test('a reviewer rejects a proposal ⇐ REJECTED and the OP_REJECT is relayed', async t => {
    const h = setup()
    const s = h.opReject('V', 'op', 'policy_violation')
    assertRelayed(t, s)
    t.equal(h.opState('op'), 'REJECTED')
  })
  await t.test('a contributor sending OP_REJECT ⇐ AUTHORIZATION_FAILED', async t => {
    const h = setup()
    assertRejected(t, h.opReject('C', 'op', 'policy_violation'), 'AUTHORIZATION_FAILED')
    t.equal(h.opState('op'), 'PROPOSED')
  })
})
