import t from 'tap'
import { replaySession } from '../../src/store/index.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isError, isType, joined, TestClient, upgradeStatus, type Frame } from '../helpers/ws.js'

const TABLE = {
  'tok-alpha': { allowed_sessions: ['alpha'], roles: ['owner'] },
  'tok-beta': { allowed_sessions: ['beta'], roles: ['contributor'] },
  'tok-any': { allowed_sessions: ['*'] },
  'tok-pinned': { allowed_sessions: ['alpha'], principal: 'agent:pinned' }
}
const env = { MPAC_TOKEN_TABLE: JSON.stringify(TABLE) }
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

t.test('the upgrade is refused before it happens: unknown token 401, other session 403', async t => {
  const srv = await startServer(t, { env })
  t.equal(await upgradeStatus(`${srv.url}/session/alpha`, bearer('tok-nope')), 401, 'unknown token')
  t.equal(await upgradeStatus(`${srv.url}/session/alpha`, { authorization: 'Basic abc' }), 401, 'not a bearer header')
  t.equal(await upgradeStatus(`${srv.url}/session/beta`, bearer('tok-alpha')), 403, 'token of another session')
  t.equal(await upgradeStatus(`${srv.url}/session/alpha`, bearer('tok-alpha')), 101, 'valid token')
  t.equal(await upgradeStatus(`${srv.url}/session/zeta`, bearer('tok-any')), 101, 'wildcard token')
  t.equal(await upgradeStatus(`${srv.url}/session/alpha`), 101, 'no header: the HELLO credential decides')
})

t.test('HELLO credential checks', async t => {
  const srv = await startServer(t, { env })
  const url = `${srv.url}/session/alpha`
  const c = await TestClient.connect(url)
  t.teardown(() => c.close())

  let r = await c.request(hello('agent:x', { sessionId: 'alpha' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED', 'no credential')
  r = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'tok-nope' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED', 'unknown token')
  t.match((r.payload as Frame).description, /unknown bearer token/)
  r = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'tok-beta' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED', 'token for another session')
  t.match((r.payload as Frame).description, /not authorized for session alpha/)
  r = await c.request(hello('agent:other', { sessionId: 'alpha', token: 'tok-pinned' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED', 'pinned token, other principal')
  t.equal(srv.app.mpac.registry.sessionCount, 0, 'rejected HELLOs created no session')

  r = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'tok-alpha', roles: ['contributor'] }))
  t.equal(r.message_type, 'SESSION_INFO')
  t.same((r.payload as Frame).granted_roles, ['owner'], 'roles come from the table, not the request')
  t.equal(srv.app.mpac.registry.sessionCount, 1)

  const { client: p, info } = await joined(url, 'agent:pinned', { token: 'tok-pinned' })
  t.teardown(() => p.close())
  t.same((info.payload as Frame).granted_roles, ['contributor'], 'a token without roles grants contributor')
  const { client: w, info: wi } = await joined(`${srv.url}/session/anything`, 'agent:w', { token: 'tok-any' })
  t.teardown(() => w.close())
  t.same((wi.payload as Frame).granted_roles, ['contributor'], 'wildcard token')
})

t.test('header and HELLO tokens that disagree → CREDENTIAL_REJECTED', async t => {
  const srv = await startServer(t, { env })
  const c = await TestClient.connect(`${srv.url}/session/alpha`, bearer('tok-alpha'))
  t.teardown(() => c.close())
  const r = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'tok-pinned' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED')
  t.match((r.payload as Frame).description, /different tokens/)
  const ok = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'tok-alpha' }))
  t.equal(ok.message_type, 'SESSION_INFO', 'the same token in both places is fine')
})

