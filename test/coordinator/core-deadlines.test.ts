/**
 * nextDeadline(): the earliest time at which tick() does something, for every
 * timer source; a tick just before it changes nothing, a tick at it acts.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { CoordinatorSnapshot } from '../../src/coordinator/types.js'
import { Harness, T0, entitySet, payloadsOfType, type Tap } from '../helpers/mpac.js'

const LONG = { unavailabilityTimeoutSec: 10_000, heartbeatIntervalSec: 10_000, resolutionTimeoutSec: 0 }

function idleBefore (t: Tap, h: Harness, at: number): void {
  const r = h.apply({ kind: 'tick', now: at - 1 })
  t.same(r.outputs, [], 'nothing just before the deadline')
  t.equal(r.changed, false, 'an idle tick changes nothing')
}

t.test('COORDINATOR_STATUS heartbeat is due one interval after the first input', async t => {
  const h = new Harness({ heartbeatIntervalSec: 30, unavailabilityTimeoutSec: 10_000 })
  t.equal(h.c.nextDeadline(), undefined, 'nothing before the first input')
  const first = h.tick()
  t.equal(first.changed, true, 'the first input starts the session clock')
  t.equal(h.c.nextDeadline(), T0 + 30_000)
  idleBefore(t, h, T0 + 30_000)
  const r = h.apply({ kind: 'tick', now: T0 + 30_000 })
  t.match(payloadsOfType(r, 'COORDINATOR_STATUS'), [{ event: 'heartbeat', session_health: 'healthy', open_conflicts: 0, active_participants: 0 }])
  t.equal(h.c.nextDeadline(), T0 + 60_000)
})

t.test('intent TTL: expires at received + ttl; an update moves it; stale heap entries are skipped', async t => {
  const h = new Harness(LONG)
  h.join('A')
  h.announce('A', 'i', ['a.py'], { ttl_sec: 10 })
  t.equal(h.c.nextDeadline(), T0 + 10_000)
  h.update('A', 'i', { ttl_sec: 20 })
  t.equal(h.c.nextDeadline(), T0 + 20_000, 'the old deadline no longer counts')
  idleBefore(t, h, T0 + 20_000)
  h.apply({ kind: 'tick', now: T0 + 20_000 })
  t.equal(h.intentState('i'), 'EXPIRED')
  t.equal(h.c.nextDeadline(), T0 + 10_000_000, 'only the status heartbeat remains')
})

t.test('legacy expiry_ms and the configured default TTL', async t => {
  const h = new Harness({ ...LONG, defaultIntentTtlSec: 5 })
  h.join('A')
  h.announce('A', 'i', ['a.py'], { expiry_ms: 2500 })
  h.announce('A', 'j', ['b.py'])
  t.equal(h.intent('i')?.expires_at, T0 + 2500)
  t.equal(h.intent('j')?.expires_at, T0 + 5000)
  t.equal(h.c.nextDeadline(), T0 + 2500)
})

t.test('deferral TTL', async t => {
  const h = new Harness(LONG)
  h.join('A')
  h.defer('A', { deferral_id: 'd', scope: entitySet('e'), ttl_sec: 3 })
  t.equal(h.c.nextDeadline(), T0 + 3000)
  idleBefore(t, h, T0 + 3000)
  const r = h.apply({ kind: 'tick', now: T0 + 3000 })
  t.match(payloadsOfType(r, 'INTENT_DEFERRED'), [{ deferral_id: 'd', status: 'expired', reason: 'ttl' }])
})

t.test('liveness: strictly after last_seen + timeout; offline participants are exempt', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10, heartbeatIntervalSec: 10_000, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.heartbeat('B', 'offline')
  t.equal(h.c.nextDeadline(), T0 + 10_001)
  idleBefore(t, h, T0 + 10_001)
  const r = h.apply({ kind: 'tick', now: T0 + 10_001 })
  t.match(payloadsOfType(r, 'PROTOCOL_ERROR'), [{ error_code: 'PARTICIPANT_UNAVAILABLE', principal_id: 'A' }])
  t.equal(h.c.nextDeadline(), T0 + 10_000_000)
})

t.test('resolution timeout: strictly after created + timeout; once per conflict', async t => {
  const h = new Harness({ resolutionTimeoutSec: 5, unavailabilityTimeoutSec: 10_000, heartbeatIntervalSec: 10_000 })
  h.join('A', 'B')
  h.announce('A', 'i-a', entitySet('e'))
  h.announce('B', 'i-b', entitySet('e'))
  t.equal(h.c.nextDeadline(), T0 + 5001)
  idleBefore(t, h, T0 + 5001)
  const r = h.apply({ kind: 'tick', now: T0 + 5001 })
  t.match(payloadsOfType(r, 'PROTOCOL_ERROR'), [{ error_code: 'RESOLUTION_TIMEOUT' }])
  t.equal(h.c.nextDeadline(), T0 + 10_000_000, 'reported once')
  t.same(payloadsOfType(h.apply({ kind: 'tick', now: T0 + 9_000_000 }), 'PROTOCOL_ERROR'), [])
})

t.test('core claim grace', async t => {
  const h = new Harness({ intentClaimGraceSec: 7, unavailabilityTimeoutSec: 1, heartbeatIntervalSec: 10_000, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'])
  h.clock.advance(0.5)
  h.heartbeat('B')
  h.clock.advance(0.6)
  h.tick()
  t.equal(h.intentState('i'), 'SUSPENDED')
  h.heartbeat('B', 'offline')
  h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
  const at = h.now + 7000
  t.equal(h.c.nextDeadline(), at)
  idleBefore(t, h, at)
  const r = h.apply({ kind: 'tick', now: at })
  t.match(payloadsOfType(r, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c1', decision: 'approved' }])
})

t.test('governance claims wait for an approver, not for time; a closed session has no deadline', async t => {
  const h = new Harness({ complianceProfile: 'governance', unavailabilityTimeoutSec: 1, heartbeatIntervalSec: 10_000, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'])
  h.clock.advance(0.5)
  h.heartbeat('B', 'offline')
  h.clock.advance(0.6)
  h.tick()
  h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
  t.equal(h.c.nextDeadline(), T0 + 10_000_000)
  h.close()
  t.equal(h.c.nextDeadline(), undefined)
  t.same(h.tick(100).outputs, [], 'no timers after close')
})

t.test('TTL expiries due at the same time cascade in registration order, before and after a restore', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.announce('A', 'i0', ['f0.py'], { ttl_sec: 10 })
  h.propose('B', 'o0', 'f0.py', 'i0')
  h.announce('A', 'i1', ['f1.py'], { ttl_sec: 5 })
  h.propose('B', 'o1', 'f1.py', 'i1')
  h.announce('A', 'i2', ['f2.py'], { ttl_sec: 10 })
  h.propose('B', 'o2', 'f2.py', 'i2')
  // Same deadline again: the heap now holds a stale entry for i0.
  h.update('A', 'i0', { ttl_sec: 10 })
  const restored = Coordinator.restore(JSON.parse(JSON.stringify(h.snap())) as CoordinatorSnapshot, h.config)
  const tick = { kind: 'tick', now: T0 + 10_000 } as const
  const cont = h.c.apply(tick)
  const rest = restored.apply(tick)
  const order = (r: typeof cont): unknown[] => payloadsOfType(r, 'OP_REJECT').map(p => p.op_id)
  t.same(order(cont), ['o1', 'o0', 'o2'], 'earliest deadline first, then registration order')
  t.same(order(rest), order(cont), 'a restored coordinator emits the same order')
  t.same(rest.outputs, cont.outputs, 'identical outputs')
})
