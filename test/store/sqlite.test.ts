import Database from 'better-sqlite3'
import { statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { CoreInput } from '../../src/coordinator/types.js'
import { DATABASE_FILE, DataDirLockedError, MemoryStore, openStore, SqliteStore, StoreDamagedError } from '../../src/store/index.js'
import { captureLogs } from './fixtures/logs.js'
import { tempDir } from './fixtures/temp-dir.js'

const tick = (now: number): CoreInput => ({ kind: 'tick', now })
const msg = (now: number, text: string): CoreInput => ({
  kind: 'message',
  now,
  envelope: { message_type: 'INTENT_ANNOUNCE', message_id: `m-${now}`, payload: { objective: text } },
  verdict: { accepted: true }
})
/** The part of a tap test the helpers below use. */
interface TestLike { teardown (fn: () => void): void }

const bytesOf = (inputs: readonly CoreInput[]) => inputs.reduce((n, i) => n + Buffer.byteLength(JSON.stringify(i)), 0)

/** Opens a store in a fresh directory and closes it at the end of the test. */
function open (t: TestLike, dir = join(tempDir(t), 'data')) {
  const logs = captureLogs()
  const store = new SqliteStore({ dir, logger: logs })
  t.teardown(() => store.close())
  return { store, logs, dir }
}

/** A second, independent connection to the database file, as a disk fault or a hand edit would touch it. */
function raw (t: TestLike, dir: string) {
  const db = new Database(join(dir, DATABASE_FILE))
  t.teardown(() => db.close())
  return db
}

t.test('creates the data directory with mode 0700 and a WAL database', async t => {
  const { store, dir } = open(t)
  t.equal(statSync(dir).mode & 0o777, 0o700)
  store.append('s1', [tick(1)])
  t.equal(raw(t, dir).pragma('journal_mode', { simple: true }), 'wal')
})

t.test('append then load round-trips inputs, also after reopening', async t => {
  const { store, dir } = open(t)
  t.equal(store.load('s1'), undefined)
  const first = [msg(1, 'héllo ✓'), tick(2)]
  const second = [{ kind: 'close', now: 3, reason: 'manual' } as const]
  t.same(store.append('s1', first), { entriesSinceSnapshot: 2, bytesSinceSnapshot: bytesOf(first), snapshotBytes: 0 })
  t.same(store.append('s1', second), { entriesSinceSnapshot: 3, bytesSinceSnapshot: bytesOf([...first, ...second]), snapshotBytes: 0 })
  t.same(store.load('s1'), { snapshot: undefined, journal: [...first, ...second] })
  t.same(store.listSessions(), ['s1'])
  store.close()

  const { store: again } = open(t, dir)
  t.same(again.listSessions(), ['s1'])
  t.same(again.load('s1'), { snapshot: undefined, journal: [...first, ...second] })
  t.equal(again.sessionBytes('s1'), bytesOf([...first, ...second]))
  t.same(again.append('s1', [tick(4)]), { entriesSinceSnapshot: 4, bytesSinceSnapshot: bytesOf([...first, ...second, tick(4)]), snapshotBytes: 0 },
    'stats are recomputed from disk')
})

t.test('an empty append stores nothing', async t => {
  const { store } = open(t)
  t.same(store.append('s1', []), { entriesSinceSnapshot: 0, bytesSinceSnapshot: 0, snapshotBytes: 0 })
  t.equal(store.load('s1'), undefined)
  t.same(store.listSessions(), [])
})

t.test('a snapshot plus the journal tail; the covered journal rows are removed', async t => {
  const { store, dir } = open(t)
  store.append('s1', [tick(1), tick(2), tick(3)])
  store.append('other', [tick(1)])
  store.saveSnapshot('s1', { lamport_clock: 3 })
  const db = raw(t, dir)
  const count = (id: string) => db.prepare('SELECT COUNT(*) FROM journal WHERE session_id = ?').pluck().get(id)
  t.equal(count('s1'), 0, 'compacted')
  t.equal(count('other'), 1, 'other sessions untouched')
  t.same(store.append('s1', [tick(4), tick(5)]), { entriesSinceSnapshot: 2, bytesSinceSnapshot: bytesOf([tick(4), tick(5)]), snapshotBytes: Buffer.byteLength(JSON.stringify({ lamport_clock: 3 })) }, 'the snapshot size is reported for the amortised policy')
  t.same(store.load('s1'), { snapshot: { lamport_clock: 3 }, journal: [tick(4), tick(5)] })
  t.same(db.prepare('SELECT seq FROM journal WHERE session_id = ? ORDER BY seq').pluck().all('s1'), [4, 5])
  t.same(db.prepare('SELECT seq FROM snapshots WHERE session_id = ?').pluck().get('s1'), 3)
  t.equal(store.sessionBytes('s1'), Buffer.byteLength('{"lamport_clock":3}') + bytesOf([tick(4), tick(5)]))

  store.saveSnapshot('s1', { lamport_clock: 5 })
  t.equal(count('s1'), 0)
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.load('s1'), { snapshot: { lamport_clock: 5 }, journal: [] })
  t.same(again.append('s1', [tick(6)]).entriesSinceSnapshot, 1)
  t.same(again.load('s1'), { snapshot: { lamport_clock: 5 }, journal: [tick(6)] })
})

