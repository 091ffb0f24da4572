import pg from 'pg'
import type { CoreInput } from '../coordinator/types.js'
import { rowChecksum } from './checksum.js'
import {
  DEFAULT_STORE_LANES, FenceLostError, LeaseExpiredError, StoreUnavailableError,
  type AppendBatch, type AppendResult, type ClaimOptions, type ClaimReason, type ClaimResult, type FleetListener,
  type FleetStore, type FleetStoredSession, type HandoverRequest, type NodeIdentity, type NodeRegistration,
  type NodeSpec, type ReleaseOptions, type SessionOwnership
} from './fleet-types.js'
import { silentLogger, type QuarantinedSession, type StoreLogger } from './managed.js'
import { StoreDamagedError, type JournalStats } from './types.js'

/**
 * `FleetStore` on PostgreSQL through node-postgres (`pg`), the store of
 * fleet mode (docs/fleet.md). Contract and failure modes: `fleet-types.ts`.
 *
 * - Schema: the tables `mpac_nodes`, `mpac_sessions`, `mpac_journal`,
 *   `mpac_snapshots`, created and upgraded by the versioned `MIGRATIONS`
 *   (applied version in `mpac_schema_version`, under a transaction-scoped
 *   advisory lock so that nodes starting together migrate once). A database
 *   with a newer version than this build knows is refused.
 * - Every journal and snapshot row carries `rowChecksum` (as in SQLite); a
 *   row that fails it, or a missing row, quarantines that session only.
 * - Appends: one statement per lane batch (`APPEND_SQL`), conditional on
 *   the epoch and the journal tail of each session, inserting rows only for
 *   the sessions whose fence matched. At most one statement per lane is in
 *   flight (a promise chain per lane); snapshots of a session go through its
 *   lane too, so they are ordered with its appends.
 * - Connections: a pool of `lanes` connections for commits, a control pool
 *   of 2 (claims, loads, releases: never queued behind a commit), one
 *   connection for the node's lease (never queued behind a claim waiting on
 *   a row lock) and, for `watch`, one direct connection for LISTEN. Only unnamed statements are used, so a
 *   pooler in transaction mode (PgBouncer, the Fly MPG pooler) works for the
 *   pools; connections are recycled after 600 s and closed after 300 s idle.
 * - A commit whose connection broke is resolved by re-reading the tails on
 *   another connection (`#resolveAmbiguous`), never by blind resending.
 */

export interface PostgresStoreOptions {
  /** The (pooled) database URL: `--database-url`. */
  readonly url: string
  /** The direct URL for LISTEN (`--database-listen-url`); default `url`. */
  readonly listenUrl?: string
  /** `--store-lanes`: connections for commits (default 4). */
  readonly lanes?: number
  readonly logger?: StoreLogger
  /** How long an ambiguous commit may take to resolve before `StoreUnavailableError` (default 5000 ms). */
  readonly ambiguousRetryMs?: number
  /** Client-side bound on one query (default 15000 ms); a commit past it is ambiguous. */
  readonly queryTimeoutMs?: number
  /** Bound on opening one connection (default 5000 ms). */
  readonly connectTimeoutMs?: number
}

export { DEFAULT_STORE_LANES }

/** One schema step: `sql` runs inside the migration transaction. */
export interface Migration {
  readonly version: number
  readonly description: string
  readonly sql: string
}

/**
 * The schema's history; append new steps, never edit a shipped one. The
 * latest version is what this build reads and writes.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'nodes, sessions, journal, snapshots',
    sql: `
CREATE TABLE mpac_nodes (
  node_id     text PRIMARY KEY,
  incarnation bigint NOT NULL,
  addr        text NOT NULL,
  lease_until timestamptz NOT NULL,
  draining    boolean NOT NULL DEFAULT false,
  started_at  timestamptz NOT NULL DEFAULT now());
CREATE TABLE mpac_sessions (
  session_id  text PRIMARY KEY,
  owner_node  text,
  owner_inc   bigint,
  epoch       bigint NOT NULL DEFAULT 0,
  last_seq    bigint NOT NULL DEFAULT 0,
  clean       boolean NOT NULL DEFAULT true,
  persisted   boolean NOT NULL DEFAULT false,
  handover_to text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  closed_at   timestamptz,
  quarantined boolean NOT NULL DEFAULT false,
  quarantine_reason text);
CREATE TABLE mpac_journal (
  session_id text NOT NULL,
  seq        bigint NOT NULL,
  epoch      bigint NOT NULL,
  body       text NOT NULL,
  crc        bigint NOT NULL,
  PRIMARY KEY (session_id, seq));
CREATE TABLE mpac_snapshots (
  session_id text PRIMARY KEY,
  seq        bigint NOT NULL,
  epoch      bigint NOT NULL,
  body       text NOT NULL,
  crc        bigint NOT NULL);`
  },
  {
    version: 2,
    description: 'created_by for the fleet-wide per-token session quota; owner index for drains and handover polling',
    sql: `
ALTER TABLE mpac_sessions ADD COLUMN created_by text;
CREATE INDEX mpac_sessions_created_by ON mpac_sessions (created_by) WHERE created_by IS NOT NULL;
CREATE INDEX mpac_sessions_owner ON mpac_sessions (owner_node, owner_inc) WHERE owner_node IS NOT NULL;`
  }
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0

/** Any constant: the key of the advisory lock that serialises migrations across nodes. */
const MIGRATION_LOCK = 0x6d706163

