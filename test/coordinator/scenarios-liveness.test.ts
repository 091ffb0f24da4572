/**
 * protocol.md §14 scenarios 29–36: liveness, TTL, claims and GOODBYE.
 */
import t from 'tap'
import type { ApplyResult, CoordinatorConfig } from '../../src/coordinator/types.js'
import {
  Harness,
  assertEchoed,
  assertNoOutput,
  assertRejected,
  assertRelayed,
  entitySet,
  errorsOf,
  fileSet,
  outputsOfType,
  payloadOf,
  payloadsOfType,
  show,
  typeOf,
  matchEach
} from '../helpers/mpac.js'
import type { Json, Sent } from '../helpers/mpac.js'

function opRejects (r: ApplyResult): Json[] {
  return payloadsOfType(r, 'OP_REJECT')
}

function unavailableOf (r: ApplyResult): Json[] {
  return errorsOf(r, 'PARTICIPANT_UNAVAILABLE')
}

function unavailableIds (r: ApplyResult): string[] {
  return unavailableOf(r).map(p => String(p.principal_id ?? '')).sort()
}

t.test('29. TTL expiry cascade', async t => {
  function setup (): { h: Harness, ann: Sent } {
    const h = new Harness()
    h.join('A', 'B')
    const ann = h.announce('A', 'i', ['a.py'], { ttl_sec: 10 })
    h.propose('B', 'op-b', 'a.py', 'i')
    h.commit('A', 'op-a', 'a.py', 'r0', 'r1', 'i')
    return { h, ann }
  }
  await t.test('clock +15, tick ⇐ OP_REJECT{op-b, intent_terminated, refers_to the announce}', async t => {
    const { h, ann } = setup()
    const quiet = h.tick(9)
    t.same(opRejects(quiet), [], 'nothing before the TTL')
    t.equal(h.intentState('i'), 'ACTIVE')
    const r = h.tick(6)
    const rej = outputsOfType(r, 'OP_REJECT')
    t.equal(rej.length, 1, { outputs: show(r) })
    t.match(rej[0]?.frame.payload, { op_id: 'op-b', reason: 'intent_terminated', refers_to: ann.id })
    t.same(rej[0]?.audience, { kind: 'all' })
    t.equal(h.opState('op-b'), 'REJECTED')
  })
  await t.test('the intent is EXPIRED, the commit stays COMMITTED', async t => {
    const { h } = setup()
    h.tick(15)
    t.equal(h.intentState('i'), 'EXPIRED')
    t.equal(h.opState('op-a'), 'COMMITTED')
  })
  await t.test('an intent without ttl: ACTIVE by default, EXPIRED at 300 s with defaultIntentTtlSec 300', async t => {
    const h = new Harness({ unavailabilityTimeoutSec: 100_000 })
    h.join('A')
    h.announce('A', 'i-forever', ['z.py'])
    h.tick(1000)
    t.equal(h.intentState('i-forever'), 'ACTIVE', 'the default (0) means no expiry')
    const s = new Harness({ unavailabilityTimeoutSec: 100_000, defaultIntentTtlSec: 300 })
    s.join('A')
    s.announce('A', 'i-300', ['z.py'])
    s.tick(299)
    t.equal(s.intentState('i-300'), 'ACTIVE', 'still active at 299 s')
    s.tick(2)
    t.equal(s.intentState('i-300'), 'EXPIRED', 'expired after 300 s')
  })
  await t.test('a proposal on the expired intent ⇐ an immediate OP_REJECT', async t => {
    const { h } = setup()
    h.tick(15)
    const s = h.propose('A', 'op-x', 'a.py', 'i')
    const rej = opRejects(s)
    matchEach(t, rej, [{ op_id: 'op-x', reason: 'intent_terminated' }], { outputs: show(s) })
    t.not(h.opState('op-x'), 'PROPOSED')
    t.not(h.opState('op-x'), 'COMMITTED')
  })
})