t.test('a damaged final journal row quarantines the session: a committed row was acknowledged', async t => {
  for (const [name, damage, problem] of [
    ['bad checksum', 'UPDATE journal SET crc = crc + 1 WHERE session_id = ? AND seq = 3', 'checksum mismatch'],
    ['garbage body', "UPDATE journal SET body = X'00ff13' WHERE session_id = ? AND seq = 3", 'body is not text'],
    ['truncated body', 'UPDATE journal SET body = substr(body, 1, 10) WHERE session_id = ? AND seq = 3', 'checksum mismatch']
  ] as const) {
    t.test(name, async t => {
      const { store, dir } = open(t)
      store.append('s1', [tick(1), tick(2), tick(3)])
      store.append('s2', [tick(1)])
      store.close()
      const db = raw(t, dir)
      db.prepare(damage).run('s1')

      const { store: again, logs } = open(t, dir)
      const err = t.throws(() => again.load('s1')) as StoreDamagedError
      t.ok(err instanceof StoreDamagedError)
      t.equal(err.seq, 3)
      t.equal(err.reason, `journal entry 3: ${problem}`)
      t.equal(err.logged, true, 'the store logged it')
      t.same(logs.lines.map(l => ({ level: l.level, obj: l.obj })), [{ level: 'error', obj: { sessionId: 's1', seq: 3, reason: `journal entry 3: ${problem}` } }],
        'one error line naming the session, the row and the reason; no torn-write warning')
      t.same(again.listQuarantined(), [{ sessionId: 's1', reason: `journal entry 3: ${problem}` }])
      t.equal(db.prepare('SELECT COUNT(*) FROM journal WHERE session_id = ?').pluck().get('s1'), 3, 'the damaged row is kept as found')
      t.throws(() => again.append('s1', [tick(30)]), StoreDamagedError, 'nothing is written over it')
      t.same(again.load('s2'), { snapshot: undefined, journal: [tick(1)] }, 'other sessions load')
    })
  }
})

t.test('without a logger the error says it was not logged', async t => {
  const dir = join(tempDir(t), 'data')
  const store = new SqliteStore({ dir })
  t.teardown(() => store.close())
  store.append('s1', [tick(1)])
  raw(t, dir).prepare('UPDATE journal SET crc = 0 WHERE session_id = ?').run('s1')
  const err = t.throws(() => store.load('s1')) as StoreDamagedError
  t.equal(err.logged, false)
  t.equal(err.seq, 1)
})

