/**
 * Issue 12 item 1: `mpac-mcp-sidecar backup --to FILE` (online, verified) and
 * `restore --from FILE` (refused while a coordinator holds the directory;
 * the previous database kept aside), through the real CLI and real servers.
 */
import Database from 'better-sqlite3'
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/process.js'
import { runSidecarCli, startSidecar } from '../helpers/sidecar.js'
import { announce, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

const summaryOf = async (url: string): Promise<Frame> => {
  const probe = await TestClient.connect(url)
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = (await probe.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  probe.close()
  return s
}
const intentIds = (s: Frame): string[] => (s.active_intents as Frame[]).map(i => String(i.intent_id)).sort()

t.test('backup while the server runs, restore into a fresh directory, the sessions come back', async t => {
  const dirA = tempDir(t, 'mpac-backup-a-')
  const dirB = join(tempDir(t, 'mpac-backup-b-'), 'data')
  const out = tempDir(t, 'mpac-backup-out-')
  const env = { HOME: tempDir(t, 'mpac-backup-home-'), LOG_LEVEL: 'warn' }
  const a = await startSidecar(t, ['--data-dir', dirA], env)
  const clients: TestClient[] = []
  for (const id of ['alpha', 'beta']) {
    const { client } = await joined(`${a.url}/session/${id}`, 'agent:a')
    await client.request(announce('agent:a', `i-${id}`, [`${id}.txt`], id))
    clients.push(client)
  }
  t.teardown(() => { for (const c of clients) c.close() })

  const file = join(out, 'mpac-backup.db')
  const made = await runSidecarCli(['backup', '--to', file, '--data-dir', dirA], env)
  t.equal(made.code, 0, `backup exits 0 while the coordinator runs (${made.stderr})`)
  t.match(made.stdout, `backed up ${join(dirA, 'mpac.db')} to ${file}: 2 sessions, `)
  t.match(made.stdout, /journal rows?, \d+ snapshots?, \d+ bytes; integrity ok/)
  t.equal(statSync(file).mode & 0o777, 0o600, 'the copy is readable by its owner only')
  t.same(readdirSync(out), ['mpac-backup.db'], 'no temporary file left behind')
  const db = new Database(file, { readonly: true })
  t.same(db.prepare('SELECT session_id FROM sessions ORDER BY session_id').pluck().all(), ['alpha', 'beta'])
  db.close()

  const again = await runSidecarCli(['backup', `--to=${file}`], { ...env, MPAC_DATA_DIR: dirA })
  t.equal(again.code, 0, 'MPAC_DATA_DIR works, and a verified copy replaces an older one')

  const busy = await runSidecarCli(['restore', '--from', file, '--data-dir', dirA], env)
  t.equal(busy.code, 1, 'restore is refused while a coordinator holds the directory')
  t.match(busy.stderr, `refusing to restore: the data directory ${dirA} is in use by another coordinator (pid ${a.pid})`)
  t.equal((await summaryOf(`${a.url}/session/alpha`)).active_intent_count, 1, 'and the running coordinator is untouched')

  const restored = await runSidecarCli(['restore', '--from', file, '--data-dir', dirB], env)
  t.equal(restored.code, 0, `restore into a fresh directory (${restored.stderr})`)
  t.match(restored.stdout, `restored ${file} into ${join(dirB, 'mpac.db')}: 2 sessions`)
  t.equal(statSync(join(dirB, 'mpac.db')).mode & 0o777, 0o600)

  const b = await startSidecar(t, ['--data-dir', dirB], env)
  for (const id of ['alpha', 'beta']) {
    t.same(intentIds(await summaryOf(`${b.url}/session/${id}`)), [`i-${id}`], `${id}: its intent came back`)
    const { client, info } = await joined(`${b.url}/session/${id}`, 'agent:a')
    t.equal(info.coordinator_epoch, 2, `${id}: HELLO resumes the session in a new epoch, with its history`)
    client.close()
  }
  t.equal(await b.stop(), 0)

  // Restoring over an existing database keeps it aside.
  const emptyBackup = join(out, 'other.db')
  const c = await startSidecar(t, ['--data-dir', join(out, 'c')], env)
  const { client: cc } = await joined(`${c.url}/session/gamma`, 'agent:a')
  cc.close()
  t.equal(await c.stop(), 0)
  t.equal((await runSidecarCli(['backup', '--to', emptyBackup, '--data-dir', join(out, 'c')], env)).code, 0)
  const over = await runSidecarCli(['restore', '--from', emptyBackup, '--data-dir', dirB], env)
  t.equal(over.code, 0)
  const aside = readdirSync(dirB).filter(f => f.startsWith('mpac.db.before-restore-'))
  t.equal(aside.length, 1, 'the previous database is kept aside')
  t.match(over.stdout, `the previous database is kept as ${join(dirB, aside[0] as string)}`)
  t.notOk(existsSync(join(dirB, 'mpac.db-wal')) && statSync(join(dirB, 'mpac.db-wal')).size > 0, 'no old WAL next to the restored database')
  const old = new Database(join(dirB, aside[0] as string), { readonly: true })
  t.same(old.prepare('SELECT session_id FROM sessions ORDER BY session_id').pluck().all(), ['alpha', 'beta'], 'the aside copy is whole')
  old.close()
  const now = new Database(join(dirB, 'mpac.db'), { readonly: true })
  t.same(now.prepare('SELECT session_id FROM sessions').pluck().all(), ['gamma'])
  now.close()
})

t.test('backup of a directory without a database fails and creates nothing', async t => {
  const env = { HOME: tempDir(t, 'mpac-backup-home-') }
  const out = tempDir(t, 'mpac-backup-out-')
  const empty = tempDir(t, 'mpac-backup-empty-')
  for (const dir of [empty, join(empty, 'missing')]) {
    const file = join(out, 'b.db')
    const r = await runSidecarCli(['backup', '--to', file, '--data-dir', dir], env)
    t.equal(r.code, 1, `${dir}: exit 1`)
    t.match(r.stderr, `no database at ${join(dir, 'mpac.db')} (data directory from --data-dir); nothing was backed up`)
    t.same(readdirSync(out), [], 'no backup file')
  }
  t.same(readdirSync(empty), [], 'and nothing in the data directory')
  const byDefault = await runSidecarCli(['backup', '--to', join(out, 'b.db')], env)
  t.equal(byDefault.code, 1)
  t.match(byDefault.stderr, `no database at ${join(env.HOME, '.local', 'state', 'mpac-mcp', 'server', 'mpac.db')} (data directory from the default data directory)`)
})

t.test('restore verifies the file first and changes nothing when it is not a sound database', async t => {
  const env = { HOME: tempDir(t, 'mpac-backup-home-') }
  const out = tempDir(t, 'mpac-backup-out-')
  const dir = join(out, 'data')
  const junk = join(out, 'junk.db')
  writeFileSync(junk, 'this is not a database')
  const r = await runSidecarCli(['restore', '--from', junk, '--data-dir', dir], env)
  t.equal(r.code, 1)
  t.match(r.stderr, `mpac-mcp-sidecar restore: ${junk} is not an SQLite database`)
  t.notOk(existsSync(dir), 'the data directory was not touched')
  const other = join(out, 'other.db')
  new Database(other).exec('CREATE TABLE t (x)')
  const r2 = await runSidecarCli(['restore', '--from', other, '--data-dir', dir], env)
  t.equal(r2.code, 1)
  t.match(r2.stderr, 'is not an mpac-mcp database (no sessions table)')
  const missing = await runSidecarCli(['restore', '--data-dir', dir], env)
  t.equal(missing.code, 2, 'bad arguments exit 2')
  t.match(missing.stderr, '--from FILE is required')
})

// Runs only as root (as `fly ssh console` and `sudo` do): restore then gives its files to the directory's owner.
t.test('restore run as root hands the files it creates to the data directory owner', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async t => {
  const { chownSync, mkdirSync } = await import('node:fs')
  const env = { HOME: tempDir(t, 'mpac-backup-home-') }
  const out = tempDir(t, 'mpac-backup-out-')
  const src = join(out, 'src')
  const s = new Database(join(out, 'b.db'))
  s.exec('CREATE TABLE sessions (session_id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, closed_at INTEGER, quarantined INTEGER NOT NULL DEFAULT 0, quarantine_reason TEXT); CREATE TABLE journal (session_id TEXT, seq INTEGER, body TEXT, crc INTEGER); CREATE TABLE snapshots (session_id TEXT, seq INTEGER, body TEXT, crc INTEGER)')
  s.close()
  mkdirSync(src, { mode: 0o700 })
  chownSync(src, 1000, 1000)
  const r = await runSidecarCli(['restore', '--from', join(out, 'b.db'), '--data-dir', src], env)
  t.equal(r.code, 0, r.stderr)
  for (const f of ['mpac.db', 'mpac.lock', 'mpac.pid']) t.equal(statSync(join(src, f)).uid, 1000, `${f} belongs to the directory's owner`)
})
