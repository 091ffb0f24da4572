/**
 * The dashboard of a coordinator without a token table (loopback, no
 * sign-in) and the live stream's lifecycle: the Host/Origin checks of the
 * WebSocket route, idle (unloaded) sessions and their reload, the restart
 * marker, stream caps, a slow reader dropped, keep-alives and expiry,
 * session close, and that nothing is computed for sessions nobody views.
 */
import { connect } from 'node:net'
import t from 'tap'
import { MemoryStore } from '../../src/store/index.js'
import { startServer } from '../helpers/server.js'
import { SseClient } from '../helpers/sse.js'
import { announce, envelope, joined } from '../helpers/ws.js'

async function until (what: string, pred: () => boolean, deadlineMs = 5000): Promise<void> {
  const end = Date.now() + deadlineMs
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${deadlineMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

async function stream (url: string, headers: Record<string, string> = {}): Promise<SseClient> {
  const s = await SseClient.open(url, headers)
  if (!(s instanceof SseClient)) throw new Error(`stream refused: ${s.status} ${s.body}`)
  return s
}

t.test('local mode: no sign-in, pages and JSON, a live delta within a second of an announce', async t => {
  const srv = await startServer(t)
  const { client: a } = await joined(`${srv.url}/session/demo`, 'alice')
  t.teardown(() => a.close())
  const login = await fetch(`${srv.httpUrl}/dashboard/login`, { redirect: 'manual' })
  t.equal(login.status, 303, 'no sign-in form in local mode')
  const index = await (await fetch(`${srv.httpUrl}/dashboard`)).text()
  t.match(index, /href="\/dashboard\/s\/demo"/)
  const page = await fetch(`${srv.httpUrl}/dashboard/s/demo`)
  t.equal(page.status, 200)
  const html = await page.text()
  t.match(html, /<h1>Session demo<\/h1>/)
  t.equal((html.match(/<h1>/g) ?? []).length, 1, 'one h1')
  t.match(html, /<main id="main"[ >]/)
  t.match(html, /<nav aria-label="Sections">/)
  t.equal((html.match(/role="status"/g) ?? []).length, 1, 'one live region')
  t.match(html, /<p id="live-status" role="status" aria-live="polite">/)
  t.match(html, /<button type="button" id="pause-live" aria-pressed="false" hidden>Pause live updates<\/button>/)
  t.match(html, /<caption>Participants<\/caption>/)
  t.match(html, /<th scope="col">Availability<\/th>/)
  t.match(html, /<td class="state" data-field="is_available" data-format="availability" data-state="online">online<\/td>/, 'state as text')
  t.match(html, /<time data-field="last_seen" datetime="[^"]+Z">/)
  t.ok(html.indexOf('id="attention"') < html.indexOf('id="participants"'), 'attention first')
  const view = await (await fetch(`${srv.httpUrl}/dashboard/api/s/demo/view`)).json() as Record<string, unknown>
  t.match(view, { session_id: 'demo', viewer: { kind: 'local', view_only: false } })

  const sse = await stream(`${srv.httpUrl}/dashboard/s/demo/events`)
  t.teardown(() => sse.close())
  await sse.next(m => m.event === 'snapshot')
  const started = Date.now()
  await a.request(announce('alice', 'i-1', ['src/a.ts'], 'demo'))
  const delta = await sse.next(m => m.event === 'delta', 1000)
  t.ok(Date.now() - started < 1000, 'delta within a second')
  const data = JSON.parse(delta.data) as { events: Array<Record<string, unknown>>, patch: Array<Record<string, unknown>> }
  t.equal(data.events[0]?.type, 'INTENT_ANNOUNCE')
  t.ok(data.patch.some(p => p.section === 'intents' && p.op === 'upsert'))
})

t.test('the session page filters the work and the timeline by agent and by path (no JavaScript needed)', async t => {
  const srv = await startServer(t)
  const { client: a } = await joined(`${srv.url}/session/f`, 'alice')
  const { client: b } = await joined(`${srv.url}/session/f`, 'bob')
  t.teardown(() => { a.close(); b.close() })
  t.equal((await fetch(`${srv.httpUrl}/dashboard/s/f`)).status, 200, 'watched from here on')
  await a.request(announce('alice', 'i-a', ['src/db/users.ts'], 'f'))
  await b.request(announce('bob', 'i-b', ['docs/readme.md'], 'f'))
  const all = await (await fetch(`${srv.httpUrl}/dashboard/s/f`)).text()
  t.match(all, /data-key="i-a"/)
  t.match(all, /data-key="i-b"/)
  const byAgent = await (await fetch(`${srv.httpUrl}/dashboard/s/f?agent=bob`)).text()
  t.notMatch(byAgent, /<tr data-key="i-a"/, 'alice\'s intent filtered out')
  t.match(byAgent, /<tr data-key="i-b"/)
  t.notMatch(byAgent, /alice announced/, 'and her timeline entries')
  t.match(byAgent, /bob announced i-b/)
  t.match(byAgent, /<main id="main" data-filter-agent="bob" data-filter-file="">/, 'the client keeps the filter for live rows')
  const byFile = await (await fetch(`${srv.httpUrl}/dashboard/s/f?file=src/db`)).text()
  t.match(byFile, /<tr data-key="i-a"/)
  t.notMatch(byFile, /<tr data-key="i-b"/)
  t.match(byFile, /<input id="filter-file" name="file" value="src\/db"/)
  t.match(byFile, /<td data-field="directory">src\/db<\/td>/, 'files grouped by directory')
  const evil = await (await fetch(`${srv.httpUrl}/dashboard/s/f?agent=${encodeURIComponent('"><script>x</script>')}`)).text()
  t.notMatch(evil, /<script>x/, 'the filter value is escaped')
})

t.test('local mode: the Host and Origin checks of the WebSocket route apply', async t => {
  const srv = await startServer(t)
  const { client } = await joined(`${srv.url}/session/demo`, 'alice')
  t.teardown(() => client.close())
  const rebinding = await rawStatus(srv.port, 'GET /dashboard/s/demo HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n')
  t.match(rebinding, /^HTTP\/1\.1 403/, 'a foreign Host (DNS rebinding) is refused')
  t.match(rebinding, /MPAC_ERR_HOST_FORBIDDEN/)
  const cross = await fetch(`${srv.httpUrl}/dashboard/api/s/demo/view`, { headers: { origin: 'http://evil.example' } })
  t.equal(cross.status, 403, 'a read from another origin is refused')
  t.match(await cross.json(), { code: 'MPAC_ERR_ORIGIN_FORBIDDEN' })
  const same = await fetch(`${srv.httpUrl}/dashboard/api/s/demo/view`, { headers: { origin: srv.httpUrl } })
  t.equal(same.status, 200, 'this origin is fine')
  const post = await fetch(`${srv.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { origin: 'http://evil.example' } })
  t.equal(post.status, 403, 'a cross-origin POST is refused')
  t.ok(srv.logs.some(l => l.includes('dashboard request refused') && l.includes('MPAC_ERR_HOST_FORBIDDEN')), 'refusals are logged')
})

t.test('a non-loopback bind without a token table has no dashboard', async t => {
  const srv = await startServer(t, { argv: ['--host', '0.0.0.0', '--allow-open'] })
  t.equal(srv.config.dashboard, false)
  t.equal((await fetch(`${srv.httpUrl}/dashboard`)).status, 404)
  t.ok(srv.logs.some(l => l.includes('the dashboard is off')), 'said at start')
  const off = await startServer(t, { argv: ['--dashboard=false'] })
  t.equal((await fetch(`${off.httpUrl}/dashboard`)).status, 404, '--dashboard=false turns it off')
})

t.test('an unloaded session is idle (never loaded by viewing) and comes back live when an agent connects', async t => {
  let now = Date.now()
  const srv = await startServer(t, { argv: ['--session-idle-unload', '60'], now: () => now })
  const registry = srv.app.mpac.registry
  const { client } = await joined(`${srv.url}/session/idle`, 'agent:a')
  await client.request(announce('agent:a', 'i1', ['x.txt'], 'idle'))
  t.equal((await fetch(`${srv.httpUrl}/dashboard/s/idle`)).status, 200, 'viewed while loaded: watched')
  client.close()
  await client.waitForClose()
  await until('peer gone', () => registry.peek('idle')?.peerCount === 0)
  now += 61_000
  registry.sweep()
  t.equal(registry.loadedCount, 0, 'unloaded')
  const page = await (await fetch(`${srv.httpUrl}/dashboard/s/idle`)).text()
  t.match(page, /Idle: the session is stored but not loaded/)
  t.match(await (await fetch(`${srv.httpUrl}/dashboard/api/s/idle/view`)).json(), { session_id: 'idle', idle: true })
  t.match(await (await fetch(`${srv.httpUrl}/dashboard`)).text(), /idle \(not loaded\)/)
  const sse = await stream(`${srv.httpUrl}/dashboard/s/idle/events`)
  t.teardown(() => sse.close())
  await sse.next(m => m.event === 'idle')
  t.equal(registry.loadedCount, 0, 'viewing loaded nothing')
  const { client: back } = await joined(`${srv.url}/session/idle`, 'agent:a')
  t.teardown(() => back.close())
  const snap = await sse.next(m => m.event === 'snapshot', 3000)
  t.match(JSON.parse(snap.data), { session_id: 'idle', intents: [{ intent_id: 'i1' }] }, 'the reloaded state, live again')
  await back.request(announce('agent:a', 'i2', ['y.txt'], 'idle'))
  t.match(JSON.parse((await sse.next(m => m.event === 'delta' && m.data.includes('INTENT_ANNOUNCE'), 2000)).data), { event: { type: 'INTENT_ANNOUNCE', summary: /announced i2/ } })
})

t.test('after a restart the timeline starts with a recovery entry', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const first = await startServer(t, { store })
  const { client } = await joined(`${first.url}/session/again`, 'agent:a')
  await client.request(announce('agent:a', 'i1', ['x.txt'], 'again'))
  client.close()
  await first.close()
  const second = await startServer(t, { store })
  const view = await (await fetch(`${second.httpUrl}/dashboard/api/s/again/view`)).json() as { events: Array<{ type: string, summary: string }>, intents: unknown[] }
  t.equal(view.intents.length, 1, 'recovered state')
  t.match(view.events, [{ type: 'RECOVERED', summary: /coordinator restarted/ }])
})

t.test('stream caps: per viewer 429, in total 503', async t => {
  const srv = await startServer(t, { argv: ['--dashboard-max-streams-per-token', '2', '--dashboard-max-streams', '3'] })
  const { client } = await joined(`${srv.url}/session/cap`, 'agent:a')
  t.teardown(() => client.close())
  const url = `${srv.httpUrl}/dashboard/s/cap/events`
  const s1 = await stream(url)
  const s2 = await stream(url)
  t.teardown(() => { s1.close(); s2.close() })
  const third = await SseClient.open(url)
  t.match(third, { status: 429 })
  t.match(JSON.parse((third as { body: string }).body), { code: 'MPAC_ERR_DASHBOARD_TOO_MANY_STREAMS' })
  s1.close()
  await until('stream counted down', () => srv.app.mpac.dashboard?.hub.streamCount === 1)
  const again = await stream(url)
  t.teardown(() => again.close())
  t.equal(srv.app.mpac.dashboard?.hub.streamCount, 2)

  const small = await startServer(t, { argv: ['--dashboard-max-streams', '1'] })
  const { client: c2 } = await joined(`${small.url}/session/cap`, 'agent:a')
  t.teardown(() => c2.close())
  const only = await stream(`${small.httpUrl}/dashboard/s/cap/events`)
  t.teardown(() => only.close())
  t.match(await SseClient.open(`${small.httpUrl}/dashboard/s/cap/events`), { status: 503, headers: { 'retry-after': '5' } }, 'the server-wide cap')
})

t.test('a reader that stops reading is dropped once its unsent bytes pass --max-buffered-bytes', async t => {
  const srv = await startServer(t, { argv: ['--max-buffered-bytes', '65536'] })
  const { client } = await joined(`${srv.url}/session/big`, 'agent:a')
  t.teardown(() => client.close())
  // About 8 MB of view: more than the kernel's socket buffers hold for a reader that never reads.
  const long = 'x'.repeat(16_000)
  for (let i = 0; i < 200; i++) {
    const resources = Array.from({ length: 240 }, (_, k) => `${'d'.repeat(90)}/f${i}-${k}.ts`)
    await client.request(envelope('INTENT_ANNOUNCE', 'agent:a', { intent_id: `i-${i}`, objective: long, scope: { kind: 'file_set', resources } }, 'big'))
  }
  const socket = connect({ host: '127.0.0.1', port: srv.port })
  t.teardown(() => socket.destroy())
  await new Promise<void>(resolve => socket.once('connect', () => resolve()))
  socket.pause()
  socket.write(`GET /dashboard/s/big/events HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\n\r\n`)
  await until('slow stream open', () => srv.app.mpac.dashboard?.hub.streamCount === 1)
  // Its snapshot cannot leave; the next message finds it still queued.
  await client.request(announce('agent:a', 'i-more', ['more.ts'], 'big'))
  await until('slow reader dropped', () => srv.logs.some(l => l.includes('dashboard stream dropped: the reader is too slow')), 15_000)
  t.equal(srv.app.mpac.dashboard?.hub.streamCount, 0)
  const fine = await stream(`${srv.httpUrl}/dashboard/s/big/events`)
  t.teardown(() => fine.close())
  t.equal((await fine.next(m => m.event === 'snapshot', 15_000)).event, 'snapshot', 'a reader that reads gets the same large snapshot')
})

t.test('nothing is computed for a session nobody viewed', async t => {
  const srv = await startServer(t)
  const { client } = await joined(`${srv.url}/session/quiet`, 'agent:a')
  t.teardown(() => client.close())
  await client.request(announce('agent:a', 'i1', ['x.txt'], 'quiet'))
  const before = (await (await fetch(`${srv.httpUrl}/dashboard/api/s/quiet/view`)).json()) as { events: unknown[] }
  t.same(before.events, [], 'the ring starts when the session is first viewed')
  await client.request(announce('agent:a', 'i2', ['y.txt'], 'quiet'))
  const after = (await (await fetch(`${srv.httpUrl}/dashboard/api/s/quiet/view`)).json()) as { events: Array<{ type: string }> }
  t.same(after.events.map(e => e.type), ['INTENT_ANNOUNCE'], 'then it records what the session broadcasts')
})

t.test('keep-alives; an expired token ends the stream at the next keep-alive; a closed session ends it too', async t => {
  let now = Date.now()
  const expires = new Date(now + 60_000).toISOString()
  const env = { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-short': { allowed_sessions: ['ka'], expires_at: expires }, 'tok-long': { allowed_sessions: ['ka'] } }) }
  const srv = await startServer(t, { env, now: () => now })
  const { client } = await joined(`${srv.url}/session/ka`, 'agent:l', { token: 'tok-long' })
  t.teardown(() => client.close())
  const cookie = async (token: string): Promise<string> => {
    const r = await fetch(`${srv.httpUrl}/dashboard/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `token=${token}` })
    t.equal(r.status, 303)
    t.match(r.headers.get('set-cookie'), new RegExp(`Max-Age=${token === 'tok-short' ? 60 : 28800};`), 'the record ends with the token, at most 8 h')
    return (r.headers.get('set-cookie') ?? '').split(';')[0] as string
  }
  const short = await stream(`${srv.httpUrl}/dashboard/s/ka/events`, { cookie: await cookie('tok-short') })
  const long = await stream(`${srv.httpUrl}/dashboard/s/ka/events`, { cookie: await cookie('tok-long') })
  t.teardown(() => { short.close(); long.close() })
  await short.next(m => m.event === 'snapshot')
  await long.next(m => m.event === 'snapshot')
  const hub = srv.app.mpac.dashboard?.hub
  hub?.keepAlive()
  t.equal((await short.next(m => m.event === 'comment')).comment, 'keep-alive')
  const from = long.messages.length
  now += 61_000
  hub?.keepAlive()
  await short.next(m => m.event === 'revoked')
  await short.waitEnd()
  await long.next(m => m.event === 'comment', 3000, from)
  t.notOk(long.ended, 'the other token keeps watching')

  srv.app.mpac.registry.peek('ka')?.applyInput({ kind: 'close', now, reason: 'manual' })
  const closing = await long.next(m => m.event === 'delta' && m.data.includes('SESSION_CLOSE'), 3000)
  t.ok(closing)
  await long.next(m => m.event === 'session_closed', 3000)
  await long.waitEnd()
})

/** The raw HTTP response head and body of one request written by hand. */
function rawStatus (port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port }, () => socket.write(request))
    let out = ''
    socket.setEncoding('utf8')
    socket.on('data', (d: string) => { out += d })
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
  })
}

t.test('a token that expires ends its stream at that moment, not at the next keep-alive', async t => {
  const env = { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-soon': { allowed_sessions: ['exp'], expires_at: new Date(Date.now() + 1500).toISOString() }, 'tok-long': { allowed_sessions: ['exp'] } }) }
  const srv = await startServer(t, { env })
  const { client } = await joined(`${srv.url}/session/exp`, 'agent:l', { token: 'tok-long' })
  t.teardown(() => client.close())
  const r = await fetch(`${srv.httpUrl}/dashboard/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'token=tok-soon' })
  const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0] as string
  const sse = await stream(`${srv.httpUrl}/dashboard/s/exp/events`, { cookie })
  t.teardown(() => sse.close())
  await sse.next(m => m.event === 'snapshot')
  const revoked = await sse.next(m => m.event === 'revoked', 5000)
  t.ok(revoked, 'revoked when the token expired (keep-alives are 15 s apart)')
  t.notOk(sse.messages.some(m => m.event === 'comment'), 'no keep-alive was needed')
})
