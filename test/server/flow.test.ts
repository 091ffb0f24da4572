import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isError, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

t.test('two clients on /session/demo: HELLO, announce, race lock, commit, withdraw', async t => {
  const srv = await startServer(t)
  const url = `${srv.url}/session/demo`
  const { client: a, info } = await joined(url, 'agent:a')
  t.teardown(() => a.close())
  t.equal((info.payload as Frame).session_id, 'demo')
  const { client: b } = await joined(url, 'agent:b')
  t.teardown(() => b.close())

  const ann = announce('agent:a', 'i-a', ['src/x.ts'], 'demo')
  const relayed = await a.request(ann)
  t.equal(relayed.message_type, 'INTENT_ANNOUNCE', 'sender gets the relay as terminal frame')
  const atB = await b.next(f => f.message_id === ann.message_id)
  t.equal(atB.message_type, 'INTENT_ANNOUNCE', 'peer gets the relay')

  const clash = await b.request(announce('agent:b', 'i-b', ['src/x.ts'], 'demo'))
  t.equal((clash.payload as Frame).error_code, 'STALE_INTENT', 'race lock')

  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op-1', intent_id: 'i-a', target: 'src/x.ts', op_kind: 'replace',
    state_ref_before: 'sha256:0000000000000000', state_ref_after: 'sha256:1111111111111111'
  }, 'demo')
  const done = await a.request(commit)
  t.equal(done.message_type, 'OP_COMMIT')
  const w = await a.request(envelope('INTENT_WITHDRAW', 'agent:a', { intent_id: 'i-a' }, 'demo'))
  t.equal(w.message_type, 'INTENT_WITHDRAW')

  const probe = await TestClient.connect(url)
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const summary = await probe.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.equal((summary.session as Frame).participant_count, 2)
  void isError
  void hello
})

t.test('isolation: no message, file or summary crosses between sessions (same principal ids in both)', async t => {
  const srv = await startServer(t)
  const { client: a1 } = await joined(`${srv.url}/session/alpha`, 'agent:a')
  const { client: a2 } = await joined(`${srv.url}/session/beta`, 'agent:a')
  const { client: b2 } = await joined(`${srv.url}/session/beta`, 'agent:b')
  t.teardown(() => { a1.close(); a2.close(); b2.close() })
  await a1.request(announce('agent:a', 'i-alpha', ['secret.txt'], 'alpha'))
  const content = 'alpha only\n'
  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op-alpha', intent_id: 'i-alpha', target: 'secret.txt', op_kind: 'create',
    state_ref_before: stateRef(''), state_ref_after: stateRef(content),
    file_changes: { 'secret.txt': { content, state_ref_before: stateRef('') } }
  }, 'alpha')
  t.equal((await a1.request(commit)).message_type, 'OP_COMMIT')
  await a1.next(isType('FILE_UPDATED'))
  // An envelope naming the other session is refused, not routed there.
  const cross = await a1.request(announce('agent:a', 'i-cross', ['x.txt'], 'beta'))
  t.equal(cross.message_type, 'PROTOCOL_ERROR', 'an envelope for beta on an alpha connection is refused')
  // The same intent id in beta does not collide with alpha's.
  t.equal((await a2.request(announce('agent:a', 'i-alpha', ['secret.txt'], 'beta'))).message_type, 'INTENT_ANNOUNCE', 'beta has its own intents')
  b2.send({ type: 'FILE_READ', path: 'secret.txt' })
  t.same(await b2.next(isType('FILE_ERROR')), { type: 'FILE_ERROR', path: 'secret.txt', error: 'File not found' }, 'alpha\'s file is not in beta')
  b2.send({ type: 'FILE_LIST' })
  t.same((await b2.next(isType('FILE_LIST_RESPONSE'))).files, [])
  b2.send({ type: 'SESSION_SUMMARY' })
  const s = (await b2.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.same((s.active_intents as Frame[]).map(i => i.intent_id), ['i-alpha'], 'only beta\'s own intent')
  t.equal(s.participant_count, 2)
  for (const c of [a2, b2]) {
    t.notOk(c.received.some(f => f.message_id === commit.message_id || (f.type === 'FILE_UPDATED' && f.path === 'secret.txt')), 'no alpha relay or push reached beta')
  }
  const metrics = srv.app.mpac.metrics.render()
  t.match(metrics, /^mpac_sessions 2$/m)
  t.match(metrics, /^mpac_session_timers 2$/m, 'one timer per loaded session')
})
