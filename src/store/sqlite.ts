import Database from 'better-sqlite3'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { CoreInput } from '../coordinator/types.js'
import { rowChecksum } from './checksum.js'
import { DataDirLock } from './lock.js'
import { silentLogger } from './managed.js'
import type { ManagedSessionStore, QuarantinedSession, StoreLogger } from './managed.js'
import { StoreDamagedError } from './types.js'
import type { JournalStats, StoredSession } from './types.js'

export interface SqliteStoreOptions {
  /** Directory holding `mpac.db` (created with mode 0700 when missing). */
  readonly dir: string
  readonly logger?: StoreLogger
  /**
   * 'FULL' (default): `append` returns only after the WAL is synced to disk, so
   * an acknowledged input survives a power cut. 'NORMAL' survives a process
   * crash but may lose the last commits on a power cut; for benchmarks.
   */
  readonly synchronous?: 'FULL' | 'NORMAL'
  /**
   * A single-session coordinator: lock only this session of the directory
   * (single-session sidecars may share one). Default: the whole directory.
   */
  readonly sessionId?: string
}

/** The name of the database file inside the data directory. */
export const DATABASE_FILE = 'mpac.db'

/** The schema version kept in `PRAGMA user_version`. */
const SCHEMA_VERSION = 1

/** A WAL file is truncated back to this size after a checkpoint (it may grow past it in between). */
const WAL_SIZE_LIMIT = 64 * 1024 * 1024

/**
 * Pages in the WAL that trigger an automatic checkpoint (SQLite's default is
 * 1000). Journal rows are inserted and soon deleted by a snapshot, so a
 * larger WAL lets a checkpoint copy each page once for many commits; about
 * 20% less commit time on the load benchmark's pattern. ~32 MiB at 4 KiB pages.
 */
const WAL_CHECKPOINT_PAGES = 8000

