/**
 * protocol.md §8.5 step 2: progressive degradation of a frozen scope, behind
 * CoordinatorConfig.frozenScopePhases (absent = disabled).
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { CoordinatorConfig } from '../../src/coordinator/types.js'
import { Harness, T0, entitySet, payloadsOfType } from '../helpers/mpac.js'

const BASE: Partial<CoordinatorConfig> = { resolutionTimeoutSec: 10, unavailabilityTimeoutSec: 100_000, heartbeatIntervalSec: 100_000 }
const PHASES: Partial<CoordinatorConfig> = { ...BASE, frozenScopePhases: { phase1Sec: 60, phase2Sec: 240 } }

/** A and B conflict on entity e1 (cross-kind: every op target is in the frozen scope); returns the conflict id. The scope freezes at T0 + 11 s. */
function frozen (h: Harness, pa?: string, pb?: string): string {
  h.join('A', 'B')
  h.announce('A', 'ia', entitySet('e1'), pa === undefined ? {} : { priority: pa })
  const r = h.announce('B', 'ib', entitySet('e1'), pb === undefined ? {} : { priority: pb })
  const cid = payloadsOfType(r, 'CONFLICT_REPORT')[0]?.conflict_id as string
  const f = h.tick(11)
  t.match(payloadsOfType(f, 'PROTOCOL_ERROR'), [{ error_code: 'RESOLUTION_TIMEOUT', conflict_id: cid }])
  t.equal(h.conflict(cid)?.scope_frozen, true)
  return cid
}

const P2 = T0 + 11_000 + 60_000
const P3 = T0 + 11_000 + 300_000

t.test('disabled by default: the scope stays frozen, no phase actions', async t => {
  const h = new Harness(BASE)
  const cid = frozen(h, 'high', 'low')
  t.equal(h.c.nextDeadline(), T0 + 100_000_000, 'only the status heartbeat remains')
  const r = h.apply({ kind: 'tick', now: P3 + 1000 })
  t.same(r.outputs, [])
  t.equal(h.conflictState(cid), 'OPEN')
  t.equal(h.conflict(cid)?.scope_frozen, true)
  t.notOk('frozen_at' in (h.conflict(cid) as object), 'no phase bookkeeping')
  t.match(payloadsOfType(h.propose('A', 'op', 'a.py', 'ia'), 'PROTOCOL_ERROR'), [{ error_code: 'SCOPE_FROZEN' }])
})

t.test('phase 2: auto-escalation to an available arbiter', async t => {
  const h = new Harness(PHASES)
  const cid = frozen(h)
  h.join(['Z', ['arbiter']])
  t.equal(h.c.nextDeadline(), P2)
  t.same(h.apply({ kind: 'tick', now: P2 - 1 }).outputs, [], 'nothing before phase 2')
  const r = h.apply({ kind: 'tick', now: P2 })
  t.match(payloadsOfType(r, 'CONFLICT_ESCALATE'), [{ conflict_id: cid, escalate_to: 'Z', reason: 'frozen_scope_phase_2' }])
  t.equal(h.conflictState(cid), 'ESCALATED')
  t.equal(h.conflict(cid)?.escalated_to, 'Z')
  t.equal(h.c.nextDeadline(), P3, 'phase 3 is next')
})

t.test('phase 2: the owner of the strictly higher-priority intent may write; others get SCOPE_FROZEN explaining why', async t => {
  const h = new Harness(PHASES)
  const cid = frozen(h, 'low', 'critical')
  const before = h.propose('B', 'ob0', 'a.py', 'ib')
  t.match(payloadsOfType(before, 'PROTOCOL_ERROR'), [{ error_code: 'SCOPE_FROZEN' }], 'phase 1: frozen for everyone')
  const r = h.apply({ kind: 'tick', now: P2 })
  t.same(payloadsOfType(r, 'PROTOCOL_ERROR'), [], 'no reminder when one side has priority')
  const ok = h.propose('B', 'ob', 'a.py', 'ib')
  t.equal(ok.accepted, true, 'B (critical) may propose')
  t.equal(h.opState('ob'), 'PROPOSED')
  const no = h.propose('A', 'oa', 'a.py', 'ia')
  t.equal(no.accepted, false)
  const [e] = payloadsOfType(no, 'PROTOCOL_ERROR')
  t.equal(e?.error_code, 'SCOPE_FROZEN')
  t.match(e?.description, /partially unfrozen.*only B/)
  t.equal(h.conflictState(cid), 'OPEN', 'no arbiter: not escalated')
})

t.test('phase 2: equal priorities stay frozen with one RESOLUTION_TIMEOUT reminder', async t => {
  const h = new Harness(PHASES)
  const cid = frozen(h, 'high', 'high')
  const r = h.apply({ kind: 'tick', now: P2 })
  t.match(payloadsOfType(r, 'PROTOCOL_ERROR'), [{ error_code: 'RESOLUTION_TIMEOUT', conflict_id: cid, description: /phase 2/ }])
  t.equal(payloadsOfType(r, 'PROTOCOL_ERROR').length, 1)
  t.same(h.apply({ kind: 'tick', now: P2 + 1000 }).outputs, [], 'no second reminder')
  t.same(h.apply({ kind: 'tick', now: P2 + 100_000 }).outputs, [], 'still none')
  t.match(payloadsOfType(h.propose('A', 'oa', 'a.py', 'ia'), 'PROTOCOL_ERROR'), [{ error_code: 'SCOPE_FROZEN' }])
  t.match(payloadsOfType(h.propose('B', 'ob', 'a.py', 'ib'), 'PROTOCOL_ERROR'), [{ error_code: 'SCOPE_FROZEN' }])
})

