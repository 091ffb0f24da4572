import Database from 'better-sqlite3'
import { chownSync, closeSync, existsSync, fsyncSync, openSync, realpathSync, renameSync, statSync, unlinkSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { DATABASE_FILE, DataDirLock, DataDirLockedError, LOCK_FILE, PID_FILE } from '../store/index.js'
import { defaultDataDir } from './config.js'

/**
 * `mpac-mcp-sidecar backup --to FILE` and `restore --from FILE`: an online,
 * verified copy of the data directory's database, and putting one back.
 * Exit codes: 0 done, 1 failed (nothing changed), 2 bad arguments.
 */

export interface BackupCommandIo {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

const HELP = `Usage: mpac-mcp-sidecar backup --to FILE [--data-dir DIR]
       mpac-mcp-sidecar restore --from FILE [--data-dir DIR]

backup   copies DIR/mpac.db to FILE while the coordinator runs (one consistent
         snapshot), then checks the copy (integrity, every session of the
         source present) and prints what it holds. FILE is replaced only by a
         verified copy.
restore  checks FILE, then puts it in place as DIR/mpac.db. Refused while a
         coordinator uses DIR (stop it first). The previous database is kept
         as DIR/mpac.db.before-restore-<time>.

  --to FILE / --from FILE   the backup file
  --data-dir DIR            the coordinator's data directory (MPAC_DATA_DIR; default
                            $XDG_STATE_HOME/mpac-mcp/server, ~/.local/state when unset;
                            the local sidecars mpac-mcp starts use …/mpac-mcp/data)
  -h, --help                this help
`

class UsageError extends Error {}
class Failure extends Error {}

interface Args { readonly file: string, readonly dataDir: string, readonly dataDirFrom: string }

function parseArgs (argv: readonly string[], fileFlag: 'to' | 'from', env: NodeJS.ProcessEnv): Args | 'help' {
  let file: string | undefined
  let dataDir: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-h' || arg === '--help') return 'help'
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg : arg.slice(0, eq)
    if (name !== `--${fileFlag}` && name !== '--data-dir') throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`)
    let value: string | undefined
    if (eq !== -1) {
      value = arg.slice(eq + 1)
    } else {
      value = argv[i + 1]
      i++
    }
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`)
    if (name === '--data-dir') dataDir = value
    else file = value
  }
  if (file === undefined) throw new UsageError(`--${fileFlag} FILE is required`)
  const fromEnv = env.MPAC_DATA_DIR === undefined || env.MPAC_DATA_DIR === '' ? undefined : env.MPAC_DATA_DIR
  const chosen = dataDir ?? fromEnv
  return {
    file: resolve(file),
    dataDir: chosen === undefined ? join(defaultDataDir(env), 'server') : resolve(chosen),
    dataDirFrom: dataDir !== undefined ? '--data-dir' : fromEnv !== undefined ? 'MPAC_DATA_DIR' : 'the default data directory'
  }
}

/** What a database holds, after checking that it is a sound mpac-mcp database. */
interface Contents {
  readonly sessions: string[]
  readonly quarantined: number
  readonly journalRows: number
  readonly snapshots: number
}

/** Throws Failure unless `db` passes `PRAGMA integrity_check` and has the store's tables. */
function inspect (db: Database.Database, what: string): Contents {
  let tables: string[]
  try {
    tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[]
  } catch (err) {
    throw new Failure(`${what} is not an SQLite database (${(err as Error).message})`)
  }
  for (const table of ['sessions', 'journal', 'snapshots']) {
    if (!tables.includes(table)) throw new Failure(`${what} is not an mpac-mcp database (no ${table} table)`)
  }
  const integrity = db.pragma('integrity_check') as Array<{ integrity_check: string }>
  const problems = integrity.map(r => r.integrity_check).filter(r => r !== 'ok')
  if (problems.length > 0) throw new Failure(`${what} fails its integrity check: ${problems.slice(0, 3).join('; ')}`)
  return {
    sessions: db.prepare('SELECT session_id FROM sessions ORDER BY session_id').pluck().all() as string[],
    quarantined: db.prepare('SELECT COUNT(*) FROM sessions WHERE quarantined <> 0').pluck().get() as number,
    journalRows: db.prepare('SELECT COUNT(*) FROM journal').pluck().get() as number,
    snapshots: db.prepare('SELECT COUNT(*) FROM snapshots').pluck().get() as number
  }
}

