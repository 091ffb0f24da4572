/**
 * protocol.md §14 scenarios 22–28: INTENT_DEFERRED.
 */
import t from 'tap'
import {
  Harness,
  assertEchoed,
  assertRelayed,
  fileSet,
  outputsOfType,
  payloadsOfType,
  show,
  matchEach
} from '../helpers/mpac.js'
import type { Json, Sent, Tap } from '../helpers/mpac.js'

const SCOPE = fileSet('db.py')

function resolvedOf (r: Sent | ReturnType<Harness['tick']>, id = 'd1'): Json[] {
  return payloadsOfType(r, 'INTENT_DEFERRED').filter(p => p.deferral_id === id && p.status !== undefined)
}

/** The coordinator's active-form INTENT_DEFERRED broadcast, then the echo of the inbound one. */
function activeOf (t: Tap, h: Harness, s: Sent, id = 'd1'): Json | undefined {
  assertEchoed(t, s)
  const mine = outputsOfType(s, 'INTENT_DEFERRED').filter(o => o.terminal !== true)
  const active = mine.filter(o => (o.frame.payload as Json).status === undefined)
  t.equal(active.length, 1, 'one coordinator INTENT_DEFERRED (active form)', { outputs: show(s) })
  const o = active[0]
  if (o === undefined) return undefined
  t.same(o.audience, { kind: 'all' }, 'broadcast')
  t.match(o.frame.sender, { principal_id: h.coordinatorId }, 'authored by the coordinator')
  t.not(o.frame.message_id, s.id, 'a coordinator envelope, not the relay')
  const p = o.frame.payload as Json
  t.equal(p.deferral_id, id)
  return p
}

function setup22 (t: Tap): { h: Harness, d: Sent } {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['db.py'])
  const d = h.defer('B', { deferral_id: 'd1', scope: SCOPE, reason: 'yielded_to_alice', observed_intent_ids: ['i-a'], ttl_sec: 120 })
  const p = activeOf(t, h, d)
  t.ok(p, 'active form emitted')
  return { h, d }
}

t.test('22. defer broadcast: the coordinator re-emits the deferral as its own envelope', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['db.py'])
  const receivedAt = h.now
  const d = h.defer('B', { deferral_id: 'd1', scope: SCOPE, reason: 'yielded_to_alice', observed_intent_ids: ['i-a'], ttl_sec: 120 })
  const p = activeOf(t, h, d)
  t.match(p, {
    deferral_id: 'd1',
    principal_id: 'B',
    scope: SCOPE,
    reason: 'yielded_to_alice',
    observed_intent_ids: ['i-a'],
    observed_principals: [],
    category: 'queue'
  })
  t.same(p?.observed_principals, [])
  t.type(p?.expires_at, 'string')
  t.equal(Date.parse(String(p?.expires_at)), receivedAt + 120_000, 'expires_at = receive time + ttl')
  t.same(resolvedOf(d), [], 'not resolved')
  t.same(payloadsOfType(d, 'CONFLICT_REPORT'), [])
  t.same(h.snap().intents.filter(i => i.principal_id === 'B'), [], 'no intent for B')
  t.ok(h.deferral('d1'), 'the deferral is held')
})

t.test('23. resolve on withdraw of the observed intent', async t => {
  const { h } = setup22(t)
  const w = h.withdraw('A', 'i-a')
  assertRelayed(t, w)
  const res = resolvedOf(w)
  t.equal(res.length, 1, 'one resolution', { outputs: show(w) })
  t.match(res[0], { deferral_id: 'd1', principal_id: 'B', status: 'resolved', reason: 'observed_intents_terminated' })
  t.same(outputsOfType(w, 'INTENT_DEFERRED').filter(o => o.terminal !== true).map(o => o.audience), [{ kind: 'all' }])
  t.equal(h.deferral('d1'), undefined, 'the deferral is gone')
})

t.test("24. resolve on the deferrer's own announce", async t => {
  const { h } = setup22(t)
  const a = h.announce('B', 'i-b', ['other.py'])
  assertRelayed(t, a)
  const res = resolvedOf(a)
  t.equal(res.length, 1, { outputs: show(a) })
  t.match(res[0], { deferral_id: 'd1', principal_id: 'B', status: 'resolved', reason: 'principal_announced' })
  t.equal(h.deferral('d1'), undefined)
})

t.test('25. fast resolve at arrival: active then resolved in one response', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['db.py'])
  h.withdraw('A', 'i-a')
  const d = h.defer('B', { deferral_id: 'd1', scope: SCOPE, observed_intent_ids: ['i-a'] })
  assertEchoed(t, d)
  const list = outputsOfType(d, 'INTENT_DEFERRED').filter(o => o.terminal !== true).map(o => o.frame.payload as Json)
  t.equal(list.length, 2, 'two coordinator INTENT_DEFERRED', { outputs: show(d) })
  t.equal(list[0]?.status, undefined, 'first the active form')
  t.match(list[0], { deferral_id: 'd1', principal_id: 'B' })
  t.match(list[1], { deferral_id: 'd1', principal_id: 'B', status: 'resolved' })
  t.equal(h.deferral('d1'), undefined, 'd1 is not retained')
})

