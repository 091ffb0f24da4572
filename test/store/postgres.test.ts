/**
 * T1 of the fleet test plan: the PostgreSQL store against a real, throwaway
 * PostgreSQL cluster (test/helpers/postgres.ts). Each subtest gets its own
 * database. The "other connection" of the interleaving tests is a plain pg
 * client holding a transaction open, as a concurrent claim or append on
 * another node would.
 */
import { createServer, connect as netConnect, type Socket } from 'node:net'
import pg from 'pg'
import t from 'tap'
import type { CoreInput } from '../../src/coordinator/types.js'
import { rowChecksum } from '../../src/store/checksum.js'
import { FenceLostError, LeaseExpiredError, openFleetStore, StoreDamagedError, StoreUnavailableError } from '../../src/store/index.js'
import { migrate, PostgresStore, SCHEMA_VERSION, type PostgresStoreOptions } from '../../src/store/postgres.js'
import type { NodeIdentity } from '../../src/store/fleet-types.js'
import { PG_SKIP, startPostgres, type PgCluster } from '../helpers/postgres.js'
import { captureLogs } from './fixtures/logs.js'

const tick = (now: number): CoreInput => ({ kind: 'tick', now })
const msg = (now: number, id: string): CoreInput => ({
  kind: 'message',
  now,
  envelope: { message_type: 'INTENT_ANNOUNCE', message_id: id, payload: { objective: `o ${id} ✓` } },
  verdict: { accepted: true }
})
const TTL = 60_000

interface TestLike { teardown (fn: () => unknown): void }

