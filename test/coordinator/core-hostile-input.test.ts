/**
 * Hostile or oversized input to the coordinator core: prototype keys are
 * data, a refused HELLO changes nothing, Lamport values cannot break the
 * clock, globs, symbol lists, nesting, deadline heaps and the participant
 * list stay bounded, and a restored coordinator answers as the running one.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import { DeadlineHeap } from '../../src/coordinator/heap.js'
import type { CoordinatorSnapshot } from '../../src/coordinator/types.js'
import { Harness, T0, assertRejected, assertRelayed, conflictIdsOf, errorsOf, payloadsOfType, show, type Json } from '../helpers/mpac.js'

const QUIET = { unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 }

function restoredCopy (h: Harness): Coordinator {
  return Coordinator.restore(JSON.parse(JSON.stringify(h.snap())) as CoordinatorSnapshot, h.config)
}

t.test('role policy lookups ignore inherited object keys (principal ids such as "constructor")', async t => {
  const h = new Harness({ rolePolicy: { default_role: 'contributor', role_assignments: { O: ['owner'] }, role_constraints: {} } })
  for (const pid of ['constructor', '__proto__', 'toString', 'hasOwnProperty']) {
    const r = h.hello(pid, ['owner', 'constructor', 'toString'])
    t.equal(r.accepted, true, `${pid} is admitted`, { outputs: show(r) })
    t.same(h.participant(pid)?.roles, ['contributor'], `${pid} gets the default role`)
  }
  const owner = h.hello('O', ['owner'])
  t.equal(owner.accepted, true)
  t.same(h.participant('O')?.roles, ['owner'])
})

t.test('a "__proto__" key inside scope.extensions is data, not a prototype (continue = restore)', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B')
  const ext = JSON.parse('{"__proto__": {"impact": ["main.py"]}}') as Json
  assertRelayed(t, h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: ext }))
  const restored = restoredCopy(h)
  const env = h.env.make('INTENT_ANNOUNCE', 'B', { intent_id: 'i-b', objective: 'edit main', scope: { kind: 'file_set', resources: ['main.py'] } })
  const cont = h.c.handle(env, h.now)
  const rest = restored.handle(env, h.now)
  t.same(payloadsOfType(cont, 'CONFLICT_REPORT'), [], 'no own `impact` key, so no dependency_breakage')
  t.same(rest.outputs, cont.outputs, 'a restored coordinator answers the same')
  const scope = h.intent('i-a')?.scope as Json
  t.ok(Object.hasOwn(scope.extensions as Json, '__proto__'), 'the key is kept as an own property')
})

t.test('a refused HELLO claiming an admitted principal does not refresh its liveness', async t => {
  const h = new Harness({ securityProfile: 'authenticated', unavailabilityTimeoutSec: 10, heartbeatIntervalSec: 1e6, verifier: () => ({ accepted: true, grantedRoles: ['contributor'] }) })
  h.hello('A', ['contributor'], { payload: { credential: { type: 'bearer_token', value: 'good' } } })
  h.clock.advance(8)
  const forged = h.hello('A', ['contributor'], { instance: 'A:intruder', payload: { credential: { type: 'bearer_token', value: 'bad' } }, verdict: { accepted: false, reason: 'unknown token' } })
  assertRejected(t, forged, 'CREDENTIAL_REJECTED')
  h.clock.advance(3)
  const tick = h.tick()
  t.match(errorsOf(tick, 'PARTICIPANT_UNAVAILABLE'), [{ principal_id: 'A' }], 'A is silent for 11 s: the refused HELLO was not A')
})

t.test('the per-instance Lamport frontier is bounded (authenticated profile)', async t => {
  const h = new Harness({ securityProfile: 'authenticated', ...QUIET, verifier: (c) => c.value === 'good' ? { accepted: true, grantedRoles: ['contributor'] } : { accepted: false, reason: 'bad token' } })
  for (let k = 0; k < 200; k++) {
    const r = h.hello(`intruder-${k}`, ['contributor'], { instance: `x-${k}`, payload: { credential: { type: 'bearer_token', value: 'bad' } } })
    t.equal(r.accepted, false)
  }
  const frontier = (): string[] => Object.keys((h.snap().anti_replay as { sender_frontier: Json }).sender_frontier)
  t.same(frontier(), [], 'refused HELLOs leave no frontier entries')
  for (let k = 0; k < 100; k++) {
    const r = h.hello('A', ['contributor'], { instance: `A:restart-${k}`, payload: { credential: { type: 'bearer_token', value: 'good' } } })
    t.equal(r.accepted, true)
  }
  const entries = frontier()
  t.ok(entries.length <= 16, `a restarting client keeps a bounded number of incarnations (${entries.length})`)
  t.ok(entries.includes('A|A:restart-99'), 'the newest incarnation is tracked')
  // The newest incarnation is still checked.
  const regress = h.send('HEARTBEAT', 'A', { status: 'idle' }, { instance: 'A:restart-99', watermark: { kind: 'lamport_clock', value: 0 } })
  assertRejected(t, regress, 'MALFORMED_MESSAGE')
})

t.test('a huge Lamport value is refused instead of breaking the coordinator clock', async t => {
  const h = new Harness(QUIET)
  h.join('A')
  const before = h.c.lamport
  const r = h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: { kind: 'lamport_clock', value: Number.MAX_SAFE_INTEGER } })
  const p = assertRejected(t, r, 'MALFORMED_MESSAGE')
  t.match(p.description, /watermark/)
  t.ok(h.c.lamport < before + 10, 'the clock did not jump')
  const r2 = h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: { kind: 'vector_clock', value: { A: 1 }, lamport_value: 2 ** 53 - 2 } })
  assertRejected(t, r2, 'MALFORMED_MESSAGE', 'the lamport_value fallback too')
  const a = h.announce('A', 'i', ['a.py'])
  const ours = [r, r2, a, h.apply({ kind: 'recovered', now: h.now, graceSec: 0 })].flatMap(x => x.outputs).filter(o => (o.frame.sender as Json | undefined)?.principal_id === h.coordinatorId)
  const marks = ours.map(o => (o.frame.watermark as { value: number }).value)
  t.ok(marks.length >= 3)
  for (let k = 1; k < marks.length; k++) t.ok((marks[k] as number) > (marks[k - 1] as number), 'coordinator watermarks keep increasing')
})

t.test('resource_path globs are matched in linear time (no catastrophic backtracking)', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B', 'C')
  assertRelayed(t, h.announce('A', 'glob', { kind: 'resource_path', pattern: '*a'.repeat(9) + 'b' }))
  const start = process.hrtime.bigint()
  const r = h.announce('B', 'long', ['a'.repeat(40), 'a'.repeat(40) + 'b'])
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 1000, `announce took ${ms.toFixed(1)} ms`)
  t.equal(conflictIdsOf(r).length, 1, 'the pattern does hit one of the files')
  const miss = h.announce('C', 'miss', ['a'.repeat(39)])
  t.same(conflictIdsOf(miss), [], 'and misses a file that does not end in b')
})

t.test('two hostile resource_path patterns do not explode (the product is bounded)', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B')
  h.announce('A', 'p1', { kind: 'resource_path', pattern: '*a'.repeat(2000) })
  const start = process.hrtime.bigint()
  const r = h.announce('B', 'p2', { kind: 'resource_path', pattern: '*a'.repeat(1999) + '*b' })
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 500, `announce took ${ms.toFixed(1)} ms`)
  t.equal(r.accepted, true)
  t.equal(conflictIdsOf(r).length, 1, 'too large to decide exactly: reported as potentially overlapping')
  const small = h.announce('B', 'p3', { kind: 'resource_path', pattern: 'docs/**/*.md' })
  t.same(conflictIdsOf(small), [], 'small patterns are still decided exactly (p1 needs an a at the end)')
})