t.test('identity binding: impersonation and the coordinator id are refused, nothing relayed', async t => {
  const srv = await startServer(t, { env })
  const url = `${srv.url}/session/alpha`
  const { client: a } = await joined(url, 'agent:a', { token: 'tok-alpha' })
  const { client: b } = await joined(url, 'agent:b', { token: 'tok-alpha' })
  t.teardown(() => { a.close(); b.close() })

  const forged = announce('agent:b', 'i-forged', ['x.ts'], 'alpha')
  let r = await a.request(forged)
  t.equal((r.payload as Frame).error_code, 'AUTHORIZATION_FAILED', 'a cannot speak as b')
  r = await a.request(envelope('RESOLUTION', 'service:coordinator-alpha', { resolution_id: 'r', conflict_id: 'c', decision: 'dismissed', rationale: 'x' }, 'alpha'))
  t.equal((r.payload as Frame).error_code, 'AUTHORIZATION_FAILED', 'nobody speaks as the coordinator')
  const stranger = await TestClient.connect(url, bearer('tok-alpha'))
  t.teardown(() => stranger.close())
  r = await stranger.request(announce('agent:a', 'i-stranger', ['y.ts'], 'alpha'))
  t.equal((r.payload as Frame).error_code, 'INVALID_REFERENCE', 'a connection without HELLO cannot use a registered principal')
  // b saw none of it: the next frame b gets is a's genuine announce.
  const real = announce('agent:a', 'i-real', ['z.ts'], 'alpha')
  await a.request(real)
  const atB = await b.next(f => f.message_type === 'INTENT_ANNOUNCE')
  t.equal(atB.message_id, real.message_id, 'only the genuine announce reached b')
})

