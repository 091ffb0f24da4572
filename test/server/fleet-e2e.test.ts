// Fleet mode end to end: real mpac-mcp-sidecar processes with --store postgres
// on a throwaway PostgreSQL cluster (loopback), real WebSocket clients.
// - one node: agents coordinate as on SQLite; the journal is in PostgreSQL;
// - two nodes, --router hash: a client sent to the non-owner is held while the
//   owner hands the session over, then served there; the owner's clients are
//   closed with 1012 "session moved", and what they did is still there;
// - SIGTERM releases every session, so the next node claims it at once
//   (reason released, no new coordinator epoch).
import t from 'tap'
import pg from 'pg'
import type { Teardown } from '../helpers/process.js'
import { PG_SKIP, startPostgres, type PgCluster } from '../helpers/postgres.js'
import { startSidecar, type SidecarProcess } from '../helpers/sidecar.js'
import { announce, joined, type Frame } from '../helpers/ws.js'

if (PG_SKIP !== false) {
  t.comment(`skipped: ${PG_SKIP}`)
  t.pass('skipped without PostgreSQL')
} else {
  const FAST = ['--multi-session', '--store', 'postgres', '--lease-ttl', '3', '--lease-renew', '0.5', '--lease-margin', '0.5', '--claim-wait', '4', '--router', 'hash']

  const node = async (tt: Teardown, cluster: PgCluster, id: string): Promise<SidecarProcess> =>
    await startSidecar(tt, [...FAST, '--database-url', cluster.url, '--node-id', id, '--metrics-public'], { LOG_LEVEL: 'info' })

  const owner = async (cluster: PgCluster, sid: string): Promise<{ owner: string | null, epoch: number }> => {
    const c = new pg.Client({ connectionString: cluster.url })
    await c.connect()
    try {
      const r = await c.query<{ owner_node: string | null, epoch: string }>('SELECT owner_node, epoch FROM mpac_sessions WHERE session_id = $1', [sid])
      return { owner: r.rows[0]?.owner_node ?? null, epoch: Number(r.rows[0]?.epoch ?? 0) }
    } finally {
      await c.end()
    }
  }

  const summary = async (client: Awaited<ReturnType<typeof joined>>['client']): Promise<Frame> =>
    ((await client.request({ type: 'SESSION_SUMMARY' })).session as Frame)

  t.test('one node on PostgreSQL: agents coordinate, the journal is in PostgreSQL', async t => {
    const cluster = await startPostgres(t)
    const n1 = await node(t, cluster, 'n1')
    t.match(n1.lines.join('\n'), /store: +postgres \(node n1, router hash\)/)
    const url = `${n1.url}/session/fleet-one`
    const { client: a } = await joined(url, 'agent:a')
    const { client: b } = await joined(url, 'agent:b')
    const echo = await a.request(announce('agent:a', 'i-a', ['src/a.ts'], 'fleet-one'))
    t.equal(echo.message_type, 'INTENT_ANNOUNCE', 'announce accepted')
    const refused = await b.request(announce('agent:b', 'i-b', ['src/a.ts'], 'fleet-one'))
    t.match(refused, { message_type: 'PROTOCOL_ERROR', payload: { error_code: 'STALE_INTENT' } }, 'the race lock holds')
    t.match(await owner(cluster, 'fleet-one'), { owner: 'n1', epoch: 1 })
    const c = new pg.Client({ connectionString: cluster.url })
    await c.connect()
    const rows = await c.query<{ n: string }>('SELECT count(*) AS n FROM mpac_journal WHERE session_id = $1', ['fleet-one'])
    await c.end()
    t.ok(Number(rows.rows[0]?.n) >= 3, `journal rows in PostgreSQL: ${rows.rows[0]?.n}`)
    const ready = await fetch(`http://127.0.0.1:${n1.port}/readyz`)
    t.equal(ready.status, 200)
    a.close()
    b.close()
  })

  t.test('two nodes, hash router: a session moves by cooperative handover, nothing is lost', async t => {
    const cluster = await startPostgres(t)
    const n1 = await node(t, cluster, 'n1')
    const n2 = await node(t, cluster, 'n2')
    const sid = 'fleet-move'
    const { client: a } = await joined(`${n1.url}/session/${sid}`, 'agent:a')
    t.equal((await a.request(announce('agent:a', 'i-a', ['src/a.ts'], sid))).message_type, 'INTENT_ANNOUNCE')
    t.match(await owner(cluster, sid), { owner: 'n1', epoch: 1 })
    // The router now sends agents to n2: n2 asks n1 for the session, which n1 (no connections left) releases at once.
    a.close()
    await a.waitForClose(5000)
    const t0 = performance.now()
    const { client: b } = await joined(`${n2.url}/session/${sid}`, 'agent:b')
    const waited = performance.now() - t0
    t.match(await owner(cluster, sid), { owner: 'n2', epoch: 2 })
    t.ok(waited < 4000, `handed over within --claim-wait (${Math.round(waited)} ms)`)
    const s = await summary(b)
    t.match(s.active_intents, [{ intent_id: 'i-a' }], 'the intent announced on n1 is there on n2')
    const metrics = await (await fetch(`http://127.0.0.1:${n2.port}/metrics`)).text()
    t.match(metrics, /mpac_claims_total\{reason="released"\} 1/, 'claimed after a release, not a lease expiry')
    t.match(metrics, /mpac_handovers_total\{role="requested"\} 1/)
    b.close()
  })

  t.test('SIGTERM releases the node\'s sessions: another node claims them at once (released, same coordinator epoch)', async t => {
    const cluster = await startPostgres(t)
    const n1 = await node(t, cluster, 'n1')
    const n2 = await node(t, cluster, 'n2')
    const sid = 'fleet-drain'
    const { client: a, info } = await joined(`${n1.url}/session/${sid}`, 'agent:a')
    t.equal((await a.request(announce('agent:a', 'i-a', ['src/a.ts'], sid))).message_type, 'INTENT_ANNOUNCE')
    const closed = a.waitForClose(10_000)
    t.equal(await n1.stop(), 0, 'exit 0')
    t.match(await closed, { code: 1012, reason: 'session moved' })
    const t0 = performance.now()
    const { client: b, info: info2 } = await joined(`${n2.url}/session/${sid}`, 'agent:a')
    const took = performance.now() - t0
    t.ok(took < 3000, `re-admitted on n2 within 3 s (${Math.round(took)} ms)`)
    const epochOf = (f: Frame): unknown => f.coordinator_epoch
    t.type(epochOf(info), 'number', 'SESSION_INFO carries coordinator_epoch')
    t.equal(epochOf(info2), epochOf(info), 'a clean release is no restart: same coordinator epoch')
    t.match((await summary(b)).active_intents, [{ intent_id: 'i-a' }])
    const metrics = await (await fetch(`http://127.0.0.1:${n2.port}/metrics`)).text()
    t.match(metrics, /mpac_claims_total\{reason="released"\} 1/)
    b.close()
  })
}
