import t from 'tap'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isError, joined, type Frame } from '../helpers/ws.js'

const payloadOf = (f: Frame): Frame => f.payload as Frame

function entities (principalId: string, intentId: string, names: string[], sessionId: string): Frame {
  return envelope('INTENT_ANNOUNCE', principalId, {
    intent_id: intentId,
    objective: `work on ${names.join(', ')}`,
    scope: { kind: 'entity_set', entities: names }
  }, sessionId)
}

t.test('live intents per participant and per session: AUTHORIZATION_FAILED naming the limit', async t => {
  const srv = await startServer(t, { argv: ['--max-intents-per-participant', '2', '--max-intents-per-session', '3'] })
  const url = `${srv.url}/session/s`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  t.teardown(() => { a.close(); b.close() })
  t.equal((await a.request(announce('agent:a', 'a1', ['a1.py'], 's'))).message_type, 'INTENT_ANNOUNCE')
  t.equal((await a.request(announce('agent:a', 'a2', ['a2.py'], 's'))).message_type, 'INTENT_ANNOUNCE')
  const third = await a.request(announce('agent:a', 'a3', ['a3.py'], 's'))
  t.equal(payloadOf(third).error_code, 'AUTHORIZATION_FAILED')
  t.match(payloadOf(third).description, /at most 2 live intents \(max_intents_per_participant\)/)
  t.same([payloadOf(third).limit, payloadOf(third).limit_value], ['max_intents_per_participant', 2])
  // Superseding one of its own intents makes room (the count is of live intents after the announce).
  t.equal((await a.request(announce('agent:a', 'a2b', ['a2.py', 'a2_test.py'], 's'))).message_type, 'INTENT_ANNOUNCE', 'a superseding announce is within the limit')
  t.equal((await b.request(announce('agent:b', 'b1', ['b1.py'], 's'))).message_type, 'INTENT_ANNOUNCE')
  const full = await b.request(announce('agent:b', 'b2', ['b2.py'], 's'))
  t.equal(payloadOf(full).error_code, 'AUTHORIZATION_FAILED')
  t.match(payloadOf(full).description, /session may hold at most 3 live intents \(max_intents_per_session\)/)
  // Withdrawing frees a slot.
  t.equal((await a.request(envelope('INTENT_WITHDRAW', 'agent:a', { intent_id: 'a1' }, 's'))).message_type, 'INTENT_WITHDRAW')
  t.equal((await b.request(announce('agent:b', 'b2', ['b2.py'], 's'))).message_type, 'INTENT_ANNOUNCE')
  t.equal(srv.logs.filter(l => l.includes('"level":50')).length, 0, 'no error logged')
})

t.test('files per scope: MALFORMED_MESSAGE naming the limit, for announce and update', async t => {
  const srv = await startServer(t, { argv: ['--max-scope-files', '3'] })
  const url = `${srv.url}/session/s`
  const { client: a } = await joined(url, 'agent:a')
  t.teardown(() => a.close())
  const big = await a.request(announce('agent:a', 'i1', ['1.py', '2.py', '3.py', '4.py'], 's'))
  t.equal(payloadOf(big).error_code, 'MALFORMED_MESSAGE')
  t.match(payloadOf(big).description, /names 4 resources; an intent scope may name at most 3 \(max_scope_files\)/)
  t.equal((await a.request(announce('agent:a', 'i1', ['1.py', '2.py', '3.py'], 's'))).message_type, 'INTENT_ANNOUNCE')
  const update = await a.request(envelope('INTENT_UPDATE', 'agent:a', { intent_id: 'i1', scope: { kind: 'file_set', resources: ['1.py', '2.py', '3.py', '4.py'] } }, 's'))
  t.equal(payloadOf(update).error_code, 'MALFORMED_MESSAGE')
})

t.test('open conflicts per session: an announce that would open more is refused', async t => {
  const srv = await startServer(t, { argv: ['--max-open-conflicts', '1'] })
  const url = `${srv.url}/session/s`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  const { client: c } = await joined(url, 'agent:c')
  t.teardown(() => { a.close(); b.close(); c.close() })
  t.equal((await a.request(entities('agent:a', 'ia', ['billing'], 's'))).message_type, 'INTENT_ANNOUNCE')
  t.equal((await b.request(entities('agent:b', 'ib', ['billing'], 's'))).message_type, 'INTENT_ANNOUNCE')
  await b.next(f => f.message_type === 'CONFLICT_REPORT')
  const refused = await c.request(entities('agent:c', 'ic', ['billing'], 's'))
  t.equal(payloadOf(refused).error_code, 'AUTHORIZATION_FAILED')
  t.match(payloadOf(refused).description, /at most 1 open conflicts \(max_open_conflicts\)/)
  t.equal((await c.request(entities('agent:c', 'ic', ['shipping'], 's'))).message_type, 'INTENT_ANNOUNCE', 'an announce opening no conflict is fine')
  const report = await c.request(envelope('CONFLICT_REPORT', 'agent:c', {
    conflict_id: 'c-manual', related_intents: ['ia', 'ic'], category: 'scope_overlap', severity: 'low'
  }, 's'))
  t.equal(payloadOf(report).error_code, 'AUTHORIZATION_FAILED', 'a participant report is refused at the limit too')
  t.notOk(c.received.some(isError('MALFORMED_MESSAGE')))
})
