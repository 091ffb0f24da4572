/**
 * protocol.md §14 scenarios 48–49: session close, COORDINATOR_STATUS,
 * snapshot and recovery. (Scenario 50 belongs to the server tests.)
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { ApplyResult, CoordinatorSnapshot } from '../../src/coordinator/types.js'
import {
  Harness,
  assertNoOutput,
  assertRejected,
  entitySet,
  outputsOfType,
  payloadOf,
  payloadsOfType,
  show,
  terminalOf,
  typeOf,
  matchEach
} from '../helpers/mpac.js'
import type { Json } from '../helpers/mpac.js'

const SUMMARY_KEYS = [
  'total_intents', 'completed_intents', 'expired_intents', 'withdrawn_intents',
  'total_operations', 'committed_operations', 'rejected_operations', 'abandoned_operations',
  'total_conflicts', 'resolved_conflicts', 'total_participants', 'duration_sec'
]

t.test('48. close and coordinator status', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  h.propose('B', 'op-b', 'b.py', 'i-b')
  h.clock.advance(42)

  await t.test('admin close("manual") ⇐ SESSION_CLOSE; every intent WITHDRAWN', async t => {
    const r = h.close('manual')
    const closes = outputsOfType(r, 'SESSION_CLOSE')
    t.equal(closes.length, 1, { outputs: show(r) })
    const o = closes[0]!
    t.same(o.audience, { kind: 'all' })
    const p = payloadOf(o)
    t.equal(p.reason, 'manual')
    const wm = o.frame.watermark as { value: number }
    t.equal(p.final_lamport_clock, wm.value - 1, 'final_lamport_clock = watermark − 1')
    t.equal(p.active_intents_disposition, 'withdraw_all')
    const summary = p.summary as Json
    t.same(Object.keys(summary).sort(), [...SUMMARY_KEYS].sort(), '12 summary keys')
    for (const k of SUMMARY_KEYS) t.ok(Number.isInteger(summary[k]), `${k} is an integer`)
    t.equal(summary.total_intents, 2)
    t.equal(summary.total_participants, 2)
    t.equal(summary.total_operations, 1)
    t.equal(summary.duration_sec, 42)
    t.equal(h.intentState('i-a'), 'WITHDRAWN')
    t.equal(h.intentState('i-b'), 'WITHDRAWN')
    t.equal(h.opState('op-b'), 'ABANDONED')
    t.equal(h.c.closed, true)
    t.equal(h.snap().session_closed, true)
  })
  await t.test('a later HEARTBEAT ⇐ SESSION_CLOSED', async t => {
    assertRejected(t, h.heartbeat('A'), 'SESSION_CLOSED')
    assertRejected(t, h.announce('A', 'i-late', ['c.py']), 'SESSION_CLOSED')
    t.equal(h.intent('i-late'), undefined)
  })
  await t.test('a later GOODBYE ⇐ no output', async t => {
    assertNoOutput(t, h.goodbye('B'))
  })
  await t.test('COORDINATOR_STATUS heartbeat: healthy with 0 open conflicts, degraded with 1', async t => {
    const h = new Harness()
    h.join('A', 'B')
    function heartbeats (r: ApplyResult): Json[] {
      return payloadsOfType(r, 'COORDINATOR_STATUS').filter(p => p.event === 'heartbeat')
    }
    // the first beat is due at once or after one interval; collect over two intervals
    const first = [...heartbeats(h.tick(0)), ...heartbeats(h.tick(31))]
    t.ok(first.length >= 1, 'a heartbeat within one interval')
    const hb = first[first.length - 1]
    t.match(hb, { event: 'heartbeat', coordinator_id: h.coordinatorId, session_health: 'healthy', open_conflicts: 0, active_participants: 2 })
    const r31 = h.tick(31)
    t.equal(heartbeats(r31).length, 1, 'one heartbeat per interval', { outputs: show(r31) })
    t.same(outputsOfType(r31, 'COORDINATOR_STATUS')[0]?.audience, { kind: 'all' })
    t.same(heartbeats(h.tick(1)), [], 'not before the next interval')
    h.announce('A', 'i-a', entitySet('e1'))
    h.announce('B', 'i-b', entitySet('e1'))
    h.heartbeat('A')
    h.heartbeat('B')
    const r = h.tick(31)
    matchEach(t, heartbeats(r), [{ session_health: 'degraded', open_conflicts: 1 }], { outputs: show(r) })
  })
})

t.test('49. snapshot and recover', async t => {
  function build (): Harness {
    const h = new Harness()
    h.join('A', 'B', ['O', ['owner']])
    h.announce('A', 'i-a', entitySet('e1'))
    h.announce('B', 'i-b', entitySet('e1'))
    h.announce('A', 'i-f', ['a.py'])
    h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i-f')
    h.supersede('A', 'o2', 'o1', 'a.py', { state_ref_after: 'r2' })
    h.propose('B', 'o3', 'b.py')
    h.announce('B', 'i-w', ['w.py'])
    h.withdraw('B', 'i-w')
    h.clock.advance(5)
    return h
  }
  function states (s: CoordinatorSnapshot): Json {
    return {
      intents: Object.fromEntries(s.intents.map(i => [i.intent_id, i.state])),
      operations: Object.fromEntries(s.operations.map(o => [o.op_id, o.state])),
      conflicts: Object.fromEntries(s.conflicts.map(c => [c.conflict_id, c.state]))
    }
  }

  await t.test('recovery bumps the epoch to 2 and says so', async t => {
    const h = build()
    h.restore()
    t.equal(h.c.epoch, 1, 'restore alone keeps the epoch (replay determinism)')
    const r = h.apply({ kind: 'recovered', now: h.now, graceSec: 30 })
    t.equal(h.c.epoch, 2)
    const st = outputsOfType(r, 'COORDINATOR_STATUS')
    matchEach(t, st.map(o => o.frame.payload), [{ event: 'recovered' }], { outputs: show(r) })
    t.equal(st[0]?.frame.coordinator_epoch, 2)
    t.same(st[0]?.audience, { kind: 'all' })
    const hello = h.hello('C')
    const info = terminalOf(hello)
    t.equal(info && typeOf(info), 'SESSION_INFO')
    t.equal(info?.frame.coordinator_epoch, 2, 'the next coordinator envelope carries epoch 2')
  })
  await t.test('the Lamport clock continues above the snapshot value', async t => {
    const h = build()
    const s = h.restore()
    t.equal(h.c.lamport, s.lamport_clock)
    const r = h.apply({ kind: 'recovered', now: h.now, graceSec: 30 })
    const wm = (outputsOfType(r, 'COORDINATOR_STATUS')[0]?.frame.watermark as { value: number } | undefined)?.value
    t.ok(typeof wm === 'number' && wm > s.lamport_clock, `watermark ${String(wm)} > snapshot ${s.lamport_clock}`)
  })
  await t.test('intent, op (including SUPERSEDED) and conflict states match', async t => {
    const h = build()
    const before = states(h.snap())
    t.equal((before.operations as Json).o1, 'SUPERSEDED')
    t.equal((before.intents as Json)['i-w'], 'WITHDRAWN')
    h.restore()
    t.same(states(h.snap()), before)
    t.equal(h.conflict(Object.keys(before.conflicts as Json)[0]!)?.state, 'OPEN')
    // the restored state keeps working: the frozen-free conflict can be resolved
    const cid = Object.keys(before.conflicts as Json)[0]!
    assertNoOutput(t, h.resolve('O', cid, 'approved'))
  })
  await t.test('authenticated: a duplicate of a pre-snapshot message id ⇐ REPLAY_DETECTED', async t => {
    const h = new Harness({ securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } })
    const cred = { credential: { type: 'bearer_token', value: 't' } }
    t.equal(h.hello('A', ['contributor'], { payload: cred }).accepted, true)
    const hb = h.heartbeat('A')
    t.equal(hb.accepted, true)
    h.clock.advance(10)
    h.restore()
    h.apply({ kind: 'recovered', now: h.now, graceSec: 30 })
    assertRejected(t, h.resend(hb.envelope), 'REPLAY_DETECTED')
    t.equal(h.heartbeat('A').accepted, true, 'a fresh message passes')
  })
  await t.test('replaying the tail of the journal reproduces the state', async t => {
    const h = build()
    const end = h.snap()
    for (const k of [0, 3, 7, h.inputs.length]) {
      const c1 = new Coordinator(h.config)
      for (const input of h.inputs.slice(0, k)) c1.apply(input)
      const c2 = Coordinator.restore(JSON.parse(JSON.stringify(c1.snapshot(h.now))) as CoordinatorSnapshot, h.config)
      for (const input of h.inputs.slice(k)) c2.apply(input)
      t.same(c2.snapshot(h.now), end, `snapshot after ${k} inputs + replay of the rest`)
    }
  })
})
