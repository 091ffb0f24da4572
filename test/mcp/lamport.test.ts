/**
 * Issue 11.2, client side: the shim's Lamport receive rule never pushes its
 * clock past the largest value a coordinator accepts (MAX_LAMPORT), so a peer
 * (or a coordinator) announcing the ceiling cannot make the shim's own
 * messages refused.
 */
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient } from '../../src/mcp/client.js'
import { MAX_LAMPORT } from '../../src/protocol/watermark.js'
import type { Scope } from '../../src/protocol/scope.js'
import { startServer } from '../helpers/server.js'
import { announce, joined, type Frame } from '../helpers/ws.js'

t.test('a relayed watermark at the ceiling saturates the shim clock instead of overflowing it', async t => {
  const srv = await startServer(t)
  const url = `${srv.url}/session/lam`
  const client = new CoordinatorClient({
    url,
    sessionId: 'lam',
    sessionIdPinned: true,
    identity: { principalId: 'agent:shim', displayName: 'Shim', roles: ['contributor'], capabilities: ['intent.broadcast'] },
    logger: pino({ level: 'silent' })
  })
  t.teardown(() => client.close())
  await client.ensureConnected()

  const { client: peer } = await joined(url, 'agent:peer')
  t.teardown(() => peer.close())
  const loud = announce('agent:peer', 'i-peer', ['p.ts'], 'lam')
  loud.watermark = { kind: 'lamport_clock', value: MAX_LAMPORT }
  const echo = await peer.request(loud)
  t.equal(echo.message_type, 'INTENT_ANNOUNCE', 'the coordinator accepts the ceiling itself')
  const { client: late, info } = await joined(url, 'agent:late')
  late.close()
  t.equal((info.watermark as { value: number }).value, MAX_LAMPORT, 'the coordinator\'s own clock saturates at the ceiling too')

  // The relay of the peer's announce reaches the shim before the reply to its next request.
  const scope = (f: string): Scope => ({ kind: 'file_set', resources: [f] })
  const first = await client.request('INTENT_ANNOUNCE', { intent_id: 'i-1', objective: 'one', scope: scope('a.ts') })
  // request() is typed by Payload<T> (checked by npm run typecheck; never called).
  const untyped = (): unknown => [
    // @ts-expect-error an INTENT_ANNOUNCE payload needs an objective and a scope
    client.request('INTENT_ANNOUNCE', { intent_id: 'i-x' }),
    // @ts-expect-error SESSION_INFO is coordinator-authored: a participant does not send it
    client.request('SESSION_INFO', {})
  ]
  void untyped
  t.equal(first.accepted, true, 'first announce accepted')
  for (const id of ['i-2', 'i-3']) {
    const r = await client.request('INTENT_ANNOUNCE', { intent_id: id, objective: id, scope: scope(`${id}.ts`) })
    t.equal(r.accepted, true, `${id} accepted after the shim saw the ceiling (${JSON.stringify(r.error ?? {})})`)
    const wm = (r.terminal as unknown as Frame).watermark as { value: number } | undefined
    t.ok(wm !== undefined && wm.value <= MAX_LAMPORT, `its watermark stays at or below the ceiling (${wm?.value})`)
  }
})
