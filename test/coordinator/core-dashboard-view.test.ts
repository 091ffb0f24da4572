/**
 * The dashboard's read-only projection (src/coordinator/dashboard-view.ts):
 * what SESSION_SUMMARY lacks and the attention queue, on an injected clock;
 * and that computing it changes nothing.
 */
import t from 'tap'
import { DASHBOARD_LIST_CAP } from '../../src/coordinator/dashboard-view.js'
import { formatTs as isoTs } from '../../src/protocol/time.js'
import { Harness, conflictIdsOf, refOf } from '../helpers/mpac.js'

const files = (h: Harness): unknown => h.c.dashboardView(h.now).files

t.test('intents carry created/expires; files map to holders; participants count live intents', async t => {
  const h = new Harness()
  h.join('A', 'B')
  const created = h.now
  h.announce('A', 'i-a', ['src/a.ts', 'src/b.ts'], { ttl_sec: 600 })
  h.clock.advance(5)
  h.announce('B', 'i-b', { kind: 'task_set', task_ids: ['db:users'] })
  const v = h.c.dashboardView(h.now)
  t.match(v.intents, [
    { intent_id: 'i-a', principal_id: 'A', state: 'ACTIVE', files: ['src/a.ts', 'src/b.ts'], created_at: isoTs(created), expires_at: isoTs(created + 600_000), claimed_by: null },
    { intent_id: 'i-b', scope_kind: 'task_set', files: ['db:users'], expires_at: null }
  ])
  t.same(files(h), [
    { directory: 'src', path: 'src/a.ts', holders: [{ principal_id: 'A', intent_id: 'i-a', state: 'ACTIVE' }] },
    { directory: 'src', path: 'src/b.ts', holders: [{ principal_id: 'A', intent_id: 'i-a', state: 'ACTIVE' }] }
  ], 'file_set scopes only, sorted by path')
  t.match(v.participants, [{ principal_id: 'A', live_intents: 1, is_available: true }, { principal_id: 'B', live_intents: 1 }])
  // Scopes of different kinds overlap conservatively: one open, unacknowledged conflict.
  t.same(v.totals, { participants: 2, intents: 2, open_conflicts: 1, commits: 0, files: 2, attention: 1 })
  t.equal(v.captured_at, isoTs(h.now))
  t.match(v.policies, { compliance_profile: 'core', execution_model: 'post_commit', resolution_timeout_sec: 300 })
})

t.test('a conflict through ack, escalate and resolve: files, acks, escalated_to, due time, attention', async t => {
  const h = new Harness({ resolutionTimeoutSec: 120 })
  h.join('A', 'B', ['O', ['owner']], ['R', ['arbiter']])
  h.announce('A', 'i-a', { kind: 'entity_set', entities: ['db:users', 'db:orders'] })
  const opened = h.now
  // Two agents may not hold one file (STALE_INTENT); overlapping entities make a conflict.
  const id = conflictIdsOf(h.announce('B', 'i-b', { kind: 'entity_set', entities: ['db:users', 'db:items'] }))[0] as string
  let v = h.c.dashboardView(h.now)
  t.match(v.conflicts[0], { conflict_id: id, state: 'OPEN', frozen: false, acks: [], escalated_to: null, files: ['db:users'], principal_a: 'B', principal_b: 'A', objective_a: 'work on i-b', objective_b: 'work on i-a' })
  t.equal(v.conflicts[0]?.resolution_due_at, isoTs(opened + 120_000), 'resolution timeout as the due time')
  t.match(v.attention, [{ kind: 'unacked_conflict', ref: id, id: `unacked_conflict:${id}`, due_at: isoTs(opened + 120_000) }])

  h.clock.advance(3)
  h.ack('A', id, 'seen')
  v = h.c.dashboardView(h.now)
  t.match(v.conflicts[0], { state: 'ACKED', acks: [{ principal_id: 'A', ack_type: 'seen', at: isoTs(h.now) }] })
  t.same(v.attention, [], 'acknowledged: no longer unacked')

  h.clock.advance(2)
  h.escalate('O', id, 'R')
  v = h.c.dashboardView(h.now)
  t.match(v.conflicts[0], { state: 'ESCALATED', escalated_to: 'R', escalated_at: isoTs(h.now), resolution_due_at: null })
  t.match(v.attention, [{ kind: 'escalation', ref: id, principal_id: 'R', since: isoTs(h.now) }])

  h.resolve('R', id, 'approved')
  v = h.c.dashboardView(h.now)
  t.match(v.conflicts[0], { conflict_id: id, state: 'CLOSED', decision: 'approved', resolved_by: 'R' }, 'a finished conflict stays visible')
  t.same(v.attention, [])
  t.equal(v.totals.open_conflicts, 0)
  t.match(h.c.dashboardConflict(id), { conflict_id: id, state: 'CLOSED' })
  t.equal(h.c.dashboardConflict('nope'), undefined)
  // Acks survive a snapshot and restore.
  h.restore()
  t.match(h.c.dashboardView(h.now).conflicts[0]?.acks, [{ principal_id: 'A', ack_type: 'seen' }])
})