/**
 * Applies the migrations after the database's version, up to `upTo`
 * (default: all), in one transaction. Returns the versions applied. Throws
 * when the database is newer than this build.
 */
export async function migrate (client: pg.ClientBase, upTo: number = SCHEMA_VERSION): Promise<number[]> {
  await client.query('BEGIN')
  try {
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK])
    await client.query('CREATE TABLE IF NOT EXISTS mpac_schema_version (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())')
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM mpac_schema_version')
    const current = r.rows[0]?.v ?? 0
    if (current > SCHEMA_VERSION) {
      throw new Error(`the database has mpac schema version ${current}; this version of mpac-mcp reads up to ${SCHEMA_VERSION}`)
    }
    const applied: number[] = []
    for (const m of MIGRATIONS) {
      if (m.version <= current || m.version > upTo) continue
      await client.query(m.sql)
      await client.query('INSERT INTO mpac_schema_version (version, description) VALUES ($1, $2)', [m.version, m.description])
      applied.push(m.version)
    }
    await client.query('COMMIT')
    return applied
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  }
}

// The fenced group commit (design §5.5): the UPDATE is the fence (row lock +
// re-evaluation of its WHERE under Read Committed); the INSERT takes only the
// rows of the sessions the UPDATE returned. One statement = one transaction.
const APPEND_SQL = `
WITH v AS (
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::boolean[]) AS v(id, epoch, old_seq, new_seq, persist)),
fence AS (
  UPDATE mpac_sessions s SET last_seq = v.new_seq, persisted = s.persisted OR v.persist FROM v
   WHERE s.session_id = v.id AND s.epoch = v.epoch AND s.last_seq = v.old_seq AND NOT s.quarantined
  RETURNING s.session_id),
ins AS (
  INSERT INTO mpac_journal (session_id, seq, epoch, body, crc)
  SELECT j.id, j.seq, j.epoch, j.body, j.crc
    FROM unnest($6::text[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[]) AS j(id, seq, epoch, body, crc)
    JOIN fence f ON f.session_id = j.id)
SELECT session_id FROM fence`

// A fenced snapshot: the no-op UPDATE locks the row and checks epoch and tail.
const SNAPSHOT_SQL = `
WITH fence AS (
  UPDATE mpac_sessions s SET last_seq = s.last_seq
   WHERE s.session_id = $1 AND s.epoch = $2 AND s.last_seq = $3 AND NOT s.quarantined
  RETURNING s.session_id),
up AS (
  INSERT INTO mpac_snapshots (session_id, seq, epoch, body, crc)
  SELECT f.session_id, $3, $2, $4, $5 FROM fence f
  ON CONFLICT (session_id) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch, body = excluded.body, crc = excluded.crc),
del AS (
  DELETE FROM mpac_journal j USING fence f WHERE j.session_id = f.session_id AND j.seq <= $3)
SELECT session_id FROM fence`

// Release: a persisted session loses its owner; a provisional one is deleted with whatever it stored.
const RELEASE_SQL = `
WITH d AS (
  DELETE FROM mpac_sessions WHERE session_id = $1 AND epoch = $2 AND NOT persisted RETURNING session_id),
dj AS (DELETE FROM mpac_journal j USING d WHERE j.session_id = d.session_id),
ds AS (DELETE FROM mpac_snapshots s USING d WHERE s.session_id = d.session_id),
u AS (
  UPDATE mpac_sessions SET owner_node = NULL, owner_inc = NULL, clean = $3, handover_to = NULL
   WHERE session_id = $1 AND epoch = $2 AND persisted RETURNING session_id),
x AS (SELECT session_id FROM d UNION ALL SELECT session_id FROM u)
SELECT pg_notify('mpac_released', x.session_id) FROM x`

const HANDOVER_SQL = `
WITH u AS (
  UPDATE mpac_sessions SET handover_to = $2 WHERE session_id = $1 AND epoch = $3 AND owner_node IS NOT NULL
  RETURNING session_id)
SELECT pg_notify('mpac_handover', json_build_object('s', u.session_id, 'to', $2::text)::text) FROM u`

// Retention, step 1 (in a transaction): lock the closed candidates, skipping rows another transaction holds.
const PURGE_LOCK_SQL = `
SELECT session_id FROM mpac_sessions
 WHERE closed_at IS NOT NULL AND closed_at < to_timestamp($1::double precision / 1000)
 FOR UPDATE SKIP LOCKED`

// Step 2, with the locks held (so nothing changes under it): delete those no live node owns. Not one
// statement with step 1: Read Committed would re-check a row claimed meanwhile against a stale join.
const PURGE_SQL = `
WITH victims AS (
  DELETE FROM mpac_sessions s WHERE s.session_id = ANY($1::text[])
     AND (s.owner_node IS NULL OR NOT EXISTS (SELECT 1 FROM mpac_nodes n WHERE n.node_id = s.owner_node
          AND n.incarnation = s.owner_inc AND n.lease_until > now()))
  RETURNING s.session_id),
dj AS (DELETE FROM mpac_journal j USING victims v WHERE j.session_id = v.session_id),
ds AS (DELETE FROM mpac_snapshots p USING victims v WHERE p.session_id = v.session_id)
SELECT session_id FROM victims`

