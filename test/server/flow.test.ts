import t from 'tap'
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