t.test('damage before the final row quarantines that session only', async t => {
  const { store, dir } = open(t)
  store.append('bad', [tick(1), tick(2), tick(3)])
  store.append('good', [tick(1), tick(2)])
  raw(t, dir).prepare('UPDATE journal SET body = ? WHERE session_id = ? AND seq = 2').run(JSON.stringify(tick(99)), 'bad')

  const err = t.throws(() => store.load('bad')) as StoreDamagedError
  t.ok(err instanceof StoreDamagedError)
  t.equal(err.code, 'MPAC_ERR_STORE_DAMAGED')
  t.equal(err.sessionId, 'bad')
  t.match(err.message, /journal entry 2: checksum mismatch/)
  t.same(store.listSessions(), ['good'])
  t.same(store.listQuarantined(), [{ sessionId: 'bad', reason: 'journal entry 2: checksum mismatch' }])
  t.same(store.load('good'), { snapshot: undefined, journal: [tick(1), tick(2)] })
  t.same(store.append('good', [tick(3)]).entriesSinceSnapshot, 3, 'other sessions keep working')
  t.throws(() => store.load('bad'), StoreDamagedError, 'stays damaged')
  t.throws(() => store.append('bad', [tick(4)]), StoreDamagedError, 'refuses new entries')
  t.throws(() => store.saveSnapshot('bad', {}), StoreDamagedError, 'refuses a snapshot')
  store.close()

  const { store: again, logs } = open(t, dir)
  t.same(again.listSessions(), ['good'], 'the quarantine is durable')
  t.throws(() => again.load('bad'), StoreDamagedError)
  t.throws(() => again.append('bad', [tick(4)]), StoreDamagedError)
  t.same(logs.lines.filter(l => l.level === 'error'), [], 'logged once, when detected')
  again.delete('bad')
  t.same(again.listQuarantined(), [])
  t.equal(again.load('bad'), undefined)
  again.append('bad', [tick(1)])
  t.same(again.load('bad'), { snapshot: undefined, journal: [tick(1)] }, 'a deleted session starts afresh')
})

t.test('the quarantine is logged clearly', async t => {
  const { store, dir, logs } = open(t)
  store.append('s1', [tick(1), tick(2), tick(3)])
  raw(t, dir).prepare('DELETE FROM journal WHERE session_id = ? AND seq = 2').run('s1')
  t.throws(() => store.load('s1'), { name: 'StoreDamagedError', message: /entry 2 is missing/ })
  t.match(logs.lines, [{ level: 'error', obj: { sessionId: 's1', reason: /entry 2 is missing/ }, msg: /quarantined/ }])
})

t.test('a damaged snapshot quarantines the session', async t => {
  const { store, dir } = open(t)
  store.append('s1', [tick(1)])
  store.saveSnapshot('s1', { a: 1 })
  store.append('s1', [tick(2)])
  raw(t, dir).prepare(`UPDATE snapshots SET body = '{"a":2}' WHERE session_id = ?`).run('s1')
  t.throws(() => store.load('s1'), { name: 'StoreDamagedError', message: /snapshot at seq 1: checksum mismatch/ })
})

t.test('a row copied from another session does not pass the checksum', async t => {
  const { store, dir } = open(t)
  store.append('a', [tick(1), tick(2)])
  store.append('b', [tick(1), tick(2)])
  raw(t, dir).prepare(`UPDATE journal SET body = (SELECT body FROM journal WHERE session_id = 'b' AND seq = 1),
    crc = (SELECT crc FROM journal WHERE session_id = 'b' AND seq = 1) WHERE session_id = 'a' AND seq = 1`).run()
  t.throws(() => store.load('a'), StoreDamagedError)
  t.ok(store.load('b'))
})

t.test('replay hands over the snapshot, then every entry as it is read', async t => {
  const { store, dir } = open(t)
  t.equal(store.replay('none', () => () => t.fail('never called')), undefined)
  store.append('s1', [tick(1)])
  store.saveSnapshot('s1', { n: 1 })
  store.append('s1', [tick(2), msg(3, 'x')])
  const seen: unknown[] = []
  t.equal(store.replay('s1', snapshot => {
    seen.push(snapshot)
    return input => { seen.push(input) }
  }), 2)
  t.same(seen, [{ n: 1 }, tick(2), msg(3, 'x')])

  raw(t, dir).prepare('UPDATE journal SET crc = 0 WHERE session_id = ? AND seq = 2').run('s1')
  const handed: unknown[] = []
  t.throws(() => store.replay('s1', () => input => { handed.push(input) }), StoreDamagedError)
  t.same(handed, [], 'nothing after the damage is handed over')
  t.same(store.listQuarantined().map(q => q.sessionId), ['s1'])
})