t.test('recent commits, newest first, with refs and outcome', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  const r0 = refOf('')
  h.commit('A', 'op-1', 'a.py', r0, refOf('one'), 'i')
  h.clock.advance(1)
  h.commit('A', 'op-2', 'a.py', refOf('one'), refOf('two'), 'i')
  const v = h.c.dashboardView(h.now)
  t.match(v.commits, [
    { op_id: 'op-2', principal_id: 'A', intent_id: 'i', target: 'a.py', state_ref_before: refOf('one'), state_ref_after: refOf('two'), outcome: 'COMMITTED', at: isoTs(h.now) },
    { op_id: 'op-1', outcome: 'COMMITTED' }
  ])
  t.equal(v.totals.commits, 2)
})

t.test('attention: suspended intent of an offline agent, pending claim, expiring intent', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10, intentClaimGraceSec: 30 })
  h.join('A', 'B')
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'], { ttl_sec: 200 })
  const seen = h.now
  h.clock.advance(11)
  h.heartbeat('B')
  h.tick()
  let v = h.c.dashboardView(h.now)
  t.match(v.participants, [{ principal_id: 'A', is_available: false }, { principal_id: 'B', is_available: true }])
  t.match(v.intents.find(i => i.intent_id === 'i-a'), { state: 'SUSPENDED' })
  t.match(v.attention.filter(a => a.kind === 'suspended_intent'), [{ ref: 'i-a', principal_id: 'A', since: isoTs(seen) }])
  t.match(v.attention.filter(a => a.kind === 'expiring_intent'), [{ ref: 'i-b', due_at: isoTs(seen + 200_000) }], 'expires within 5 minutes')
  t.same(h.c.dashboardView(h.now, { expiringWithinSec: 10 }).attention.filter(a => a.kind === 'expiring_intent'), [], 'a shorter horizon')

  const claimAt = h.now
  h.claim('B', 'cl-1', 'i-a', 'A', 'i-new', ['a.py'])
  v = h.c.dashboardView(h.now)
  t.match(v.attention.filter(a => a.kind === 'pending_claim'), [{ ref: 'i-a', principal_id: 'B', since: isoTs(claimAt), due_at: isoTs(claimAt + 30_000) }])
  t.same(v.attention.filter(a => a.kind === 'suspended_intent'), [], 'a claimed intent no longer waits for a takeover')
})

t.test('a frozen scope (resolution timeout without an arbiter) is an attention item', async t => {
  const h = new Harness({ resolutionTimeoutSec: 300, unavailabilityTimeoutSec: 10_000, heartbeatIntervalSec: 10_000 })
  h.join('A', 'B', ['O', ['owner']])
  h.announce('A', 'i-a', { kind: 'entity_set', entities: ['e1'] })
  const id = conflictIdsOf(h.announce('B', 'i-b', { kind: 'entity_set', entities: ['e1'] }))[0] as string
  t.same(h.c.dashboardView(h.now).attention.map(a => a.kind), ['unacked_conflict'])
  h.tick(301)
  const v = h.c.dashboardView(h.now)
  t.match(v.conflicts[0], { conflict_id: id, frozen: true, resolution_due_at: null })
  t.match(v.attention.filter(a => a.kind === 'frozen_scope'), [{ ref: id, id: `frozen_scope:${id}` }])
})

t.test('lists are capped; computing the view changes nothing', async t => {
  const h = new Harness({ maxIntentsPerParticipant: 1000, maxIntentsPerSession: 1000 })
  h.join('A')
  for (let k = 0; k < DASHBOARD_LIST_CAP + 5; k++) h.announce('A', `i-${k}`, [`f${k}.py`])
  const before = JSON.stringify(h.snap())
  const v = h.c.dashboardView(h.now)
  t.equal(v.intents.length, DASHBOARD_LIST_CAP)
  t.equal(v.files.length, DASHBOARD_LIST_CAP)
  t.equal(v.totals.intents, DASHBOARD_LIST_CAP + 5)
  t.equal(JSON.stringify(h.snap()), before, 'the state is unchanged')
})
