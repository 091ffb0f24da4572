// T3 of the scale-out design (§9.3): routing of 30 sessions × 3 agents to a
// fleet of three real sidecars on one throwaway PostgreSQL, on loopback:
// - through HAProxy (Debian's binary) running deploy/haproxy/haproxy.cfg
//   itself, with only the listen address and the three servers replaced;
// - through a stub of Fly Proxy's documented fly-replay behaviour
//   (test/helpers/fly-proxy.ts) with --router fly.
// Pass criteria: for every session, every connection terminates on the node
// named in mpac_sessions.owner_node (each node logs the connections it
// accepts, at debug level, with their session id); through the fly stub at
// most one replay per upgrade, and none when the first node is the owner.
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import pg from 'pg'
import { startFlyProxy } from '../helpers/fly-proxy.js'
import { PG_SKIP, startPostgres, type PgCluster } from '../helpers/postgres.js'
import { tempDir, type Teardown } from '../helpers/process.js'
import { startSidecar, type SidecarProcess } from '../helpers/sidecar.js'
import type { Tap } from '../helpers/mpac.js'
import { announce, joined, type TestClient } from '../helpers/ws.js'
import { freePort, ROOT } from './helpers.js'

const SESSIONS = 30
const AGENTS = 3
const haproxyMissing = spawnSync('haproxy', ['-v']).status !== 0

async function fleet (tt: Teardown, cluster: PgCluster, router: 'hash' | 'fly'): Promise<SidecarProcess[]> {
  const nodes: SidecarProcess[] = []
  for (const id of ['n1', 'n2', 'n3']) {
    nodes.push(await startSidecar(tt, ['--multi-session', '--store', 'postgres', '--database-url', cluster.url, '--node-id', id, '--router', router,
      '--lease-ttl', '3', '--lease-renew', '0.5', '--lease-margin', '0.5', '--claim-wait', '3', '--max-sessions-per-address', '1000', '--metrics-public'], { LOG_LEVEL: 'debug' }))
  }
  return nodes
}

/** Per node id: how many connections of each session it accepted (its debug log). */
function connectionsByNode (nodes: readonly SidecarProcess[]): Map<string, Map<string, number>> {
  const out = new Map<string, Map<string, number>>()
  nodes.forEach((n, i) => {
    const counts = new Map<string, number>()
    for (const line of n.lines) {
      if (!line.startsWith('{')) continue
      const rec = JSON.parse(line) as { msg?: string, sessionId?: string }
      if (rec.msg === 'connection opened' && rec.sessionId !== undefined) counts.set(rec.sessionId, (counts.get(rec.sessionId) ?? 0) + 1)
    }
    out.set(`n${i + 1}`, counts)
  })
  return out
}

async function owners (cluster: PgCluster): Promise<Map<string, string>> {
  const c = new pg.Client({ connectionString: cluster.url })
  await c.connect()
  try {
    const r = await c.query<{ session_id: string, owner_node: string }>('SELECT session_id, owner_node FROM mpac_sessions WHERE owner_node IS NOT NULL')
    return new Map(r.rows.map(row => [row.session_id, row.owner_node]))
  } finally {
    await c.end()
  }
}

/** 30 sessions × 3 agents through `base`; each agent announces once so every session is persisted. */
async function connectAll (base: string): Promise<TestClient[]> {
  const clients: TestClient[] = []
  for (let s = 0; s < SESSIONS; s++) {
    const sid = `route-${s}`
    for (let a = 0; a < AGENTS; a++) {
      const { client } = await joined(`${base}/session/${sid}`, `agent:${s}-${a}`)
      const echo = await client.request(announce(`agent:${s}-${a}`, `i-${s}-${a}`, [`f${s}-${a}.ts`], sid))
      if (echo.message_type !== 'INTENT_ANNOUNCE') throw new Error(`announce refused: ${JSON.stringify(echo)}`)
      clients.push(client)
    }
  }
  return clients
}