t.test('replay quarantines on a damaged final entry like load does', async t => {
  const { store, dir, logs } = open(t)
  store.append('s1', [tick(1), tick(2)])
  raw(t, dir).prepare('UPDATE journal SET crc = 0 WHERE session_id = ? AND seq = 2').run('s1')
  t.throws(() => store.replay('s1', () => () => {}), { name: 'StoreDamagedError', seq: 2 })
  t.match(logs.lines, [{ level: 'error', obj: { sessionId: 's1', seq: 2 } }])
  t.same(store.listQuarantined().map(q => q.sessionId), ['s1'])
})

t.test('batch: appends of several sessions in one transaction, all or nothing', async t => {
  const { store, dir } = open(t)
  store.append('a', [tick(1)])
  const stats = store.batch(() => {
    store.append('a', [tick(2)])
    store.append('b', [tick(1), tick(2)])
    return store.batch(() => store.append('c', [tick(1)]))
  })
  t.same(stats.entriesSinceSnapshot, 1, 'returns what fn returns; nested batches join')
  t.same(store.listSessions(), ['a', 'b', 'c'])
  t.throws(() => store.batch(() => {
    store.append('a', [tick(3)])
    store.append('d', [tick(1)])
    throw new Error('boom')
  }), /boom/)
  t.same(store.load('a')?.journal, [tick(1), tick(2)], 'rolled back')
  t.equal(store.load('d'), undefined)
  t.same(store.append('a', [tick(3)]).entriesSinceSnapshot, 3, 'counters follow the rollback')
  t.equal(store.sessionBytes('d'), 0)
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.load('a')?.journal, [tick(1), tick(2), tick(3)])
  t.same(again.listSessions(), ['a', 'b', 'c'])
})

t.test('an append of more rows than one INSERT takes is stored whole and in order', async t => {
  const { store, dir } = open(t)
  const inputs = Array.from({ length: 150 }, (_, i) => i % 3 === 0 ? msg(i + 1, `m${i}`) : tick(i + 1))
  t.same(store.append('s1', inputs), { entriesSinceSnapshot: 150, bytesSinceSnapshot: bytesOf(inputs), snapshotBytes: 0 })
  t.same(store.append('s1', [tick(151)]).entriesSinceSnapshot, 151)
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.load('s1')?.journal, [...inputs, tick(151)], 'every row checks out on load')
  t.same(raw(t, dir).prepare('SELECT seq FROM journal WHERE session_id = ? ORDER BY seq').pluck().all('s1'),
    Array.from({ length: 151 }, (_, i) => i + 1))
})

t.test('batch: a failed append rolls the whole batch back even when fn catches the error', async t => {
  const { store, dir } = open(t)
  store.append('a', [tick(1), tick(2)])
  // A row in the way of the 67th entry: the second INSERT of the next append fails after the first one wrote 64 rows.
  raw(t, dir).prepare('INSERT INTO journal (session_id, seq, body, crc) VALUES (?, ?, ?, ?)').run('a', 67, '{}', 0)
  let caught: unknown
  t.throws(() => store.batch(() => {
    store.append('e', [tick(1)])
    try {
      store.append('a', Array.from({ length: 70 }, (_, i) => tick(i + 3)))
    } catch (err) {
      caught = err
    }
    store.append('f', [tick(1)])
  }), /constraint/i)
  t.match(String(caught), /constraint/i, 'the append itself threw')
  t.equal(store.load('e'), undefined, 'appends before the failure are rolled back')
  t.equal(store.load('f'), undefined, 'appends after it too')
  t.same(raw(t, dir).prepare('SELECT seq FROM journal WHERE session_id = ? ORDER BY seq').pluck().all('a'), [1, 2, 67],
    'no partial rows of the failed append')
})

