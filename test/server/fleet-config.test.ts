/**
 * Fleet-mode settings (`--store postgres` and the lease): defaults, sources
 * (flag, MPAC_* variable, DATABASE_URL), validation, and what the sidecar
 * does with them today.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { helpText, loadServerConfig } from '../../src/server/config.js'

const env = { HOME: '/home/u' }
const URL_A = 'postgres://mpac@db.internal:5432/mpac'

function ok (argv: string[], e: Record<string, string> = {}) {
  const r = loadServerConfig(argv, { ...env, ...e })
  if (!r.ok) throw new Error(`${r.error.setting}: ${r.error.message}`)
  return r.value
}

function bad (argv: string[], e: Record<string, string> = {}) {
  const r = loadServerConfig(argv, { ...env, ...e })
  if (r.ok) throw new Error(`expected an error for ${argv.join(' ')}`)
  return r.error
}

t.test('sqlite and memory stores have no fleet settings', async t => {
  t.equal(ok([]).fleet, undefined)
  t.equal(ok(['--store', 'memory']).fleet, undefined)
  t.equal(ok([], { DATABASE_URL: URL_A }).fleet, undefined, 'a platform\'s DATABASE_URL alone does not select the fleet')
  t.match(bad(['--lease-ttl', '5']), { setting: '--lease-ttl', message: 'only applies with --store postgres (fleet mode)' })
  t.match(bad([], { MPAC_DATABASE_URL: URL_A }), { setting: 'MPAC_DATABASE_URL', message: /only applies with --store postgres/ })
})

t.test('--store postgres: the database URL from the flag, MPAC_DATABASE_URL, else DATABASE_URL; defaults of §7', async t => {
  const c = ok(['--store', 'postgres', '--database-url', URL_A, '--port', '9000'])
  t.equal(c.store, 'postgres')
  t.same(c.fleet, {
    databaseUrl: URL_A,
    databaseListenUrl: URL_A,
    nodeId: `${hostname()}:9000`,
    nodeAddr: '127.0.0.1:9000',
    leaseTtlMs: 10_000,
    leaseRenewMs: 2_000,
    leaseMarginMs: 2_000,
    storeLanes: 4
  })
  t.equal(ok([], { MPAC_STORE: 'postgres', MPAC_DATABASE_URL: URL_A, DATABASE_URL: 'postgres://other/x' }).fleet?.databaseUrl, URL_A)
  t.equal(ok(['--store', 'postgres'], { DATABASE_URL: 'postgresql://fly@pgbouncer.flycast:5432/app' }).fleet?.databaseUrl,
    'postgresql://fly@pgbouncer.flycast:5432/app')
  t.equal(ok(['--store', 'postgres', '--database-url', URL_A], { FLY_MACHINE_ID: '3d8d9e1b' }).fleet?.nodeId, '3d8d9e1b', 'FLY_MACHINE_ID names the node')
  const all = ok(['--store', 'postgres', '--database-url', URL_A, '--database-listen-url', 'postgres://direct/x', '--node-id', 'n1',
    '--node-addr', '10.0.0.1:8766', '--lease-ttl', '3', '--lease-renew', '0.5', '--lease-margin', '0.5', '--store-lanes', '2'])
  t.same(all.fleet, {
    databaseUrl: URL_A,
    databaseListenUrl: 'postgres://direct/x',
    nodeId: 'n1',
    nodeAddr: '10.0.0.1:8766',
    leaseTtlMs: 3000,
    leaseRenewMs: 500,
    leaseMarginMs: 500,
    storeLanes: 2
  })
})

t.test('fleet settings are validated, naming the setting (and never echoing a URL)', async t => {
  const pg = ['--store', 'postgres', '--database-url', URL_A]
  t.match(bad(['--store', 'postgres']), { setting: '--database-url', message: /needs a database/ })
  t.match(bad(['--store', 'postgres', '--database-url', 'mysql://u:secret@h/db']), { setting: '--database-url', message: 'expected a postgres:// or postgresql:// URL, got a mysql:// URL' })
  t.match(bad(['--store', 'postgres'], { DATABASE_URL: 'not a url' }), { setting: 'DATABASE_URL', message: /it is not a URL/ })
  t.notOk(bad(['--store', 'postgres', '--database-url', 'mysql://u:secret@h/db']).message.includes('secret'))
  t.match(bad([...pg, '--lease-ttl', '5']), { setting: '--lease-ttl', message: 'the lease TTL (5 s) must be at least 3 × the renew interval (2 s)' })
  t.match(bad([...pg, '--lease-renew', '4']), { setting: '--lease-renew', message: /at least 3 × the renew interval \(4 s\)/ })
  t.match(bad([...pg, '--lease-margin', '8']), { setting: '--lease-margin', message: 'the lease margin (8 s) must be above 0 and below TTL − renew (8 s)' })
  t.match(bad([...pg, '--lease-ttl', '0']), { setting: '--lease-ttl', message: /positive/ })
  t.match(bad([...pg, '--store-lanes', '0']), { setting: '--store-lanes', message: /at least 1/ })
  t.match(bad([...pg, '--store-lanes', '65']), { setting: '--store-lanes', message: /at most 64/ })
  t.match(bad([...pg, '--node-id', 'has space']), { setting: '--node-id' })
  t.match(bad(['--store', 'postgres', '--database-url', URL_A, '--workspace', '/tmp']), { setting: '--store', message: /cannot be combined with --workspace/ })
  t.match(bad(['--store', 'mongo']), { setting: '--store', message: 'expected sqlite or memory or postgres, got "mongo"' })
})

t.test('--help lists the fleet settings', async t => {
  for (const flag of ['--database-url', '--database-listen-url', '--node-id', '--node-addr', '--lease-ttl', '--lease-renew', '--lease-margin', '--store-lanes']) {
    t.match(helpText(), flag)
  }
})

t.test('the sidecar with --store postgres and an unreachable database exits 1 with one line, never falling back to SQLite', async t => {
  const root = fileURLToPath(new URL('../..', import.meta.url))
  const home = mkdtempSync(join(tmpdir(), 'mpac-home-'))
  const child = spawn(process.execPath, ['--import', './scripts/ts-register.mjs', 'src/server/cli.ts', '--store', 'postgres', '--port', '0'],
    { cwd: root, env: { PATH: process.env.PATH, HOME: home, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', LOG_LEVEL: 'warn' } })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
  const code = await new Promise<number | null>(resolve => child.on('close', resolve))
  t.equal(code, 1)
  t.match(stderr, /^mpac-mcp-sidecar: cannot open the PostgreSQL store \(DATABASE_URL\): /)
  t.equal(stderr.trim().split('\n').length, 1, 'one line')
})
