// PROTOCOL_ERROR frames authored by the server (before the core sees the
// input, or instead of it) and by the core share one payload builder: the
// same key order, over a real socket. Server-authored frames carry no
// watermark or coordinator_epoch and come from `<coordinator>:server`.
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isError, joined, TestClient, type Frame } from '../helpers/ws.js'

const SERVER_KEYS = ['protocol', 'version', 'message_type', 'message_id', 'session_id', 'sender', 'ts', 'payload']
const payload = (f: Frame): Frame => f.payload as Frame

t.test('server-authored and core-authored errors have the same payload shape', async t => {
  const now = Date.parse('2026-01-01T00:00:00Z')
  const srv = await startServer(t, { argv: ['--max-journal-bytes-per-min', '4096'], now: () => now })
  const url = `${srv.url}/session/pe`
  const coordinator = 'service:coordinator-pe'

  // Before HELLO: the connection authors the refusal (the core never sees it).
  const stranger = await TestClient.connect(url)
  t.teardown(() => stranger.close())
  const early = await stranger.request(envelope('HEARTBEAT', 'agent:x', { status: 'idle' }, 'pe'))
  t.same(Object.keys(early), SERVER_KEYS, 'a server-authored envelope: no watermark, no coordinator_epoch')
  t.same(early.sender, { principal_id: coordinator, principal_type: 'service', sender_instance_id: `${coordinator}:server` })
  t.equal(early.version, '0.1.13')
  t.same(Object.keys(payload(early)), ['error_code', 'refers_to', 'description'], 'connection error: refers_to before description')
  t.equal(payload(early).error_code, 'INVALID_REFERENCE')

  // A frame without a message_id: no refers_to at all.
  stranger.send('[]')
  const noRef = await stranger.next(isError('MALFORMED_MESSAGE'))
  t.same(Object.keys(payload(noRef)), ['error_code', 'description'], 'no refers_to when the frame has no message_id')

  // After HELLO: the core rejects, through the same builder.
  const { client: a } = await joined(url, 'agent:a')
  t.teardown(() => a.close())
  const withdraw = envelope('INTENT_WITHDRAW', 'agent:a', { intent_id: 'nope' }, 'pe')
  const core = await a.request(withdraw)
  t.equal(payload(core).error_code, 'INVALID_REFERENCE')
  t.same(Object.keys(payload(core)), ['error_code', 'refers_to', 'description'], 'core error: the same key order')
  t.equal(payload(core).refers_to, withdraw.message_id)
  t.ok('watermark' in core && 'coordinator_epoch' in core, 'the core sequences its own errors')

  // The session runtime authors the journal-budget refusal (extensions last).
  let refused: Frame | undefined
  for (let i = 0; i < 40 && refused === undefined; i++) {
    const reply = await a.request(announce('agent:a', `i${i}`, [`f${i}.py`, 'x'.repeat(200) + `${i}.py`], 'pe'))
    if (reply.message_type === 'PROTOCOL_ERROR') refused = reply
  }
  t.ok(refused, 'refused once the journal budget is spent')
  const r = refused as Frame
  t.same(Object.keys(r), SERVER_KEYS, 'a runtime-authored envelope: no watermark, no coordinator_epoch')
  t.equal(r.ts, new Date(now).toISOString(), 'stamped with the injected clock')
  t.same(Object.keys(payload(r)), ['error_code', 'refers_to', 'description', 'extensions'], 'runtime error: same order, extensions last')
  t.equal(payload(r).error_code, 'INTENT_BACKOFF')
})