t.test('retention purges closed sessions older than the cutoff', async t => {
  const { store, dir, logs } = open(t)
  store.append('old', [tick(1)])
  store.saveSnapshot('old', { x: 1 })
  store.append('old', [tick(2)])
  store.append('recent', [tick(1)])
  store.append('open', [tick(1)])
  store.markClosed('old', 1_000)
  store.markClosed('recent', 5_000)
  t.same(store.purgeClosed(2_000), ['old'])
  t.equal(store.load('old'), undefined)
  t.equal(store.sessionBytes('old'), 0)
  t.same(store.listSessions(), ['open', 'recent'])
  const db = raw(t, dir)
  t.equal(db.prepare(`SELECT COUNT(*) FROM journal WHERE session_id = 'old'`).pluck().get(), 0)
  t.equal(db.prepare(`SELECT COUNT(*) FROM snapshots WHERE session_id = 'old'`).pluck().get(), 0)
  t.match(logs.lines, [{ level: 'info', obj: { sessionId: 'old' } }])
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.purgeClosed(2_000), [], 'nothing left to purge')
  t.same(again.purgeClosed(10_000, 'another'), [], 'limited to one session (a single-session sidecar): others are kept')
  t.same(again.purgeClosed(10_000), ['recent'], 'closed_at survives a restart')
  t.same(again.listSessions(), ['open'])
})

t.test('delete removes every row of the session', async t => {
  const { store, dir } = open(t)
  store.append('s1', [tick(1), tick(2)])
  store.saveSnapshot('s1', {})
  store.append('s1', [tick(3)])
  store.delete('s1')
  t.equal(store.load('s1'), undefined)
  const db = raw(t, dir)
  for (const table of ['sessions', 'journal', 'snapshots']) {
    t.equal(db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get(), 0, table)
  }
})

t.test('refuses a database written by a newer schema', async t => {
  const { store, dir } = open(t)
  store.close()
  raw(t, dir).pragma('user_version = 99')
  t.throws(() => new SqliteStore({ dir }), /schema version 99/)
})

t.test('openStore picks the store from the data directory', async t => {
  const memory = openStore()
  t.ok(memory instanceof MemoryStore)
  t.ok(openStore({ dataDir: ':memory:' }) instanceof MemoryStore)
  t.ok(openStore({ store: 'memory', dataDir: tempDir(t) }) instanceof MemoryStore)
  const sqlite = openStore({ store: 'sqlite', dataDir: tempDir(t) })
  t.teardown(() => sqlite.close())
  t.ok(sqlite instanceof SqliteStore)
})

t.test('one store per data directory: a second one is refused until the first is closed', async t => {
  const { store, dir } = open(t)
  store.append('s1', [tick(1)])
  const err = t.throws(() => new SqliteStore({ dir })) as DataDirLockedError
  t.ok(err instanceof DataDirLockedError)
  t.equal(err.dir, dir)
  t.equal(err.holderPid, process.pid)
  t.match(err.message, `the data directory ${dir} is in use by another coordinator (pid ${process.pid})`)
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.load('s1')?.journal, [tick(1)], 'taken once released')
})

t.test('session owners: stored with the session, listed after reopening, gone with it; old databases gain the column', async t => {
  const dir = join(tempDir(t), 'data')
  // A database written before the owner column existed (schema version 1 as it shipped).
  const old = new Database((() => { const s = new SqliteStore({ dir }); s.close(); return join(dir, DATABASE_FILE) })())
  old.exec('DROP TABLE sessions; CREATE TABLE sessions (session_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, closed_at INTEGER, quarantined INTEGER NOT NULL DEFAULT 0, quarantine_reason TEXT)')
  old.close()
  const { store } = open(t, dir)
  store.append('s1', [tick(1)])
  store.append('s2', [tick(1)])
  store.setOwner('s1', 'ab'.repeat(32))
  store.setOwner('unknown', 'cd'.repeat(32))
  t.same(store.listOwners(), [{ sessionId: 's1', owner: 'ab'.repeat(32) }])
  store.close()
  const { store: again } = open(t, dir)
  t.same(again.listOwners(), [{ sessionId: 's1', owner: 'ab'.repeat(32) }], 'survives reopening')
  again.delete('s1')
  t.same(again.listOwners(), [])
  const mem = new MemoryStore()
  mem.append('m', [tick(1)])
  mem.setOwner('m', 'ef')
  t.same(mem.listOwners(), [{ sessionId: 'm', owner: 'ef' }])
})
