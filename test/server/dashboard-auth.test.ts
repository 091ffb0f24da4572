/**
 * The dashboard over HTTP with a token table (docs/dashboard.md): sign-in,
 * cookies, per-session visibility, escaping, headers, the SSE stream
 * (snapshot, a delta after a WebSocket client's announce, Last-Event-ID
 * replay), revocation by rewriting the token-table file of the real
 * program, the sign-in rate limit, and CSRF on sign-out.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { get as httpGet } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { cleanEnv, type Teardown } from '../helpers/process.js'
import { startServer } from '../helpers/server.js'
import { startSidecar } from '../helpers/sidecar.js'
import { SseClient } from '../helpers/sse.js'
import { announce, envelope, joined } from '../helpers/ws.js'

const TABLE = {
  'tok-a': { allowed_sessions: ['proj-a'], roles: ['contributor'] },
  'tok-b': { allowed_sessions: ['proj-b'] },
  'tok-obs': { allowed_sessions: ['proj-a'], roles: ['observer'] },
  'tok-any': { allowed_sessions: ['*'], roles: ['owner'] }
}
const env = { MPAC_TOKEN_TABLE: JSON.stringify(TABLE) }
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

async function login (base: string, token: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${base}/dashboard/login`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ token }).toString()
  })
}

/** The `name=value` part of the Set-Cookie of a good sign-in. */
async function cookieFor (base: string, token: string): Promise<string> {
  const r = await login(base, token)
  if (r.status !== 303) throw new Error(`sign-in failed: ${r.status}`)
  return (r.headers.get('set-cookie') ?? '').split(';')[0] as string
}

