import { execFileSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Agent, WebSocket } from 'undici'
import { TokenTable } from '../../src/server/token-table.js'
import Database from 'better-sqlite3'
import { DATABASE_FILE, SqliteStore } from '../../src/store/index.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

t.test('healthz, readyz and metrics', async t => {
  const srv = await startServer(t, { env: { MPAC_METRICS_TOKEN: 'metrics-secret' } })
  t.same(await (await fetch(`${srv.httpUrl}/healthz`)).json(), { status: 'ok' })
  const ready = await fetch(`${srv.httpUrl}/readyz`)
  t.equal(ready.status, 200)
  t.equal((await fetch(`${srv.httpUrl}/metrics`)).status, 401, 'metrics need the bearer token')
  t.equal((await fetch(`${srv.httpUrl}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401)
  t.equal((await fetch(`${srv.httpUrl}/session/x`)).status, 426, 'plain HTTP on a WebSocket route')
  t.equal((await fetch(`${srv.httpUrl}/nope`)).status, 404)

  const { client } = await joined(`${srv.url}/session/m`, 'agent:a')
  t.teardown(() => client.close())
  await client.request(announce('agent:a', 'i1', ['m.txt'], 'm'))
  await client.request(announce('agent:a', 'i2', ['m.txt'], 'm'))
  client.send('nonsense')
  await client.next(f => f.message_type === 'PROTOCOL_ERROR')
  const res = await fetch(`${srv.httpUrl}/metrics`, { headers: { authorization: 'Bearer metrics-secret' } })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /text\/plain/)
  const text = await res.text()
  t.match(text, /^mpac_connections 1$/m)
  t.match(text, /^mpac_sessions 1$/m)
  t.match(text, /^mpac_messages_in_total\{type="INTENT_ANNOUNCE"\} 2$/m)
  t.match(text, /^mpac_messages_in_total\{type="HELLO"\} 1$/m)
  t.match(text, /^mpac_messages_out_total\{type="SESSION_INFO"\} 1$/m)
  t.match(text, /^mpac_protocol_errors_total\{code="MALFORMED_MESSAGE"\} 1$/m)
  t.match(text, /^mpac_message_handling_seconds_count \d+$/m)
  t.match(text, /^mpac_message_handling_seconds_bucket\{le="\+Inf"\} \d+$/m)
  t.match(text, /^# TYPE mpac_message_handling_seconds histogram$/m)
})

t.test('no token ever appears in the logs', async t => {
  const secret = 'tok-super-secret-value-123'
  const srv = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify({ [secret]: { allowed_sessions: ['s'] } }) } })
  const bearer = { authorization: `Bearer ${secret}` }
  const { client } = await joined(`${srv.url}/session/s`, 'agent:a', { token: secret, headers: bearer })
  t.teardown(() => client.close())
  const bad = await TestClient.connect(`${srv.url}/session/s`)
  await bad.request(hello('agent:b', { sessionId: 's', token: `${secret}-wrong` }))
  bad.close()
  await fetch(`${srv.httpUrl}/session/other`, { headers: bearer })
  await client.request(envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 's'))
  const empty = TokenTable.fromObject({})
  if (empty.ok) srv.app.mpac.setTokenTable(empty.table)
  await client.waitForClose()
  await srv.close()
  t.ok(srv.logs.length > 5, `logs were written (${srv.logs.length} lines)`)
  t.notOk(srv.logs.some(l => l.includes(secret)), 'the token never appears')
})

t.test('token table reload: a revoked token\'s connections are closed with 4401, others undisturbed', async t => {
  const table = (entries: Record<string, unknown>): TokenTable => {
    const r = TokenTable.fromObject(entries)
    if (!r.ok) throw new Error(r.message)
    return r.table
  }
  const srv = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-a': { allowed_sessions: ['s'] }, 'tok-b': { allowed_sessions: ['s'] } }) } })
  const a = await joined(`${srv.url}/session/s`, 'agent:a', { token: 'tok-a' })
  const b = await joined(`${srv.url}/session/s`, 'agent:b', { token: 'tok-b' })
  t.teardown(() => { a.client.close(); b.client.close() })
  const closed = srv.app.mpac.setTokenTable(table({ 'tok-b': { allowed_sessions: ['s'] } }))
  t.equal(closed, 1)
  t.same(await a.client.waitForClose(), { code: 4401, reason: 'token revoked' })
  const hb = envelope('HEARTBEAT', 'agent:b', { status: 'idle' }, 's')
  t.equal((await b.client.request(hb)).message_id, hb.message_id, 'the valid token\'s connection is undisturbed')
  t.equal(srv.app.mpac.setTokenTable(table({ 'tok-b': { allowed_sessions: ['other'] } })), 1, 'narrowing the sessions revokes too')
  t.equal((await b.client.waitForClose()).code, 4401)
})

t.test('shutdown closes clients with 1012 and readyz answers 503', async t => {
  const srv = await startServer(t)
  const { client } = await joined(`${srv.url}/session/s`, 'agent:a')
  const probe = await TestClient.connect(`${srv.url}/session/s`)
  const closing = srv.close()
  t.same(await client.waitForClose(), { code: 1012, reason: 'service restart' })
  t.equal((await probe.waitForClose()).code, 1012)
  t.equal(srv.app.mpac.isReady(), false)
  await closing
})

t.test('restart on the same data dir restores the session (epoch + 1)', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-restart-'))
  const store1 = new SqliteStore({ dir })
  const one = await startServer(t, { store: store1 })
  const { client: a, info } = await joined(`${one.url}/session/keep`, 'agent:a')
  t.equal(info.coordinator_epoch, 1)
  await a.request(announce('agent:a', 'i-keep', ['k.txt'], 'keep'))
  await one.close()
  store1.close()
  await a.waitForClose()

  const store2 = new SqliteStore({ dir })
  t.teardown(() => store2.close())
  const two = await startServer(t, { store: store2 })
  const probe = await TestClient.connect(`${two.url}/session/keep`)
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = (await probe.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.equal(s.active_intent_count, 1, 'the intent survived the restart')
  t.equal((s.active_intents as Frame[])[0]?.intent_id, 'i-keep')
  const { client: again, info: info2 } = await joined(`${two.url}/session/keep`, 'agent:a')
  t.teardown(() => again.close())
  t.equal(info2.coordinator_epoch, 2, 'coordinator_epoch went up by one')
})

t.test('idle sessions are unloaded and reloaded on demand', async t => {
  let now = Date.now()
  const srv = await startServer(t, { argv: ['--session-idle-unload', '60'], now: () => now })
  const { client } = await joined(`${srv.url}/session/idle`, 'agent:a')
  await client.request(announce('agent:a', 'i1', ['x.txt'], 'idle'))
  const registry = srv.app.mpac.registry
  registry.sweep()
  t.equal(registry.loadedCount, 1, 'a session with connections stays loaded')
  client.close()
  await client.waitForClose()
  for (let i = 0; i < 1000 && registry.peek('idle')?.peerCount !== 0; i++) await new Promise(resolve => setImmediate(resolve))
  now += 30_000
  registry.sweep()
  t.equal(registry.loadedCount, 1, 'not yet idle long enough')
  now += 31_000
  registry.sweep()
  t.equal(registry.loadedCount, 0, 'unloaded after --session-idle-unload')
  const probe = await TestClient.connect(`${srv.url}/session/idle`)
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = (await probe.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.equal(s.active_intent_count, 1, 'reloaded with its state')
  t.equal(registry.loadedCount, 1)
  // An in-process reload is not a coordinator restart: the epoch stays (README.md: Data and durability).
  const { client: back, info } = await joined(`${srv.url}/session/idle`, 'agent:a')
  t.teardown(() => back.close())
  t.equal(info.coordinator_epoch, 1, 'same coordinator_epoch after an idle unload and reload')
  t.notOk(back.received.some(f => f.message_type === 'COORDINATOR_STATUS' && (f.payload as Frame).event === 'recovered'), 'no recovered status')
})

t.test('--tls-cert/--tls-key: the sidecar serves wss:// itself', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-tls-'))
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' })
  const srv = await startServer(t, { argv: ['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')] })
  t.equal(srv.config.tls?.certFile, join(dir, 'cert.pem'))
  const dispatcher = new Agent({ connect: { rejectUnauthorized: false } })
  t.teardown(() => dispatcher.close())
  const ws = new WebSocket(`wss://127.0.0.1:${srv.port}/session/tls`, { dispatcher })
  await new Promise((resolve, reject) => { ws.addEventListener('open', resolve, { once: true }); ws.addEventListener('error', reject, { once: true }) })
  const reply = new Promise<Frame>(resolve => ws.addEventListener('message', (ev) => resolve(JSON.parse(ev.data as string) as Frame), { once: true }))
  ws.send(JSON.stringify({ type: 'SESSION_SUMMARY' }))
  t.equal((await reply).type, 'SESSION_SUMMARY_RESPONSE', 'a query over TLS')
  ws.close()
})

t.test('metric labels stay bounded: unknown types and codes from the wire count as OTHER', async t => {
  const srv = await startServer(t)
  const { client } = await joined(`${srv.url}/session/m`, 'agent:a')
  t.teardown(() => client.close())
  for (let i = 0; i < 20; i++) {
    const frame = { ...envelope('HEARTBEAT', 'agent:a', { status: 'idle' }, 'm'), message_type: `ZZZ_${'Q'.repeat(i)}` }
    t.ok(await client.request(frame), 'answered (unknown types are echoed)')
  }
  const text = srv.app.mpac.metrics.render()
  t.notOk(/ZZZ/.test(text), 'no label value taken from the wire')
  t.match(text, /^mpac_messages_in_total\{type="OTHER"\} 20$/m)
})

t.test('a quarantined session is refused with 4503 and never recreated; others are served', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-quarantine-'))
  const store1 = new SqliteStore({ dir })
  const one = await startServer(t, { store: store1 })
  for (const id of ['bad', 'good']) {
    const { client } = await joined(`${one.url}/session/${id}`, 'agent:a')
    await client.request(announce('agent:a', `i-${id}`, [`${id}.txt`], id))
    client.close()
  }
  await one.close()
  store1.close()
  const db = new Database(join(dir, DATABASE_FILE))
  db.prepare("UPDATE sessions SET quarantined = 1, quarantine_reason = 'test damage' WHERE session_id = 'bad'").run()
  db.close()

  const store2 = new SqliteStore({ dir })
  t.teardown(() => store2.close())
  const two = await startServer(t, { store: store2 })
  const probe = await TestClient.connect(`${two.url}/session/bad`)
  probe.send({ type: 'SESSION_SUMMARY' })
  t.same(await probe.waitForClose(), { code: 4503, reason: 'session unavailable' }, 'a probe is refused, not shown an empty session')
  const joiner = await TestClient.connect(`${two.url}/session/bad`)
  joiner.send(hello('agent:a', { sessionId: 'bad' }))
  t.equal((await joiner.waitForClose()).code, 4503, 'a HELLO does not create a fresh session over the damaged one')
  t.same(store2.listQuarantined().map(q => q.sessionId), ['bad'], 'still quarantined, nothing written over it')
  const { client: ok, info } = await joined(`${two.url}/session/good`, 'agent:a')
  t.teardown(() => ok.close())
  t.equal(info.message_type, 'SESSION_INFO', 'the other session is served')
  t.ok(two.logs.some(l => l.includes('quarantined') && l.includes('"bad"')), 'a clear log line names the session')
})

t.test('write-ahead: when the store cannot make an input durable, none of its outputs is sent', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-wal-'))
  const store = new SqliteStore({ dir })
  const srv = await startServer(t, { store })
  const url = `${srv.url}/session/w`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  store.close() // every later append fails
  const ann = announce('agent:a', 'i-lost', ['w.txt'], 'w')
  a.send(ann)
  t.equal((await a.waitForClose()).code, 1011, 'the sender is told the server failed')
  t.equal((await b.waitForClose()).code, 1011)
  for (const c of [a, b]) {
    t.notOk(c.received.some(f => f.message_id === ann.message_id), 'no relay of an input that is not durable')
  }
  t.ok(srv.logs.some(l => l.includes('session failed')), 'logged')
  // The session's stored state is still there: a later HELLO must not start a fresh session over it.
  const again = await TestClient.connect(url)
  again.send(hello('agent:a', { sessionId: 'w' }))
  t.same(await again.waitForClose(), { code: 4503, reason: 'session unavailable' })
})
