/**
 * Issue 11.5: token-table semantics are live. A token reaching its
 * `expires_at` closes its connections (4401) at that moment, not at the next
 * reload; a reload that changes a token's roles closes its admitted
 * connections with 4205, and the client's new HELLO gets the new roles.
 */
import t from 'tap'
import { TokenTable } from '../../src/server/token-table.js'
import { startServer } from '../helpers/server.js'
import { announce, joined, TestClient, type Frame } from '../helpers/ws.js'

function table (raw: unknown): TokenTable {
  const parsed = TokenTable.fromObject(raw)
  if (!parsed.ok) throw new Error(parsed.message)
  return parsed.table
}

t.test('a token that expires closes its connections at that instant', async t => {
  const expiresAt = Date.now() + 1500
  const raw = {
    'tok-short': { allowed_sessions: ['s'], expires_at: new Date(expiresAt).toISOString() },
    'tok-long': { allowed_sessions: ['s'] }
  }
  const srv = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify(raw) } })
  const { client: short } = await joined(`${srv.url}/session/s`, 'agent:short', { token: 'tok-short' })
  const header = await TestClient.connect(`${srv.url}/session/s`, { authorization: 'Bearer tok-short' })
  const { client: long } = await joined(`${srv.url}/session/s`, 'agent:long', { token: 'tok-long' })
  t.teardown(() => { short.close(); header.close(); long.close() })

  const closed = await short.waitForClose(6000)
  const at = Date.now()
  t.same(closed, { code: 4401, reason: 'token expired' }, 'closed with 4401')
  t.ok(at >= expiresAt - 50, `not before expires_at (${at - expiresAt} ms after)`)
  t.ok(at - expiresAt < 1000, `at that moment, not at a later sweep (${at - expiresAt} ms after)`)
  t.same(await header.waitForClose(1000), { code: 4401, reason: 'token expired' }, 'a connection authorized by the header too')
  const r = await long.request(announce('agent:long', 'i-1', ['a.ts'], 's'))
  t.equal(r.message_type, 'INTENT_ANNOUNCE', 'another token\'s connection is unaffected')
  t.ok(srv.logs.some(l => l.includes('token expired; closing connection')), 'logged')
})

t.test('a reload that changes a token\'s roles makes its connections rejoin with the new roles', async t => {
  const before = { 'tok-a': { allowed_sessions: ['s'], roles: ['owner'] }, 'tok-b': { allowed_sessions: ['s'], roles: ['contributor'] } }
  const srv = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify(before) } })
  const url = `${srv.url}/session/s`
  const { client: a, info } = await joined(url, 'agent:a', { token: 'tok-a', roles: ['owner'] })
  const { client: b } = await joined(url, 'agent:b', { token: 'tok-b' })
  t.teardown(() => { a.close(); b.close() })
  t.same((info.payload as Frame).granted_roles, ['owner'])

  const closed = srv.app.mpac.setTokenTable(table({ 'tok-a': { allowed_sessions: ['s'], roles: ['contributor'] }, 'tok-b': before['tok-b'] }))
  t.equal(closed, 1, 'one connection closed by the reload')
  t.same(await a.waitForClose(2000), { code: 4205, reason: 'token roles changed; reconnect' })
  t.equal(b.isClosed, false, 'a token whose roles did not change keeps its connection')
  const { client: again, info: rejoined } = await joined(url, 'agent:a', { token: 'tok-a', roles: ['owner'] })
  t.teardown(() => again.close())
  t.same((rejoined.payload as Frame).granted_roles, ['contributor'], 'the new HELLO gets the new roles')
})
