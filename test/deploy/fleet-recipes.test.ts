/**
 * The fleet recipes must agree with the server: deploy/fly-fleet/fly.toml is
 * read and fed (with the image's environment and what `fly mpg attach` and
 * Fly's runtime add) to the real `loadServerConfig`; its health path is
 * requested from the real app; deploy/haproxy/haproxy.cfg is checked for the
 * routing the fleet depends on and validated by HAProxy itself; the README
 * walks through the commands the design names.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/server/app.js'
import { DEFAULT_PORT, loadServerConfig } from '../../src/server/config.js'
import { createLogger } from '../../src/server/logger.js'
import { openStore } from '../../src/store/index.js'
import { dockerStages, parseDockerfile, parseToml, ROOT, stageEnv, type Env, type TomlTable } from './helpers.js'

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')
const instructions = parseDockerfile(read('Dockerfile'))
const stages = dockerStages(instructions)
const runtime = stages[stages.length - 1]
if (runtime === undefined) throw new Error('Dockerfile has no stage')
const imageEnv = stageEnv(instructions, runtime.index)
const stopSignal = instructions.find(i => i.stage === runtime.index && i.keyword === 'STOPSIGNAL')?.args
const cmd = JSON.parse(instructions.find(i => i.stage === runtime.index && i.keyword === 'CMD')?.args ?? '[]') as string[]

const fly = parseToml(read('deploy/fly-fleet/fly.toml'))
const httpService = fly.http_service as TomlTable
const flyEnv = fly.env as Env
const tokenTable = JSON.stringify({ 'tok-test': { allowed_sessions: ['*'] } })
/** What Fly adds at run time: the secret from `fly mpg attach`, the Machine id. */
const flyRuntime = { DATABASE_URL: 'postgres://fly-user:secret@pgbouncer.example.flympg.net:5432/fly_db', FLY_MACHINE_ID: '3d8d9e1b2c4e58', MPAC_TOKEN_TABLE: tokenTable }

function seconds (v: unknown): number {
  if (typeof v === 'number') return v
  const m = /^(\d+)(s|m)$/.exec(String(v))
  if (m === null) throw new Error(`not a duration: ${String(v)}`)
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1)
}

t.test('fly-fleet/fly.toml: N Machines on PostgreSQL, no volume, fly-replay routing', async t => {
  t.equal(fly.mounts, undefined, 'no volume: the sessions live in PostgreSQL')
  t.equal(flyEnv.MPAC_STORE, 'postgres')
  t.equal(flyEnv.MPAC_ROUTER, 'fly')
  t.notOk('MPAC_DATA_DIR' in flyEnv)
  t.ok(Number(httpService.min_machines_running) >= 2, 'at least two Machines run (failover)')
  t.equal(httpService.auto_stop_machines, 'off', 'an owner never sleeps')
  t.equal(httpService.internal_port, DEFAULT_PORT)
  t.equal(Number(flyEnv.MPAC_SIDECAR_PORT), httpService.internal_port)
  t.equal((httpService.concurrency as TomlTable).type, 'connections')
  const checks = httpService.checks as TomlTable[]
  t.equal(checks.length, 1)
  t.match(checks[0], { method: 'GET', path: '/readyz' }, 'the check is readiness (lease + PostgreSQL), not liveness')
  t.equal(fly.kill_signal, stopSignal, 'stops with the signal the server handles (release, then exit)')
  t.ok(seconds(fly.kill_timeout) >= 10 && seconds(fly.kill_timeout) <= 300)
  t.equal((fly.deploy as TomlTable).strategy, 'rolling')
  for (const key of Object.keys(flyEnv)) t.notMatch(key, /TOKEN|DATABASE_URL|PASSWORD/, `no secret in [env]: ${key}`)

  const loaded = loadServerConfig(cmd, { ...imageEnv, ...flyEnv, ...flyRuntime })
  if (!loaded.ok) throw new Error(`${loaded.error.setting}: ${loaded.error.message}`)
  const c = loaded.value
  t.equal(c.store, 'postgres')
  t.match(c.fleet, { databaseUrl: flyRuntime.DATABASE_URL, nodeId: flyRuntime.FLY_MACHINE_ID }, 'DATABASE_URL from `fly mpg attach`; the lease identity is the Machine id (what fly-replay names)')
  t.match(c.routing, { router: 'fly', replayTimeoutSec: Number(flyEnv.MPAC_REPLAY_TIMEOUT), claimWaitSec: Number(flyEnv.MPAC_CLAIM_WAIT) })
  t.ok(c.routing.replayTimeoutSec < c.routing.claimWaitSec, 'a failed replay falls back before the claim wait ends')
  t.match(c, { mode: 'multi', tlsByProxy: true, trustProxy: 1 })
  t.ok(c.allowedHosts.includes(`${String(fly.app)}.fly.dev`), 'the app\'s public name is an allowed Host')

  const withoutDb = loadServerConfig(cmd, { ...imageEnv, ...flyEnv, MPAC_TOKEN_TABLE: tokenTable })
  t.equal(withoutDb.ok, false, 'without `fly mpg attach` (no DATABASE_URL) the Machine refuses to start')
})