const RESOLVE_SQL = `
SELECT s.session_id, s.owner_node, s.owner_inc, s.epoch, s.last_seq, s.clean, s.persisted, s.handover_to,
       s.quarantined, s.quarantine_reason, s.closed_at, n.addr, n.incarnation AS node_inc,
       (n.node_id IS NOT NULL AND n.incarnation = s.owner_inc AND n.lease_until > now()) AS live
  FROM mpac_sessions s LEFT JOIN mpac_nodes n ON n.node_id = s.owner_node
 WHERE s.session_id = $1`

interface ResolveRow {
  session_id: string
  owner_node: string | null
  owner_inc: string | null
  epoch: string
  last_seq: string
  clean: boolean
  persisted: boolean
  handover_to: string | null
  quarantined: boolean
  quarantine_reason: string | null
  closed_at: Date | null
  addr: string | null
  node_inc: string | null
  live: boolean | null
}

/** What the store counts per session it loaded (for `AppendResult.stats`). */
interface Counters { entries: number, bytes: number, snapshotBytes: number }

/** One session's part of a lane commit, serialised. */
interface Prepared {
  readonly batch: AppendBatch
  readonly newSeq: number
  readonly bodies: string[]
  readonly bytes: number
}

/** SQLSTATEs that mean the statement definitely did not commit (it was refused before or while running). */
function definitelyFailed (err: unknown): boolean {
  const code = (err as { code?: unknown }).code
  if (typeof code !== 'string' || code.length !== 5) return false
  // Class 08 (connection exception), 57P (operator intervention: shutdown, terminated backend) and 40003
  // (statement completion unknown) leave the outcome unknown; syntax, constraint, data errors do not.
  return !code.startsWith('08') && !code.startsWith('57P') && code !== '40003'
}

const num = (v: string | number | null | undefined): number => (v === null || v === undefined ? 0 : Number(v))

export class PostgresStore implements FleetStore {
  readonly lanes: number
  readonly #lanePool: pg.Pool
  readonly #controlPool: pg.Pool
  /** One connection for the node's lease alone: a renewal never waits behind claims or loads. */
  readonly #leasePool: pg.Pool
  readonly #listenConfig: pg.ClientConfig
  readonly #log: StoreLogger
  readonly #ambiguousRetryMs: number
  /** The tail of each lane's promise chain: at most one statement in flight per lane. */
  readonly #laneTail: Array<Promise<unknown>>
  readonly #counters = new Map<string, Counters>()
  readonly #watchers = new Set<() => Promise<void>>()
  #closed = false