/** Scenario 30's setup: A silent for 11 s with a 10 s timeout; B kept alive. */
function setup30 (config: Partial<CoordinatorConfig> = {}, extra: string[] = []): { h: Harness, tick: ApplyResult } {
  const h = new Harness({ unavailabilityTimeoutSec: 10, ...config })
  h.join('A', 'B', ...extra)
  h.announce('A', 'i', ['a.py'])
  h.propose('B', 'op-b', 'a.py', 'i')
  h.propose('A', 'op-a2', 'a.py', 'i')
  h.clock.advance(6)
  h.heartbeat('B')
  for (const p of extra) h.heartbeat(p)
  const tick = h.tick(5)
  return { h, tick }
}

t.test('30. unavailability: PARTICIPANT_UNAVAILABLE, intent SUSPENDED, own ops ABANDONED, others FROZEN', async t => {
  const h0 = new Harness({ unavailabilityTimeoutSec: 10 })
  h0.join('A')
  t.same(unavailableOf(h0.tick(10)), [], 'not at exactly the timeout')
  const { h, tick } = setup30()
  const un = outputsOfType(tick, 'PROTOCOL_ERROR').filter(o => payloadOf(o).error_code === 'PARTICIPANT_UNAVAILABLE')
  t.equal(un.length, 1, 'one PARTICIPANT_UNAVAILABLE', { outputs: show(tick) })
  t.same(un[0]?.audience, { kind: 'all' }, 'broadcast')
  t.match(un[0]?.frame.payload, { error_code: 'PARTICIPANT_UNAVAILABLE', principal_id: 'A' })
  t.equal(h.intentState('i'), 'SUSPENDED')
  t.equal(h.opState('op-a2'), 'ABANDONED')
  t.equal(h.opState('op-b'), 'FROZEN')
  t.equal(h.participant('A')?.is_available, false)
  t.equal(h.participant('B')?.is_available, true)
})

t.test('31. return of a participant', async t => {
  await t.test('after 30, A → HEARTBEAT ⇐ no output; i ACTIVE and op-b PROPOSED', async t => {
    const { h } = setup30()
    const s = h.heartbeat('A')
    assertNoOutput(t, s, 'sender')
    t.equal(h.intentState('i'), 'ACTIVE')
    t.equal(h.opState('op-b'), 'PROPOSED')
    t.equal(h.participant('A')?.is_available, true)
  })
  await t.test('a participant that sent HEARTBEAT{status offline} is never flagged', async t => {
    const h = new Harness({ unavailabilityTimeoutSec: 10 })
    h.join('C', 'D')
    assertEchoed(t, h.heartbeat('C', 'offline'))
    const r = h.tick(1000)
    t.same(unavailableIds(r), ['D'], 'only D is flagged', { outputs: show(r) })
    t.same(unavailableIds(h.tick(1000)), [], 'and only once')
  })
})

t.test('32. core claim with grace 0: approved at once, FROZEN ops on the original rejected', async t => {
  const { h } = setup30()
  const s = h.claim('B', 'c1', 'i', 'A', 'j', fileSet('a.py'))
  assertRelayed(t, s)
  const st = outputsOfType(s, 'INTENT_CLAIM_STATUS')
  t.equal(st.length, 1, { outputs: show(s) })
  t.same(st[0]?.audience, { kind: 'all' })
  const p = st[0]!.frame.payload as Json
  t.match(p, { claim_id: 'c1', original_intent_id: 'i', new_intent_id: 'j', decision: 'approved' })
  t.notOk('approved_by' in p, 'no approved_by under core')
  matchEach(t, opRejects(s), [{ op_id: 'op-b', reason: 'intent_terminated' }])
  t.equal(h.intentState('i'), 'TRANSFERRED')
  t.equal(h.intentState('j'), 'ACTIVE')
  t.equal(h.intent('j')?.principal_id, 'B')
  t.equal(h.opState('op-b'), 'REJECTED')
  t.same(h.snap().pending_claims, [])
})