t.test('a rejected HELLO never binds or takes over deliveries', async t => {
  const srv = await startServer(t, { env })
  const url = `${srv.url}/session/alpha`
  const { client: victim } = await joined(url, 'agent:v', { token: 'tok-alpha' })
  const attacker = await TestClient.connect(url)
  t.teardown(() => { victim.close(); attacker.close() })
  const r = await attacker.request(hello('agent:v', { sessionId: 'alpha', token: 'tok-beta' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED')
  const ann = announce('agent:v', 'i-v', ['v.ts'], 'alpha')
  t.equal((await victim.request(ann)).message_id, ann.message_id, 'victim still receives its relays')
  t.equal(victim.isClosed, false, 'victim not replaced')
  // Frames of one session go out in order: once this second reply arrives, any relay meant for the
  // attacker would have arrived before it.
  await attacker.request(hello('agent:v', { sessionId: 'alpha', token: 'tok-nope' }))
  t.same(attacker.received.map(f => (f.payload as Frame).error_code), ['CREDENTIAL_REJECTED', 'CREDENTIAL_REJECTED'],
    'the attacker got nothing but the replies to its own HELLOs')
})

t.test('sideband before HELLO: needs a bearer header in the authenticated profile', async t => {
  const srv = await startServer(t, { env })
  const url = `${srv.url}/session/alpha`
  const anon = await TestClient.connect(url)
  anon.send({ type: 'SESSION_SUMMARY' })
  const closed = await anon.waitForClose()
  t.equal(closed.code, 4401, 'refused')

  const probe = await TestClient.connect(url, bearer('tok-alpha'))
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = await probe.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.equal((s.session as Frame).session_id, 'alpha', 'empty summary of a session that does not exist yet')
  probe.send({ type: 'FILE_READ', path: 'README.md' })
  t.equal((await probe.next()).type, 'FILE_ERROR')
  t.equal(srv.app.mpac.registry.sessionCount, 0, 'probes create no session')

  const { client: admitted } = await joined(url, 'agent:a', { token: 'tok-alpha' })
  t.teardown(() => admitted.close())
  admitted.send({ type: 'FILE_LIST' })
  t.same((await admitted.next(isType('FILE_LIST_RESPONSE'))).files, [], 'an admitted connection may query without a header')
})

t.test('open profile: sideband probes are answered without creating a session', async t => {
  const srv = await startServer(t)
  const probe = await TestClient.connect(`${srv.url}/session/ghost`)
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = await probe.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.same(s.session, {
    session_id: 'ghost',
    workspace_dir: null,
    captured_at: (s.session as Frame).captured_at,
    participant_count: 0,
    active_intent_count: 0,
    open_conflict_count: 0,
    participants: [],
    active_intents: [],
    open_conflicts: []
  })
  probe.send({ type: 'FILE_READ', path: 'a.py' })
  t.same(await probe.next(), { type: 'FILE_ERROR', path: 'a.py', error: 'File not found' })
  probe.send({ type: 'FILE_READ' })
  t.equal((await probe.next()).type, 'FILE_ERROR', 'FILE_READ without path is an error reply, not a crash')
  t.equal(srv.app.mpac.registry.sessionCount, 0)
  t.notOk(probe.isClosed)
  void isError
})

t.test('a rejected HELLO on a new session id leaves no session and no timer behind', async t => {
  const srv = await startServer(t, { env })
  for (let i = 0; i < 5; i++) {
    const c = await TestClient.connect(`${srv.url}/session/ghost-${i}`)
    t.teardown(() => c.close())
    const r = await c.request(hello('agent:x', { sessionId: `ghost-${i}`, token: 'tok-nope' }))
    t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED')
  }
  const text = srv.app.mpac.metrics.render()
  t.match(text, /^mpac_sessions 0$/m, 'no session loaded')
  t.match(text, /^mpac_session_timers 0$/m, 'no session timer armed (a discarded session must not tick forever)')
  t.equal(srv.app.mpac.registry.sessionCount, 0)
})

t.test('HELLO credentials never reach the store (the journal holds the verdict, not the token)', async t => {
  const srv = await startServer(t, { env })
  const { client } = await joined(`${srv.url}/session/alpha`, 'agent:a', { token: 'tok-alpha' })
  t.teardown(() => client.close())
  const bad = await TestClient.connect(`${srv.url}/session/alpha`)
  t.teardown(() => bad.close())
  await bad.request(hello('agent:b', { sessionId: 'alpha', token: 'tok-wrong-secret' }))
  // The reply is sent after the journal append: the store holds both HELLOs now.
  const stored = JSON.stringify(srv.store.load('alpha'))
  t.match(stored, /HELLO/, 'the HELLOs are journaled')
  t.notOk(stored.includes('tok-alpha'), 'the admitted token is not stored')
  t.notOk(stored.includes('tok-wrong-secret'), 'the rejected token is not stored')
  // The journaled verdict still replays to the same state: a core rebuilt from the store has agent:a.
  const core = replaySession(srv.store, 'alpha', srv.app.mpac.registry.coreConfig('alpha'))
  if (core === undefined) throw new Error('session not stored')
  const participants = (core.summary(Date.now(), null) as unknown as Frame).participants as Frame[]
  t.same(participants.map(p => [p.principal_id, p.roles]), [['agent:a', ['owner']]], 'replayed with the journaled verdict')
})

t.test('the authenticated profile never admits without a token table (defence in depth)', async t => {
  const srv = await startServer(t, { env })
  srv.app.mpac.setTokenTable(undefined)
  const c = await TestClient.connect(`${srv.url}/session/alpha`)
  t.teardown(() => c.close())
  const r = await c.request(hello('agent:x', { sessionId: 'alpha', token: 'anything' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED')
  t.equal(srv.app.mpac.registry.sessionCount, 0)
})

t.test('header without a HELLO credential: the HELLO must still carry the token', async t => {
  const srv = await startServer(t, { env })
  const c = await TestClient.connect(`${srv.url}/session/alpha`, bearer('tok-alpha'))
  t.teardown(() => c.close())
  const r = await c.request(hello('agent:x', { sessionId: 'alpha' }))
  t.equal((r.payload as Frame).error_code, 'CREDENTIAL_REJECTED')
  t.equal(srv.app.mpac.registry.sessionCount, 0)
})