if (PG_SKIP !== false) {
  t.comment(`skipped: ${PG_SKIP}`)
  t.pass('skipped (no PostgreSQL)')
} else {
  const cluster = await startPostgres(t)
  /** A fresh database on the cluster; its URL. */
  const freshDb = async (): Promise<string> => await cluster.createDatabase()

  const openStore = async (tt: TestLike, url: string, extra: Partial<PostgresStoreOptions> = {}) => {
    const logs = captureLogs()
    const store = await PostgresStore.open({ url, logger: logs, ...extra })
    tt.teardown(async () => { await store.close() })
    return { store, logs }
  }

  const rawClient = async (tt: TestLike, url: string): Promise<pg.Client> => {
    const c = new pg.Client({ connectionString: url })
    await c.connect()
    tt.teardown(async () => { await c.end().catch(() => {}) })
    return c
  }

  /** Waits (with a deadline) until some backend waits on a lock: the interleaving has happened. */
  const untilLockWait = async (c: pg.Client, timeoutMs = 10_000): Promise<number> => {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const r = await c.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
      const pid = r.rows[0]?.pid
      if (pid !== undefined) return pid
      if (Date.now() > deadline) throw new Error('no backend started waiting on a lock')
      await new Promise(resolve => setImmediate(resolve))
    }
  }

  const journalRows = async (c: pg.Client, sid: string) =>
    (await c.query<{ seq: string, epoch: string }>('SELECT seq, epoch FROM mpac_journal WHERE session_id = $1 ORDER BY seq', [sid]))
      .rows.map(r => [Number(r.seq), Number(r.epoch)])

  const twoNodes = async (tt: TestLike, url: string) => {
    const { store: a, logs } = await openStore(tt, url)
    const { store: b } = await openStore(tt, url)
    const na = await a.registerNode({ nodeId: 'a', addr: 'a:1', ttlMs: TTL })
    const nb = await b.registerNode({ nodeId: 'b', addr: 'b:1', ttlMs: TTL })
    return { a, b, na, nb, logs }
  }

  t.test('schema: created with its version, migrations idempotent, an older schema migrated, a newer one refused', async t => {
    const url = await freshDb()
    const { store, logs } = await openStore(t, url)
    t.match(logs.lines.find(l => l.msg.includes('migrated'))?.obj, { applied: [1, 2] })
    await store.close()
    const { logs: again } = await openStore(t, url)
    t.notOk(again.lines.some(l => l.msg.includes('migrated')), 'opening twice migrates nothing')
    const c = await rawClient(t, url)
    t.same((await c.query('SELECT version FROM mpac_schema_version ORDER BY version')).rows.map(r => r.version), [1, 2])

    // A database left at version 1 by an older build, with a session in it.
    const oldUrl = await freshDb()
    const old = await rawClient(t, oldUrl)
    t.same(await migrate(old, 1), [1])
    await old.query("INSERT INTO mpac_sessions (session_id, epoch, last_seq, persisted) VALUES ('kept', 3, 0, true)")
    const { store: upgraded, logs: ulogs } = await openStore(t, oldUrl)
    t.match(ulogs.lines.find(l => l.msg.includes('migrated'))?.obj, { applied: [2] })
    t.equal((await upgraded.resolve('kept'))?.epoch, 3, 'existing rows survive the migration')
    const n = await upgraded.registerNode({ nodeId: 'n', addr: 'n', ttlMs: TTL })
    const claim = await upgraded.claim('fresh', n, { createdBy: 'tok-1' })
    t.ok(claim.ok)
    t.equal(await upgraded.countSessionsCreatedBy('tok-1'), 0, 'the version-2 column works (a provisional session is not counted)')

    // Two stores opening one fresh database at once migrate it once.
    const raceUrl = await freshDb()
    await Promise.all([openStore(t, raceUrl), openStore(t, raceUrl)])
    const rc = await rawClient(t, raceUrl)
    t.equal((await rc.query('SELECT count(*)::int AS n FROM mpac_schema_version')).rows[0].n, 2)

    await rc.query("INSERT INTO mpac_schema_version (version, description) VALUES (99, 'from the future')")
    await t.rejects(PostgresStore.open({ url: raceUrl }), { message: new RegExp(`schema version 99; this version of mpac-mcp reads up to ${SCHEMA_VERSION}`) })
  })

  t.test('nodes: registration bumps the incarnation, renewal is for our incarnation only, retire ends the lease', async t => {
    const url = await freshDb()
    const { store } = await openStore(t, url)
    const first = await store.registerNode({ nodeId: 'n1', addr: '127.0.0.1:1', ttlMs: TTL })
    t.equal(first.incarnation, 1)
    t.ok(first.leaseUntil > Date.now() + TTL / 2, 'lease_until is now + ttl on the PG clock')
    const second = await store.registerNode({ nodeId: 'n1', addr: '127.0.0.1:2', ttlMs: TTL })
    t.equal(second.incarnation, 2)
    t.equal(await store.renewNode(second, TTL), true)
    t.equal(await store.renewNode(first, TTL), false, 'a superseded incarnation cannot renew')
    t.equal(await store.retireNode(first), false)
    t.equal(await store.retireNode(second), true)
    const c = await rawClient(t, url)
    const row = (await c.query<{ expired: boolean, draining: boolean, addr: string }>(
      "SELECT lease_until <= now() AS expired, draining, addr FROM mpac_nodes WHERE node_id = 'n1'")).rows[0]
    t.same(row, { expired: true, draining: true, addr: '127.0.0.1:2' })
  })

  t.test('claim: new, refused while the owner lives, then expired, restart, released and reclaim', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    t.equal(await a.resolve('s'), undefined, 'resolve never creates')
    const c1 = await a.claim('s', na)
    t.match(c1, { ok: true, reason: 'new', epoch: 1, lastSeq: 0, clean: true, persisted: false })
    const refused = await b.claim('s', nb)
    t.match(refused, { ok: false, owner: { owner: { nodeId: 'a', incarnation: na.incarnation }, ownerLive: true, ownerAddr: 'a:1', epoch: 1 } })

    const r1 = await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [msg(1, 'm1'), tick(2)], persist: true }])
    t.same(r1.committed, ['s'])

    // a's lease ends on the PG clock (a renewal with ttl 0): b may claim, and sees a's appends.
    await a.renewNode(na, 0)
    const c2 = await b.claim('s', nb)
    t.match(c2, { ok: true, reason: 'expired', epoch: 2, lastSeq: 2, clean: false, persisted: true },
      'not clean: the previous owner never released it, so the new owner applies `recovered`')

    // b restarts (a new incarnation): its sessions are claimable at once, by anyone.
    const nb2 = await b.registerNode({ nodeId: 'b', addr: 'b:2', ttlMs: TTL })
    const na2 = await a.registerNode({ nodeId: 'a', addr: 'a:2', ttlMs: TTL })
    t.match(await a.claim('s', na2), { ok: true, reason: 'restart', epoch: 3 })

    t.equal(await a.release('s', 2, { clean: true }), false, 'a release under an old epoch changes nothing')
    t.equal(await a.release('s', 3, { clean: true }), true)
    t.match(await a.resolve('s'), { owner: undefined, epoch: 3, clean: true, persisted: true })
    t.match(await b.claim('s', nb2), { ok: true, reason: 'released', epoch: 4, clean: true })
    t.match(await b.claim('s', nb2), { ok: true, reason: 'reclaim', epoch: 5 }, 'a node may claim its own session again (after a lapse)')
    await b.renewNode(nb2, 0)
    await t.rejects(b.claim('s', nb2), LeaseExpiredError, 'a node whose own lease expired claims nothing')
    await t.rejects(a.claim('other', na), LeaseExpiredError, 'nor does a superseded incarnation')
    t.equal(await a.resolve('other'), undefined, 'the refused claim created nothing')
    await b.renewNode(nb2, TTL)
    t.same(await b.ownedSessions(nb2), ['s'])
    t.same(await a.ownedSessions(na2), [])
  })

  t.test('release of a provisional session deletes it; markClosed and purgeClosed keep to the fence and the owner', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    await a.claim('p', na)
    t.equal(await a.release('p', 1), true)
    t.equal(await a.resolve('p'), undefined, 'never persisted: gone')

    for (const sid of ['c1', 'c2']) {
      await a.claim(sid, na, { createdBy: 'tok' })
      await a.appendBatch([{ sessionId: sid, epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    }
    t.equal(await a.countSessionsCreatedBy('tok'), 2)
    t.equal(await a.markClosed('c1', 0, 1000), false, 'fenced')
    t.equal(await a.markClosed('c1', 1, 1000), true)
    t.equal(await a.markClosed('c2', 1, 1000), true)
    t.equal(await a.countSessionsCreatedBy('tok'), 0, 'closed sessions do not count')
    await a.release('c1', 1, { clean: true })
    t.same(await b.purgeClosed(500), [], 'closed after the cut-off')
    t.same(await b.purgeClosed(2000), ['c1'], 'c2 is still owned by a live node')
    await a.renewNode(na, 0)
    t.same(await b.purgeClosed(2000), ['c2'], 'its owner\'s lease expired')
    const c = await rawClient(t, url)
    t.equal((await c.query('SELECT count(*)::int AS n FROM mpac_journal')).rows[0].n, 0, 'journal rows went with them')
    void nb
  })

  t.test('fence: a stale owner\'s group commit stores nothing for the claimed session, the rest commits', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    await a.claim('s1', na)
    await a.claim('s2', na)
    const first = await a.appendBatch([
      { sessionId: 's1', epoch: 1, fromSeq: 0, inputs: [msg(1, 'a1'), msg(2, 'a2')], persist: true },
      { sessionId: 's2', epoch: 1, fromSeq: 0, inputs: [msg(3, 'b1')], persist: true }
    ])
    t.same(first.committed.sort(), ['s1', 's2'])
    t.same(first.lost, [])
    t.same(first.stats.get('s1'), { entriesSinceSnapshot: 2, bytesSinceSnapshot: Buffer.byteLength(JSON.stringify(msg(1, 'a1'))) + Buffer.byteLength(JSON.stringify(msg(2, 'a2'))), snapshotBytes: 0 })

    await a.renewNode(na, 0)
    t.match(await b.claim('s1', nb), { ok: true, epoch: 2, lastSeq: 2 })
    // a does not know yet (paused, partitioned): its next batch covers both sessions.
    const stale = await a.appendBatch([
      { sessionId: 's1', epoch: 1, fromSeq: 2, inputs: [msg(4, 'stale')] },
      { sessionId: 's2', epoch: 1, fromSeq: 1, inputs: [msg(5, 'b2')] }
    ])
    t.same(stale.committed, ['s2'])
    t.same(stale.lost, ['s1'])
    const c = await rawClient(t, url)
    t.same(await journalRows(c, 's1'), [[1, 1], [2, 1]], 's1 got no row from the stale owner')
    t.same(await journalRows(c, 's2'), [[1, 1], [2, 1]])
    const loaded = await b.load('s1', 2)
    t.same(loaded?.journal, [msg(1, 'a1'), msg(2, 'a2')])
    t.equal(loaded?.lastSeq, 2)
    await t.rejects(a.load('s1', 1), FenceLostError, 'loading under a lost epoch is refused')
    // The same batch again (a client of the store resending it) commits nothing twice.
    const again = await a.appendBatch([{ sessionId: 's2', epoch: 1, fromSeq: 1, inputs: [msg(5, 'b2')] }])
    t.same(again.committed, [])
    t.same(await journalRows(c, 's2'), [[1, 1], [2, 1]], 'no duplicate row')
    await t.rejects(a.appendBatch([{ sessionId: 's2', epoch: 1, fromSeq: 2, inputs: [] }]), RangeError)
  })

  t.test('openFleetStore opens the PostgreSQL store from the fleet settings; concurrent claims: exactly one wins', async t => {
    const url = await freshDb()
    const stores = await Promise.all([0, 1, 2, 3].map(async () => await openFleetStore({ databaseUrl: url, storeLanes: 2 })))
    t.teardown(async () => { await Promise.all(stores.map(async s => { await s.close() })) })
    t.equal(stores[0]?.lanes, 2)
    const nodes = await Promise.all(stores.map(async (s, i) => await s.registerNode({ nodeId: `c${i}`, addr: `c${i}`, ttlMs: TTL })))
    for (let round = 0; round < 10; round++) {
      const sid = `race-${round}`
      const results = await Promise.all(stores.map(async (s, i) => await s.claim(sid, nodes[i] as NodeIdentity)))
      t.equal(results.filter(r => r.ok).length, 1, `round ${round}: one claim succeeded`)
      const owner = await stores[0]?.resolve(sid)
      const winner = results.findIndex(r => r.ok)
      t.equal(owner?.owner?.nodeId, `c${winner}`)
      t.equal(owner?.epoch, 1)
    }
  })

  t.test('claim racing append, 30 rounds with real concurrency: the journal agrees with what each side was told', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    const c = await rawClient(t, url)
    let appendWon = 0
    let claimWon = 0
    for (let round = 0; round < 30; round++) {
      const sid = `r-${round}`
      await a.claim(sid, na)
      await a.appendBatch([{ sessionId: sid, epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
      // a's lease is over (on the PG clock), but a does not know yet and appends; b claims at the same moment.
      await a.renewNode(na, 0)
      const [append, claim] = await Promise.all([
        a.appendBatch([{ sessionId: sid, epoch: 1, fromSeq: 1, inputs: [msg(2, `late-${round}`)] }]),
        b.claim(sid, nb)
      ])
      await a.renewNode(na, TTL)
      t.ok(claim.ok)
      if (!claim.ok) continue
      const rows = await journalRows(c, sid)
      if (append.committed.length === 1) {
        appendWon++
        t.equal(claim.lastSeq, 2, 'the claim saw the committed append')
        t.same(rows, [[1, 1], [2, 1]])
      } else {
        claimWon++
        t.same(append.lost, [sid])
        t.equal(claim.lastSeq, 1)
        t.same(rows, [[1, 1]], 'the lost append stored nothing')
      }
      t.same((await b.load(sid, claim.epoch))?.journal.length, claim.lastSeq)
    }
    t.comment(`append first ${appendWon}, claim first ${claimWon}`)
    t.equal(appendWon + claimWon, 30)
  })

  t.test('interleaving, claim first: a concurrent append waits on the row and then commits 0 rows', async t => {
    const url = await freshDb()
    const { a, na } = await twoNodes(t, url)
    await a.claim('s', na)
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    // Another node's claim, still in its transaction, holds the row.
    const other = await rawClient(t, url)
    await other.query('BEGIN')
    await other.query("UPDATE mpac_sessions SET owner_node = 'b', owner_inc = 1, epoch = epoch + 1 WHERE session_id = 's'")
    const pending = a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 1, inputs: [tick(2)] }])
    const watcher = await rawClient(t, url)
    await untilLockWait(watcher)
    await other.query('COMMIT')
    const r = await pending
    t.same(r.committed, [])
    t.same(r.lost, ['s'])
    t.same(await journalRows(watcher, 's'), [[1, 1]])
  })

  t.test('interleaving, append first: a concurrent claim waits and then returns the new last_seq', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    await a.claim('s', na)
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    await a.renewNode(na, 0)
    // a's append of seq 2, in flight in its transaction (the same statements as the store's, by hand).
    const other = await rawClient(t, url)
    const body = JSON.stringify(tick(2))
    await other.query('BEGIN')
    const u = await other.query("UPDATE mpac_sessions SET last_seq = 2 WHERE session_id = 's' AND epoch = 1 AND last_seq = 1")
    t.equal(u.rowCount, 1)
    await other.query("INSERT INTO mpac_journal (session_id, seq, epoch, body, crc) VALUES ('s', 2, 1, $1, $2)", [body, rowChecksum('s', 2, body)])
    const pending = b.claim('s', nb)
    const watcher = await rawClient(t, url)
    await untilLockWait(watcher)
    await other.query('COMMIT')
    const claim = await pending
    t.match(claim, { ok: true, epoch: 2, lastSeq: 2 }, 'the claim saw the append that committed first')
    t.same((await b.load('s', 2))?.journal, [tick(1), tick(2)])
  })

  t.test('ambiguous commit: the lane\'s connection is terminated mid-commit; resolved by the tails, applied once', async t => {
    const url = await freshDb()
    const { a, na, logs } = await twoNodes(t, url)
    await a.claim('s', na)
    await a.claim('q', na)
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    // Hold s's row so the commit is in flight when its backend is killed.
    const holder = await rawClient(t, url)
    await holder.query('BEGIN')
    await holder.query("SELECT 1 FROM mpac_sessions WHERE session_id = 's' FOR UPDATE")
    const pending = a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 1, inputs: [tick(2), msg(3, 'once')] }])
    const watcher = await rawClient(t, url)
    const pid = await untilLockWait(watcher)
    await watcher.query('SELECT pg_terminate_backend($1)', [pid])
    // The store re-reads the tail (still 1: nothing committed) and resends; the resend waits on the row too.
    await untilLockWait(watcher)
    await holder.query('COMMIT')
    const r = await pending
    t.same(r.committed, ['s'])
    t.equal(r.ambiguous, 1)
    t.same(await journalRows(watcher, 's'), [[1, 1], [2, 1], [3, 1]], 'each input stored once')
    t.ok(logs.lines.some(l => l.level === 'warn' && l.msg.includes('outcome is unknown')), 'logged')
    // The lane works on afterwards.
    t.same((await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 3, inputs: [tick(4)] }])).committed, ['s'])
  })

  t.test('ambiguous commit: committed but the answer lost (a proxy drops the connection); not sent twice', async t => {
    const url = await freshDb()
    const proxy = await dropProxy(t, cluster)
    const dbName = new URL(url).pathname.slice(1)
    const { store: a, logs } = await openStore(t, `postgres://postgres@127.0.0.1:${proxy.port}/${dbName}`, { lanes: 1 })
    const na = await a.registerNode({ nodeId: 'a', addr: 'a', ttlMs: TTL })
    await a.claim('s', na)
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    proxy.dropNextAnswer(/mpac_journal/)
    const r = await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 1, inputs: [msg(2, 'x'), msg(3, 'y')] }])
    t.equal(proxy.dropped, 1, 'the commit\'s answer was dropped')
    t.same(r.committed, ['s'])
    t.equal(r.ambiguous, 1)
    const c = await rawClient(t, url)
    t.same(await journalRows(c, 's'), [[1, 1], [2, 1], [3, 1]])
    t.ok(logs.lines.some(l => l.msg.includes('outcome is unknown')))
  })

  t.test('transaction-mode pooler safe: only unnamed statements, no session state on pooled connections', async t => {
    const url = await freshDb()
    const proxy = await dropProxy(t, cluster)
    const dbName = new URL(url).pathname.slice(1)
    // LISTEN needs a direct connection (--database-listen-url); everything else goes through the "pooler".
    const { store } = await openStore(t, `postgres://postgres@127.0.0.1:${proxy.port}/${dbName}`, { lanes: 2, listenUrl: url })
    const stop = await store.watch({})
    const n = await store.registerNode({ nodeId: 'n', addr: 'n', ttlMs: TTL })
    await store.renewNode(n, TTL)
    await store.claim('s', n, { createdBy: 'tok' })
    await store.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1), tick(2)], persist: true }])
    await store.saveSnapshot('s', 1, 2, { at: 2 })
    await store.load('s', 1)
    await store.resolve('s')
    await store.requestHandover('s', n, 1)
    await store.handoverRequests(n)
    await store.ownedSessions(n)
    await store.markClosed('s', 1, Date.now())
    await store.release('s', 1, { clean: true })
    await store.purgeClosed(0)
    await store.listQuarantined()
    await store.countSessionsCreatedBy('tok')
    await store.retireNode(n)
    await stop()
    const parsed = proxy.statements.filter(m => m.kind === 'parse')
    t.ok(parsed.length >= 15, `${parsed.length} statements parsed through the proxy`)
    t.same(parsed.filter(m => m.name !== '').map(m => m.name), [], 'no named (server-side prepared) statement')
    const sessionState = proxy.statements.filter(m => /^\s*(SET|LISTEN|PREPARE|DECLARE)\b|pg_advisory_lock\(/i.test(m.sql))
    t.same(sessionState.map(m => m.sql), [], 'no SET, LISTEN, PREPARE, cursor or session advisory lock')
  })

  t.test('outage: commits fail with StoreUnavailableError while PostgreSQL is down, and work after it returns', async t => {
    const own = await startPostgres(t)
    const { store, logs } = await openStore(t, own.url, { ambiguousRetryMs: 300, connectTimeoutMs: 500 })
    const n = await store.registerNode({ nodeId: 'n', addr: 'n', ttlMs: TTL })
    await store.claim('s', n)
    await store.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    await own.stop('fast')
    await t.rejects(store.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 1, inputs: [tick(2)] }]), StoreUnavailableError)
    await t.rejects(store.renewNode(n, TTL), StoreUnavailableError)
    await own.start()
    // The failed commit never reached the database: the tail is still 1, and the same batch now commits.
    t.same((await store.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 1, inputs: [tick(2)] }])).committed, ['s'])
    t.equal(await store.renewNode(n, TTL), true)
    t.same((await store.load('s', 1))?.journal, [tick(1), tick(2)])
    t.ok(logs.lines.some(l => l.level === 'warn'))
  })

  t.test('snapshots are fenced and replace the journal they cover', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    await a.claim('s', na)
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1), tick(2), tick(3)], persist: true }])
    t.equal(await a.saveSnapshot('s', 1, 2, { state: 'x' }), false, 'not the tail')
    t.equal(await a.saveSnapshot('s', 1, 3, { state: 'at 3' }), true)
    const r = await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 3, inputs: [tick(4)] }])
    t.match(r.stats.get('s'), { entriesSinceSnapshot: 1 })
    const c = await rawClient(t, url)
    t.same(await journalRows(c, 's'), [[4, 1]], 'rows up to the snapshot are gone')
    await a.renewNode(na, 0)
    await b.claim('s', nb)
    t.equal(await a.saveSnapshot('s', 1, 4, { state: 'stale' }), false, 'a stale owner cannot snapshot')
    t.same(await b.load('s', 2), { snapshot: { state: 'at 3' }, snapshotSeq: 3, journal: [tick(4)], lastSeq: 4, persisted: true })
  })

  t.test('damage quarantines one session only: checksum, missing row, snapshot', async t => {
    const url = await freshDb()
    const { a, na, logs } = await twoNodes(t, url)
    for (const sid of ['bad', 'gap', 'snap', 'good']) {
      await a.claim(sid, na)
      await a.appendBatch([{ sessionId: sid, epoch: 1, fromSeq: 0, inputs: [tick(1), tick(2), tick(3)], persist: true }])
    }
    await a.saveSnapshot('snap', 1, 3, { s: 1 })
    const c = await rawClient(t, url)
    await c.query("UPDATE mpac_journal SET body = replace(body, '2', '7') WHERE session_id = 'bad' AND seq = 2")
    await c.query("DELETE FROM mpac_journal WHERE session_id = 'gap' AND seq = 3")
    await c.query("UPDATE mpac_snapshots SET crc = crc + 1 WHERE session_id = 'snap'")
    await t.rejects(a.load('bad', 1), { name: 'StoreDamagedError', reason: 'journal entry 2: checksum mismatch', seq: 2, logged: true })
    await t.rejects(a.load('gap', 1), { name: 'StoreDamagedError', reason: 'journal entry 3 is missing (the tail is 3)' })
    await t.rejects(a.load('snap', 1), { name: 'StoreDamagedError', reason: 'snapshot at seq 3: checksum mismatch' })
    t.same((await a.load('good', 1))?.journal, [tick(1), tick(2), tick(3)], 'other sessions are unaffected')
    t.same((await a.listQuarantined()).map(q => q.sessionId), ['bad', 'gap', 'snap'])
    t.equal(logs.lines.filter(l => l.level === 'error' && l.msg.startsWith('session quarantined')).length, 3, 'logged once each')
    await t.rejects(a.claim('bad', na), StoreDamagedError, 'a quarantined session cannot be claimed')
    await t.rejects(a.load('bad', 1), { name: 'StoreDamagedError', reason: 'quarantined: journal entry 2: checksum mismatch', logged: false })
    t.same((await a.appendBatch([{ sessionId: 'bad', epoch: 1, fromSeq: 3, inputs: [tick(4)] }])).lost, ['bad'])
    t.match(await a.resolve('bad'), { quarantined: true })
  })

  t.test('handover: requested with a notification, polled, released with a notification', async t => {
    const url = await freshDb()
    const { a, b, na, nb } = await twoNodes(t, url)
    await a.claim('s', na)
    const events: string[] = []
    let notified: () => void = () => {}
    const stop = await a.watch({
      handover: (sid, to) => { events.push(`handover ${sid} ${to}`); notified() },
      released: sid => { events.push(`released ${sid}`); notified() }
    })
    const next = async (): Promise<void> => await new Promise<void>(resolve => { notified = resolve })
    let got = next()
    t.equal(await b.requestHandover('s', nb, 0), false, 'stale epoch')
    t.equal(await b.requestHandover('s', nb, 1), true)
    await got
    t.same(await a.handoverRequests(na), [{ sessionId: 's', epoch: 1, to: 'b' }])
    got = next()
    await a.appendBatch([{ sessionId: 's', epoch: 1, fromSeq: 0, inputs: [tick(1)], persist: true }])
    await a.release('s', 1, { clean: true })
    await got
    t.same(events, ['handover s b', 'released s'])
    t.same(await a.handoverRequests(na), [], 'release clears the request')
    t.match(await b.claim('s', nb), { ok: true, reason: 'released', clean: true })
    await stop()
  })

  t.test('lanes: a session always maps to one lane; lanes commit concurrently; many sessions in one statement', async t => {
    const url = await freshDb()
    const { store } = await openStore(t, url, { lanes: 3 })
    t.equal(store.lanes, 3)
    const lanes = new Set<number>()
    for (let i = 0; i < 50; i++) {
      const l = store.laneOf(`session-${i}`)
      t.equal(store.laneOf(`session-${i}`), l)
      lanes.add(l)
    }
    t.same([...lanes].sort(), [0, 1, 2])
    const n = await store.registerNode({ nodeId: 'n', addr: 'n', ttlMs: TTL })
    const ids = Array.from({ length: 40 }, (_, i) => `session-${i}`)
    for (const id of ids) await store.claim(id, n)
    const r = await store.appendBatch(ids.map(id => ({ sessionId: id, epoch: 1, fromSeq: 0, inputs: [tick(1), tick(2)], persist: true })))
    t.equal(r.committed.length, 40)
    await t.rejects(store.appendBatch([
      { sessionId: 'session-1', epoch: 1, fromSeq: 2, inputs: [tick(3)] },
      { sessionId: 'session-1', epoch: 1, fromSeq: 2, inputs: [tick(3)] }
    ]), RangeError)
  })
}

