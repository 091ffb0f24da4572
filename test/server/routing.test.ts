// The routing decision of fleet mode (src/server/routing.ts) against a fake
// ownership table standing in for the FleetStore's resolve / requestHandover /
// claim (the registry's acquire): serve, fly-replay (once, never for a
// replay), cooperative handover then claim, 503 after --claim-wait, 429 at a
// session limit. Time runs on an injected monotonic clock.
import t from 'tap'
import { Router, parseReplayFields, replayHeader, type AcquireResult, type RouterMode } from '../../src/server/routing.js'
import { FleetMetrics } from '../../src/server/metrics.js'
import type { NodeIdentity, SessionOwnership } from '../../src/store/index.js'

const ME: NodeIdentity = { nodeId: 'n1', incarnation: 3 }

interface Row { owner: NodeIdentity | undefined, live: boolean, epoch: number }

function world (mode: RouterMode, rows: Record<string, Row>, opts: { releaseAfterHandover?: boolean, limit?: boolean, expireAfterWaits?: number } = {}) {
  let clock = 0
  let waits = 0
  const served = new Set<string>()
  const handovers: Array<[string, string, number]> = []
  const claims: string[] = []
  const metrics = new FleetMetrics()
  const own = (sid: string): SessionOwnership | undefined => {
    const r = rows[sid]
    if (r === undefined) return undefined
    return { sessionId: sid, owner: r.owner, ownerLive: r.live, ownerAddr: r.owner === undefined ? undefined : `${r.owner.nodeId}:8766`, epoch: r.epoch, lastSeq: 0, clean: true, persisted: true, handoverTo: undefined, quarantined: false, closedAt: undefined }
  }
  const router = new Router({
    mode,
    node: () => ME,
    store: {
      resolve: async sid => own(sid),
      requestHandover: async (sid, node, epoch) => {
        handovers.push([sid, node.nodeId, epoch])
        if (opts.releaseAfterHandover === true) (rows[sid] as Row).owner = undefined
        return true
      }
    },
    isServedHere: sid => served.has(sid),
    acquire: async (sid): Promise<AcquireResult> => {
      claims.push(sid)
      if (opts.limit === true) return { ok: false, owner: undefined, reason: 'session limit', limit: true }
      const r = rows[sid]
      if (r !== undefined && r.owner !== undefined && r.live && r.owner.nodeId !== ME.nodeId) return { ok: false, owner: own(sid) }
      rows[sid] = { owner: ME, live: true, epoch: (r?.epoch ?? 0) + 1 }
      served.add(sid)
      return { ok: true }
    },
    waitForRelease: async (sid, ms) => {
      clock += ms
      if (++waits === opts.expireAfterWaits) (rows[sid] as Row).live = false
    },
    claimWaitMs: 2000,
    replayTimeoutMs: 2000,
    metrics,
    now: () => clock
  })
  return { router, served, handovers, claims, metrics, rows, elapsed: () => clock }
}

const OTHER: NodeIdentity = { nodeId: 'machine-b', incarnation: 1 }

t.test('a session loaded here is served without asking the store', async t => {
  const w = world('fly', {})
  w.served.add('s')
  t.same(await w.router.route('s', {}), { kind: 'serve' })
  t.same(w.claims, [])
})

t.test('an unowned, released or expired session is claimed and served', async t => {
  for (const row of [undefined, { owner: undefined, live: false, epoch: 4 }, { owner: OTHER, live: false, epoch: 7 }]) {
    const w = world('hash', row === undefined ? {} : { s: row })
    t.same(await w.router.route('s', {}), { kind: 'serve' })
    t.same(w.claims, ['s'])
    t.same(w.handovers, [], 'nobody is asked')
  }
})

t.test('fly: a live owner elsewhere gets a fly-replay (503) naming its Machine, the timeout and the epoch', async t => {
  const w = world('fly', { s1: { owner: OTHER, live: true, epoch: 7 } })
  const d = await w.router.route('s1', {})
  t.equal(d.kind, 'replay')
  const fields = parseReplayFields((d as { header: string }).header)
  t.same(fields, { instance: 'machine-b', timeout: '2s', fallback: 'prefer_self', state: 's1.7' })
  t.same(w.claims, [], 'no claim while the owner lives')
  t.equal(w.metrics.replays, 1)
})

t.test('fly: a request that already was replayed (or whose replay failed) is never replayed again', async t => {
  for (const header of ['fly-replay-src', 'fly-replay-failed']) {
    const w = world('fly', { s1: { owner: OTHER, live: true, epoch: 7 } }, { releaseAfterHandover: true })
    const d = await w.router.route('s1', { [header]: 'instance=machine-a;region=fra;t=1' })
    t.same(d, { kind: 'serve' }, `${header}: handed over, then claimed here`)
    t.same(w.handovers, [['s1', 'n1', 7]])
    t.equal(w.metrics.replays, 0)
  }
})

t.test('hash: a live owner elsewhere is asked to hand over; the upgrade is held, then claimed', async t => {
  const w = world('hash', { s1: { owner: OTHER, live: true, epoch: 2 } }, { releaseAfterHandover: true })
  t.same(await w.router.route('s1', {}), { kind: 'serve' })
  t.same(w.handovers, [['s1', 'n1', 2]])
  t.equal(w.rows.s1?.owner, ME)
  t.equal(w.metrics.handoversRequested, 1)
})

t.test('hash: an owner that does not release within --claim-wait → 503 with Retry-After', async t => {
  const w = world('hash', { s1: { owner: OTHER, live: true, epoch: 2 } })
  const d = await w.router.route('s1', {})
  t.equal(d.kind, 'unavailable')
  t.match((d as { reason: string }).reason, /did not release it within 2 s \(--claim-wait\)/)
  t.equal((d as { retryAfterSec: number }).retryAfterSec, 1)
  t.ok(w.elapsed() >= 2000 && w.elapsed() <= 2250, `waited --claim-wait (${w.elapsed()} ms)`)
  t.equal(w.metrics.routeUnavailable, 1)
})

t.test('hash: the owner\'s lease expires during the wait → claimed without a release', async t => {
  const w = world('hash', { s1: { owner: OTHER, live: true, epoch: 2 } }, { expireAfterWaits: 3 })
  t.same(await w.router.route('s1', {}), { kind: 'serve' })
  t.equal(w.elapsed(), 750, 'claimed at the first poll after the expiry')
})

t.test('none: a live owner is never asked, only waited for', async t => {
  const w = world('none', { s1: { owner: OTHER, live: true, epoch: 2 } })
  t.equal((await w.router.route('s1', {})).kind, 'unavailable')
  t.same(w.handovers, [])
})

t.test('a session limit at the claim → refused (429), no waiting', async t => {
  const w = world('hash', {}, { limit: true })
  t.same(await w.router.route('s1', {}, 'digest'), { kind: 'refused', reason: 'session limit' })
  t.equal(w.elapsed(), 0)
})

t.test('replayHeader formats sub-second timeouts in ms', async t => {
  t.equal(replayHeader('m1', 1500, 's', 3), 'instance=m1;timeout=1500ms;fallback=prefer_self;state=s.3')
})
