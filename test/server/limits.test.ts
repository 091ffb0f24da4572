import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isError, isType, joined, RawClient, TestClient, type Frame } from '../helpers/ws.js'

t.test('a frame above --max-frame-bytes closes with 1009; others unaffected', async t => {
  const srv = await startServer(t, { argv: ['--max-frame-bytes', '2048'] })
  const url = `${srv.url}/session/s`
  const { client: good } = await joined(url, 'agent:good')
  t.teardown(() => good.close())
  const big = await TestClient.connect(url)
  big.send(JSON.stringify({ type: 'FILE_READ', path: 'x'.repeat(4096) }))
  t.equal((await big.waitForClose()).code, 1009)
  const hb = envelope('HEARTBEAT', 'agent:good', { status: 'idle' }, 's')
  t.equal((await good.request(hb)).message_id, hb.message_id, 'the other connection still works')
})

t.test('pre-HELLO deadline closes with 4408; an admitted connection stays', async t => {
  const srv = await startServer(t, { argv: ['--prehello-timeout', '0.3'] })
  const url = `${srv.url}/session/s`
  // The admitted connection opens first, so its (cancelled) deadline passes before the idle one's.
  const { client: admitted } = await joined(url, 'agent:a')
  t.teardown(() => admitted.close())
  const idle = await TestClient.connect(url)
  const started = Date.now()
  t.equal((await idle.waitForClose(3000)).code, 4408)
  t.ok(Date.now() - started < 2000, 'closed near the deadline')
  const hb = envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 's')
  t.equal((await admitted.request(hb)).message_id, hb.message_id)
  t.equal(admitted.isClosed, false)
})

t.test('pre-HELLO frame cap closes with 4429', async t => {
  const srv = await startServer(t, { argv: ['--prehello-max-frames', '3'] })
  const c = await TestClient.connect(`${srv.url}/session/s`)
  for (let i = 0; i < 5; i++) c.send({ type: 'FILE_LIST' })
  const closed = await c.waitForClose()
  t.equal(closed.code, 4429)
  t.equal(c.received.filter(isType('FILE_LIST_RESPONSE')).length, 3, 'the first three were answered')
})

t.test('rate limit: excess frames get INTENT_BACKOFF, sustained abuse closes with 4429', async t => {
  const srv = await startServer(t, { argv: ['--max-msgs-per-sec', '5'] })
  const url = `${srv.url}/session/s`
  const { client: flood } = await joined(url, 'agent:flood')
  const { client: calm } = await joined(url, 'agent:calm')
  t.teardown(() => calm.close())
  for (let i = 0; i < 30; i++) flood.send(envelope('HEARTBEAT', 'agent:flood', { status: 'idle' }, 's'))
  const backoff = await flood.next(isError('INTENT_BACKOFF'))
  t.match((backoff.payload as Frame).description, /rate limit/)
  t.ok((backoff.payload as Frame).refers_to, 'the error refers to the dropped message')
  t.equal((await flood.waitForClose()).code, 4429)
  const hb = envelope('HEARTBEAT', 'agent:calm', { status: 'idle' }, 's')
  t.equal((await calm.request(hb)).message_id, hb.message_id, 'other connections are not limited')
})