t.test('fly-fleet: the health check path is a route of the app', async t => {
  const loaded = loadServerConfig(cmd, { ...imageEnv, ...flyEnv, MPAC_TOKEN_TABLE: tokenTable, MPAC_STORE: 'memory' })
  if (!loaded.ok) throw new Error(loaded.error.message)
  const logger = createLogger('silent')
  const app = buildApp(loaded.value, { store: openStore({ store: 'memory', logger }), logger })
  t.teardown(() => app.close())
  const path = String((httpService.checks as TomlTable[])[0]?.path)
  t.equal((await app.inject({ method: 'GET', url: path })).statusCode, 200, `GET ${path} is a route of the app`)
})

t.test('haproxy.cfg: consistent hashing of the session path, readiness checks, WebSocket timeouts', async t => {
  const cfg = read('deploy/haproxy/haproxy.cfg').split('\n').map(l => l.replace(/#.*$/, '').trim()).filter(l => l !== '')
  const backend = cfg.slice(cfg.findIndex(l => l.startsWith('backend ')))
  t.ok(backend.includes('balance uri'), 'balance uri: hashes /session/<id> (the query string excluded)')
  t.ok(backend.includes('hash-type consistent'), 'only a dead node\'s sessions move')
  t.ok(backend.includes('option httpchk GET /readyz'), 'health checks on /readyz')
  const defaultsServer = backend.find(l => l.startsWith('default-server')) ?? ''
  t.match(defaultsServer, /\bcheck\b/)
  t.match(defaultsServer, /on-marked-down shutdown-sessions/, 'a node marked down has its WebSockets cut (clients reconnect at once)')
  t.match(defaultsServer, /\brise [2-9]\b/, 'rise ≥ 2 damps flapping')
  t.ok(backend.filter(l => l.startsWith('server ')).length >= 3, 'three nodes')
  const timeouts = new Map(cfg.filter(l => l.startsWith('timeout ')).map(l => l.split(/\s+/).slice(1) as [string, string]))
  for (const k of ['tunnel', 'client', 'server']) t.match(timeouts.get(k) ?? '', /^\d+h$/, `timeout ${k} in hours (WebSockets live long)`)
  t.ok(Number(/^(\d+)s$/.exec(timeouts.get('http-request') ?? '')?.[1]) > 5, 'an upgrade may be held for the default --claim-wait (5 s)')
  const check = spawnSync('haproxy', ['-c', '-f', join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg')], { encoding: 'utf8' })
  if (check.error !== undefined) t.comment('haproxy is not installed: syntax not checked by HAProxy')
  else t.equal(check.status, 0, `haproxy -c accepts it: ${check.stdout}${check.stderr}`)
})

t.test('fly-fleet README: the steps the fleet needs, and the staging checklist', async t => {
  const readme = read('deploy/fly-fleet/README.md')
  for (const step of ['fly mpg create', 'fly mpg attach', 'fly secrets set', 'MPAC_TOKEN_TABLE', 'fly deploy --config deploy/fly-fleet/fly.toml', 'fly scale count 3', '/readyz', 'fly machine stop', 'fly machine kill', 'SHOW synchronous_commit', 'MPAC_DATABASE_LISTEN_URL']) {
    t.ok(readme.includes(step), `mentions ${step}`)
  }
  t.match(readme, /## Staging checklist/)
})