function checkPlacement (t: Tap, byNode: Map<string, Map<string, number>>, owner: Map<string, string>): void {
  let misplaced = 0
  for (let s = 0; s < SESSIONS; s++) {
    const sid = `route-${s}`
    const o = owner.get(sid)
    if (o === undefined) {
      t.fail(`${sid} has no owner in mpac_sessions`)
      continue
    }
    for (const [node, counts] of byNode) {
      const n = counts.get(sid) ?? 0
      if (node === o && n !== AGENTS) { misplaced++; t.fail(`${sid}: owner ${o} accepted ${n} of ${AGENTS} connections`) }
      if (node !== o && n !== 0) { misplaced++; t.fail(`${sid}: ${node} (not the owner ${o}) accepted ${n} connections`) }
    }
  }
  t.equal(misplaced, 0, `all ${SESSIONS * AGENTS} connections terminate on their session's owner`)
}


if (PG_SKIP !== false) {
  t.comment(`skipped: ${PG_SKIP}`)
  t.pass('skipped without PostgreSQL')
} else {
  t.test('HAProxy (deploy/haproxy/haproxy.cfg): every session\'s connections land on its owner', { skip: haproxyMissing ? 'haproxy is not installed (apt-get install haproxy)' : false }, async t => {
    const cluster = await startPostgres(t)
    const nodes = await fleet(t, cluster, 'hash')
    const dir = tempDir(t, 'mpac-haproxy-')
    const port = await freePort()
    const recipe = readFileSync(join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8')
    const servers = nodes.map((n, i) => `  server n${i + 1} 127.0.0.1:${n.port}`).join('\n')
    const cfg = recipe
      .replace(/^ {2}bind :8080$/m, `  bind 127.0.0.1:${port}`)
      .replace(/^ {2}server n1 .*\n {2}server n2 .*\n {2}server n3 .*$/m, servers)
    t.not(cfg, recipe, 'the recipe has the bind and server lines the test replaces')
    t.match(cfg, new RegExp(`server n3 127\\.0\\.0\\.1:${nodes[2]?.port ?? 0}`))
    const file = join(dir, 'haproxy.cfg')
    writeFileSync(file, cfg)
    const proxy = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    t.teardown(() => { proxy.kill('SIGKILL') })
    // Ready when an upgrade through it reaches a node's /readyz (the health checks also need a round).
    const deadline = Date.now() + 10_000
    for (;;) {
      try {
        if ((await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200) break
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error('HAProxy did not come up within 10 s')
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    const clients = await connectAll(`ws://127.0.0.1:${port}`)
    checkPlacement(t, connectionsByNode(nodes), await owners(cluster))
    const spread = [...connectionsByNode(nodes).values()].map(m => m.size)
    t.ok(spread.filter(n => n > 0).length >= 2, `the ring spreads sessions over the nodes (${spread.join('/')})`)
    for (const c of clients) c.close()
  })

  t.test('fly-replay (stub of Fly Proxy): every session\'s connections land on its owner, at most one replay each', async t => {
    const cluster = await startPostgres(t)
    const nodes = await fleet(t, cluster, 'fly')
    // Fly Proxy picks a Machine by load; the stub cycles through them so most upgrades start on a non-owner.
    const stub = await startFlyProxy(nodes.map((n, i) => ({ id: `n${i + 1}`, port: n.port })), n => n)
    t.teardown(() => stub.close())
    const clients = await connectAll(`ws://127.0.0.1:${stub.port}`)
    const owner = await owners(cluster)
    checkPlacement(t, connectionsByNode(nodes), owner)
    const upgrades = stub.routes.filter(r => r.path.startsWith('/session/'))
    t.equal(upgrades.length, SESSIONS * AGENTS)
    t.ok(upgrades.every(r => r.replays <= 1), 'at most one replay per upgrade')
    const direct = upgrades.filter(r => r.machines[0] === owner.get(r.path.slice('/session/'.length)))
    t.ok(direct.every(r => r.replays === 0), `no replay when the first Machine is the owner (${direct.length} such upgrades)`)
    t.ok(upgrades.some(r => r.replays === 1), 'upgrades that reached a non-owner were replayed')
    const replays = await Promise.all(nodes.map(async n => Number(/^mpac_replays_total (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${n.port}/metrics`)).text())?.[1] ?? NaN)))
    t.equal(replays.reduce((a, b) => a + b, 0), upgrades.reduce((a, r) => a + r.replays, 0), `mpac_replays_total counts them (${replays.join('/')})`)
    for (const c of clients) c.close()
  })
}