function summary (c: Contents, bytes: number): string {
  return `${c.sessions.length} session${c.sessions.length === 1 ? '' : 's'}${c.quarantined > 0 ? ` (${c.quarantined} quarantined)` : ''}, ` +
    `${c.journalRows} journal row${c.journalRows === 1 ? '' : 's'}, ${c.snapshots} snapshot${c.snapshots === 1 ? '' : 's'}, ${bytes} bytes; integrity ok`
}

/** Opens an existing database file (never creates one). */
function openExisting (path: string, readonly: boolean): Database.Database {
  try {
    return new Database(path, { fileMustExist: true, readonly, timeout: 5000 })
  } catch (err) {
    throw new Failure(`cannot open ${path}: ${(err as Error).message}`)
  }
}

/** `VACUUM INTO` a new file with mode 0600, synced to disk. */
function copyInto (db: Database.Database, target: string): void {
  closeSync(openSync(target, 'wx', 0o600)) // VACUUM INTO accepts an empty file and keeps its mode.
  db.prepare('VACUUM INTO ?').run(target)
  syncFile(target)
}

function syncFile (path: string): void {
  const fd = openSync(path, 'r')
  try { fsyncSync(fd) } finally { closeSync(fd) }
}

function syncDir (path: string): void {
  try { syncFile(path) } catch { /* not supported everywhere (Windows) */ }
}

/**
 * Run as root (`fly ssh console`, `sudo`) for a directory owned by the
 * service user: hand the files this command created to that user, or the
 * coordinator could not open them.
 */
function matchOwner (dir: string, paths: readonly string[]): void {
  if (process.getuid?.() !== 0) return
  const { uid, gid } = statSync(dir)
  if (uid === 0) return
  for (const path of paths) {
    if (existsSync(path)) chownSync(path, uid, gid)
  }
}

function removeQuietly (path: string): void {
  try { unlinkSync(path) } catch { /* gone */ }
}

function samePath (a: string, b: string): boolean {
  const real = (p: string): string => { try { return realpathSync(p) } catch { return p } }
  return real(a) === real(b)
}

function backup (args: Args, io: BackupCommandIo): number {
  const source = join(args.dataDir, DATABASE_FILE)
  if (!existsSync(source)) {
    throw new Failure(`no database at ${source} (data directory from ${args.dataDirFrom}); nothing was backed up. Pass --data-dir DIR (or MPAC_DATA_DIR) as given to the sidecar`)
  }
  if (samePath(args.file, source) || samePath(args.file, `${source}-wal`)) throw new Failure(`--to ${args.file} is the database itself`)
  const db = openExisting(source, false)
  const tmp = `${args.file}.tmp-${process.pid}`
  try {
    const before = inspect(db, source).sessions
    // One read transaction: a consistent snapshot, while the coordinator keeps writing.
    try {
      copyInto(db, tmp)
    } catch (err) {
      throw new Failure(`cannot write ${tmp}: ${(err as Error).message}`)
    }
    const after = new Set(db.prepare('SELECT session_id FROM sessions').pluck().all() as string[])
    const copy = openExisting(tmp, true)
    let contents: Contents
    try {
      contents = inspect(copy, `the copy ${tmp}`)
    } finally {
      copy.close()
    }
    // A session may be purged (closed past its retention) while the copy runs; any other must be there.
    const held = new Set(contents.sessions)
    const missing = before.filter(id => after.has(id) && !held.has(id))
    if (missing.length > 0) throw new Failure(`the copy lacks ${missing.length} session(s) of the source: ${missing.slice(0, 5).join(', ')}`)
    renameSync(tmp, args.file)
    syncDir(dirname(args.file))
    io.stdout.write(`backed up ${source} to ${args.file}: ${summary(contents, statSync(args.file).size)}\n`)
    return 0
  } finally {
    db.close()
    removeQuietly(tmp)
  }
}

