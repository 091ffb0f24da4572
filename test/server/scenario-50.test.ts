import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isError, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

// protocol.md §14 scenario 50 ("Server"), in its TS form (the [SPEC]/strict variants).

t.test('scenario 50: server behaviour', async t => {
  const srv = await startServer(t)

  await t.test('/session/alpha and /session/beta are isolated', async t => {
    const { client: a } = await joined(`${srv.url}/session/alpha`, 'agent:a')
    t.teardown(() => a.close())
    const probe = await TestClient.connect(`${srv.url}/session/beta`)
    t.teardown(() => probe.close())
    probe.send({ type: 'SESSION_SUMMARY' })
    const s = await probe.next(isType('SESSION_SUMMARY_RESPONSE'))
    t.equal((s.session as Frame).session_id, 'beta')
    t.equal((s.session as Frame).participant_count, 0, 'HELLO on alpha is not visible in beta')
  })

  await t.test('path /foo → close 4004', async t => {
    const c = await TestClient.connect(`${srv.url}/foo`)
    t.equal((await c.waitForClose()).code, 4004)
    const bad = await TestClient.connect(`${srv.url}/session/bad%20id`)
    t.equal((await bad.waitForClose()).code, 4004, 'an invalid session id too')
  })

  await t.test('files, FILE_UPDATED, routing, second HELLO, coordinator id, stale entry, summary', async t => {
    const url = `${srv.url}/session/files`
    const { client: a } = await joined(url, 'agent:a')
    const { client: b } = await joined(url, 'agent:b')
    const side = await TestClient.connect(url)
    t.teardown(() => { a.close(); b.close(); side.close() })

    side.send({ type: 'FILE_READ', path: 'a.py' })
    t.same(await side.next(), { type: 'FILE_ERROR', path: 'a.py', error: 'File not found' }, 'FILE_READ of a missing file')

    await a.request(announce('agent:a', 'i-a', ['a.py', 'b.py'], 'files'))
    const content = 'print("a")\n'
    const commit = envelope('OP_COMMIT', 'agent:a', {
      op_id: 'op-1', intent_id: 'i-a', target: 'a.py', op_kind: 'create',
      state_ref_before: stateRef(''), state_ref_after: stateRef(content),
      file_changes: { 'a.py': { content, state_ref_before: stateRef('') } }
    }, 'files')
    a.send(commit)
    for (const c of [a, b]) {
      const relay = await c.next(f => f.message_id === commit.message_id)
      t.notOk('file_changes' in (relay.payload as Frame), 'OP_COMMIT relayed without file_changes')
      const upd = await c.next(isType('FILE_UPDATED'))
      t.same(upd, { type: 'FILE_UPDATED', path: 'a.py', state_ref: stateRef(content), updated_by: 'agent:a' })
    }
    t.match(stateRef(content), /^sha256:[0-9a-f]{16}$/)

    await b.request(announce('agent:b', 'i-b0', ['zzz.py'], 'files'))
    side.send({ type: 'FILE_LIST' })
    const list = await side.next(isType('FILE_LIST_RESPONSE'))
    t.same(list.files, [{ path: 'a.py', state_ref: stateRef(content), size: content.length }], 'sorted {path, state_ref, size}')
    t.same(side.received.map(f => f.type), ['FILE_ERROR', 'FILE_LIST_RESPONSE'], 'the sideband-only connection got no relays or pushes')

    // A second HELLO for A on another connection: the new one gets later broadcasts, the old one is closed (4409).
    const { client: a2 } = await joined(url, 'agent:a')
    t.teardown(() => a2.close())
    t.same(await a.waitForClose(), { code: 4409, reason: 'replaced by a newer connection' })
    const ann = announce('agent:b', 'i-b', ['c.py'], 'files')
    await b.request(ann)
    t.equal((await a2.next(f => f.message_id === ann.message_id)).message_type, 'INTENT_ANNOUNCE', 'broadcasts reach the new connection')

    // Invalid JSON: PROTOCOL_ERROR MALFORMED_MESSAGE and the connection stays (the Python server closed with 1011).
    b.send('{not json')
    t.equal(((await b.next(isError())).payload as Frame).error_code, 'MALFORMED_MESSAGE')
    t.notOk(b.isClosed)

    // The coordinator's own principal id from a connection with no HELLO: refused, not processed.
    const intruder = await TestClient.connect(url)
    t.teardown(() => intruder.close())
    const forged = envelope('RESOLUTION', 'service:coordinator-files', { resolution_id: 'r1', conflict_id: 'c1', decision: 'dismissed', rationale: 'x' }, 'files')
    const refused = await intruder.request(forged)
    t.equal((refused.payload as Frame).error_code, 'AUTHORIZATION_FAILED')

    // A stale file_changes entry: STALE_STATE_REF, no relay, no FILE_UPDATED.
    const stale = envelope('OP_COMMIT', 'agent:a', {
      op_id: 'op-2', intent_id: 'i-a', target: 'a.py', op_kind: 'replace',
      state_ref_before: stateRef('something else'), state_ref_after: stateRef('x'),
      file_changes: { 'a.py': { content: 'x', state_ref_before: stateRef('something else') } }
    }, 'files')
    const r = await a2.request(stale)
    t.equal((r.payload as Frame).error_code, 'STALE_STATE_REF')
    const hb = envelope('HEARTBEAT', 'agent:b', { status: 'idle' }, 'files')
    await b.request(hb)
    t.equal(b.received.filter(f => f.message_id === stale.message_id || (f.type === 'FILE_UPDATED' && f.state_ref === stateRef('x'))).length, 0, 'peers saw neither relay nor FILE_UPDATED')

    side.send({ type: 'SESSION_SUMMARY' })
    const summary = (await side.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
    for (const key of ['session_id', 'workspace_dir', 'captured_at', 'participant_count', 'active_intent_count', 'open_conflict_count', 'participants', 'active_intents', 'open_conflicts']) {
      t.ok(key in summary, key)
    }
  })

  await t.test('strict mode: sideband before an admitted HELLO is refused in the authenticated profile', async t => {
    const auth = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify({ tok: { allowed_sessions: ['*'] } }) } })
    const c = await TestClient.connect(`${auth.url}/session/x`)
    c.send({ type: 'FILE_LIST' })
    t.equal((await c.waitForClose()).code, 4401)
    void hello
  })
})
