import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isError, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

t.test('hostile input: the connection and the session survive, nothing accepted is lost', async t => {
  const srv = await startServer(t)
  const url = `${srv.url}/session/h`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  t.teardown(() => { a.close(); b.close() })

  // Something accepted first.
  await a.request(announce('agent:a', 'i-a', ['keep.txt', 'x.txt'], 'h'))
  const content = 'keep me\n'
  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op-keep', intent_id: 'i-a', target: 'keep.txt', op_kind: 'create',
    state_ref_before: stateRef(''), state_ref_after: stateRef(content),
    file_changes: { 'keep.txt': { content, state_ref_before: stateRef('') } }
  }, 'h')
  t.equal((await a.request(commit)).message_type, 'OP_COMMIT')

  const malformed = async (send: () => void, what: string): Promise<void> => {
    send()
    const err = await a.next(isError())
    t.equal((err.payload as Frame).error_code, 'MALFORMED_MESSAGE', what)
  }
  await malformed(() => a.send('{"message_type": "HEARTBEAT", '), 'truncated JSON')
  await malformed(() => a.send('[1,2,3]'), 'a JSON array')
  await malformed(() => a.send('null'), 'JSON null')
  await malformed(() => a.sendBinary(new Uint8Array([1, 2, 3])), 'a binary frame')

  const schema = async (frame: Frame, what: string, code = 'MALFORMED_MESSAGE'): Promise<void> => {
    const r = await a.request(frame)
    t.equal(r.message_type, 'PROTOCOL_ERROR', what)
    t.equal((r.payload as Frame).error_code, code, what)
  }
  const hb = envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 'h')
  await schema({ ...hb, message_id: 'm-no-payload', payload: undefined }, 'missing payload')
  await schema({ ...envelope('INTENT_ANNOUNCE', 'agent:a', { intent_id: 'i2', objective: 'x' }, 'h') }, 'announce without scope')
  await schema({ ...envelope('INTENT_ANNOUNCE', 'agent:a', { intent_id: 'i3', objective: 'o'.repeat(500_000), scope: { kind: 'file_set', resources: ['q.txt'] } }, 'h') }, 'a huge string')
  await schema({ ...envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 'h'), watermark: { kind: 'lamport_clock', value: 'NaN' } }, 'a non-integer Lamport value')
  const deep = JSON.stringify(envelope('HEARTBEAT', 'agent:a', { status: 'idle', extra: 'DEEP' }, 'h'))
    .replace('"DEEP"', '{"n":'.repeat(100_000) + '{}' + '}'.repeat(100_000))
  await malformed(() => a.send(deep), 'deep nesting (valid JSON that recursive code would overflow on)')

  for (const path of ['../escape.txt', '/etc/passwd', 'a\u0000b.txt', 'C:\\win.txt', 'x/../../y.txt', '']) {
    const r = await a.request(envelope('OP_COMMIT', 'agent:a', {
      op_id: `op-${Math.random()}`, intent_id: 'i-a', target: 'x.txt', op_kind: 'replace',
      state_ref_before: stateRef(''), state_ref_after: stateRef('p'),
      file_changes: { [path]: { content: 'p', state_ref_before: stateRef('') } }
    }, 'h'))
    t.equal(r.message_type, 'PROTOCOL_ERROR', `hostile path ${JSON.stringify(path)} refused`)
  }

  a.send({ type: 'FILE_READ', path: { not: 'a string' } })
  t.equal((await a.next(isType('FILE_ERROR'))).error, 'path is required (a non-empty string)')

  t.notOk(a.isClosed, 'the connection survived')
  const check = envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 'h')
  t.equal((await a.request(check)).message_id, check.message_id, 'and still works')
  a.send({ type: 'FILE_READ', path: 'keep.txt' })
  const kept = await a.next(isType('FILE_CONTENT'))
  t.equal(kept.content, content, 'the accepted commit is intact')
  b.send({ type: 'SESSION_SUMMARY' })
  const s = (await b.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.equal(s.participant_count, 2)
  t.equal(s.active_intent_count, 1)
  t.equal(srv.app.mpac.registry.loadedCount, 1, 'the session was never reset')
})

t.test('an unknown sideband type and unknown message types get answers, not crashes', async t => {
  const srv = await startServer(t)
  const c = await TestClient.connect(`${srv.url}/session/u`)
  t.teardown(() => c.close())
  const r = await c.request({ type: 'DROP_TABLES', message_id: 'x1' })
  t.equal(r.message_type, 'PROTOCOL_ERROR', 'an object with an unknown type is treated as an envelope')
  t.notOk(c.isClosed)
})
