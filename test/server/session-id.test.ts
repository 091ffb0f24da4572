/**
 * The envelope session_id check (protocol.md §2.1: recommended in
 * multi-session mode only). A single-session server admits a HELLO that
 * carries another session id (the Python bridge's unpinned remote mode sends
 * its locally derived id); a multi-session server refuses it.
 */
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { announce, hello, TestClient, type Frame } from '../helpers/ws.js'

t.test('single-session server: a HELLO with another session_id is admitted and its messages are processed', async t => {
  const srv = await startServer(t, { argv: ['--session-id', 'proj-single'] })
  t.equal(srv.config.mode, 'single')
  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  const info = await c.request(hello('alice', { sessionId: 'derived-local-id' }))
  t.equal(info.message_type, 'SESSION_INFO', 'admitted', { frame: info })
  t.equal(info.session_id, 'proj-single', 'the coordinator answers with its own session id')
  const relay = await c.request(announce('alice', 'i-1', ['a.py'], 'derived-local-id'))
  t.equal(relay.message_type, 'INTENT_ANNOUNCE', 'the announce is relayed, not refused', { frame: relay })
  t.equal((relay.payload as Frame).intent_id, 'i-1')
})

t.test('multi-session server: a HELLO with another session_id is INVALID_REFERENCE', async t => {
  const srv = await startServer(t)
  t.equal(srv.config.mode, 'multi')
  const c = await TestClient.connect(`${srv.url}/session/proj-multi`)
  t.teardown(() => c.close())
  const err = await c.request(hello('alice', { sessionId: 'derived-local-id' }))
  t.equal(err.message_type, 'PROTOCOL_ERROR', { frame: err })
  t.match(err.payload, { error_code: 'INVALID_REFERENCE', description: /session_id derived-local-id does not match/ })
})