t.test('deadline heaps stay bounded when a record keeps changing its deadline', async t => {
  const heap = new DeadlineHeap()
  let latest = 0
  for (let k = 1; k <= 100_000; k++) {
    latest = T0 + k
    heap.pushCompacting(latest, 'i', (time, id) => id === 'i' && time === latest)
  }
  t.ok(heap.size <= 2048, `size ${heap.size} after 100,000 deadline changes`)
  t.equal(heap.peekId(), 'i')
  // Through the core: repeated TTL updates, then the expiry still happens exactly once, on time.
  const h = new Harness(QUIET)
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'], { ttl_sec: 5 })
  h.propose('B', 'o', 'a.py', 'i')
  for (let k = 0; k < 3000; k++) h.update('A', 'i', { ttl_sec: 5 + (k % 7) })
  const last = 5 + (2999 % 7)
  t.equal(h.c.nextDeadline(), T0 + last * 1000)
  t.same(payloadsOfType(h.tick(last - 0.001), 'OP_REJECT'), [])
  t.match(payloadsOfType(h.tick(0.001), 'OP_REJECT'), [{ op_id: 'o', reason: 'intent_terminated' }])
  for (let k = 0; k < 3000; k++) h.defer('B', { deferral_id: 'd', ttl_sec: 100 + k })
  t.equal(h.c.nextDeadline(), h.now + (100 + 2999) * 1000, 'the deferral deadline is the last one')
})