/**
 * A TCP proxy in front of PostgreSQL that, once armed, forwards a client's
 * query whose bytes match `pattern` and then cuts that connection at the
 * server's first answer, without passing it on: the commit happened, its
 * acknowledgement is lost (as when a pooler or proxy restarts).
 */
async function dropProxy (tt: TestLike, cluster: PgCluster) {
  let armed: RegExp | undefined
  let dropped = 0
  const statements: FrontendStatement[] = []
  const sockets = new Set<Socket>()
  const server = createServer(client => {
    const upstream = netConnect(cluster.port, '127.0.0.1')
    sockets.add(client); sockets.add(upstream)
    let cutAtAnswer = false
    const reader = frontendReader(m => { statements.push(m) })
    client.on('data', (chunk: Buffer) => {
      reader(chunk)
      if (armed !== undefined && armed.test(chunk.toString('latin1'))) {
        armed = undefined
        cutAtAnswer = true
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      if (cutAtAnswer) {
        dropped++
        client.destroy()
        upstream.destroy()
        return
      }
      client.write(chunk)
    })
    const end = (): void => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  tt.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => server.close(resolve))
  })
  const addr = server.address()
  return {
    port: typeof addr === 'object' && addr !== null ? addr.port : 0,
    dropNextAnswer (pattern: RegExp) { armed = pattern },
    get dropped () { return dropped },
    /** Every Parse and simple Query message clients sent through the proxy. */
    statements
  }
}

