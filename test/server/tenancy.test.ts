import t from 'tap'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isError, joined, TestClient, upgradeStatus, type Frame } from '../helpers/ws.js'

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

t.test('connections per address: HTTP 429 before the upgrade; a slot frees on close', async t => {
  const srv = await startServer(t, { argv: ['--max-connections-per-address', '2'] })
  const url = `${srv.url}/session/s`
  const a = await TestClient.connect(url)
  const b = await TestClient.connect(url)
  t.equal(await upgradeStatus(url), 429)
  t.ok(srv.logs.some(l => l.includes('upgrade refused') && l.includes('max_connections_per_address')), 'logged')
  b.close()
  await b.waitForClose()
  const deadline = Date.now() + 3000
  let status = 0
  while ((status = await upgradeStatus(url)) !== 101 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(status, 101, 'upgraded again once a connection closed')
  a.close()
})

t.test('connections per token: 429 with a bearer header, close 4429 at a credential HELLO', async t => {
  const tokens = { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-a': { allowed_sessions: ['*'] }, 'tok-b': { allowed_sessions: ['*'] } }) }
  const srv = await startServer(t, { argv: ['--max-connections-per-token', '2'], env: tokens })
  const url = `${srv.url}/session/s`
  const one = await joined(url, 'agent:1', { token: 'tok-a' })
  const two = await joined(url, 'agent:2', { token: 'tok-a', headers: { authorization: 'Bearer tok-a' } })
  t.teardown(() => { one.client.close(); two.client.close() })
  t.equal(await upgradeStatus(url, { authorization: 'Bearer tok-a' }), 429, 'a third connection with the header is refused before the upgrade')
  const third = await TestClient.connect(url)
  third.send(hello('agent:3', { sessionId: 's', token: 'tok-a' }))
  t.same(await third.waitForClose(), { code: 4429, reason: 'connection limit for this token reached' })
  // The same principal reconnecting replaces its connection: not counted.
  const again = await joined(url, 'agent:1', { token: 'tok-a' })
  t.teardown(() => again.client.close())
  t.equal((await one.client.waitForClose()).code, 4409, 'the old connection was replaced')
  const other = await joined(url, 'agent:4', { token: 'tok-b' })
  t.teardown(() => other.client.close())
  t.pass('another token is unaffected')
})

t.test('sessions per address: close 4429 for one more new session', async t => {
  const srv = await startServer(t, { argv: ['--max-sessions-per-address', '1'] })
  const first = await joined(`${srv.url}/session/p1`, 'agent:a')
  t.teardown(() => first.client.close())
  const c = await TestClient.connect(`${srv.url}/session/p2`)
  c.send(hello('agent:a', { sessionId: 'p2' }))
  t.same(await c.waitForClose(), { code: 4429, reason: 'session limit for this address reached' })
  const join = await joined(`${srv.url}/session/p1`, 'agent:b')
  t.teardown(() => join.client.close())
  t.pass('joining an existing session is not limited')
})

t.test('journal bytes per session per minute: INTENT_BACKOFF with retry_after_sec; other sessions unaffected', async t => {
  let now = Date.parse('2026-01-01T00:00:00Z')
  const srv = await startServer(t, { argv: ['--max-journal-bytes-per-min', '4096'], now: () => now })
  const url = `${srv.url}/session/busy`
  const { client: a } = await joined(url, 'agent:a')
  const { client: calm } = await joined(`${srv.url}/session/calm`, 'agent:c')
  t.teardown(() => { a.close(); calm.close() })
  let refused: Frame | undefined
  for (let i = 0; i < 40 && refused === undefined; i++) {
    const reply = await a.request(announce('agent:a', `i${i}`, [`f${i}.py`, 'x'.repeat(200) + `${i}.py`], 'busy'))
    if (reply.message_type === 'PROTOCOL_ERROR') refused = reply
  }
  t.ok(refused, 'refused once the budget is spent')
  const p = payloadOf(refused as Frame)
  t.equal(p.error_code, 'INTENT_BACKOFF')
  t.match(p.description, /at most 4096 bytes per minute/)
  const ext = p.extensions as Frame
  t.equal(ext.limit, 'max_journal_bytes_per_min')
  t.ok(typeof ext.retry_after_sec === 'number' && ext.retry_after_sec >= 1 && ext.retry_after_sec <= 60, `retry_after_sec ${String(ext.retry_after_sec)}`)
  const hb = envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 'busy')
  t.equal((await a.request(hb)).message_type, 'HEARTBEAT', 'heartbeats still pass')
  t.equal((await calm.request(announce('agent:c', 'c1', ['c.py'], 'calm'))).message_type, 'INTENT_ANNOUNCE', 'another session is unaffected')
  now += 61_000
  t.equal((await a.request(announce('agent:a', 'later', ['later.py'], 'busy'))).message_type, 'INTENT_ANNOUNCE', 'writes pass again a minute later')
})

t.test('frames per token across its connections: INTENT_BACKOFF beyond the share; other tokens unaffected', async t => {
  const tokens = { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-a': { allowed_sessions: ['*'] }, 'tok-b': { allowed_sessions: ['*'] } }) }
  const srv = await startServer(t, { argv: ['--max-msgs-per-sec-per-token', '10', '--max-msgs-per-sec', '1000'], env: tokens })
  const url = `${srv.url}/session/s`
  const { client: a1 } = await joined(url, 'agent:a1', { token: 'tok-a' })
  const { client: a2 } = await joined(url, 'agent:a2', { token: 'tok-a' })
  const { client: b } = await joined(url, 'agent:b', { token: 'tok-b' })
  t.teardown(() => { a1.close(); a2.close(); b.close() })
  // 8 frames on each connection: within the per-connection rate, above the token's share of 10.
  for (let i = 0; i < 8; i++) {
    a1.send(envelope('HEARTBEAT', 'agent:a1', { status: 'idle' }, 's'))
    a2.send(envelope('HEARTBEAT', 'agent:a2', { status: 'idle' }, 's'))
  }
  const backoff = await Promise.race([a1.next(isError('INTENT_BACKOFF')), a2.next(isError('INTENT_BACKOFF'))])
  t.match(payloadOf(backoff).description, /10 per token/)
  const hb = envelope('HEARTBEAT', 'agent:b', { status: 'idle' }, 's')
  t.equal((await b.request(hb)).message_id, hb.message_id, 'another token keeps its own share')
})
