import Database from 'better-sqlite3'
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { DataDirLocked } from '../errors.js'
import { isProcessAlive } from '../process-alive.js'

/** The file whose lock marks a data directory as in use (an SQLite database used only for its lock). */
export const LOCK_FILE = 'mpac.lock'
/** The pid of the process holding the whole directory, for the message a second process prints. */
export const PID_FILE = 'mpac.pid'
/** Per-session locks of single-session coordinators sharing a directory. */
const SESSION_LOCKS = 'locks'

/** How long a refused process keeps trying when it cannot name a live holder (one starting right now). */
const SETTLE_MS = 1000

/** Another live process holds the data directory (or, for a single-session coordinator, its session). */
export class DataDirLockedError extends DataDirLocked {
  /** The first holder's pid, when it could be read. */
  readonly holderPid: number | undefined
  constructor (readonly dir: string, readonly holderPids: readonly number[], readonly sessionId?: string) {
    const who = holderPids.length === 0 ? 'pid unknown' : `pid${holderPids.length === 1 ? '' : 's'} ${holderPids.join(', ')}`
    super(`the data directory ${dir} is in use by another coordinator${sessionId === undefined ? '' : ` for session ${sessionId}`} (${who}); only one process may serve it at a time`)
    this.name = 'DataDirLockedError'
    this.holderPid = holderPids[0]
  }
}

/**
 * An exclusive lock on a data directory, held until `release` or the end of
 * the process, however it ends.
 *
 * The locks are operating-system file locks (fcntl on POSIX) that SQLite
 * takes on `mpac.lock`. The kernel drops them when their holder dies,
 * crashed or killed, so a stale lock cannot exist and no pid guessing decides
 * who owns the directory: a dead holder's leftover files are taken over, a
 * live holder is never displaced (not even when its pid is reused by an
 * unrelated process). The pid files only name the holder in the refusal.
 *
 * Two scopes:
 * - the whole directory (a multi-session coordinator, `restore`): an
 *   exclusive lock on `mpac.lock`;
 * - one session (a single-session coordinator; the local sidecars of several
 *   projects share one data directory, each touching only its own session):
 *   a shared lock on `mpac.lock`, which keeps a whole-directory holder out,
 *   plus an exclusive lock on `locks/<hash of the session id>.lock`.
 *
 * This is separate from `mpac.db`'s own locking, which lets several
 * processes write the database one after another; that would let two
 * coordinators run the same sessions and corrupt each other's state.
 */
export class DataDirLock {
  readonly #dbs: Database.Database[]
  readonly dir: string

  private constructor (dir: string, dbs: Database.Database[]) {
    this.dir = dir
    this.#dbs = dbs
  }

  /**
   * Takes the whole directory (no `sessionId`) or one session of it, or
   * throws `DataDirLockedError` when another process (or another store in
   * this process) holds it.
   */
  static acquire (dir: string, sessionId?: string): DataDirLock {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    const deadline = Date.now() + SETTLE_MS
    for (;;) {
      const held = sessionId === undefined ? tryWhole(dir) : trySession(dir, sessionId)
      if (held !== undefined) return new DataDirLock(dir, held)
      // Refused. Name a live holder; when none can be named yet (it is writing
      // its pid file, or two processes started at the same instant and each
      // blocked the other's upgrade), try again for a moment.
      const pids = holders(dir, sessionId)
      if (pids.length > 0 || Date.now() > deadline) throw new DataDirLockedError(dir, pids, sessionId)
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20 + Math.floor(Math.random() * 40))
    }
  }

  /** Lets the next process take the directory (the pid files may stay: without the lock they mean nothing). */
  release (): void {
    for (const db of this.#dbs.splice(0).reverse()) {
      if (db.open) db.close()
    }
  }
}

/** The exclusive lock on `file` (kept after the commit: exclusive locking mode), or undefined when busy. */
function tryExclusive (file: string, pidFile: string): Database.Database | undefined {
  const db = new Database(file, { timeout: 0 })
  try {
    db.pragma('locking_mode = EXCLUSIVE')
    db.pragma('journal_mode = TRUNCATE')
    db.exec('BEGIN EXCLUSIVE')
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL, since INTEGER NOT NULL)')
    db.exec('DELETE FROM holder')
    db.prepare('INSERT INTO holder (pid, since) VALUES (?, ?)').run(process.pid, Date.now())
    db.exec('COMMIT')
    const tmp = `${pidFile}.${process.pid}.tmp`
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 })
    renameSync(tmp, pidFile)
    return db
  } catch (err) {
    db.close()
    if (isBusy(err)) return undefined
    throw err
  }
}

/** A shared lock on `file`: an open read transaction holds it. Undefined when an exclusive holder has it. */
function tryShared (file: string): Database.Database | undefined {
  const db = new Database(file, { timeout: 0 })
  try {
    db.exec('BEGIN')
    db.prepare('SELECT count(*) FROM sqlite_master').get()
    return db
  } catch (err) {
    db.close()
    if (isBusy(err)) return undefined
    throw err
  }
}

function tryWhole (dir: string): Database.Database[] | undefined {
  const db = tryExclusive(join(dir, LOCK_FILE), join(dir, PID_FILE))
  return db === undefined ? undefined : [db]
}

function trySession (dir: string, sessionId: string): Database.Database[] | undefined {
  const shared = tryShared(join(dir, LOCK_FILE))
  if (shared === undefined) return undefined
  try {
    mkdirSync(join(dir, SESSION_LOCKS), { recursive: true, mode: 0o700 })
    const base = join(dir, SESSION_LOCKS, sessionLockName(sessionId))
    const own = tryExclusive(`${base}.lock`, `${base}.pid`)
    if (own === undefined) {
      shared.close()
      return undefined
    }
    return [shared, own]
  } catch (err) {
    shared.close()
    throw err
  }
}

/** A file name for a session id (ids may hold characters a file name must not, and up to 128 of them). */
function sessionLockName (sessionId: string): string {
  return createHash('sha256').update(sessionId).digest('hex').slice(0, 32)
}

/**
 * The live pids that may be holding what was refused: the whole-directory
 * holder, else (for the whole directory) the single-session holders, or
 * (for a session) that session's holder.
 */
function holders (dir: string, sessionId: string | undefined): number[] {
  const whole = readPid(join(dir, PID_FILE))
  if (whole !== undefined && isProcessAlive(whole)) return [whole]
  let files: string[]
  if (sessionId !== undefined) {
    files = [join(dir, SESSION_LOCKS, `${sessionLockName(sessionId)}.pid`)]
  } else {
    try {
      files = readdirSync(join(dir, SESSION_LOCKS)).filter(f => f.endsWith('.pid')).map(f => join(dir, SESSION_LOCKS, f))
    } catch {
      files = []
    }
  }
  const pids = files.map(readPid).filter((pid): pid is number => pid !== undefined && isProcessAlive(pid))
  return [...new Set(pids)]
}

function readPid (file: string): number | undefined {
  try {
    const text = readFileSync(file, 'utf8').trim()
    return /^\d+$/.test(text) ? Number(text) : undefined
  } catch {
    return undefined
  }
}

function isBusy (err: unknown): boolean {
  const code = (err as { code?: string }).code
  return code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED'
}