t.test('phase 3: first committer wins, the others are rejected, the conflict closes and the freeze is released', async t => {
  const h = new Harness(PHASES)
  h.join('A', 'B')
  h.announce('A', 'ia', entitySet('e1'))
  const r0 = h.announce('B', 'ib', entitySet('e1'))
  const cid = payloadsOfType(r0, 'CONFLICT_REPORT')[0]?.conflict_id as string
  t.equal(h.commit('A', 'ca', 'a.py', 'r0', 'r1', 'ia').accepted, true)
  t.equal(h.propose('B', 'pb', 'a.py', 'ib').accepted, true)
  t.equal(h.propose('A', 'pa', 'a.py', 'ia').accepted, true)
  h.tick(11)
  t.equal(h.conflict(cid)?.scope_frozen, true)
  h.apply({ kind: 'tick', now: P2 })
  t.equal(h.c.nextDeadline(), P3)
  t.same(h.apply({ kind: 'tick', now: P3 - 1 }).outputs, [])
  const r = h.apply({ kind: 'tick', now: P3 })
  const [res] = payloadsOfType(r, 'RESOLUTION')
  t.match(res, { conflict_id: cid, decision: 'policy_override', rationale: 'frozen_scope_progressive_fallback_phase_3', outcome: { accepted: ['ca'], rejected: ['pb', 'pa'] } })
  t.match(payloadsOfType(r, 'OP_REJECT'), [{ op_id: 'pb', reason: 'frozen_scope_fallback' }, { op_id: 'pa', reason: 'frozen_scope_fallback' }])
  t.ok(r.outputs.every(o => o.audience.kind === 'all'), 'broadcast to all')
  t.equal(h.conflictState(cid), 'CLOSED')
  t.equal(h.conflict(cid)?.scope_frozen, false)
  t.equal(h.opState('pb'), 'REJECTED')
  t.equal(h.opState('ca'), 'COMMITTED')
  t.equal(h.propose('B', 'pb2', 'a.py', 'ib').accepted, true, 'the freeze is released')
  t.equal(h.c.nextDeadline(), T0 + 100_000_000)
})

t.test('phase 3 can be disabled; without a committed op nothing is accepted', async t => {
  const off = new Harness({ ...BASE, frozenScopePhases: { phase1Sec: 5, phase3: false } })
  const c1 = frozen(off, 'normal', 'normal')
  off.apply({ kind: 'tick', now: T0 + 16_000 })
  t.same(off.apply({ kind: 'tick', now: T0 + 10_000_000 }).outputs, [])
  t.equal(off.conflictState(c1), 'OPEN')
  const on = new Harness({ ...BASE, frozenScopePhases: { phase1Sec: 5, phase2Sec: 5 } })
  const c2 = frozen(on)
  const r = on.apply({ kind: 'tick', now: T0 + 50_000 })
  t.match(payloadsOfType(r, 'RESOLUTION'), [{ conflict_id: c2, outcome: { accepted: [], rejected: [] } }])
  t.same(payloadsOfType(r, 'PROTOCOL_ERROR'), [], 'a late tick goes straight to phase 3')
})

t.test('auto-dismiss pre-empts every phase', async t => {
  const h = new Harness(PHASES)
  const cid = frozen(h)
  h.withdraw('A', 'ia')
  h.withdraw('B', 'ib')
  t.equal(h.conflictState(cid), 'DISMISSED')
  t.same(h.apply({ kind: 'tick', now: P3 }).outputs, [], 'no phase action on a dismissed conflict')
  t.equal(h.c.nextDeadline(), T0 + 100_000_000)
})

t.test('snapshot and restore mid-phase continue identically', async t => {
  const h = new Harness(PHASES)
  const cid = frozen(h, 'high', 'normal')
  h.propose('B', 'pb', 'a.py', 'ib')
  h.apply({ kind: 'tick', now: P2 })
  t.equal(h.propose('A', 'pa', 'a.py', 'ia').accepted, true)
  const text = JSON.stringify(h.c.snapshot(P2))
  const restored = Coordinator.restore(JSON.parse(text) as Parameters<typeof Coordinator.restore>[0], h.config)
  t.equal(JSON.stringify(restored.snapshot(P2)), text, 'restore(snapshot) snapshots identically')
  t.equal(restored.nextDeadline(), h.c.nextDeadline())
  t.equal(restored.nextDeadline(), P3)
  const e1 = h.propose('B', 'pb2', 'a.py', 'ib').envelope
  t.same(restored.handle(e1, h.now).outputs.map(o => o.frame.message_type), ['PROTOCOL_ERROR'], 'B still blocked after restore')
  const a = h.apply({ kind: 'tick', now: P3 })
  const b = restored.apply({ kind: 'tick', now: P3 })
  t.same(b.outputs, a.outputs)
  t.match(payloadsOfType(a, 'RESOLUTION'), [{ conflict_id: cid, outcome: { accepted: [], rejected: ['pa'] } }])
  t.same(restored.snapshot(P3 + 1), h.c.snapshot(P3 + 1), 'same final state')
})
