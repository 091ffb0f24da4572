/**
 * OP_BATCH_COMMIT edge cases beyond scenarios 39/40: id reuse, intent
 * mismatch, per-entry OP_REJECTs under best_effort, per-entry file_changes,
 * pre_commit initial/completion errors, and rejecting a whole batch by id.
 */
import t from 'tap'
import { Harness, assertRejected, assertRelayed, entitySet, outputsOfType, payloadsOfType, refOf, type Json } from '../helpers/mpac.js'

const e = (op: string, target: string, before: string, after: string, extra: Json = {}): Json & { op_id: string, target: string } =>
  ({ op_id: op, target, state_ref_before: before, state_ref_after: after, ...extra })

t.test('post_commit: duplicate ids, observers, intent mismatch', async t => {
  const h = new Harness()
  h.join('A', ['W', ['observer']])
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.announce('A', 'k', entitySet('k'))
  assertRejected(t, h.batch('A', 'b0', [e('x', 'a.py', 'r0', 'r1'), e('x', 'b.py', 'q0', 'q1')]), 'MALFORMED_MESSAGE')
  assertRelayed(t, h.batch('A', 'b1', [e('o1', 'a.py', 'r0', 'r1')], 'all_or_nothing', 'i'))
  assertRejected(t, h.batch('A', 'b1', [e('o2', 'a.py', 'r1', 'r2')]), 'INVALID_REFERENCE')
  assertRejected(t, h.batch('A', 'b2', [e('o1', 'a.py', 'r1', 'r2')]), 'INVALID_REFERENCE')
  assertRejected(t, h.batch('W', 'b3', [e('w1', 'c.py', 'r0', 'r1')]), 'AUTHORIZATION_FAILED')
  const mm = assertRejected(t, h.batch('A', 'b4', [e('o3', 'a.py', 'r1', 'r2', { intent_id: 'k' })], 'all_or_nothing', 'i'), 'INVALID_REFERENCE')
  t.same(mm.rejected_ops, ['o3'])
  const be = h.batch('A', 'b5', [e('o4', 'a.py', 'r1', 'r2', { intent_id: 'k' }), e('o5', 'b.py', 'q0', 'q1')], 'best_effort', 'i')
  assertRelayed(t, be)
  t.match(payloadsOfType(be, 'OP_REJECT'), [{ op_id: 'o4', reason: 'intent_mismatch', batch_id: 'b5' }])
  t.equal(h.opState('o5'), 'COMMITTED')
  t.equal(h.opState('o4'), undefined)
})

t.test('best_effort: stale and terminated entries each get an OP_REJECT; chained entries on one target', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  h.announce('A', 'dead', entitySet('x'))
  h.withdraw('A', 'dead')
  h.commit('A', 'o0', 'a.py', 'r0', 'r1', 'i')
  const s = h.batch('A', 'b', [
    e('s1', 'a.py', 'WRONG', 'r9'),
    e('t1', 'z.py', 'z0', 'z1', { intent_id: 'dead' }),
    e('c1', 'a.py', 'r1', 'r2'),
    e('c2', './a.py', 'r2', 'r3')
  ], 'best_effort')
  assertRelayed(t, s)
  t.match(payloadsOfType(s, 'OP_REJECT'), [{ op_id: 's1', reason: 'stale_state_ref' }, { op_id: 't1', reason: 'intent_terminated' }])
  t.same(outputsOfType(s, 'OP_REJECT').map(o => o.audience), [{ kind: 'all' }, { kind: 'all' }])
  t.equal(h.opState('c2'), 'COMMITTED')
  assertRelayed(t, h.commit('A', 'o9', 'a.py', 'r3', 'r4', 'i'), 'the ref map follows the chain')
})

t.test('per-entry file_changes: validated, applied for accepted entries only, one entry per path', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.commit('A', 'o0', 'b.py', refOf(''), 'rb1', 'i')
  const fc = (content: string): Json => ({ file_changes: { [content]: { content: 'x' } } })
  assertRejected(t, h.batch('A', 'bx', [e('x1', 'a.py', refOf(''), refOf('x'), fc('a.py')), e('x2', 'b.py', 'rb1', refOf('x'), fc('a.py'))], 'best_effort'), 'MALFORMED_MESSAGE')
  assertRejected(t, h.batch('A', 'by', [e('y1', 'a.py', refOf(''), refOf('x'), { file_changes: { '/abs': { content: 'x' } } })]), 'MALFORMED_MESSAGE')
  const s = h.batch('A', 'b', [
    e('p1', 'a.py', refOf(''), refOf('A'), { file_changes: { 'a.py': { content: 'A' } } }),
    e('p2', 'b.py', 'STALE', refOf('B'), { file_changes: { 'b.py': { content: 'B' } } })
  ], 'best_effort')
  t.equal(s.accepted, true)
  t.same(s.fileWrites.map(w => w.path), ['a.py'], 'the rejected entry wrote nothing')
  const term = s.outputs.find(o => o.terminal === true)
  t.equal(term?.frame.message_id, s.id, 'the terminal frame is the relay')
  t.same(term?.audience, { kind: 'sender' })
  t.match(s.outputs[0], { audience: { kind: 'others' }, frame: term?.frame }, 'the peers got the same relay first')
  const relay = term?.frame.payload as { operations: Json[] }
  t.notOk(relay.operations.some(o => 'file_changes' in o), 'file contents stripped from every entry of the relay')
  h.fileSync('b.py', 'disk b')
  assertRejected(t, h.batch('A', 'bz', [e('z1', 'b.py', 'rb1', refOf('B'), { file_changes: { 'b.py': { content: 'B', state_ref_before: refOf('nope') } } })]), 'STALE_STATE_REF')
})