t.test('33. claim errors', async t => {
  await t.test('a claim on an ACTIVE intent ⇐ INVALID_REFERENCE', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i', ['a.py'])
    assertRejected(t, h.claim('B', 'c1', 'i', 'A', 'j', ['a.py']), 'INVALID_REFERENCE')
    t.equal(h.intentState('i'), 'ACTIVE')
    t.equal(h.intent('j'), undefined)
  })
  await t.test('a claim on an unknown intent ⇐ INVALID_REFERENCE', async t => {
    const h = new Harness()
    h.join('A', 'B')
    assertRejected(t, h.claim('B', 'c1', 'nope', 'A', 'j', ['a.py']), 'INVALID_REFERENCE')
  })
  await t.test('grace 30 s: a second claim while the first is pending ⇐ CLAIM_CONFLICT', async t => {
    const { h } = setup30({ intentClaimGraceSec: 30 }, ['C'])
    const first = h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
    assertRelayed(t, first)
    t.same(payloadsOfType(first, 'INTENT_CLAIM_STATUS'), [], 'pending during the grace period')
    t.equal(h.snap().pending_claims.length, 1)
    assertRejected(t, h.claim('C', 'c2', 'i', 'A', 'k', ['a.py']), 'CLAIM_CONFLICT')
    t.equal(h.intentState('i'), 'SUSPENDED')
  })
  await t.test('a claim on a TRANSFERRED intent ⇐ CLAIM_CONFLICT', async t => {
    const { h } = setup30({}, ['C'])
    h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
    t.equal(h.intentState('i'), 'TRANSFERRED')
    assertRejected(t, h.claim('C', 'c2', 'i', 'A', 'k', ['a.py']), 'CLAIM_CONFLICT')
    t.equal(h.intent('k'), undefined)
  })
})