t.test('26. partial observed lists', async t => {
  function setup (t: Tap): Harness {
    const h = new Harness()
    h.join('A', 'B', 'C')
    h.announce('A', 'i-a', ['a.py'])
    h.announce('C', 'i-c', ['b.py'])
    const d = h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['i-a', 'i-c'] })
    t.same(resolvedOf(d), [], 'not resolved at arrival')
    return h
  }
  await t.test('A withdraws ⇐ the deferral stays, observing only C\'s intent', async t => {
    const h = setup(t)
    const w = h.withdraw('A', 'i-a')
    t.same(resolvedOf(w), [], 'not resolved', { outputs: show(w) })
    t.same(h.deferral('d1')?.observed_intent_ids, ['i-c'])
  })
  await t.test('then C withdraws ⇐ resolved', async t => {
    const h = setup(t)
    h.withdraw('A', 'i-a')
    const w = h.withdraw('C', 'i-c')
    const res = resolvedOf(w)
    t.equal(res.length, 1, { outputs: show(w) })
    t.match(res[0], { status: 'resolved', principal_id: 'B' })
    t.equal(h.deferral('d1'), undefined)
  })
  await t.test("A's intent already gone at arrival ⇐ no immediate resolve", async t => {
    const h = new Harness()
    h.join('A', 'B', 'C')
    h.announce('A', 'i-a', ['a.py'])
    h.withdraw('A', 'i-a')
    h.announce('C', 'i-c', ['b.py'])
    const d = h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['i-a', 'i-c'] })
    t.ok(activeOf(t, h, d))
    t.same(resolvedOf(d), [])
    t.ok(h.deferral('d1'), 'held')
  })
})

t.test('27. mislabel defence: principal ids among observed intents', async t => {
  await t.test('observed_intent_ids ["A"]: A withdraws ⇐ resolved', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['db.py'])
    const d = h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['A'] })
    t.same(resolvedOf(d), [], 'A still holds a live intent at arrival')
    const w = h.withdraw('A', 'i-a')
    matchEach(t, resolvedOf(w), [{ deferral_id: 'd1', status: 'resolved' }], { outputs: show(w) })
    t.equal(h.deferral('d1'), undefined)
  })
  await t.test('observed_principals ["A"]: A withdraws ⇐ resolved', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['db.py'])
    const d = h.defer('B', { deferral_id: 'd1', observed_principals: ['A'] })
    t.same(resolvedOf(d), [])
    const w = h.withdraw('A', 'i-a')
    matchEach(t, resolvedOf(w), [{ deferral_id: 'd1', status: 'resolved' }], { outputs: show(w) })
  })
})

t.test('28. TTL and degenerate cases', async t => {
  await t.test('empty observed lists ⇐ no immediate resolve', async t => {
    const h = new Harness()
    h.join('B')
    const d = h.defer('B', { deferral_id: 'd1' })
    const p = activeOf(t, h, d)
    t.same(p?.observed_intent_ids, [])
    t.same(p?.observed_principals, [])
    t.same(resolvedOf(d), [])
    t.ok(h.deferral('d1'))
  })
  await t.test('clock + ttl + 1, tick ⇐ INTENT_DEFERRED{status expired, reason ttl}', async t => {
    const h = new Harness()
    h.join('B')
    h.defer('B', { deferral_id: 'd1', ttl_sec: 30 })
    const early = h.tick(29)
    t.same(resolvedOf(early), [], 'not yet')
    const r = h.tick(2)
    const exp = outputsOfType(r, 'INTENT_DEFERRED').filter(o => (o.frame.payload as Json).deferral_id === 'd1')
    t.equal(exp.length, 1, { outputs: show(r) })
    t.match(exp[0]?.frame.payload, { deferral_id: 'd1', principal_id: 'B', status: 'expired', reason: 'ttl' })
    t.same(exp[0]?.audience, { kind: 'all' })
    t.equal(h.deferral('d1'), undefined)
  })
  await t.test('the default ttl is 60 s', async t => {
    const h = new Harness()
    h.join('B')
    h.defer('B', { deferral_id: 'd1' })
    t.same(resolvedOf(h.tick(59)), [])
    matchEach(t, resolvedOf(h.tick(2)), [{ status: 'expired', reason: 'ttl' }])
  })
  await t.test('category duplicate_yield is echoed; bananas becomes queue', async t => {
    const h = new Harness()
    h.join('B')
    const d1 = h.defer('B', { deferral_id: 'd1', category: 'duplicate_yield' })
    t.equal(activeOf(t, h, d1, 'd1')?.category, 'duplicate_yield')
    const d2 = h.defer('B', { deferral_id: 'd2', category: 'bananas' })
    t.equal(activeOf(t, h, d2, 'd2')?.category, 'queue')
  })
})