t.test('deeply nested input is refused up front (snapshots and summaries could not copy it later)', async t => {
  const h = new Harness(QUIET)
  h.join('A')
  const deep = JSON.parse('{"x":'.repeat(3000) + '1' + '}'.repeat(3000)) as Json
  const r = h.announce('A', 'i', { kind: 'file_set', resources: ['a.py'], extensions: deep })
  const p = assertRejected(t, r, 'MALFORMED_MESSAGE')
  t.match(p.description, /nested deeper than/)
  t.doesNotThrow(() => h.snap())
  t.doesNotThrow(() => h.c.summary(h.now))
  t.equal(h.intentState('i'), undefined)
  const ok = JSON.parse('{"x":'.repeat(20) + '1' + '}'.repeat(20)) as Json
  assertRelayed(t, h.announce('A', 'j', { kind: 'file_set', resources: ['a.py'], extensions: ok }), 'ordinary nesting is fine')
})

t.test('a full session makes room by forgetting a departed participant that holds nothing', async t => {
  const h = new Harness({ maxParticipants: 2, unavailabilityTimeoutSec: 10, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.announce('A', 'a1', ['a.py'])
  h.goodbye('A')
  t.equal(h.intentState('a1'), 'WITHDRAWN')
  assertRelayed(t, h.announce('B', 'b1', ['b.py']))
  const c = h.hello('C')
  t.equal(c.accepted, true, 'C takes the place of A, who left and holds nothing', { outputs: show(c) })
  t.same(h.snap().participants.map(p => p.principal_id), ['B', 'C'])
  assertRejected(t, h.hello('D'), 'AUTHORIZATION_FAILED', 'B and C are present: still full')
  // B times out with a live (now SUSPENDED) intent: it is not forgotten.
  h.clock.advance(8)
  h.heartbeat('C')
  h.clock.advance(3)
  h.tick()
  t.equal(h.intentState('b1'), 'SUSPENDED')
  assertRejected(t, h.hello('D'), 'AUTHORIZATION_FAILED', 'B still holds an intent')
  assertRejected(t, h.heartbeat('A'), 'INVALID_REFERENCE', 'a forgotten principal must HELLO again')
})

t.test('dependency analysis with huge symbol lists is bounded (judged at file level instead)', async t => {
  const h = new Harness(QUIET)
  h.join('A', 'B', 'C')
  const syms = Array.from({ length: 3000 }, (_, k) => `m.C${k}.f`)
  h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'], affects_symbols: syms, impact_symbols: { 'main.py': syms.map(s => `x${s}`) } } })
  const start = process.hrtime.bigint()
  const r = h.announce('B', 'i-b', ['main.py'])
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 500, `announce took ${ms.toFixed(0)} ms`)
  t.match(payloadsOfType(r, 'CONFLICT_REPORT'), [{ category: 'dependency_breakage', dependency_detail: { ba: [{ file: 'main.py', symbols: null }] } }], 'file-level: the edit reaches main.py')
  // Small lists are still compared symbol by symbol.
  h.announce('A', 'i-a2', { kind: 'file_set', resources: ['lib.py'], extensions: { impact: ['app.py'], affects_symbols: ['lib.foo'], impact_symbols: { 'app.py': ['lib.bar'] } } })
  t.same(payloadsOfType(h.announce('C', 'i-c', ['app.py']), 'CONFLICT_REPORT'), [], 'disjoint symbols: no conflict')
})
