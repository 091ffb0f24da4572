/**
 * Snapshot round trip: restore(snapshot()) followed by the same inputs gives
 * exactly the same outputs and state as continuing (docs/architecture.md),
 * including pending claims, deferrals, frozen conflicts, batches, files, the
 * ref map, the id sequence and the anti-replay window.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { CoordinatorConfig, CoreInput } from '../../src/coordinator/types.js'
import { Harness, entitySet, fileSet, refOf, type Json } from '../helpers/mpac.js'

function busy (config: Partial<CoordinatorConfig>): Harness {
  const h = new Harness({ unavailabilityTimeoutSec: 30, intentClaimGraceSec: 60, resolutionTimeoutSec: 10, ...config })
  const cred = { credential: { type: 'bearer_token', value: 'tok' } }
  for (const [pid, roles] of [['A', ['contributor']], ['B', ['contributor']], ['C', ['contributor']], ['O', ['owner']]] as const) {
    const r = h.hello(pid, [...roles], { payload: cred })
    if (!r.accepted) throw new Error(JSON.stringify(r.outputs))
  }
  h.announce('A', 'i-a', entitySet('e1'), { ttl_sec: 500 })
  h.announce('B', 'i-b', entitySet('e1'))
  h.announce('C', 'i-c', fileSet('c.py'))
  h.commit('C', 'o1', 'c.py', refOf(''), refOf('v1'), 'i-c', { file_changes: { 'c.py': { content: 'v1', state_ref_before: refOf('') } } })
  h.batch('C', 'bt1', [{ op_id: 'b1', target: 'd.py', intent_id: 'i-c' }, { op_id: 'b2', target: 'e.py', intent_id: 'i-c' }], 'best_effort')
  h.supersede('C', 'o2', 'o1', 'c.py', { state_ref_after: refOf('v2') })
  h.defer('C', { deferral_id: 'd1', scope: entitySet('e1'), observed_intent_ids: ['i-a'], ttl_sec: 400 })
  h.propose('B', 'p1', 'x.py', 'i-a')
  h.clock.advance(11)
  h.tick() // resolution timeout → freeze (no arbiter)
  h.clock.advance(25)
  for (const pid of ['B', 'C', 'O']) h.heartbeat(pid)
  h.clock.advance(10)
  h.tick() // A unavailable → i-a SUSPENDED
  h.claim('B', 'c1', 'i-a', 'A', 'j-a', entitySet('e1'))
  return h
}

function continuation (h: Harness): CoreInput[] {
  const e = (type: string, pid: string, payload: Json): CoreInput => ({ kind: 'message', now: h.clock.now + 1000, envelope: h.env.make(type, pid, payload, { ts: new Date(h.clock.now + 1000).toISOString() }) })
  return [
    e('HEARTBEAT', 'C', { status: 'working' }),
    e('INTENT_ANNOUNCE', 'C', { intent_id: 'i-c2', objective: 'more', scope: fileSet('c.py', 'f.py') }),
    e('OP_COMMIT', 'C', { op_id: 'o3', target: 'c.py', op_kind: 'replace', state_ref_before: refOf('v2'), state_ref_after: refOf('v3'), intent_id: 'i-c2' }),
    { kind: 'tick', now: h.clock.now + 61_000 },
    e('HELLO', 'A', { display_name: 'A again', roles: ['contributor'], capabilities: [], credential: { type: 'bearer_token', value: 'tok' } }),
    { kind: 'file_sync', now: h.clock.now + 62_000, path: 'g.py', content: 'disk' },
    { kind: 'recovered', now: h.clock.now + 63_000, graceSec: 5 },
    { kind: 'tick', now: h.clock.now + 500_000 },
    { kind: 'close', now: h.clock.now + 600_000, reason: 'manual' }
  ]
}

for (const profile of ['open', 'authenticated'] as const) {
  t.test(`restore + the same inputs = continuing (${profile})`, async t => {
    const h = busy({ securityProfile: profile, rolePolicy: profile === 'authenticated' ? { default_role: 'contributor', role_assignments: { O: ['owner'] } } : undefined })
    const snap = h.c.snapshot(h.clock.now)
    const text = JSON.stringify(snap)
    t.ok(snap.pending_claims.length === 1, 'a pending claim is held')
    t.ok(snap.deferrals.length === 1, 'a deferral is held')
    t.ok(snap.conflicts.some(c => c.scope_frozen), 'a frozen conflict is held')
    t.same(Object.keys(snap.files), ['c.py'])
    const config = h.config
    const restored = Coordinator.restore(JSON.parse(text) as Parameters<typeof Coordinator.restore>[0], config)
    t.equal(JSON.stringify(restored.snapshot(h.clock.now)), text, 'restore(snapshot) snapshots identically')
    t.equal(restored.epoch, h.c.epoch)
    t.equal(restored.lamport, h.c.lamport)
    t.same(restored.participantIds(), h.c.participantIds())
    t.equal(restored.nextDeadline(), h.c.nextDeadline())
    for (const input of continuation(h)) {
      const a = h.c.apply(input)
      const b = restored.apply(input)
      t.same(b, a, `same result for ${input.kind} ${input.kind === 'message' ? String((input.envelope as Json).message_type) : ''}`)
    }
    t.same(restored.snapshot(1), h.c.snapshot(1), 'same final state')
    t.same(restored.listFiles(), h.c.listFiles())
    if (profile === 'authenticated') {
      const dup = h.c.apply({ kind: 'message', now: h.clock.now + 600_001, envelope: { ...h.env.make('HEARTBEAT', 'B', {}), message_id: 'm-B-heartbeat-' } })
      t.equal(dup.accepted, false)
    }
  })
}

t.test('a snapshot is a deep copy', async t => {
  const h = busy({})
  const snap = h.c.snapshot(h.clock.now)
  const before = JSON.stringify(h.c.snapshot(h.clock.now))
  ;(snap.intents[0]!.scope as Json).kind = 'mutated'
  ;(snap.participants[0]!.roles as string[]).push('arbiter')
  ;(snap.files['c.py'] as { content: string }).content = 'x'
  t.equal(JSON.stringify(h.c.snapshot(h.clock.now)), before)
  t.equal(h.c.readFile('c.py')?.content, 'v1')
})

t.test('snapshot of a fresh coordinator and of an old-format snapshot', async t => {
  const c = new Coordinator({ sessionId: 's' })
  const snap = c.snapshot()
  t.equal(snap.snapshot_version, 2)
  t.equal(snap.coordinator_epoch, 1)
  t.equal(snap.lamport_clock, 0)
  const minimal = { ...snap } as Record<string, unknown>
  for (const k of ['id_sequence', 'intent_sequence', 'started_at', 'status_due_at', 'anti_replay', 'batches', 'state_refs']) delete minimal[k]
  const r = Coordinator.restore(minimal as unknown as typeof snap, { sessionId: 's' })
  t.equal(r.nextDeadline(), undefined)
  t.same(r.listFiles(), [])
})