function restore (args: Args, io: BackupCommandIo): number {
  const target = join(args.dataDir, DATABASE_FILE)
  if (!existsSync(args.file)) throw new Failure(`no such file: ${args.file}`)
  if (samePath(args.file, target)) throw new Failure(`--from ${args.file} is the database of ${args.dataDir} itself`)
  const backupDb = openExisting(args.file, true)
  let contents: Contents
  try {
    contents = inspect(backupDb, args.file)
    const version = backupDb.pragma('user_version', { simple: true }) as number
    if (version > 1) throw new Failure(`${args.file} has schema version ${version}; this version of mpac-mcp reads 1`)
  } catch (err) {
    backupDb.close()
    throw err
  }

  let lock: DataDirLock
  try {
    lock = DataDirLock.acquire(args.dataDir)
  } catch (err) {
    backupDb.close()
    if (err instanceof DataDirLockedError) throw new Failure(`refusing to restore: ${err.message}; stop it first`)
    throw err
  }
  const tmp = `${target}.restore-tmp`
  try {
    removeQuietly(tmp)
    try {
      copyInto(backupDb, tmp)
    } finally {
      backupDb.close()
    }
    const copy = openExisting(tmp, true)
    try {
      const copied = inspect(copy, `the copy ${tmp}`)
      if (copied.sessions.join('\n') !== contents.sessions.join('\n')) throw new Failure(`the copy ${tmp} does not hold the sessions of ${args.file}`)
    } finally {
      copy.close()
    }
    matchOwner(args.dataDir, [tmp, join(args.dataDir, LOCK_FILE), join(args.dataDir, PID_FILE)])
    const aside = existsSync(target) ? setAside(target) : undefined
    renameSync(tmp, target)
    syncDir(args.dataDir)
    io.stdout.write(`restored ${args.file} into ${target}: ${summary(contents, statSync(target).size)}\n`)
    if (aside !== undefined) io.stdout.write(`the previous database is kept as ${aside}\n`)
    return 0
  } finally {
    removeQuietly(tmp)
    lock.release()
  }
}

/**
 * Moves the current database out of the way as one self-contained file: its
 * WAL is checkpointed into it first (a stale `-wal` next to the restored
 * database would be replayed into it). When it cannot be opened, its three
 * files are moved as they are.
 */
function setAside (target: string): string {
  const aside = `${target}.before-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`
  try {
    const old = new Database(target, { fileMustExist: true })
    try {
      old.pragma('wal_checkpoint(TRUNCATE)')
      old.pragma('journal_mode = DELETE')
    } finally {
      old.close()
    }
  } catch { /* damaged: move the files as found */ }
  renameSync(target, aside)
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(target + suffix)) renameSync(target + suffix, aside + suffix)
  }
  return aside
}

export function runBackupCommand (command: 'backup' | 'restore', argv: readonly string[], env: NodeJS.ProcessEnv, io: BackupCommandIo): number {
  let args: Args | 'help'
  try {
    args = parseArgs(argv, command === 'backup' ? 'to' : 'from', env)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(`mpac-mcp-sidecar ${command}: ${err.message} (see --help)\n`)
    return 2
  }
  if (args === 'help') {
    io.stdout.write(HELP)
    return 0
  }
  try {
    return command === 'backup' ? backup(args, io) : restore(args, io)
  } catch (err) {
    const message = err instanceof Failure ? err.message : (err as Error).message
    io.stderr.write(`mpac-mcp-sidecar ${command}: ${message.replace(/\s*\n\s*/g, ' ')}\n`)
    return 1
  }
}