t.test('sessions per server and per token', async t => {
  const srv = await startServer(t, { argv: ['--max-sessions', '2'] })
  const a = await joined(`${srv.url}/session/s1`, 'agent:a')
  const b = await joined(`${srv.url}/session/s2`, 'agent:a')
  t.teardown(() => { a.client.close(); b.client.close() })
  const c = await TestClient.connect(`${srv.url}/session/s3`)
  c.send(hello('agent:a', { sessionId: 's3' }))
  t.same(await c.waitForClose(), { code: 4429, reason: 'session limit reached' })
  const again = await joined(`${srv.url}/session/s1`, 'agent:b')
  t.teardown(() => again.client.close())
  t.pass('existing sessions still accept participants')

  const tokens = { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-any': { allowed_sessions: ['*'] }, 'tok-other': { allowed_sessions: ['*'] } }) }
  const srv2 = await startServer(t, { argv: ['--max-sessions-per-token', '1'], env: tokens })
  const first = await joined(`${srv2.url}/session/p1`, 'agent:a', { token: 'tok-any' })
  t.teardown(() => first.client.close())
  const second = await TestClient.connect(`${srv2.url}/session/p2`)
  second.send(hello('agent:a', { sessionId: 'p2', token: 'tok-any' }))
  t.same(await second.waitForClose(), { code: 4429, reason: 'session limit for this token reached' })
  const other = await joined(`${srv2.url}/session/p2`, 'agent:b', { token: 'tok-other' })
  t.teardown(() => other.client.close())
  const join = await joined(`${srv2.url}/session/p2`, 'agent:c', { token: 'tok-any' })
  t.teardown(() => join.client.close())
  t.pass('joining an existing session does not count against the token')
})

t.test('participants per session', async t => {
  const srv = await startServer(t, { argv: ['--max-participants', '2'] })
  const url = `${srv.url}/session/s`
  const a = await joined(url, 'agent:a')
  const b = await joined(url, 'agent:b')
  t.teardown(() => { a.client.close(); b.client.close() })
  const c = await TestClient.connect(url)
  t.teardown(() => c.close())
  const r = await c.request(hello('agent:c', { sessionId: 's' }))
  t.equal((r.payload as Frame).error_code, 'AUTHORIZATION_FAILED')
  t.match((r.payload as Frame).description, /at most 2 participants/)
})

t.test('workspace bytes per session', async t => {
  const srv = await startServer(t, { argv: ['--max-workspace-bytes', '1000'] })
  const url = `${srv.url}/session/s`
  const { client: a } = await joined(url, 'agent:a')
  t.teardown(() => a.close())
  await a.request(announce('agent:a', 'i1', ['big.txt'], 's'))
  const commit = (content: string, id: string) => envelope('OP_COMMIT', 'agent:a', {
    op_id: id, intent_id: 'i1', target: 'big.txt', op_kind: 'replace',
    state_ref_before: 'sha256:e3b0c44298fc1c14', state_ref_after: 'sha256:0000000000000000',
    file_changes: { 'big.txt': { content, state_ref_before: 'sha256:e3b0c44298fc1c14' } }
  }, 's')
  const r = await a.request(commit('x'.repeat(2000), 'op-big'))
  t.equal((r.payload as Frame).error_code, 'MALFORMED_MESSAGE')
  t.match((r.payload as Frame).description, /workspace limit/)
  const ok = await a.request(commit('small', 'op-small'))
  t.equal(ok.message_type, 'OP_COMMIT', 'a commit within the limit is accepted')
})

t.test('a slow consumer is cut with 4429 without affecting others', async t => {
  const srv = await startServer(t, { argv: ['--max-buffered-bytes', '65536', '--max-msgs-per-sec', '10000'] })
  const url = `${srv.url}/session/s`
  const slow = await RawClient.connect(srv.port, '/session/s')
  slow.sendText(JSON.stringify(hello('agent:slow', { sessionId: 's' })))
  const { client: talker } = await joined(url, 'agent:talker')
  const { client: watcher } = await joined(url, 'agent:watcher')
  t.teardown(() => { talker.close(); watcher.close() })
  // Each announce relays ~100 KiB to every admitted connection; the slow one never reads.
  const objective = 'o'.repeat(16000)
  const pad = 'p'.repeat(4000)
  let cut = false
  for (let i = 0; i < 600 && !cut; i++) {
    const resources = Array.from({ length: 20 }, (_, k) => `${i}/${k}/${pad}`)
    const ann = envelope('INTENT_ANNOUNCE', 'agent:talker', { intent_id: `i${i}`, objective, scope: { kind: 'file_set', resources } }, 's')
    t.equal((await talker.request(ann, 5000)).message_id, ann.message_id)
    await watcher.next(f => f.message_id === ann.message_id, 5000)
    cut = srv.app.mpac.metrics.render().includes('mpac_connection_closes_total{code="4429"} 1')
  }
  t.ok(cut, 'the slow consumer was closed')
  t.ok(srv.logs.some(l => l.includes('slow consumer')), 'and the reason logged')
  t.equal(await slow.readUntilClose(10000), 4429, 'its close frame says 4429')
  t.equal(talker.isClosed || watcher.isClosed, false, 'the others stay connected')
})

t.test('the slow-consumer ceiling holds inside one burst: large replies stop at the ceiling', async t => {
  const srv = await startServer(t, { argv: ['--max-frame-bytes', '2000000', '--max-buffered-bytes', '1500000'] })
  const url = `${srv.url}/session/s`
  const { client: writer } = await joined(url, 'agent:w')
  t.teardown(() => writer.close())
  const content = 'z'.repeat(1_000_000)
  await writer.request(announce('agent:w', 'i1', ['big.txt'], 's'))
  const commit = envelope('OP_COMMIT', 'agent:w', {
    op_id: 'op1', intent_id: 'i1', target: 'big.txt', op_kind: 'create',
    state_ref_before: stateRef(''), state_ref_after: stateRef(content),
    file_changes: { 'big.txt': { content, state_ref_before: stateRef('') } }
  }, 's')
  t.equal((await writer.request(commit, 10000)).message_type, 'OP_COMMIT')
  // A client that never reads asks for the 1 MB file 16 times in one TCP write.
  const slow = await RawClient.connect(srv.port, '/session/s')
  slow.sendBurst(Array.from({ length: 16 }, () => JSON.stringify({ type: 'FILE_READ', path: 'big.txt' })))
  t.equal(await slow.readUntilClose(10000), 4429, 'cut as a slow consumer')
  const sent = /^mpac_messages_out_total\{type="FILE_CONTENT"\} (\d+)$/m.exec(srv.app.mpac.metrics.render())
  t.ok(sent !== null && Number(sent[1]) <= 2, `at most ceiling / size + 1 replies were queued (${sent?.[1] ?? 'none'})`)
  const hb = envelope('HEARTBEAT', 'agent:w', { status: 'idle' }, 's')
  t.equal((await writer.request(hb)).message_id, hb.message_id, 'others unaffected')
})