t.test('pre_commit: initial and completion checks', async t => {
  const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit', unavailabilityTimeoutSec: 5 })
  h.join('A', 'B', ['V', ['reviewer']])
  h.announce('A', 'i', ['a.py', 'b.py', 'c.py'])
  h.announce('B', 'j', ['z.py'])
  h.announce('A', 'k', entitySet('k'))
  const init = h.batch('A', 'bt', [e('o1', 'a.py', 'r0', 'r1'), e('o2', 'b.py', 'q0', 'q1')], 'all_or_nothing', 'i')
  assertRelayed(t, init)
  t.match(payloadsOfType(init, 'COORDINATOR_STATUS'), [{ authorized_op_id: 'o1', authorized_batch_id: 'bt' }, { authorized_op_id: 'o2', authorized_batch_id: 'bt' }])
  assertRejected(t, h.batch('B', 'bt', [e('o1', 'a.py', 'r0', 'r1')]), 'AUTHORIZATION_FAILED')
  h.fileSync('a.py', 'on disk')
  assertRejected(t, h.batch('A', 'bt', [e('o1', 'a.py', 'r0', 'r1')]), 'STALE_STATE_REF')
  assertRelayed(t, h.batch('A', 'bt', [e('o1', 'a.py', refOf('on disk'), 'r1'), e('o2', 'b.py', 'q0', 'q1')]))
  assertRejected(t, h.batch('A', 'bt', [e('o1', 'a.py', 'r1', 'r2')]), 'INVALID_REFERENCE')
  const mm = h.batch('A', 'bm', [e('m1', 'c.py', 'c0', 'c1', { intent_id: 'k' }), e('m2', 'c.py', 'c0', 'c1')], 'best_effort', 'i')
  assertRelayed(t, mm)
  t.match(payloadsOfType(mm, 'OP_REJECT'), [{ op_id: 'm1', reason: 'intent_mismatch' }])
  assertRejected(t, h.batch('A', 'bm2', [e('n1', 'c.py', 'c0', 'c1', { intent_id: 'k' })], 'all_or_nothing', 'i'), 'INVALID_REFERENCE')
  // B falls silent: j SUSPENDED → an all_or_nothing batch on it fails, best_effort freezes the entry
  h.clock.advance(3)
  for (const pid of ['A', 'V']) h.heartbeat(pid)
  h.clock.advance(3)
  h.tick()
  t.equal(h.intentState('j'), 'SUSPENDED')
  const sus = assertRejected(t, h.batch('A', 'bs', [e('s1', 'z.py', 'z0', 'z1', { intent_id: 'j' })]), 'INVALID_REFERENCE')
  t.same(sus.rejected_ops, ['s1'])
  assertRelayed(t, h.batch('A', 'bs2', [e('s2', 'z.py', 'z0', 'z1', { intent_id: 'j' })], 'best_effort'))
  t.equal(h.opState('s2'), 'FROZEN')
  assertRejected(t, h.batch('A', 'bs2', [e('s2', 'z.py', 'z0', 'z1', { intent_id: 'j' })]), 'SCOPE_FROZEN')
  h.propose('A', 'lone', 'c.py', 'i')
  assertRejected(t, h.batch('A', 'bs2', [e('lone', 'c.py', 'c0', 'c1')]), 'INVALID_REFERENCE')
  // a reviewer rejects a whole batch by its id
  const b3 = h.batch('A', 'b3', [e('t1', 'c.py', 'c0', 'c1'), e('t2', 'b.py', 'q1', 'q2')], 'all_or_nothing', 'i')
  assertRelayed(t, b3)
  assertRelayed(t, h.opReject('V', 'b3'))
  t.equal(h.opState('t1'), 'REJECTED')
  t.equal(h.opState('t2'), 'REJECTED')
  assertRejected(t, h.opReject('V', 'b3'), 'INVALID_REFERENCE')
  assertRejected(t, h.opReject('V', 'o1'), 'INVALID_REFERENCE')
})

t.test('pre_commit completion of an unauthorized batch entry', async t => {
  const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit', unavailabilityTimeoutSec: 5 })
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'])
  h.announce('B', 'j', ['z.py'])
  h.clock.advance(3)
  h.heartbeat('A')
  h.clock.advance(3)
  h.tick()
  h.heartbeat('A')
  // best_effort initial: s1 FROZEN (suspended intent), then B returns → PROPOSED but never authorized
  assertRelayed(t, h.batch('A', 'bq', [e('s1', 'z.py', 'z0', 'z1', { intent_id: 'j' })], 'best_effort'))
  h.heartbeat('B')
  t.equal(h.opState('s1'), 'PROPOSED')
  assertRejected(t, h.batch('A', 'bq', [e('s1', 'z.py', 'z0', 'z1')]), 'AUTHORIZATION_FAILED')
})