/** Journal rows per multi-row `INSERT` (4 parameters each, well below SQLite's limit of 32766). */
const INSERT_CHUNK = 64

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  closed_at INTEGER,
  quarantined INTEGER NOT NULL DEFAULT 0,
  quarantine_reason TEXT,
  owner TEXT
);
CREATE TABLE IF NOT EXISTS journal (
  session_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  body TEXT NOT NULL,
  crc INTEGER NOT NULL,
  PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS snapshots (
  session_id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL,
  body TEXT NOT NULL,
  crc INTEGER NOT NULL
);
`

/** What the store keeps in memory about a session it has touched. */
interface SessionState {
  exists: boolean
  quarantineReason: string | undefined
  /** Sequence number of the last stored journal entry (or of the snapshot when the journal is empty). */
  lastSeq: number
  entries: number
  bytes: number
  snapshotBytes: number
}

interface StateRow {
  present: number | null
  quarantined: number | null
  reason: string | null
  snapSeq: number | null
  snapBytes: number | null
  maxSeq: number | null
  entries: number
  bytes: number | null
}

interface SessionRow { quarantined: number; quarantine_reason: string | null }
interface SnapshotRow { seq: unknown; body: unknown; crc: unknown }
type JournalRow = [seq: unknown, body: unknown, crc: unknown]

/**
 * The default `SessionStore`: one SQLite database (`mpac.db`) in the data
 * directory, in WAL mode with `synchronous=FULL`, so that when `append`
 * returns the entries are on disk. Every journal and snapshot row carries a
 * checksum verified on `load`; a row that fails it (wherever it is, the
 * last one included) or a missing row quarantines that session only.
 *
 * One process owns a data directory: the store caches per-session counters,
 * and it holds the directory's lock (`DataDirLock`) from construction to
 * `close`, so a second store, in this process or another, is refused.
 */
export class SqliteStore implements ManagedSessionStore {
  readonly #lock: DataDirLock
  readonly #db: Database.Database
  readonly #log: StoreLogger
  readonly #states = new Map<string, SessionState>()
  readonly #stmt
  /** `#insertEntries(n)`, by row count. */
  readonly #inserts: Array<Database.Statement<unknown[]> | undefined> = []
  /** One transaction wrapper, made once (`db.transaction` builds new wrappers on every call). */
  readonly #transaction: <T>(fn: () => T) => T
  /** The first store write that failed inside the current `batch`; the batch rolls back. */
  #failedInBatch: unknown

  constructor (options: SqliteStoreOptions) {
    mkdirSync(options.dir, { recursive: true, mode: 0o700 })
    this.#log = options.logger ?? silentLogger
    // Before anything reads or writes mpac.db: throws DataDirLockedError when another process holds the directory.
    this.#lock = DataDirLock.acquire(options.dir, options.sessionId)
    try {
      this.#db = new Database(join(options.dir, DATABASE_FILE))
    } catch (err) {
      this.#lock.release()
      throw err
    }
    try {
      this.#db.pragma('journal_mode = WAL')
      this.#db.pragma(`synchronous = ${options.synchronous === 'NORMAL' ? 'NORMAL' : 'FULL'}`)
      this.#db.pragma('busy_timeout = 5000')
      this.#db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`)
      this.#db.pragma(`wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`)
      const version = this.#db.pragma('user_version', { simple: true }) as number
      if (version > SCHEMA_VERSION) {
        throw new Error(`${join(options.dir, DATABASE_FILE)} has schema version ${version}; this version of mpac-mcp reads ${SCHEMA_VERSION}`)
      }
      this.#db.transaction(() => {
        this.#db.exec(SCHEMA)
        // Added after version 1 shipped: a nullable column that older builds ignore (no version bump, so
        // rolling back keeps working). Holds the digest of the token that created the session.
        const columns = this.#db.prepare<[], { name: string }>('SELECT name FROM pragma_table_info(\'sessions\')').pluck().all() as unknown as string[]
        if (!columns.includes('owner')) this.#db.exec('ALTER TABLE sessions ADD COLUMN owner TEXT')
        this.#db.pragma(`user_version = ${SCHEMA_VERSION}`)
      })()
    } catch (err) {
      this.#db.close()
      this.#lock.release()
      throw err
    }
    const db = this.#db
    const tx = db.transaction((fn: () => unknown) => fn())
    this.#transaction = <T>(fn: () => T): T => tx(fn) as T
    this.#stmt = {
      listSessions: db.prepare<[], { session_id: string }>('SELECT session_id FROM sessions WHERE quarantined = 0 ORDER BY session_id').pluck(),
      listQuarantined: db.prepare<[], { session_id: string; quarantine_reason: string | null }>(
        'SELECT session_id, quarantine_reason FROM sessions WHERE quarantined <> 0 ORDER BY session_id'),
      session: db.prepare<[string], SessionRow>('SELECT quarantined, quarantine_reason FROM sessions WHERE session_id = ?'),
      state: db.prepare<{ id: string }, StateRow>(`SELECT
        (SELECT 1 FROM sessions WHERE session_id = @id) AS present,
        (SELECT quarantined FROM sessions WHERE session_id = @id) AS quarantined,
        (SELECT quarantine_reason FROM sessions WHERE session_id = @id) AS reason,
        (SELECT seq FROM snapshots WHERE session_id = @id) AS snapSeq,
        (SELECT length(CAST(body AS BLOB)) FROM snapshots WHERE session_id = @id) AS snapBytes,
        (SELECT MAX(seq) FROM journal WHERE session_id = @id) AS maxSeq,
        (SELECT COUNT(*) FROM journal WHERE session_id = @id) AS entries,
        (SELECT SUM(length(CAST(body AS BLOB))) FROM journal WHERE session_id = @id) AS bytes`),
      insertSession: db.prepare<[string, number]>('INSERT INTO sessions (session_id, created_at) VALUES (?, ?)'),
      snapshot: db.prepare<[string], SnapshotRow>('SELECT seq, body, crc FROM snapshots WHERE session_id = ?'),
      journal: db.prepare<[string], JournalRow>('SELECT seq, body, crc FROM journal WHERE session_id = ? ORDER BY seq').raw(),
      upsertSnapshot: db.prepare<[string, number, string, number]>(`INSERT INTO snapshots (session_id, seq, body, crc) VALUES (?, ?, ?, ?)
        ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, body = excluded.body, crc = excluded.crc`),
      deleteJournalUpTo: db.prepare<[string, number]>('DELETE FROM journal WHERE session_id = ? AND seq <= ?'),
      deleteJournal: db.prepare<[string]>('DELETE FROM journal WHERE session_id = ?'),
      deleteSnapshot: db.prepare<[string]>('DELETE FROM snapshots WHERE session_id = ?'),
      deleteSession: db.prepare<[string]>('DELETE FROM sessions WHERE session_id = ?'),
      quarantine: db.prepare<[string, string]>('UPDATE sessions SET quarantined = 1, quarantine_reason = ? WHERE session_id = ?'),
      markClosed: db.prepare<[number, string]>('UPDATE sessions SET closed_at = ? WHERE session_id = ?'),
      setOwner: db.prepare<[string, string]>('UPDATE sessions SET owner = ? WHERE session_id = ?'),
      owners: db.prepare<[], { session_id: string; owner: string }>(
        'SELECT session_id, owner FROM sessions WHERE owner IS NOT NULL ORDER BY session_id'),
      closedBefore: db.prepare<[number], { session_id: string }>(
        'SELECT session_id FROM sessions WHERE closed_at IS NOT NULL AND closed_at < ? ORDER BY session_id').pluck()
    }
  }

  listSessions (): string[] {
    return this.#stmt.listSessions.all() as unknown as string[]
  }

  listQuarantined (): QuarantinedSession[] {
    return this.#stmt.listQuarantined.all().map(row => ({ sessionId: row.session_id, reason: row.quarantine_reason ?? 'unknown' }))
  }

  load (sessionId: string): StoredSession | undefined {
    const journal: CoreInput[] = []
    let snapshot: unknown
    const found = this.replay(sessionId, snap => {
      snapshot = snap
      return input => { journal.push(input) }
    })
    return found === undefined ? undefined : { snapshot, journal }
  }

  replay (sessionId: string, begin: (snapshot: unknown) => (input: CoreInput) => void): number | undefined {
    const session = this.#stmt.session.get(sessionId)
    if (session === undefined) return undefined
    if (session.quarantined !== 0) {
      throw new StoreDamagedError(sessionId, `quarantined: ${session.quarantine_reason ?? 'unknown'}`)
    }

    let snapshot: unknown
    let base = 0
    let snapshotBytes = 0
    const snap = this.#stmt.snapshot.get(sessionId)
    if (snap !== undefined) {
      const seq = snap.seq
      if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
        this.#quarantine(sessionId, 'snapshot row has an invalid sequence number', undefined)
      }
      base = seq
      const parsed = parseRow(sessionId, base, snap.body, snap.crc)
      if (!parsed.ok) this.#quarantine(sessionId, `snapshot at seq ${base}: ${parsed.problem}`, base)
      snapshot = parsed.value
      snapshotBytes = Buffer.byteLength(snap.body as string)
    }
    const onEntry = begin(snapshot)

    // Rows are handed over as they are read, so a long journal is never held
    // in memory twice. Any damaged row quarantines the session, the last one
    // too: SQLite commits a transaction whole or not at all, so a row that is
    // there was committed, and a committed input was acknowledged (its
    // outputs went out after `append` returned). Dropping it would silently
    // lose an input participants were told about.
    // (The quarantine is written after the loop: the connection is busy while it iterates.)
    let expected = base + 1
    let bytes = 0
    let fatal: string | undefined
    for (const [seq, body, crc] of this.#stmt.journal.iterate(sessionId)) {
      if (seq !== expected) {
        fatal = `journal entry ${expected} is missing (found ${String(seq)})`
        break
      }
      const parsed = parseRow(sessionId, expected, body, crc)
      if (!parsed.ok) {
        fatal = `journal entry ${expected}: ${parsed.problem}`
        break
      }
      onEntry(parsed.value as CoreInput)
      bytes += Buffer.byteLength(body as string)
      expected++
    }
    if (fatal !== undefined) this.#quarantine(sessionId, fatal, expected)

    const entries = expected - base - 1
    this.#states.set(sessionId, {
      exists: true,
      quarantineReason: undefined,
      lastSeq: base + entries,
      entries,
      bytes,
      snapshotBytes
    })
    return entries
  }

  /**
   * Runs `fn` in one transaction: the appends and snapshots of several
   * sessions inside it cost one sync together (group commit across
   * sessions), and when `fn` throws none of them is stored. Nested calls join
   * the outer batch.
   */
  batch<T> (fn: () => T): T {
    if (this.#db.inTransaction) return fn()
    this.#failedInBatch = undefined
    try {
      return this.#transaction(() => {
        const result = fn()
        // Rethrows exactly what the failed append threw (caught, so of unknown type).
        // eslint-disable-next-line @typescript-eslint/only-throw-error
        if (this.#failedInBatch !== undefined) throw this.#failedInBatch
        return result
      })
    } catch (err) {
      // The counters of whatever `fn` appended were rolled back with it.
      this.#states.clear()
      throw err
    }
  }

  append (sessionId: string, inputs: readonly CoreInput[]): JournalStats {
    const state = this.#state(sessionId)
    if (inputs.length > 0) {
      this.#assertUsable(sessionId, state)
      const bodies = inputs.map(input => JSON.stringify(input))
      const first = inputs[0]?.now
      const createdAt = typeof first === 'number' && Number.isFinite(first) ? Math.trunc(first) : Date.now()
      const added = this.#atomically(this.#appendRows, sessionId, state, bodies, createdAt)
      state.exists = true
      state.lastSeq += bodies.length
      state.entries += bodies.length
      state.bytes += added
    }
    return { entriesSinceSnapshot: state.entries, bytesSinceSnapshot: state.bytes, snapshotBytes: state.snapshotBytes }
  }

  /** Inserts the journal rows of one `append` (in a transaction); returns their size in bytes. */
  readonly #appendRows = (sessionId: string, state: SessionState, bodies: readonly string[], createdAt: number): number => {
    if (!state.exists) this.#stmt.insertSession.run(sessionId, createdAt)
    let added = 0
    let i = 0
    while (i < bodies.length) {
      // Up to INSERT_CHUNK rows per statement: one call into SQLite instead of one per row.
      const n = Math.min(INSERT_CHUNK, bodies.length - i)
      const params: Array<string | number> = []
      for (let k = 0; k < n; k++) {
        const body = bodies[i + k] as string
        const seq = state.lastSeq + i + k + 1
        params.push(sessionId, seq, body, rowChecksum(sessionId, seq, body))
        added += Buffer.byteLength(body)
      }
      this.#insertEntries(n).run(params)
      i += n
    }
    return added
  }

  /** The prepared `INSERT` of `n` journal rows (cached per row count). */
  #insertEntries (n: number): Database.Statement<unknown[]> {
    let stmt = this.#inserts[n]
    if (stmt === undefined) {
      stmt = this.#db.prepare(`INSERT INTO journal (session_id, seq, body, crc) VALUES ${Array(n).fill('(?, ?, ?, ?)').join(', ')}`)
      this.#inserts[n] = stmt
    }
    return stmt
  }

  /**
   * Runs `fn` in a transaction, or directly when one is open already (inside
   * `batch`: a nested `db.transaction` would add a SAVEPOINT and RELEASE for
   * nothing, since the batch rolls back as a whole anyway).
   */
  #atomically<A extends unknown[], T> (fn: (...args: A) => T, ...args: A): T {
    if (!this.#db.inTransaction) return this.#transaction(() => fn(...args))
    try {
      return fn(...args)
    } catch (err) {
      // Part of it may be written: the whole batch must roll back, even if
      // the batch's function catches this error.
      this.#failedInBatch ??= err
      throw err
    }
  }

  saveSnapshot (sessionId: string, snapshot: unknown): void {
    const state = this.#state(sessionId)
    this.#assertUsable(sessionId, state)
    const body = JSON.stringify(snapshot)
    if (typeof body !== 'string') throw new TypeError('snapshot is not JSON-serialisable')
    const seq = state.lastSeq
    this.#atomically(() => {
      if (!state.exists) this.#stmt.insertSession.run(sessionId, Date.now())
      this.#stmt.upsertSnapshot.run(sessionId, seq, body, rowChecksum(sessionId, seq, body))
      this.#stmt.deleteJournalUpTo.run(sessionId, seq)
    })
    state.exists = true
    state.entries = 0
    state.bytes = 0
    state.snapshotBytes = Buffer.byteLength(body)
  }

  delete (sessionId: string): void {
    this.#db.transaction(() => { this.#deleteRows(sessionId) })()
    this.#states.delete(sessionId)
  }

  markClosed (sessionId: string, at: number): void {
    this.#stmt.markClosed.run(Math.trunc(at), sessionId)
  }

  setOwner (sessionId: string, owner: string): void {
    this.#stmt.setOwner.run(owner, sessionId)
  }

  listOwners (): Array<{ sessionId: string, owner: string }> {
    return this.#stmt.owners.all().map(row => ({ sessionId: row.session_id, owner: row.owner }))
  }

  purgeClosed (olderThan: number, only?: string): string[] {
    const ids = this.#db.transaction(() => {
      const found = (this.#stmt.closedBefore.all(olderThan) as unknown as string[]).filter(id => only === undefined || id === only)
      for (const id of found) this.#deleteRows(id)
      return found
    })()
    for (const id of ids) {
      this.#states.delete(id)
      this.#log.info({ sessionId: id }, 'deleted a closed session past its retention')
    }
    return ids
  }

  sessionBytes (sessionId: string): number {
    const state = this.#state(sessionId)
    return state.snapshotBytes + state.bytes
  }

  close (): void {
    if (this.#db.open) this.#db.close()
    this.#lock.release()
    this.#states.clear()
  }

  #deleteRows (sessionId: string): void {
    this.#stmt.deleteJournal.run(sessionId)
    this.#stmt.deleteSnapshot.run(sessionId)
    this.#stmt.deleteSession.run(sessionId)
  }

  #state (sessionId: string): SessionState {
    let state = this.#states.get(sessionId)
    if (state === undefined) {
      const row = this.#stmt.state.get({ id: sessionId }) as StateRow
      state = {
        exists: row.present !== null,
        quarantineReason: row.quarantined !== null && row.quarantined !== 0 ? (row.reason ?? 'unknown') : undefined,
        lastSeq: Math.max(row.maxSeq ?? 0, row.snapSeq ?? 0),
        entries: row.entries,
        bytes: row.bytes ?? 0,
        snapshotBytes: row.snapBytes ?? 0
      }
      this.#states.set(sessionId, state)
    }
    return state
  }

  #assertUsable (sessionId: string, state: SessionState): void {
    if (state.quarantineReason !== undefined) {
      throw new StoreDamagedError(sessionId, `quarantined: ${state.quarantineReason}`)
    }
  }

  /**
   * Marks the session quarantined (durably), logs it once (session, row,
   * reason) and throws. The error says it was logged, so the server does not
   * log it a second time.
   */
  #quarantine (sessionId: string, reason: string, seq: number | undefined): never {
    this.#stmt.quarantine.run(reason, sessionId)
    const state = this.#state(sessionId)
    state.quarantineReason = reason
    const logged = this.#log !== silentLogger
    this.#log.error({ sessionId, ...(seq === undefined ? {} : { seq }), reason },
      'session quarantined: its stored state is damaged; other sessions are unaffected (see docs/data.md, Quarantined sessions)')
    throw new StoreDamagedError(sessionId, reason, { ...(seq === undefined ? {} : { seq }), logged })
  }
}

type Parsed = { ok: true; value: unknown } | { ok: false; problem: string }

function parseRow (sessionId: string, seq: number, body: unknown, crc: unknown): Parsed {
  if (typeof body !== 'string') return { ok: false, problem: 'body is not text' }
  if (typeof crc !== 'number' || crc !== rowChecksum(sessionId, seq, body)) return { ok: false, problem: 'checksum mismatch' }
  try {
    return { ok: true, value: JSON.parse(body) }
  } catch {
    return { ok: false, problem: 'body is not JSON' }
  }
}
