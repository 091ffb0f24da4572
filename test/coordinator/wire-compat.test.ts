/**
 * Issue 12 items 11 and 12 in the core: unknown keys are ignored (SPEC
 * §21.2) and never reach records or relays; the outputs of a relayed
 * message are ordered for the peers (relay first) and for the sender
 * (terminal relay last among envelopes), docs/architecture.md "Frame order".
 */
import t from 'tap'
import {
  Harness, assertRejected, assertRelayed, entitySet, fileSet, payloadOf, peersRelayOf, refOf, show, terminalOf, typeOf, type Json
} from '../helpers/mpac.js'

/** [type, audience kind] of every output, in order. */
const order = (r: { outputs: ReadonlyArray<{ audience: { kind: string }, frame: Json }> }): string[][] =>
  r.outputs.map(o => [String(o.frame.message_type ?? o.frame.type), o.audience.kind])

t.test('INTENT_ANNOUNCE: the peers\' relay, then the CONFLICT_REPORT, then the sender\'s terminal relay', async t => {
  const h = new Harness()
  h.join('A', 'B', 'C')
  h.announce('A', 'i-a', entitySet('e1'))
  const s = h.announce('B', 'i-b', entitySet('e1'))
  assertRelayed(t, s)
  t.same(order(s), [['INTENT_ANNOUNCE', 'others'], ['CONFLICT_REPORT', 'principals'], ['INTENT_ANNOUNCE', 'sender']], show(s))
  t.equal(peersRelayOf(s)?.frame, terminalOf(s)?.frame, 'one frame, two audiences')
})

t.test('INTENT_WITHDRAW: the peers\' relay before the cascade OP_REJECT', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i', ['w.py'])
  h.propose('A', 'op', 'w.py', 'i')
  const s = h.withdraw('A', 'i')
  assertRelayed(t, s)
  t.same(order(s), [['INTENT_WITHDRAW', 'others'], ['OP_REJECT', 'all'], ['INTENT_WITHDRAW', 'sender']], show(s))
})

t.test('a rejected or echoed message has no peers\' copy', async t => {
  const h = new Harness()
  h.join('A', 'B')
  const bad = h.send('CONFLICT_ACK', 'A', { conflict_id: 'nope', ack_type: 'seen' })
  assertRejected(t, bad, 'INVALID_REFERENCE')
  t.same(order(bad), [['PROTOCOL_ERROR', 'sender']])
  t.same(order(h.heartbeat('A')), [['HEARTBEAT', 'sender']])
})

t.test('unknown keys in payload, scope and operation objects: accepted, left out of records and relays', async t => {
  const h = new Harness()
  h.join('A', 'B')
  const a = h.announce('A', 'i', { kind: 'file_set', resources: ['a.py', 'b.py'], note: { why: 'x' } }, { mood: 'keen' })
  t.equal(a.accepted, true, show(a))
  t.equal(peersRelayOf(a)?.frame, terminalOf(a)?.frame, 'relayed to the peers too')
  t.same(payloadOf(terminalOf(a)!), { intent_id: 'i', objective: 'work on i', scope: fileSet('a.py', 'b.py') }, 'the relay has only known fields')
  t.equal(((a.envelope.payload as Json).scope as Json).note !== undefined, true, 'the inbound envelope keeps them')
  t.same(h.intent('i')?.scope, fileSet('a.py', 'b.py'), 'the record has only known fields')

  const c = h.commit('A', 'o1', 'a.py', refOf(''), refOf('A'), 'i', {
    reviewer_hint: 'none', file_changes: { 'a.py': { content: 'A', state_ref_before: refOf(''), encoding: 'utf-8' } }
  })
  t.equal(c.accepted, true, show(c))
  t.same(payloadOf(terminalOf(c)!), { op_id: 'o1', target: 'a.py', op_kind: 'replace', state_ref_before: refOf(''), state_ref_after: refOf('A'), intent_id: 'i' })
  t.same(h.c.readFile('a.py'), { content: 'A', state_ref: refOf('A') }, 'the file entry with an unknown key was applied')

  const b = h.batch('A', 'bt', [{ op_id: 'o2', target: 'b.py', state_ref_before: refOf(''), state_ref_after: refOf('B'), origin: 'py' }], 'all_or_nothing', 'i', { note: 1 })
  assertRelayed(t, { ...b, envelope: stripped(b.envelope) })
  t.same((payloadOf(terminalOf(b)!).operations as Json[])[0], { op_kind: 'replace', op_id: 'o2', target: 'b.py', state_ref_before: refOf(''), state_ref_after: refOf('B') }, 'batch entries without the unknown key')
  t.equal(h.opState('o2'), 'COMMITTED')

  // the family-trip CONFLICT_ACK
  h.announce('A', 'i-e', entitySet('day-2'))
  const r = h.announce('B', 'i-f', entitySet('day-2'))
  const cid = String(payloadOf(r.outputs.find(o => typeOf(o) === 'CONFLICT_REPORT')!).conflict_id)
  const ack = h.send('CONFLICT_ACK', 'B', { conflict_id: cid, ack_type: 'accepted', position: 'the hills' })
  t.equal(ack.accepted, true, show(ack))
  t.same(payloadOf(terminalOf(ack)!), { conflict_id: cid, ack_type: 'accepted' })
  t.equal(h.conflictState(cid), 'ACKED')
  assertRejected(t, h.send('CONFLICT_ACK', 'B', { confict_id: cid, ack_type: 'seen' }), 'MALFORMED_MESSAGE')

  // a replay of the raw journal reaches the same state
  const replayed = new Harness()
  for (const input of h.inputs) replayed.apply(input)
  t.same(replayed.snap(), h.snap(), 'replaying the inputs as received gives the same state')
})

/** The envelope with the unknown keys this test added removed (what assertRelayed compares the relay with). */
function stripped (env: Json): Json {
  const p = { ...(env.payload as Json) }
  delete p.note
  p.operations = (p.operations as Json[]).map(o => { const c = { ...o }; delete c.origin; return c })
  return { ...env, payload: p }
}