  private constructor (options: PostgresStoreOptions) {
    this.lanes = options.lanes ?? DEFAULT_STORE_LANES
    if (!Number.isSafeInteger(this.lanes) || this.lanes < 1) throw new RangeError(`lanes must be a positive integer, got ${this.lanes}`)
    this.#log = options.logger ?? silentLogger
    this.#ambiguousRetryMs = options.ambiguousRetryMs ?? 5000
    const base: pg.PoolConfig = {
      connectionString: options.url,
      application_name: 'mpac-mcp',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      query_timeout: options.queryTimeoutMs ?? 15_000,
      keepAlive: true,
      // As Fly recommends for its pooler: recycle connections, drop idle ones.
      maxLifetimeSeconds: 600,
      idleTimeoutMillis: 300_000
    }
    this.#lanePool = new pg.Pool({ ...base, max: this.lanes })
    this.#controlPool = new pg.Pool({ ...base, max: 2 })
    this.#leasePool = new pg.Pool({ ...base, max: 1 })
    for (const pool of [this.#lanePool, this.#controlPool, this.#leasePool]) {
      // An idle connection that breaks (server restart, pooler recycling) is dropped by the pool; without a
      // listener the error event would crash the process.
      pool.on('error', err => { this.#log.warn({ err }, 'postgres: an idle connection failed; it was dropped') })
    }
    this.#listenConfig = {
      connectionString: options.listenUrl ?? options.url,
      application_name: 'mpac-mcp-listen',
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      keepAlive: true
    }
    this.#laneTail = Array.from({ length: this.lanes }, () => Promise.resolve())
  }

  /** Connects, creates or migrates the schema, and returns the store. */
  static async open (options: PostgresStoreOptions): Promise<PostgresStore> {
    const store = new PostgresStore(options)
    try {
      const client = await store.#connect(store.#controlPool)
      try {
        const applied = await migrate(client)
        if (applied.length > 0) store.#log.info({ applied, version: SCHEMA_VERSION }, 'postgres: schema migrated')
      } finally {
        client.release()
      }
    } catch (err) {
      await store.close()
      throw err
    }
    return store
  }

  laneOf (sessionId: string): number {
    // FNV-1a over UTF-16 code units: stable across processes and versions.
    let h = 0x811c9dc5
    for (let i = 0; i < sessionId.length; i++) {
      h ^= sessionId.charCodeAt(i)
      h = Math.imul(h, 0x01000193) >>> 0
    }
    return h % this.lanes
  }

  // ---- nodes -----------------------------------------------------------------

  async registerNode (node: NodeSpec): Promise<NodeRegistration> {
    const r = await this.#lease<{ incarnation: string, lease_until: Date }>(`
      INSERT INTO mpac_nodes (node_id, incarnation, addr, lease_until)
      VALUES ($1, 1, $2, now() + $3::double precision * interval '1 millisecond')
      ON CONFLICT (node_id) DO UPDATE SET incarnation = mpac_nodes.incarnation + 1, addr = excluded.addr,
        lease_until = excluded.lease_until, draining = false, started_at = now()
      RETURNING incarnation, lease_until`, [node.nodeId, node.addr, node.ttlMs])
    const row = r.rows[0]
    if (row === undefined) throw new StoreUnavailableError('registerNode returned no row')
    return { nodeId: node.nodeId, incarnation: num(row.incarnation), leaseUntil: row.lease_until.getTime() }
  }

  async renewNode (node: NodeIdentity, ttlMs: number): Promise<boolean> {
    const r = await this.#lease(`UPDATE mpac_nodes SET lease_until = now() + $3::double precision * interval '1 millisecond'
      WHERE node_id = $1 AND incarnation = $2`, [node.nodeId, node.incarnation, ttlMs])
    return r.rowCount === 1
  }

  async retireNode (node: NodeIdentity): Promise<boolean> {
    const r = await this.#lease('UPDATE mpac_nodes SET lease_until = now(), draining = true WHERE node_id = $1 AND incarnation = $2',
      [node.nodeId, node.incarnation])
    return r.rowCount === 1
  }

  // ---- ownership -------------------------------------------------------------

  async resolve (sessionId: string): Promise<SessionOwnership | undefined> {
    const r = await this.#control<ResolveRow>(RESOLVE_SQL, [sessionId])
    const row = r.rows[0]
    return row === undefined ? undefined : ownership(row)
  }

  async claim (sessionId: string, node: NodeIdentity, options: ClaimOptions = {}): Promise<ClaimResult> {
    // A provisional row deleted between our insert and our lock is simply claimed again (bounded: it takes a
    // release racing each attempt).
    for (let attempt = 0; ; attempt++) {
      const r = await this.#claimOnce(sessionId, node, options)
      if (r !== undefined) return r
      if (attempt >= 3) throw new StoreUnavailableError(`postgres: claim of session ${sessionId} kept racing its deletion`)
    }
  }

  async #claimOnce (sessionId: string, node: NodeIdentity, options: ClaimOptions): Promise<ClaimResult | undefined> {
    const client = await this.#connect(this.#controlPool)
    let broken: unknown
    try {
      await client.query('BEGIN')
      try {
        // A claimant whose own lease is not live could not keep the session (anyone may take it from an
        // expired lease at once): refuse, so that a lapsed or superseded node grabs (and creates) nothing.
        const me = await client.query('SELECT 1 FROM mpac_nodes WHERE node_id = $1 AND incarnation = $2 AND lease_until > now()',
          [node.nodeId, node.incarnation])
        if (me.rowCount !== 1) {
          await client.query('ROLLBACK')
          throw new LeaseExpiredError(node)
        }
        // Created provisional if missing; a concurrent creator of the same id waits here for the first.
        const created = await client.query('INSERT INTO mpac_sessions (session_id, created_by) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          [sessionId, options.createdBy ?? null])
        // The row lock orders this claim after any append or claim in flight (and any later one after it).
        // It is taken alone, and the state read by the next statement: a `FOR UPDATE OF s` on the join
        // would re-check a row updated meanwhile against the *old* join partner (Read Committed
        // re-evaluation keeps the NULL-extended node row of a then-unowned session), and two concurrent
        // claims of a new session would both succeed. The next statement's snapshot is taken after the
        // lock, so it sees the committed row and its owner's current lease. `now()` is the transaction's
        // start, so a lease is judged expired no earlier than it is.
        const locked = await client.query('SELECT 1 FROM mpac_sessions WHERE session_id = $1 FOR UPDATE', [sessionId])
        const r = locked.rowCount === 1 ? await client.query<ResolveRow>(RESOLVE_SQL, [sessionId]) : undefined
        const row = r?.rows[0]
        if (row === undefined) {
          // Deleted between the insert and the lock (a provisional session released): try again.
          await client.query('ROLLBACK')
          return undefined
        }
        const current = ownership(row)
        if (current.quarantined) {
          await client.query('ROLLBACK')
          throw new StoreDamagedError(sessionId, `quarantined: ${row.quarantine_reason ?? 'unknown'}`)
        }
        const reason = claimReason(current, row.node_inc === null ? undefined : num(row.node_inc), node, created.rowCount === 1)
        if (reason === undefined) {
          await client.query('ROLLBACK')
          return { ok: false, owner: current }
        }
        const u = await client.query<{ epoch: string }>(`UPDATE mpac_sessions SET owner_node = $2, owner_inc = $3, epoch = epoch + 1,
            handover_to = NULL, clean = false WHERE session_id = $1 RETURNING epoch`, [sessionId, node.nodeId, node.incarnation])
        await client.query('COMMIT')
        const epoch = num(u.rows[0]?.epoch)
        this.#counters.delete(sessionId)
        return { ok: true, reason, epoch, lastSeq: current.lastSeq, clean: current.clean, persisted: current.persisted }
      } catch (err) {
        if (!(err instanceof StoreDamagedError) && !(err instanceof LeaseExpiredError)) await client.query('ROLLBACK').catch(() => {})
        throw err
      }
    } catch (err) {
      if (!(err instanceof StoreDamagedError) && !(err instanceof LeaseExpiredError) && !definitelyFailed(err)) broken = err
      throw wrap(err, `claim of session ${sessionId}`)
    } finally {
      client.release(broken instanceof Error ? broken : undefined)
    }
  }

  async requestHandover (sessionId: string, node: NodeIdentity, epoch: number): Promise<boolean> {
    const r = await this.#control(HANDOVER_SQL, [sessionId, node.nodeId, epoch])
    return r.rowCount === 1
  }

  async release (sessionId: string, epoch: number, options: ReleaseOptions = {}): Promise<boolean> {
    const r = await this.#control(RELEASE_SQL, [sessionId, epoch, options.clean ?? false])
    if (r.rowCount === 1) this.#counters.delete(sessionId)
    return r.rowCount === 1
  }

  async handoverRequests (node: NodeIdentity): Promise<HandoverRequest[]> {
    const r = await this.#control<{ session_id: string, epoch: string, handover_to: string }>(`SELECT session_id, epoch, handover_to
      FROM mpac_sessions WHERE owner_node = $1 AND owner_inc = $2 AND handover_to IS NOT NULL ORDER BY session_id`,
    [node.nodeId, node.incarnation])
    return r.rows.map(row => ({ sessionId: row.session_id, epoch: num(row.epoch), to: row.handover_to }))
  }

  async ownedSessions (node: NodeIdentity): Promise<string[]> {
    const r = await this.#control<{ session_id: string }>(
      'SELECT session_id FROM mpac_sessions WHERE owner_node = $1 AND owner_inc = $2 ORDER BY session_id', [node.nodeId, node.incarnation])
    return r.rows.map(row => row.session_id)
  }

  async watch (listener: FleetListener): Promise<() => Promise<void>> {
    let stopped = false
    let client: pg.Client | undefined
    let retry: NodeJS.Timeout | undefined
    const onNotification = (msg: pg.Notification): void => {
      const payload = msg.payload ?? ''
      if (msg.channel === 'mpac_released') listener.released?.(payload)
      else if (msg.channel === 'mpac_handover') {
        try {
          const parsed = JSON.parse(payload) as { s?: unknown, to?: unknown }
          if (typeof parsed.s === 'string' && typeof parsed.to === 'string') listener.handover?.(parsed.s, parsed.to)
        } catch {
          this.#log.warn({ payload }, 'postgres: an mpac_handover notification that is not ours was ignored')
        }
      }
    }
    const connect = async (): Promise<void> => {
      const c = new pg.Client(this.#listenConfig)
      c.on('notification', onNotification)
      c.on('error', err => { lost(c, err) })
      c.on('end', () => { lost(c, new Error('the listening connection ended')) })
      try {
        await c.connect()
        await c.query('LISTEN mpac_handover')
        await c.query('LISTEN mpac_released')
      } catch (err) {
        await c.end().catch(() => {})
        throw err
      }
      if (stopped) await c.end().catch(() => {})
      else client = c
    }
    const reconnect = (delay: number): void => {
      retry = setTimeout(() => {
        retry = undefined
        if (stopped) return
        connect().catch((err: unknown) => {
          listener.error?.(err instanceof Error ? err : new Error(String(err)))
          reconnect(Math.min(delay * 2, 5000))
        })
      }, delay)
      retry.unref()
    }
    // Only the connection in use counts: a failed attempt or an old connection ending is not news.
    const lost = (c: pg.Client, err: Error): void => {
      if (stopped || client !== c) return
      client = undefined
      c.end().catch(() => {})
      listener.error?.(err)
      reconnect(500)
    }
    await connect()
    const stop = async (): Promise<void> => {
      stopped = true
      if (retry !== undefined) clearTimeout(retry)
      this.#watchers.delete(stop)
      const c = client
      client = undefined
      await c?.end().catch(() => {})
    }
    this.#watchers.add(stop)
    return stop
  }

  // ---- journal and snapshots ---------------------------------------------------

  async load (sessionId: string, epoch: number): Promise<FleetStoredSession | undefined> {
    const client = await this.#connect(this.#controlPool)
    let broken: Error | undefined
    let damage: { reason: string, seq: number | undefined } | undefined
    try {
      let result: FleetStoredSession | undefined
      // One consistent view of the row, the snapshot and the journal.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
      try {
        const s = await client.query<ResolveRow>(
          'SELECT epoch, last_seq, persisted, quarantined, quarantine_reason FROM mpac_sessions WHERE session_id = $1', [sessionId])
        const row = s.rows[0]
        if (row === undefined) {
          await client.query('COMMIT')
          return undefined
        }
        if (row.quarantined) throw new StoreDamagedError(sessionId, `quarantined: ${row.quarantine_reason ?? 'unknown'}`)
        if (num(row.epoch) !== epoch) throw new FenceLostError(sessionId, epoch)
        const lastSeq = num(row.last_seq)
        const snap = await client.query<{ seq: string, body: string, crc: string }>(
          'SELECT seq, body, crc FROM mpac_snapshots WHERE session_id = $1', [sessionId])
        let snapshot: unknown
        let base = 0
        let snapshotBytes = 0
        const srow = snap.rows[0]
        if (srow !== undefined) {
          base = num(srow.seq)
          const parsed = parseRow(sessionId, base, srow.body, srow.crc)
          if (!parsed.ok) damage = { reason: `snapshot at seq ${base}: ${parsed.problem}`, seq: base }
          else {
            snapshot = parsed.value
            snapshotBytes = Buffer.byteLength(srow.body)
          }
        }
        const journal: CoreInput[] = []
        let bytes = 0
        if (damage === undefined) {
          if (base > lastSeq) damage = { reason: `snapshot at seq ${base} is past the journal tail ${lastSeq}`, seq: base }
          const j = await client.query<{ seq: string, body: string, crc: string }>(
            'SELECT seq, body, crc FROM mpac_journal WHERE session_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq', [sessionId, base, lastSeq])
          let expected = base + 1
          for (const jr of j.rows) {
            if (damage !== undefined) break
            const seq = num(jr.seq)
            if (seq !== expected) {
              damage = { reason: `journal entry ${expected} is missing (found ${seq})`, seq: expected }
              break
            }
            const parsed = parseRow(sessionId, seq, jr.body, jr.crc)
            if (!parsed.ok) {
              damage = { reason: `journal entry ${seq}: ${parsed.problem}`, seq }
              break
            }
            journal.push(parsed.value as CoreInput)
            bytes += Buffer.byteLength(jr.body)
            expected++
          }
          // Every row up to last_seq was committed with the fence that advanced it: a missing tail is damage.
          if (damage === undefined && expected !== lastSeq + 1) damage = { reason: `journal entry ${expected} is missing (the tail is ${lastSeq})`, seq: expected }
        }
        await client.query('COMMIT')
        if (damage === undefined) {
          this.#counters.set(sessionId, { entries: journal.length, bytes, snapshotBytes })
          result = { snapshot, snapshotSeq: base, journal, lastSeq, persisted: row.persisted }
        }
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
      if (damage !== undefined) return await this.#quarantine(client, sessionId, damage.reason, damage.seq)
      return result
    } catch (err) {
      if (err instanceof StoreDamagedError || err instanceof FenceLostError) throw err
      if (!definitelyFailed(err)) broken = err instanceof Error ? err : new Error(String(err))
      throw wrap(err, `load of session ${sessionId}`)
    } finally {
      client.release(broken)
    }
  }

  async appendBatch (batches: readonly AppendBatch[]): Promise<AppendResult> {
    const byLane = new Map<number, Prepared[]>()
    const seen = new Set<string>()
    for (const batch of batches) {
      if (seen.has(batch.sessionId)) throw new RangeError(`appendBatch: two batches for session ${batch.sessionId}`)
      seen.add(batch.sessionId)
      if (batch.inputs.length === 0) throw new RangeError(`appendBatch: an empty batch for session ${batch.sessionId}`)
      const bodies = batch.inputs.map(input => JSON.stringify(input))
      let bytes = 0
      for (const b of bodies) bytes += Buffer.byteLength(b)
      const lane = this.laneOf(batch.sessionId)
      let list = byLane.get(lane)
      if (list === undefined) byLane.set(lane, list = [])
      list.push({ batch, newSeq: batch.fromSeq + bodies.length, bodies, bytes })
    }
    const results = await Promise.all([...byLane].map(async ([lane, prepared]) => await this.#onLane(lane, async () => await this.#commitLane(prepared))))
    const committed: string[] = []
    const lost: string[] = []
    const stats = new Map<string, JournalStats>()
    let ambiguous = 0
    for (const r of results) {
      ambiguous += r.ambiguous
      lost.push(...r.lost)
      for (const p of r.committed) {
        committed.push(p.batch.sessionId)
        const c = this.#counters.get(p.batch.sessionId) ?? { entries: 0, bytes: 0, snapshotBytes: 0 }
        c.entries += p.bodies.length
        c.bytes += p.bytes
        this.#counters.set(p.batch.sessionId, c)
        stats.set(p.batch.sessionId, { entriesSinceSnapshot: c.entries, bytesSinceSnapshot: c.bytes, snapshotBytes: c.snapshotBytes })
      }
    }
    for (const id of lost) this.#counters.delete(id)
    return { committed, lost, stats, ambiguous }
  }

  async saveSnapshot (sessionId: string, epoch: number, seq: number, snapshot: unknown): Promise<boolean> {
    const body = JSON.stringify(snapshot)
    if (typeof body !== 'string') throw new TypeError('snapshot is not JSON-serialisable')
    return await this.#onLane(this.laneOf(sessionId), async () => {
      const r = await this.#query(this.#lanePool, SNAPSHOT_SQL, [sessionId, epoch, seq, body, rowChecksum(sessionId, seq, body)], `snapshot of session ${sessionId}`)
      if (r.rowCount !== 1) return false
      this.#counters.set(sessionId, { entries: 0, bytes: 0, snapshotBytes: Buffer.byteLength(body) })
      return true
    })
  }

  async markClosed (sessionId: string, epoch: number, at: number): Promise<boolean> {
    const r = await this.#control('UPDATE mpac_sessions SET closed_at = to_timestamp($3::double precision / 1000) WHERE session_id = $1 AND epoch = $2',
      [sessionId, epoch, at])
    return r.rowCount === 1
  }

  async purgeClosed (olderThan: number): Promise<string[]> {
    const client = await this.#connect(this.#controlPool)
    let ids: string[]
    let broken: Error | undefined
    try {
      await client.query('BEGIN')
      try {
        const locked = await client.query<{ session_id: string }>(PURGE_LOCK_SQL, [olderThan])
        const r = await client.query<{ session_id: string }>(PURGE_SQL, [locked.rows.map(row => row.session_id)])
        await client.query('COMMIT')
        ids = r.rows.map(row => row.session_id).sort()
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
    } catch (err) {
      if (!definitelyFailed(err)) broken = err instanceof Error ? err : new Error(String(err))
      throw wrap(err, 'purge of closed sessions')
    } finally {
      client.release(broken)
    }
    for (const id of ids) {
      this.#counters.delete(id)
      this.#log.info({ sessionId: id }, 'deleted a closed session past its retention')
    }
    return ids
  }

  async listQuarantined (): Promise<QuarantinedSession[]> {
    const r = await this.#control<{ session_id: string, quarantine_reason: string | null }>(
      'SELECT session_id, quarantine_reason FROM mpac_sessions WHERE quarantined ORDER BY session_id')
    return r.rows.map(row => ({ sessionId: row.session_id, reason: row.quarantine_reason ?? 'unknown' }))
  }

  async countSessionsCreatedBy (createdBy: string): Promise<number> {
    const r = await this.#control<{ n: string }>(
      'SELECT count(*) AS n FROM mpac_sessions WHERE created_by = $1 AND persisted AND closed_at IS NULL', [createdBy])
    return num(r.rows[0]?.n)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await Promise.all([...this.#watchers].map(async stop => { await stop() }))
    await Promise.allSettled(this.#laneTail)
    await Promise.all([this.#lanePool.end(), this.#controlPool.end(), this.#leasePool.end()])
    this.#counters.clear()
  }

  // ---- internals ---------------------------------------------------------------

  /** Runs `fn` after the lane's previous statement settled (at most one in flight per lane). */
  async #onLane<T> (lane: number, fn: () => Promise<T>): Promise<T> {
    const prev = this.#laneTail[lane] ?? Promise.resolve()
    const next = prev.then(fn, fn)
    this.#laneTail[lane] = next.catch(() => {})
    return await next
  }

  /** One lane's commit, with the ambiguous outcome resolved. */
  async #commitLane (prepared: readonly Prepared[]): Promise<{ committed: Prepared[], lost: string[], ambiguous: number }> {
    let pending = [...prepared]
    const committed: Prepared[] = []
    const lost: string[] = []
    let ambiguous = 0
    const deadline = performance.now() + this.#ambiguousRetryMs
    let delay = 50
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt > 0) {
        // Not the first try: the previous outcome is unknown (or a resend met a tail moved by the orphaned
        // first statement). Decide from what the database holds, on another connection.
        const tails = await this.#readTails(pending.map(p => p.batch.sessionId), deadline)
        const resend: Prepared[] = []
        for (const p of pending) {
          const t = tails.get(p.batch.sessionId)
          // A quarantined session's fence never matches: it is lost, not resent.
          if (t === undefined || t.epoch !== p.batch.epoch || t.quarantined) lost.push(p.batch.sessionId)
          else if (t.lastSeq === p.newSeq) committed.push(p)
          else if (t.lastSeq === p.batch.fromSeq) resend.push(p)
          else lost.push(p.batch.sessionId)
        }
        pending = resend
        if (pending.length === 0) break
        if (performance.now() >= deadline) throw new StoreUnavailableError('postgres: commit (outcome unknown): could not be resolved in time')
      }
      let rows: string[]
      try {
        rows = await this.#appendStatement(pending)
      } catch (err) {
        if (attempt === 0) ambiguous++
        this.#log.warn({ err, sessions: pending.length, attempt }, 'postgres: a commit failed or its outcome is unknown; reading the journal tails to decide')
        if (performance.now() >= deadline) throw wrap(err, 'commit (outcome unknown)')
        await sleep(delay)
        delay = Math.min(delay * 2, 1000)
        continue
      }
      const ok = new Set(rows)
      const rest: Prepared[] = []
      for (const p of pending) {
        if (ok.has(p.batch.sessionId)) committed.push(p)
        else if (attempt === 0) lost.push(p.batch.sessionId)
        else rest.push(p)
      }
      pending = rest
    }
    return { committed, lost, ambiguous }
  }

  async #appendStatement (pending: readonly Prepared[]): Promise<string[]> {
    const ids: string[] = []; const epochs: number[] = []; const olds: number[] = []; const news: number[] = []; const persist: boolean[] = []
    const jIds: string[] = []; const jSeqs: number[] = []; const jEpochs: number[] = []; const jBodies: string[] = []; const jCrcs: number[] = []
    for (const p of pending) {
      const { sessionId, epoch, fromSeq } = p.batch
      ids.push(sessionId); epochs.push(epoch); olds.push(fromSeq); news.push(p.newSeq); persist.push(p.batch.persist ?? false)
      for (let k = 0; k < p.bodies.length; k++) {
        const seq = fromSeq + k + 1
        const body = p.bodies[k] as string
        jIds.push(sessionId); jSeqs.push(seq); jEpochs.push(epoch); jBodies.push(body); jCrcs.push(rowChecksum(sessionId, seq, body))
      }
    }
    const client = await this.#connect(this.#lanePool)
    let broken: Error | undefined
    try {
      const r = await client.query<{ session_id: string }>(APPEND_SQL, [ids, epochs, olds, news, persist, jIds, jSeqs, jEpochs, jBodies, jCrcs])
      return r.rows.map(row => row.session_id)
    } catch (err) {
      // A broken connection must not go back to the pool.
      if (!definitelyFailed(err)) broken = err instanceof Error ? err : new Error(String(err))
      throw err
    } finally {
      client.release(broken)
    }
  }

  async #readTails (ids: readonly string[], deadline: number): Promise<Map<string, { epoch: number, lastSeq: number, quarantined: boolean }>> {
    let delay = 50
    for (;;) {
      try {
        const r = await this.#controlPool.query<{ session_id: string, epoch: string, last_seq: string, quarantined: boolean }>(
          'SELECT session_id, epoch, last_seq, quarantined FROM mpac_sessions WHERE session_id = ANY($1::text[])', [ids])
        return new Map(r.rows.map(row => [row.session_id, { epoch: num(row.epoch), lastSeq: num(row.last_seq), quarantined: row.quarantined }]))
      } catch (err) {
        if (performance.now() >= deadline) throw wrap(err, 'commit (outcome unknown; the journal tails could not be read)')
        await sleep(delay)
        delay = Math.min(delay * 2, 1000)
      }
    }
  }

  /**
   * Checks a connection out. While checked out, the pool does not listen for
   * its errors; a connection that breaks then (server gone, proxy cut) would
   * emit an unhandled 'error' and end the process, so we listen until release.
   */
  async #connect (pool: pg.Pool): Promise<pg.PoolClient> {
    let client: pg.PoolClient
    try {
      client = await pool.connect()
    } catch (err) {
      throw wrap(err, 'connect')
    }
    const onError = (err: Error): void => { this.#log.warn({ err }, 'postgres: a connection in use failed') }
    client.on('error', onError)
    const release = client.release.bind(client)
    client.release = (err?: Error | boolean) => {
      client.removeListener('error', onError)
      release(err)
    }
    return client
  }

  async #lease<R extends pg.QueryResultRow = pg.QueryResultRow> (sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return await this.#query<R>(this.#leasePool, sql, params, 'lease query')
  }

  async #control<R extends pg.QueryResultRow = pg.QueryResultRow> (sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    return await this.#query<R>(this.#controlPool, sql, params, 'query')
  }

  async #query<R extends pg.QueryResultRow = pg.QueryResultRow> (pool: pg.Pool, sql: string, params: unknown[], what: string): Promise<pg.QueryResult<R>> {
    try {
      // pool.query releases a failed connection with its error, so the pool discards it.
      return await pool.query<R>(sql, params)
    } catch (err) {
      throw wrap(err, what)
    }
  }

  /** Marks the session quarantined (not fenced: damage is damage), logs it once and throws. */
  async #quarantine (client: pg.PoolClient, sessionId: string, reason: string, seq: number | undefined): Promise<never> {
    await client.query('UPDATE mpac_sessions SET quarantined = true, quarantine_reason = $2 WHERE session_id = $1', [sessionId, reason])
    this.#counters.delete(sessionId)
    const logged = this.#log !== silentLogger
    this.#log.error({ sessionId, ...(seq === undefined ? {} : { seq }), reason },
      'session quarantined: its stored state is damaged; other sessions are unaffected (see docs/data.md, Quarantined sessions)')
    throw new StoreDamagedError(sessionId, reason, { ...(seq === undefined ? {} : { seq }), logged })
  }
}

function ownership (row: ResolveRow): SessionOwnership {
  return {
    sessionId: row.session_id,
    owner: row.owner_node === null ? undefined : { nodeId: row.owner_node, incarnation: num(row.owner_inc) },
    ownerLive: row.owner_node !== null && row.live === true,
    ownerAddr: row.addr ?? undefined,
    epoch: num(row.epoch),
    lastSeq: num(row.last_seq),
    clean: row.clean,
    persisted: row.persisted,
    handoverTo: row.handover_to ?? undefined,
    quarantined: row.quarantined,
    closedAt: row.closed_at === null ? undefined : row.closed_at.getTime()
  }
}

/**
 * Why `node` may claim a session in state `s` (`nodeInc`: the incarnation
 * the owner's node row has now, undefined when it has none); undefined when a
 * live owner holds it.
 */
function claimReason (s: SessionOwnership, nodeInc: number | undefined, node: NodeIdentity, created: boolean): ClaimReason | undefined {
  if (s.owner === undefined) return created || s.epoch === 0 ? 'new' : 'released'
  if (s.owner.nodeId === node.nodeId && s.owner.incarnation === node.incarnation) return 'reclaim'
  if (s.ownerLive) return undefined
  return nodeInc === s.owner.incarnation ? 'expired' : 'restart'
}

type Parsed = { ok: true, value: unknown } | { ok: false, problem: string }

function parseRow (sessionId: string, seq: number, body: unknown, crc: unknown): Parsed {
  if (typeof body !== 'string') return { ok: false, problem: 'body is not text' }
  if (num(crc as string) !== rowChecksum(sessionId, seq, body)) return { ok: false, problem: 'checksum mismatch' }
  try {
    return { ok: true, value: JSON.parse(body) }
  } catch {
    return { ok: false, problem: 'body is not JSON' }
  }
}

function wrap (err: unknown, what: string): Error {
  if (err instanceof StoreDamagedError || err instanceof FenceLostError || err instanceof StoreUnavailableError || err instanceof LeaseExpiredError) return err
  const detail = err instanceof Error ? err.message : String(err)
  return new StoreUnavailableError(`postgres: ${what} failed: ${detail}`, { cause: err })
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}