const get = (url: string, cookie?: string, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(url, { redirect: 'manual', headers: { ...(cookie === undefined ? {} : { cookie }), ...headers } })

async function twoSessions (t: Teardown): Promise<Awaited<ReturnType<typeof startServer>>> {
  const srv = await startServer(t, { env })
  const { client: a } = await joined(`${srv.url}/session/proj-a`, 'agent:a', { token: 'tok-a' })
  const { client: b } = await joined(`${srv.url}/session/proj-b`, 'agent:b', { token: 'tok-b' })
  t.teardown(() => { a.close(); b.close() })
  return srv
}

t.test('unauthenticated: pages redirect to the sign-in form, the API and the stream answer 401', async t => {
  const srv = await twoSessions(t)
  const page = await get(`${srv.httpUrl}/dashboard/s/proj-a`)
  t.equal(page.status, 303)
  t.equal(page.headers.get('location'), '/dashboard/login')
  t.equal((await get(`${srv.httpUrl}/dashboard`)).status, 303)
  const api = await get(`${srv.httpUrl}/dashboard/api/s/proj-a/view`)
  t.equal(api.status, 401)
  t.match(await api.json(), { code: 'MPAC_ERR_DASHBOARD_LOGIN_REQUIRED' })
  const sse = await SseClient.open(`${srv.httpUrl}/dashboard/s/proj-a/events`)
  t.notOk(sse instanceof SseClient)
  t.match(sse, { status: 401 })
  const form = await get(`${srv.httpUrl}/dashboard/login`)
  t.equal(form.status, 200)
  const html = await form.text()
  t.match(html, /<input id="token" name="token" type="password"/)
  t.match(html, /<form class="login" method="post" action="\/dashboard\/login">/)
  t.equal(form.headers.get('content-security-policy'), CSP)
  t.equal(form.headers.get('cache-control'), 'no-store')
  t.equal(form.headers.get('referrer-policy'), 'no-referrer')
})

t.test('sign-in: a bad token gets 401 and no cookie; a good one a 303 and an opaque HttpOnly cookie', async t => {
  const srv = await twoSessions(t)
  const bad = await login(srv.httpUrl, 'tok-nope')
  t.equal(bad.status, 401)
  t.equal(bad.headers.get('set-cookie'), null, 'no cookie')
  t.match(await bad.text(), /not valid/)
  const empty = await fetch(`${srv.httpUrl}/dashboard/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: '' })
  t.equal(empty.status, 401, 'no token at all')

  const good = await login(srv.httpUrl, 'tok-a')
  t.equal(good.status, 303)
  t.equal(good.headers.get('location'), '/dashboard', 'no token in the URL')
  const setCookie = good.headers.get('set-cookie') ?? ''
  t.match(setCookie, /^mpac_dash=[A-Za-z0-9_-]{43}; Max-Age=\d+; HttpOnly; SameSite=Strict; Path=\/$/, 'opaque 32-byte id, HttpOnly, SameSite=Strict, Path=/ (no Secure on plain HTTP)')
  t.notOk(setCookie.includes('tok-a'), 'the cookie is not the token')
  const cookie = setCookie.split(';')[0] as string
  const index = await get(`${srv.httpUrl}/dashboard`, cookie)
  t.equal(index.status, 200)
  const html = await index.text()
  t.notOk(html.includes('tok-a'), 'no token in the HTML')
  t.match(html, /\/dashboard\/s\/proj-a/)
  t.notOk(html.includes('proj-b'), 'the index lists only proj-a')
  t.notOk(srv.logs.some(l => l.includes('tok-a') || l.includes(cookie.split('=')[1] as string)), 'neither the token nor the cookie is logged')
  // Signed in already: the form sends you on.
  t.equal((await get(`${srv.httpUrl}/dashboard/login`, cookie)).status, 303)
})

t.test('a token for proj-a cannot see proj-b (403); an observer views; a wildcard token sees both', async t => {
  const srv = await twoSessions(t)
  const a = await cookieFor(srv.httpUrl, 'tok-a')
  t.equal((await get(`${srv.httpUrl}/dashboard/s/proj-b`, a)).status, 403)
  const api = await get(`${srv.httpUrl}/dashboard/api/s/proj-b/view`, a)
  t.equal(api.status, 403)
  t.match(await api.json(), { code: 'MPAC_ERR_AUTH_SESSION_FORBIDDEN' })
  t.match(await SseClient.open(`${srv.httpUrl}/dashboard/s/proj-b/events`, { cookie: a }), { status: 403 })
  t.equal((await get(`${srv.httpUrl}/dashboard/s/proj-b/conflicts/x`, a)).status, 403)
  t.equal((await get(`${srv.httpUrl}/dashboard/s/proj-a`, a)).status, 200)
  t.equal((await get(`${srv.httpUrl}/dashboard/s/nosuch`, await cookieFor(srv.httpUrl, 'tok-any'))).status, 404, 'unknown session: 404 (never created)')
  t.equal(srv.app.mpac.registry.sessionCount, 2, 'viewing created nothing')

  const obs = await cookieFor(srv.httpUrl, 'tok-obs')
  const view = await (await get(`${srv.httpUrl}/dashboard/api/s/proj-a/view`, obs)).json() as Record<string, unknown>
  t.match(view, { session_id: 'proj-a', viewer: { kind: 'token', view_only: true, roles: ['observer'] } })
  t.match(await (await get(`${srv.httpUrl}/dashboard/s/proj-a`, obs)).text(), /view only/)

  const any = await cookieFor(srv.httpUrl, 'tok-any')
  const html = await (await get(`${srv.httpUrl}/dashboard`, any)).text()
  t.match(html, /proj-a/)
  t.match(html, /proj-b/)
})

t.test('participant text is escaped in HTML and plain in JSON; security headers', async t => {
  const srv = await startServer(t, { env })
  const { client } = await joined(`${srv.url}/session/proj-a`, 'agent:<b>x</b>', { token: 'tok-a' })
  t.teardown(() => client.close())
  const evil = '<script>alert(1)</script> <img src=x onerror="alert(2)">'
  const ann = envelope('INTENT_ANNOUNCE', 'agent:<b>x</b>', { intent_id: 'i-"x"', objective: evil, scope: { kind: 'file_set', resources: ['src/<i>.ts'] } }, 'proj-a')
  t.equal((await client.request(ann)).message_type, 'INTENT_ANNOUNCE')
  const cookie = await cookieFor(srv.httpUrl, 'tok-a')
  const page = await get(`${srv.httpUrl}/dashboard/s/proj-a`, cookie)
  const html = await page.text()
  t.notOk(html.includes('<script>alert'), 'no script element from the objective')
  t.notOk(html.includes('<img src=x'), 'no img element from the objective')
  t.notOk(html.includes('<b>x</b>'), 'names escaped')
  t.match(html, /&lt;script&gt;alert\(1\)&lt;\/script&gt; &lt;img src=x onerror=&quot;alert\(2\)&quot;&gt;/)
  t.match(html, /src\/&lt;i&gt;\.ts/)
  t.match(html, /data-key="i-&quot;x&quot;"/, 'attribute values escaped too')
  t.notOk(/<script(?![^>]*\ssrc=)[^>]*>/.test(html), 'no inline script at all')
  t.notOk(/<style|\sstyle=/.test(html), 'no inline style')
  t.equal(page.headers.get('content-security-policy'), CSP)
  t.equal(page.headers.get('referrer-policy'), 'no-referrer')
  t.equal(page.headers.get('cache-control'), 'no-store')
  t.equal(page.headers.get('x-content-type-options'), 'nosniff')
  t.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/)

  const api = await get(`${srv.httpUrl}/dashboard/api/s/proj-a/view`, cookie)
  t.match(api.headers.get('content-type'), /^application\/json/)
  t.equal(api.headers.get('cache-control'), 'no-store')
  const view = await api.json() as { intents: Array<{ objective: string, files: string[] }> }
  t.equal(view.intents[0]?.objective, evil, 'JSON carries the text as it was sent')
  t.same(view.intents[0]?.files, ['src/<i>.ts'])

  // The assets the page names are served, with their types, and cached by their hashed URLs.
  for (const m of html.matchAll(/(?:href|src)="(\/dashboard\/assets\/[^"]+)"/g)) {
    const asset = await get(`${srv.httpUrl}${m[1] as string}`)
    t.equal(asset.status, 200, m[1] as string)
    t.match(asset.headers.get('cache-control'), /immutable/)
  }
})

t.test('SSE: snapshot, then a delta within a second of an announce; Last-Event-ID replays', async t => {
  const srv = await startServer(t, { env })
  const { client: a } = await joined(`${srv.url}/session/proj-a`, 'agent:a', { token: 'tok-a' })
  t.teardown(() => a.close())
  const cookie = await cookieFor(srv.httpUrl, 'tok-a')
  const sse = await SseClient.open(`${srv.httpUrl}/dashboard/s/proj-a/events`, { cookie })
  if (!(sse instanceof SseClient)) throw new Error(`stream refused: ${JSON.stringify(sse)}`)
  t.teardown(() => sse.close())
  t.equal(sse.res.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(sse.res.headers['cache-control'], 'no-store')
  t.equal(sse.res.headers['x-accel-buffering'], 'no')
  t.equal((await sse.next(m => m.event === 'retry')).event, 'retry')
  const snap = await sse.next(m => m.event === 'snapshot')
  const snapView = JSON.parse(snap.data) as { session_id: string, participants: unknown[], ring: string }
  t.equal(snapView.session_id, 'proj-a')
  t.equal(snapView.participants.length, 1)
  t.match(snap.id, new RegExp(`^${snapView.ring}\\.\\d+$`))

  const t0 = Date.now()
  await a.request(announce('agent:a', 'i-1', ['src/a.ts'], 'proj-a'))
  const delta = await sse.next(m => m.event === 'delta', 1000)
  t.ok(Date.now() - t0 < 1000, `delta after ${Date.now() - t0} ms`)
  const d = JSON.parse(delta.data) as { event: { type: string, summary: string, seq: number }, events: unknown[], patch: Array<{ section: string, op: string, key?: string }> }
  t.equal(d.event.type, 'INTENT_ANNOUNCE')
  t.match(d.event.summary, /agent:a announced i-1 on src\/a\.ts/)
  t.ok(d.patch.some(p => p.section === 'intents' && p.op === 'upsert' && p.key === 'i-1'), 'the intent row')
  t.ok(d.patch.some(p => p.section === 'files' && p.key === 'src/a.ts'), 'the file row')
  t.equal(delta.id, `${snapView.ring}.${d.event.seq}`)

  // Two more events while a second client is away, then it comes back with the first delta's id.
  await a.request(envelope('INTENT_WITHDRAW', 'agent:a', { intent_id: 'i-1', reason: 'done' }, 'proj-a'))
  await sse.next(m => m.event === 'delta' && m.data.includes('INTENT_WITHDRAW'), 2000)
  const back = await SseClient.open(`${srv.httpUrl}/dashboard/s/proj-a/events`, { cookie, 'last-event-id': delta.id as string })
  if (!(back instanceof SseClient)) throw new Error('refused')
  t.teardown(() => back.close())
  const replay = await back.next(m => m.event === 'delta' || m.event === 'snapshot')
  t.equal(replay.event, 'delta', 'inside the ring: a replay, not a snapshot')
  const r = JSON.parse(replay.data) as { resumed: boolean, events: Array<{ type: string }>, patch: Array<{ section: string, op: string, items?: unknown[] }> }
  t.equal(r.resumed, true)
  t.same(r.events.map(e => e.type), ['INTENT_WITHDRAW'], 'exactly the missed events')
  t.match(r.patch.find(p => p.section === 'intents'), { op: 'replace', items: [] }, 'the state replaced')

  const stale = await SseClient.open(`${srv.httpUrl}/dashboard/s/proj-a/events`, { cookie, 'last-event-id': 'otherring.3' })
  if (!(stale instanceof SseClient)) throw new Error('refused')
  t.teardown(() => stale.close())
  t.equal((await stale.next(m => m.event === 'delta' || m.event === 'snapshot')).event, 'snapshot', 'another ring: a fresh snapshot')
})

t.test('sign-in is rate-limited per address; sign-out needs a same-origin POST', async t => {
  const srv = await twoSessions(t)
  for (let i = 0; i < 10; i++) t.equal((await login(srv.httpUrl, 'tok-wrong')).status, 401, `attempt ${i + 1}`)
  const limited = await login(srv.httpUrl, 'tok-a')
  t.equal(limited.status, 429, 'the 11th attempt in a minute, even with a good token')
  t.ok(Number(limited.headers.get('retry-after')) >= 1)
  t.equal(limited.headers.get('set-cookie'), null)

  const srv2 = await twoSessions(t)
  const cookie = await cookieFor(srv2.httpUrl, 'tok-a')
  const cross = await fetch(`${srv2.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: 'https://evil.example' } })
  t.equal(cross.status, 403, 'a cross-origin sign-out is refused')
  t.match(await cross.text(), /MPAC_ERR_ORIGIN_FORBIDDEN/)
  const site = await fetch(`${srv2.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, 'sec-fetch-site': 'cross-site' } })
  t.equal(site.status, 403, 'a cross-site post without Origin is refused')
  const nullCross = await fetch(`${srv2.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: 'null', 'sec-fetch-site': 'cross-site' } })
  t.equal(nullCross.status, 403, 'Origin: null from another site is refused')
  const nullBare = await fetch(`${srv2.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: 'null' } })
  t.equal(nullBare.status, 403, 'Origin: null without Sec-Fetch-Site is refused')
  const crossRead = await fetch(`${srv2.httpUrl}/dashboard/api/s/proj-a/view`, { headers: { cookie, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors' } })
  t.equal(crossRead.status, 403, 'a cross-site read is refused')
  // (fetch sets Sec-Fetch-Mode itself; a navigation is sent with node:http.)
  const link = await new Promise<number>((resolve, reject) => {
    httpGet(`${srv2.httpUrl}/dashboard`, { headers: { cookie, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'navigate' } }, res => { res.resume(); resolve(res.statusCode ?? 0) }).on('error', reject)
  })
  t.equal(link, 200, 'a link from another site to the dashboard opens it')
  const crossLogin = await login(srv2.httpUrl, 'tok-a', { origin: 'https://evil.example' })
  t.equal(crossLogin.status, 403, 'login CSRF: refused too')
  t.equal((await get(`${srv2.httpUrl}/dashboard/s/proj-a`, cookie)).status, 200, 'still signed in')
  // Our pages send no Referer, so a browser's own form post says `Origin: null` and Sec-Fetch-Site: same-origin.
  const browserLogin = await login(srv2.httpUrl, 'tok-a', { origin: 'null', 'sec-fetch-site': 'same-origin' })
  t.equal(browserLogin.status, 303, 'a same-origin form post with Origin: null signs in')
  const out = await fetch(`${srv2.httpUrl}/dashboard/logout`, { method: 'POST', redirect: 'manual', headers: { cookie, origin: srv2.httpUrl } })
  t.equal(out.status, 303)
  t.match(out.headers.get('set-cookie'), /^mpac_dash=; Max-Age=0/)
  t.equal((await get(`${srv2.httpUrl}/dashboard/s/proj-a`, cookie)).status, 303, 'the record is gone: sign in again')
})

t.test('revocation by rewriting the token-table file ends the stream and the next request asks to sign in', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-dash-tokens-'))
  const file = join(dir, 'tokens.json')
  writeFileSync(file, JSON.stringify({ 'tok-a': { allowed_sessions: ['proj-a'] }, 'tok-keep': { allowed_sessions: ['proj-a'] } }))
  const sidecar = await startSidecar(t, ['--store', 'memory'], { ...cleanEnv(), MPAC_TOKEN_TABLE_FILE: file })
  const base = `http://127.0.0.1:${sidecar.port}`
  const { client } = await joined(`${sidecar.url}/session/proj-a`, 'agent:k', { token: 'tok-keep' })
  t.teardown(() => client.close())
  const cookie = await cookieFor(base, 'tok-a')
  const sse = await SseClient.open(`${base}/dashboard/s/proj-a/events`, { cookie })
  if (!(sse instanceof SseClient)) throw new Error(`stream refused: ${JSON.stringify(sse)}`)
  t.teardown(() => sse.close())
  await sse.next(m => m.event === 'snapshot', 5000)
  writeFileSync(file, JSON.stringify({ 'tok-keep': { allowed_sessions: ['proj-a'] } }))
  t.equal((await sse.next(m => m.event === 'revoked', 5000)).event, 'revoked')
  await sse.waitEnd(5000)
  const next = await get(`${base}/dashboard/s/proj-a`, cookie)
  t.equal(next.status, 303)
  t.equal(next.headers.get('location'), '/dashboard/login')
  t.equal((await get(`${base}/dashboard/api/s/proj-a/view`, cookie)).status, 401)
  await sidecar.stop()
})