t.test('34. owner returns before approval ⇐ claim withdrawn, then SESSION_INFO', async t => {
  const { h } = setup30({ intentClaimGraceSec: 30 })
  h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
  const s = h.hello('A')
  t.equal(s.accepted, true)
  const types = s.outputs.map(typeOf)
  const ci = types.indexOf('INTENT_CLAIM_STATUS')
  const si = types.indexOf('SESSION_INFO')
  t.ok(ci >= 0 && si > ci, 'INTENT_CLAIM_STATUS, then SESSION_INFO', { outputs: show(s) })
  matchEach(t, payloadsOfType(s, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c1', original_intent_id: 'i', decision: 'withdrawn', reason: 'original_owner_rejoined' }])
  t.same(outputsOfType(s, 'INTENT_CLAIM_STATUS')[0]?.audience, { kind: 'all' })
  t.equal(h.intentState('i'), 'ACTIVE')
  t.equal(h.intent('j'), undefined, 'the new intent is never created')
  t.same(h.snap().pending_claims, [])
  t.equal(h.opState('op-b'), 'PROPOSED', 'the frozen op is unfrozen')
})

t.test('35. governance claim', async t => {
  await t.test('with an owner online ⇐ approved, approved_by the owner', async t => {
    const h = new Harness({ complianceProfile: 'governance', unavailabilityTimeoutSec: 10 })
    h.join('A', 'B', ['O', ['owner']])
    h.announce('A', 'i', ['a.py'])
    h.clock.advance(6)
    h.heartbeat('B')
    h.heartbeat('O')
    h.tick(5)
    t.equal(h.intentState('i'), 'SUSPENDED')
    const s = h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
    const st = payloadsOfType(s, 'INTENT_CLAIM_STATUS')
    matchEach(t, st, [{ claim_id: 'c1', decision: 'approved', approved_by: 'O', new_intent_id: 'j' }], { outputs: show(s) })
    t.equal(h.intentState('j'), 'ACTIVE')
  })
  await t.test('with no owner or arbiter other than the claimer ⇐ pending until one joins', async t => {
    const h = new Harness({ complianceProfile: 'governance', unavailabilityTimeoutSec: 10 })
    h.join('A', 'B')
    h.announce('A', 'i', ['a.py'])
    h.clock.advance(6)
    h.heartbeat('B')
    h.tick(5)
    const s = h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
    assertNoOutput(t, s)
    t.equal(h.snap().pending_claims.length, 1)
    t.same(payloadsOfType(h.tick(1), 'INTENT_CLAIM_STATUS'), [], 'no output on a tick either')
    t.equal(h.intentState('i'), 'SUSPENDED')
    const o = h.hello('O', ['owner'])
    matchEach(t, payloadsOfType(o, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c1', decision: 'approved', approved_by: 'O' }], { outputs: show(o) })
    t.equal(h.intentState('i'), 'TRANSFERRED')
    t.equal(h.intentState('j'), 'ACTIVE')
  })
})

t.test('36. GOODBYE dispositions', async t => {
  await t.test('withdraw: intents WITHDRAWN, their open ops rejected, own ops elsewhere ABANDONED, conflict dismissed', async t => {
    const h = new Harness()
    h.join('A', 'B', 'C')
    h.announce('A', 'i-a', entitySet('e1'))
    const c = h.announce('C', 'i-c', entitySet('e1'))
    const cid = String(payloadsOfType(c, 'CONFLICT_REPORT')[0]?.conflict_id)
    h.withdraw('C', 'i-c')
    t.equal(h.conflictState(cid), 'OPEN', 'one live intent keeps the conflict open')
    h.announce('B', 'i-b', entitySet('e2'))
    h.propose('A', 'op-a1', 'a.py', 'i-a')
    h.propose('B', 'op-b1', 'a.py', 'i-a')
    h.propose('A', 'op-a2', 'b.py', 'i-b')
    const g = h.goodbye('A', { intent_disposition: 'withdraw' })
    assertRelayed(t, g)
    t.equal(h.intentState('i-a'), 'WITHDRAWN')
    const rej = outputsOfType(g, 'OP_REJECT')
    t.same(rej.map(o => (o.frame.payload as Json).op_id).sort(), ['op-a1', 'op-b1'], 'OP_REJECT for every open op on the withdrawn intent', { outputs: show(g) })
    for (const o of rej) {
      t.match(o.frame.payload, { reason: 'intent_terminated' })
      t.same(o.audience, { kind: 'all' }, 'OP_REJECT goes to all, not only the leaver')
    }
    t.equal(h.opState('op-a1'), 'REJECTED')
    t.equal(h.opState('op-b1'), 'REJECTED')
    t.equal(h.opState('op-a2'), 'ABANDONED')
    t.equal(h.intentState('i-b'), 'ACTIVE')
    const res = outputsOfType(g, 'RESOLUTION')
    matchEach(t, res.map(o => o.frame.payload), [{ conflict_id: cid, decision: 'dismissed', rationale: 'all_related_entities_terminated' }])
    t.same(res[0]?.audience, { kind: 'all' })
    t.equal(h.conflictState(cid), 'DISMISSED')
    t.equal(h.participant('A')?.status, 'offline')
  })
  await t.test('transfer: intents SUSPENDED and claimable', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['a.py'])
    const g = h.goodbye('A', { intent_disposition: 'transfer' })
    assertRelayed(t, g)
    t.equal(h.intentState('i-a'), 'SUSPENDED')
    const s = h.claim('B', 'c1', 'i-a', 'A', 'j', ['a.py'])
    matchEach(t, payloadsOfType(s, 'INTENT_CLAIM_STATUS'), [{ decision: 'approved' }], { outputs: show(s) })
    t.equal(h.intentState('i-a'), 'TRANSFERRED')
  })
  await t.test('expire: intents unchanged', async t => {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i-a', ['a.py'])
    assertRelayed(t, h.goodbye('A', { intent_disposition: 'expire' }))
    t.equal(h.intentState('i-a'), 'ACTIVE')
  })
  await t.test("a GOODBYE listing B's intent leaves it ACTIVE", async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['a.py'])
    h.announce('B', 'i-b', ['b.py'])
    const g = h.goodbye('A', { active_intents: ['i-b'], intent_disposition: 'withdraw' })
    t.equal(g.accepted, true)
    t.equal(h.intentState('i-b'), 'ACTIVE')
  })
})