interface FrontendStatement { readonly kind: 'parse' | 'query', readonly name: string, readonly sql: string }

/**
 * Splits a client's byte stream into PostgreSQL frontend messages (protocol
 * 3: an untyped startup message, then type byte + int32 length + body) and
 * reports Parse (statement name, SQL) and Query (SQL) messages.
 */
function frontendReader (onStatement: (m: FrontendStatement) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0)
  let started = false
  const cstring = (b: Buffer, at: number): [string, number] => {
    const end = b.indexOf(0, at)
    return [b.toString('utf8', at, end), end + 1]
  }
  return chunk => {
    buf = Buffer.concat([buf, chunk])
    for (;;) {
      if (!started) {
        if (buf.length < 4) return
        const len = buf.readInt32BE(0)
        if (buf.length < len) return
        buf = buf.subarray(len)
        started = true
        continue
      }
      if (buf.length < 5) return
      const type = String.fromCharCode(buf[0] as number)
      const len = buf.readInt32BE(1)
      if (buf.length < 1 + len) return
      const body = buf.subarray(5, 1 + len)
      if (type === 'P') {
        const [name, next] = cstring(body, 0)
        const [sql] = cstring(body, next)
        onStatement({ kind: 'parse', name, sql })
      } else if (type === 'Q') {
        onStatement({ kind: 'query', name: '', sql: cstring(body, 0)[0] })
      }
      buf = buf.subarray(1 + len)
    }
  }
}


