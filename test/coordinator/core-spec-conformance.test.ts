/**
 * protocol.md §13: one test per Python-runtime bug marked "fix" that the
 * coordinator core owns. Each asserts the fixed behaviour, so it would fail
 * against the Python coordinator.
 */
import t from 'tap'
import { isErrorCode } from '../../src/protocol/error-codes.js'
import type { ApplyResult, CoordinatorConfig, Verifier } from '../../src/coordinator/types.js'
import {
  Harness,
  assertEchoed,
  assertNoOutput,
  assertRejected,
  assertRelayed,
  assertTerminalShape,
  entitySet,
  errorsOf,
  fileSet,
  isoTs,
  outputsOfType,
  payloadOf,
  payloadsOfType,
  refOf,
  show,
  terminalOf,
  typeOf,
  matchEach
} from '../helpers/mpac.js'
import type { Json, Sent } from '../helpers/mpac.js'

const LONG = { unavailabilityTimeoutSec: 100_000 }
const AUTH = { securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } } as const
const CRED = { credential: { type: 'bearer_token', value: 'tok' } }

function conflictOf (r: ApplyResult): string {
  const ids = payloadsOfType(r, 'CONFLICT_REPORT').map(p => String(p.conflict_id))
  if (ids.length !== 1) throw new Error(`expected one CONFLICT_REPORT, got ${show(r)}`)
  return ids[0]!
}

function entityConflict (config: Partial<CoordinatorConfig> = {}, others: Array<string | [string, string[]]> = []): { h: Harness, cid: string } {
  const h = new Harness(config)
  h.join('A', 'B', ...others)
  h.announce('A', 'i-a', entitySet('e1'))
  return { h, cid: conflictOf(h.announce('B', 'i-b', entitySet('e1'))) }
}

function fileConflict (config: Partial<CoordinatorConfig> = {}, others: Array<string | [string, string[]]> = []): { h: Harness, cid: string } {
  const h = new Harness(config)
  h.join('A', 'B', ...others)
  h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'] } })
  return { h, cid: conflictOf(h.announce('B', 'i-b', fileSet('main.py'))) }
}

function fileChanges (entries: Record<string, [string, string]>): Json {
  return Object.fromEntries(Object.entries(entries).map(([p, [content, before]]) => [p, { content, state_ref_before: before }]))
}

// ---- 13.1 wire format -------------------------------------------------------

t.test('W1: coordinator CONFLICT_REPORTs carry the schema-required keys', async t => {
  const h2 = new Harness()
  h2.join('A', 'B')
  h2.announce('A', 'i-a', entitySet('e1'))
  const overlap = payloadsOfType(h2.announce('B', 'i-b', entitySet('e1')), 'CONFLICT_REPORT')[0]
  t.match(overlap, {
    conflict_id: String,
    category: 'scope_overlap',
    severity: 'medium',
    principal_a: 'B',
    principal_b: 'A',
    intent_a: 'i-b',
    intent_b: 'i-a',
    related_ops: Array,
    basis: { kind: 'rule', rule_id: 'scope.overlap.v1' },
    based_on_watermark: { kind: 'lamport_clock' },
    description: /\S/
  })
  t.same([...(overlap?.related_intents as string[])].sort(), ['i-a', 'i-b'])
  t.ok(Number.isInteger((overlap?.based_on_watermark as Json).value))
  const h3 = new Harness()
  h3.join('A', 'B')
  h3.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'] } })
  const dep = payloadsOfType(h3.announce('B', 'i-b', fileSet('main.py')), 'CONFLICT_REPORT')[0]
  t.match(dep, { category: 'dependency_breakage', basis: { kind: 'rule', rule_id: 'dependency.breakage.v1' }, description: /\S/, based_on_watermark: { kind: 'lamport_clock' } })
})

t.test('W3: spec-optional envelope and sender keys are accepted, and relays and echoes carry only PY\'s keys; a key no schema knows is ignored', async t => {
  // protocol.md §2.1 recommends accepting unknown keys, SPEC §21.2 says unknown
  // extension fields SHOULD be ignored (issue 12 item 11). Python crashed on
  // unknown envelope keys, and Python clients still crash on them, so relays
  // drop them (§2.1 TS-REC).
  const optional = {
    in_reply_to: 'm-0',
    trace_id: 'trace-1',
    policy_ref: 'policy-1',
    signature: 'sig',
    extensions: { 'vendor.x': { a: 1 } }
  }
  const wireKeys = ['coordinator_epoch', 'message_id', 'message_type', 'payload', 'protocol', 'sender', 'session_id', 'ts', 'version', 'watermark']
  await t.test('the spec-optional keys and sender.extensions', async t => {
    const h = new Harness()
    const hello = h.env.make('HELLO', 'A', { display_name: 'A', roles: ['contributor'], capabilities: [] }, { extra: optional })
    ;(hello.sender as Json).extensions = { 'vendor.y': 2 }
    const r = h.resend(hello)
    t.equal(r.accepted, true, { outputs: show(r) })
    t.equal(typeOf(terminalOf(r)!), 'SESSION_INFO')
    const ann = h.env.make('INTENT_ANNOUNCE', 'A', { intent_id: 'i-a', objective: 'x', scope: fileSet('a.py') }, { extra: { ...optional, coordinator_epoch: 1 } })
    ;(ann.sender as Json).extensions = { 'vendor.y': 2 }
    const ra = h.resend(ann)
    t.equal(ra.accepted, true, { outputs: show(ra) })
    t.equal(h.intentState('i-a'), 'ACTIVE')
    const relay = terminalOf(ra)!
    t.same(relay.audience, { kind: 'sender' })
    t.same(Object.keys(relay.frame).sort(), wireKeys, 'the relay has exactly the ten envelope keys')
    t.same(relay.frame.sender, { principal_id: 'A', principal_type: (ann.sender as Json).principal_type, sender_instance_id: (ann.sender as Json).sender_instance_id }, 'sender keys: principal_id, principal_type, sender_instance_id only')
    t.equal(relay.frame.payload, ann.payload, 'the payload is passed on as received (not copied)')
    for (const k of ['message_id', 'message_type', 'session_id', 'ts', 'version', 'protocol', 'watermark', 'coordinator_epoch']) t.same(relay.frame[k], ann[k], `${k} as received`)
    t.same(payloadsOfType(ra, 'CONFLICT_REPORT'), [], 'no coordinator output besides the terminal frame')
    t.ok('in_reply_to' in ann && 'extensions' in (ann.sender as Json), 'the inbound envelope is not modified')
    // An echo (HEARTBEAT) follows the same rule.
    const hb = h.env.make('HEARTBEAT', 'A', { status: 'idle' }, { extra: optional })
    const rh = h.resend(hb)
    assertEchoed(t, rh)
    const echo = terminalOf(rh)!
    t.same(Object.keys(echo.frame).sort(), wireKeys.filter(k => k !== 'coordinator_epoch'), 'the echo has the envelope keys it was sent with, optional ones dropped')
    t.same(Object.keys(echo.frame.sender as Json).sort(), ['principal_id', 'principal_type', 'sender_instance_id'])
  })
  await t.test('a key no schema knows is ignored, and not relayed', async t => {
    const h = new Harness()
    h.join('A')
    const ann = h.env.make('INTENT_ANNOUNCE', 'A', { intent_id: 'i-a', objective: 'x', scope: fileSet('a.py') }, { extra: { x_unknown: true } })
    const r = h.resend(ann)
    t.equal(r.accepted, true, { outputs: show(r) })
    t.equal(h.intentState('i-a'), 'ACTIVE', 'registered')
    t.same(Object.keys(terminalOf(r)!.frame).sort(), wireKeys.filter(k => k !== 'coordinator_epoch'), 'the relay has only envelope keys it knows')
    t.equal(ann.x_unknown, true, 'the inbound envelope keeps it')
  })
})

t.test('W5: INTENT_DEFERRED, STALE_INTENT and STALE_STATE_REF are part of the protocol', async t => {
  t.ok(isErrorCode('STALE_INTENT'))
  t.ok(isErrorCode('STALE_STATE_REF'))
  const h = new Harness()
  h.join('A', 'B')
  const d = h.defer('B', { deferral_id: 'd1' })
  assertEchoed(t, d)
  t.equal(payloadsOfType(d, 'INTENT_DEFERRED').length >= 1, true, 'the deferral is processed, not refused')
  h.announce('A', 'i-a', ['db.py'])
  assertRejected(t, h.announce('B', 'i-b', ['db.py']), 'STALE_INTENT')
  h.commit('A', 'o1', 'db.py', 'r0', 'r1', 'i-a')
  assertRejected(t, h.commit('A', 'o2', 'db.py', 'r0', 'r2', 'i-a'), 'STALE_STATE_REF')
})

t.test('W7: PARTICIPANT_UNAVAILABLE and RESOLUTION_TIMEOUT refer to message ids, with the old id in an extra key', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10 })
  h.join('A', 'B')
  const last = h.heartbeat('A')
  h.clock.advance(6)
  h.heartbeat('B')
  const r = h.tick(5)
  const un = errorsOf(r, 'PARTICIPANT_UNAVAILABLE')
  t.equal(un.length, 1, { outputs: show(r) })
  t.equal(un[0]?.refers_to, last.id, "refers_to = A's last message id")
  t.equal(un[0]?.principal_id, 'A')
  t.match(un[0]?.description, 'A')

  const { h: g, cid } = entityConflict(LONG)
  const to = errorsOf(g.tick(301), 'RESOLUTION_TIMEOUT')
  t.equal(to.length, 1)
  t.not(to[0]?.refers_to, cid, 'refers_to is not the conflict id')
  t.equal(to[0]?.conflict_id, cid)
})

// ---- 13.2 intent layer ------------------------------------------------------

t.test('I1: an INTENT_ANNOUNCE reusing another principal\'s intent_id ⇐ INVALID_REFERENCE', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-1', ['a.py'])
  assertRejected(t, h.announce('B', 'i-1', ['z.py']), 'INVALID_REFERENCE')
  t.equal(h.intent('i-1')?.principal_id, 'A')
  t.same(h.intent('i-1')?.scope, fileSet('a.py'))
  // also after the owner withdrew it: the id stays A's record
  h.withdraw('A', 'i-1')
  assertRejected(t, h.announce('B', 'i-1', ['z.py']), 'INVALID_REFERENCE')
  t.equal(h.intent('i-1')?.principal_id, 'A')
  t.equal(h.intentState('i-1'), 'WITHDRAWN')
})

t.test('I2: the race lock compares normalised paths', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['x.py', 'src/y.py', 'lib/z.py'])
  assertRejected(t, h.announce('B', 'i-1', ['./x.py']), 'STALE_INTENT')
  assertRejected(t, h.announce('B', 'i-2', ['src//y.py']), 'STALE_INTENT')
  assertRejected(t, h.announce('B', 'i-3', ['lib/z.py/']), 'STALE_INTENT')
  t.same(h.snap().conflicts, [], 'no scope_overlap report instead')
})

t.test('I3: an INTENT_UPDATE widening into a locked file ⇐ STALE_INTENT, intent unchanged', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['db.py'])
  h.announce('B', 'i-b', ['other.py'])
  const before = h.intent('i-b')
  const s = h.update('B', 'i-b', { scope: fileSet('other.py', 'db.py') })
  const p = assertRejected(t, s, 'STALE_INTENT')
  t.match(p.description, 'intent i-a (principal A)')
  t.same(h.intent('i-b'), before)
  t.same(payloadsOfType(s, 'CONFLICT_REPORT'), [])
  t.same(h.snap().conflicts, [])
})

t.test('I5: supersedes_intent_id moves the named intent to SUPERSEDED', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-1', ['a.py'])
  h.propose('B', 'op', 'a.py', 'i-1')
  const s = h.announce('A', 'i-2', ['b.py'], { supersedes_intent_id: 'i-1' })
  assertRelayed(t, s)
  t.equal(h.intentState('i-1'), 'SUPERSEDED')
  t.equal(h.intentState('i-2'), 'ACTIVE')
  matchEach(t, payloadsOfType(s, 'OP_REJECT'), [{ op_id: 'op', reason: 'intent_terminated' }])
})

t.test('I6: deferrals are cleaned up on every termination, not only on withdraw', async t => {
  const resolved = (r: ApplyResult): Json[] => payloadsOfType(r, 'INTENT_DEFERRED').filter(p => p.deferral_id === 'd1' && p.status === 'resolved')
  await t.test('expiry', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['db.py'], { ttl_sec: 10 })
    h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['i-a'], ttl_sec: 600 })
    const r = h.tick(11)
    t.equal(resolved(r).length, 1, { outputs: show(r) })
    t.equal(h.deferral('d1'), undefined)
  })
  await t.test('auto-supersede', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['db.py'])
    h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['i-a'] })
    const r = h.announce('A', 'i-a2', ['db.py'])
    t.equal(resolved(r).length, 1, { outputs: show(r) })
  })
  await t.test('GOODBYE', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['db.py'])
    h.defer('B', { deferral_id: 'd1', observed_intent_ids: ['i-a'] })
    const r = h.goodbye('A', { intent_disposition: 'withdraw' })
    t.equal(resolved(r).length, 1, { outputs: show(r) })
  })
})

t.test('I7: a principals-only deferral resolves when no live intent of the principal remains (one rule)', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a1', ['a.py'])
  h.announce('A', 'i-a2', ['b.py'])
  h.defer('B', { deferral_id: 'd1', observed_principals: ['A'] })
  const w1 = h.withdraw('A', 'i-a1')
  t.same(payloadsOfType(w1, 'INTENT_DEFERRED'), [], 'A still holds i-a2', { outputs: show(w1) })
  t.ok(h.deferral('d1'))
  const w2 = h.withdraw('A', 'i-a2')
  matchEach(t, payloadsOfType(w2, 'INTENT_DEFERRED'), [{ deferral_id: 'd1', status: 'resolved' }])
})

t.test('I8: INTENT_UPDATE / INTENT_WITHDRAW that cannot apply are refused, not relayed', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['a.py'])
  assertRejected(t, h.update('B', 'i-a', { objective: 'mine now' }), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.withdraw('B', 'i-a'), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.update('A', 'nope', { objective: 'x' }), 'INVALID_REFERENCE')
  assertRejected(t, h.withdraw('A', 'nope'), 'INVALID_REFERENCE')
  h.withdraw('A', 'i-a')
  assertRejected(t, h.update('A', 'i-a', { objective: 'revive' }), 'INVALID_REFERENCE')
  assertRejected(t, h.withdraw('A', 'i-a'), 'INVALID_REFERENCE')
})

t.test('I10: auto-supersede only replaces intents of the same kind', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i-ent', entitySet('e1'))
  assertRelayed(t, h.announce('A', 'i-file', ['a.py']))
  t.equal(h.intentState('i-ent'), 'ACTIVE')
  t.equal(h.intentState('i-file'), 'ACTIVE')
})

t.test('I11: a missing scope or scope kind ⇐ MALFORMED_MESSAGE, nothing registered', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('B', 'i-b', ['b.py'])
  h.announce('A', 'i-a', ['a.py'])
  assertRejected(t, h.send('INTENT_ANNOUNCE', 'A', { intent_id: 'i-1', objective: 'x' }), 'MALFORMED_MESSAGE')
  assertRejected(t, h.send('INTENT_ANNOUNCE', 'A', { intent_id: 'i-2', objective: 'x', scope: { resources: ['c.py'] } }), 'MALFORMED_MESSAGE')
  assertRejected(t, h.update('A', 'i-a', { scope: { resources: ['c.py'] } }), 'MALFORMED_MESSAGE')
  t.equal(h.intent('i-1'), undefined)
  t.equal(h.intent('i-2'), undefined)
  t.same(h.intent('i-a')?.scope, fileSet('a.py'))
  t.equal(h.intentState('i-a'), 'ACTIVE', 'the earlier intent of A is untouched')
})

// ---- 13.3 operation layer ---------------------------------------------------

t.test('O1: reviewers, owners and arbiters can reject proposals', async t => {
  const h = new Harness({ complianceProfile: 'governance' })
  h.join('A', ['V', ['reviewer']], ['O', ['owner']], ['R', ['arbiter']])
  h.announce('A', 'i', ['a.py'])
  h.propose('A', 'p1', 'a.py', 'i')
  h.propose('A', 'p2', 'a.py', 'i')
  h.propose('A', 'p3', 'a.py', 'i')
  assertRelayed(t, h.opReject('V', 'p1'))
  assertRelayed(t, h.opReject('O', 'p2'))
  assertRelayed(t, h.opReject('R', 'p3'))
  t.same(['p1', 'p2', 'p3'].map(id => h.opState(id)), ['REJECTED', 'REJECTED', 'REJECTED'])
  h.commit('A', 'c1', 'a.py', 'r0', 'r1', 'i')
  assertRejected(t, h.opReject('V', 'c1'), 'INVALID_REFERENCE')
  assertRejected(t, h.opReject('V', 'nope'), 'INVALID_REFERENCE')
  t.equal(h.opState('c1'), 'COMMITTED')
})

t.test('O2: a post_commit OP_COMMIT against a terminated or suspended intent is refused or flagged uncoordinated', async t => {
  // SPEC §7.7 / protocol.md §13.3 O2: "reject, or flag uncoordinated"; PY does neither.
  const flaggedOrRefused = (h: Harness, id: string): boolean => {
    const o = h.op(id)
    return o === undefined || o.state !== 'COMMITTED' || o.uncoordinated === true
  }
  const h = new Harness({ unavailabilityTimeoutSec: 10 })
  h.join('A', 'B')
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  h.commit('B', 'o0', 'b.py', 'r0', 'r1', 'i-b')
  t.equal(h.opState('o0'), 'COMMITTED')
  t.notOk(h.op('o0')?.uncoordinated === true, 'control: a commit on a live intent is coordinated')
  h.withdraw('B', 'i-b')
  h.commit('B', 'o1', 'b.py', 'r1', 'r2', 'i-b')
  t.ok(flaggedOrRefused(h, 'o1'), 'terminated intent', { op: h.op('o1') })
  h.clock.advance(6)
  h.heartbeat('B')
  h.tick(5)
  t.equal(h.intentState('i-a'), 'SUSPENDED')
  h.commit('B', 'o2', 'a.py', 'r0', 'r1', 'i-a')
  t.ok(flaggedOrRefused(h, 'o2'), 'suspended intent', { op: h.op('o2') })
})

t.test('O3: pre_commit completions are checked; files are not written before authorization', async t => {
  const GP = { complianceProfile: 'governance', executionModel: 'pre_commit', ...LONG } as const
  await t.test('a completion for a REJECTED op ⇐ INVALID_REFERENCE, not relayed', async t => {
    const h = new Harness(GP)
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    h.propose('A', 'op1', 'a.py', 'i')
    h.withdraw('A', 'i')
    t.equal(h.opState('op1'), 'REJECTED')
    const s = h.commit('A', 'op1', 'a.py', 'r0', 'r1', 'i', { file_changes: fileChanges({ 'a.py': ['x', 'r0'] }) })
    assertRejected(t, s, 'INVALID_REFERENCE')
    t.same(s.fileWrites, [])
    t.equal(h.opState('op1'), 'REJECTED')
  })
  await t.test('an initial OP_COMMIT does not write its file_changes', async t => {
    const h = new Harness(GP)
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    const s = h.commit('A', 'op1', 'a.py', refOf(''), refOf('v1'), 'i', { file_changes: fileChanges({ 'a.py': ['v1', refOf('')] }) })
    matchEach(t, payloadsOfType(s, 'COORDINATOR_STATUS'), [{ event: 'authorization', authorized_op_id: 'op1' }], { outputs: show(s) })
    t.same(s.fileWrites, [], 'nothing written at the proposal stage')
    t.same(outputsOfType(s, 'FILE_UPDATED'), [])
    t.equal(h.snap().files['a.py'], undefined)
    const done = h.commit('A', 'op1', 'a.py', refOf(''), refOf('v1'), 'i', { file_changes: fileChanges({ 'a.py': ['v1', refOf('')] }) })
    t.equal(done.accepted, true, { outputs: show(done) })
    t.equal(h.opState('op1'), 'COMMITTED')
    matchEach(t, done.fileWrites, [{ path: 'a.py', content: 'v1', stateRef: refOf('v1') }])
  })
  await t.test('a stale completion ⇐ STALE_STATE_REF', async t => {
    const h = new Harness(GP)
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    h.propose('A', 'op1', 'a.py', 'i')
    h.commit('A', 'op1', 'a.py', 'r0', 'r1', 'i')
    h.propose('A', 'op2', 'a.py', 'i')
    assertRejected(t, h.commit('A', 'op2', 'a.py', 'WRONG', 'r2', 'i'), 'STALE_STATE_REF')
    t.equal(h.opState('op2'), 'PROPOSED')
  })
  await t.test('a completion inside a frozen scope ⇐ SCOPE_FROZEN', async t => {
    const h = new Harness(GP)
    h.join('A', 'B')
    h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'] } })
    conflictOf(h.announce('B', 'i-b', fileSet('main.py')))
    h.propose('A', 'opU', 'utils.py', 'i-a')
    t.equal(errorsOf(h.tick(301), 'RESOLUTION_TIMEOUT').length, 1)
    assertRejected(t, h.commit('A', 'opU', 'utils.py', 'u0', 'u1', 'i-a'), 'SCOPE_FROZEN')
    t.equal(h.opState('opU'), 'PROPOSED')
  })
})

t.test('O5: OP_SUPERSEDE is relayed, chains the ref map, and checks owner and target', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  assertRejected(t, h.supersede('B', 'o2', 'o1', 'a.py', { state_ref_after: 'r2' }), 'AUTHORIZATION_FAILED')
  const other = h.supersede('A', 'o3', 'o1', 'b.py', { state_ref_after: 'r3' })
  t.equal(other.accepted, false, 'a different target is refused')
  t.equal(h.opState('o1'), 'COMMITTED')
  t.equal(h.op('o2'), undefined)
  t.equal(h.op('o3'), undefined)
  assertNoOutput(t, h.supersede('A', 'o4', 'o1', 'a.py', { state_ref_after: 'r4' }))
  assertNoOutput(t, h.commit('A', 'o5', 'a.py', 'r4', 'r5', 'i'))
})

t.test('O6: a best_effort batch reports its stale entries', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  const s = h.batch('A', 'bt', [
    { op_id: 'o2', target: 'a.py', state_ref_before: 'WRONG', state_ref_after: 'r2' },
    { op_id: 'o3', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1' }
  ], 'best_effort', 'i')
  const told = errorsOf(s, 'STALE_STATE_REF').some(p => JSON.stringify(p).includes('o2')) ||
    payloadsOfType(s, 'OP_REJECT').some(p => p.op_id === 'o2' || (Array.isArray(p.rejected_ops) && p.rejected_ops.includes('o2')))
  t.ok(told, 'o2 is reported', { outputs: show(s) })
  t.equal(h.opState('o3'), 'COMMITTED')
  t.not(h.opState('o2'), 'COMMITTED')
})

t.test('O7: an op_id collision never overwrites an existing op', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  const before = h.op('o1')
  t.equal(h.commit('B', 'o1', 'b.py', 'x0', 'x1', 'i-b').accepted, false, 'OP_COMMIT reusing A\'s op id is refused')
  t.equal(h.propose('B', 'o1', 'b.py', 'i-b').accepted, false, 'OP_PROPOSE reusing it is refused')
  t.same(h.op('o1'), before, 'o1 is unchanged')
  h.propose('B', 'p1', 'b.py', 'i-b')
  h.withdraw('B', 'i-b')
  t.equal(h.opState('p1'), 'REJECTED')
  const rej = h.op('p1')
  t.equal(h.commit('B', 'p1', 'b.py', 'y0', 'y1').accepted, false, 'a commit on a REJECTED op is refused')
  t.same(h.op('p1'), rej, 'the REJECTED op keeps its fields')
})

t.test('O9: the per-target ref map is normalised, seeded from the workspace and persisted', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py', 'w.py'])
  h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i')
  assertRejected(t, h.commit('A', 'o2', './a.py', 'WRONG', 'r2', 'i'), 'STALE_STATE_REF')
  h.fileSync('w.py', 'on disk\n')
  assertRejected(t, h.commit('A', 'o3', 'w.py', 'WRONG', 'w1', 'i'), 'STALE_STATE_REF')
  h.restore()
  assertRejected(t, h.commit('A', 'o4', 'a.py', 'WRONG', 'r4', 'i'), 'STALE_STATE_REF')
  assertNoOutput(t, h.commit('A', 'o5', 'a.py', 'r1', 'r5', 'i'))
})

t.test('O11: pre_commit batches are told apart by batch_id; unknown or reused entries ⇐ INVALID_REFERENCE', async t => {
  const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit' })
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py', 'c.py'])
  const e1 = { op_id: 'o1', target: 'a.py', state_ref_before: 'r0', state_ref_after: 'r1', intent_id: 'i' }
  const e2 = { op_id: 'o2', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1', intent_id: 'i' }
  const eNew = { op_id: 'oX', target: 'c.py', state_ref_before: 's0', state_ref_after: 's1', intent_id: 'i' }
  h.batch('A', 'bt', [e1, e2], 'all_or_nothing', 'i')
  assertRejected(t, h.batch('A', 'bt', [e1, eNew], 'all_or_nothing', 'i'), 'INVALID_REFERENCE')
  assertRejected(t, h.batch('A', 'bt-new', [e1, eNew], 'all_or_nothing', 'i'), 'INVALID_REFERENCE')
  t.equal(h.op('oX'), undefined)
  t.equal(h.opState('o1'), 'PROPOSED', 'the known op is untouched')
  assertNoOutput(t, h.batch('A', 'bt', [e1, e2], 'all_or_nothing', 'i'))
  t.equal(h.opState('o1'), 'COMMITTED', 'and its authorization survived')
})

t.test('O12: pre_commit initial batches fail atomically and report per-entry failures', async t => {
  await t.test('all_or_nothing with an entry on a SUSPENDED intent fails the batch', async t => {
    const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit', unavailabilityTimeoutSec: 10 })
    h.join('A', 'B')
    h.announce('A', 'i-a', ['a.py', 'b.py'])
    h.clock.advance(6)
    h.heartbeat('B')
    h.tick(5)
    t.equal(h.intentState('i-a'), 'SUSPENDED')
    const s = h.batch('A', 'bt', [
      { op_id: 'o1', target: 'a.py', state_ref_before: 'r0', state_ref_after: 'r1', intent_id: 'i-a' },
      { op_id: 'o2', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1', intent_id: 'i-a' }
    ], 'all_or_nothing', 'i-a')
    t.same(payloadsOfType(s, 'COORDINATOR_STATUS').filter(p => p.event === 'authorization'), [], 'nothing authorized')
    const failed = !s.accepted || payloadsOfType(s, 'OP_REJECT').some(p => p.op_id === 'bt')
    t.ok(failed, 'the batch is refused', { outputs: show(s) })
    for (const id of ['o1', 'o2']) t.ok(h.opState(id) === undefined || h.opState(id) === 'REJECTED', `${id} is not left pending`)
  })
  await t.test('best_effort: an entry on a terminated intent gets its own OP_REJECT', async t => {
    const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit' })
    h.join('A')
    h.announce('A', 'i-1', ['a.py'])
    h.announce('A', 'i-2', ['b.py'])
    h.withdraw('A', 'i-1')
    const s = h.batch('A', 'bt', [
      { op_id: 'o1', target: 'a.py', state_ref_before: 'r0', state_ref_after: 'r1', intent_id: 'i-1' },
      { op_id: 'o2', target: 'b.py', state_ref_before: 'q0', state_ref_after: 'q1', intent_id: 'i-2' }
    ], 'best_effort')
    t.ok(payloadsOfType(s, 'OP_REJECT').some(p => p.op_id === 'o1'), 'OP_REJECT for o1', { outputs: show(s) })
    matchEach(t, payloadsOfType(s, 'COORDINATOR_STATUS').filter(p => p.event === 'authorization'), [{ authorized_op_id: 'o2', authorized_batch_id: 'bt' }])
  })
})

// ---- 13.4 conflict and governance --------------------------------------------

t.test('G1: a spec-shaped participant CONFLICT_REPORT keeps its related ids and is not auto-dismissed', async t => {
  const h = new Harness()
  h.join('A', 'B', 'C')
  h.announce('A', 'i-a', ['a.py'])
  h.announce('B', 'i-b', ['b.py'])
  h.announce('C', 'i-c', ['c.py'])
  const s = h.report('C', {
    conflict_id: 'cr-1',
    related_intents: ['i-a', 'i-b'],
    related_ops: [],
    category: 'semantic_goal_conflict',
    severity: 'high',
    basis: { kind: 'human_report', explanation: 'they contradict' },
    based_on_watermark: { kind: 'lamport_clock', value: 3 },
    description: 'i-a and i-b contradict each other'
  })
  assertRelayed(t, s)
  t.same([...(h.conflict('cr-1')?.related_intents ?? [])].sort(), ['i-a', 'i-b'])
  h.withdraw('C', 'i-c')
  h.tick(1)
  t.equal(h.conflictState('cr-1'), 'OPEN', 'not auto-dismissed at the next sweep')
  h.withdraw('A', 'i-a')
  const w = h.withdraw('B', 'i-b')
  matchEach(t, payloadsOfType(w, 'RESOLUTION'), [{ conflict_id: 'cr-1', decision: 'dismissed' }], 'dismissed once both related intents end')
})

t.test('G3: the authority check runs before the already-resolved check', async t => {
  const { h, cid } = entityConflict({}, [['O', ['owner']]])
  assertNoOutput(t, h.resolve('O', cid, 'approved'))
  assertRejected(t, h.resolve('A', cid, 'rejected'), 'AUTHORIZATION_FAILED')
})

t.test('G4: CONFLICT_ACK and CONFLICT_ESCALATE are checked', async t => {
  const { h, cid } = entityConflict({}, ['C', ['O', ['owner']], ['R', ['arbiter']], ['R2', ['arbiter']]])
  h.ack('A', cid, 'disputed')
  t.equal(h.conflictState(cid), 'OPEN', 'a disputed ack does not acknowledge')
  h.ack('C', cid, 'seen')
  t.equal(h.conflictState(cid), 'OPEN', 'an unrelated participant cannot acknowledge')
  assertNoOutput(t, h.escalate('O', cid, 'R'))
  const re = h.escalate('C', cid, 'R2')
  t.equal(re.accepted, false, 'an escalated conflict cannot be re-targeted', { outputs: show(re) })
  t.equal(h.conflict(cid)?.escalated_to, 'R')
  assertNoOutput(t, h.resolve('R', cid, 'approved'))
  const late = h.escalate('O', cid, 'R2')
  t.equal(late.accepted, false, 'a closed conflict cannot be escalated')
  t.equal(h.conflictState(cid), 'CLOSED')
  t.equal(h.conflict(cid)?.escalated_to, 'R')
})

t.test('G5: resolution_timeout_sec 0 disables the timeout; RESOLUTION_TIMEOUT is emitted once per conflict', async t => {
  const { h: off, cid: c0 } = entityConflict({ ...LONG, resolutionTimeoutSec: 0 })
  t.same(errorsOf(off.tick(1), 'RESOLUTION_TIMEOUT'), [])
  t.same(errorsOf(off.tick(5000), 'RESOLUTION_TIMEOUT'), [])
  t.equal(off.conflict(c0)?.scope_frozen, false)
  const { h } = entityConflict(LONG)
  t.equal(errorsOf(h.tick(301), 'RESOLUTION_TIMEOUT').length, 1)
  t.same(errorsOf(h.tick(10), 'RESOLUTION_TIMEOUT'), [], 'not repeated on the next sweep')
  t.same(errorsOf(h.tick(400), 'RESOLUTION_TIMEOUT'), [], 'nor later')
})

t.test('G7: a freeze is announced to all and released once the conflict\'s intents end', async t => {
  const { h, cid } = fileConflict(LONG, ['C'])
  const r = h.tick(301)
  const to = outputsOfType(r, 'PROTOCOL_ERROR').filter(o => payloadOf(o).error_code === 'RESOLUTION_TIMEOUT')
  t.same(to.map(o => o.audience), [{ kind: 'all' }], 'RESOLUTION_TIMEOUT goes to all')
  assertRejected(t, h.commit('C', 'c1', 'utils.py', 'u0', 'u1'), 'SCOPE_FROZEN')
  h.withdraw('A', 'i-a')
  const w = h.withdraw('B', 'i-b')
  const res = outputsOfType(w, 'RESOLUTION').filter(o => payloadOf(o).conflict_id === cid)
  t.same(res.map(o => o.audience), [{ kind: 'all' }], 'the release is announced')
  t.equal(h.conflictState(cid), 'DISMISSED')
  assertNoOutput(t, h.commit('C', 'c2', 'utils.py', 'u0', 'u1'))
})

t.test('G9: the timeout escalation prefers an arbiter who is not a party to the conflict', async t => {
  const h = new Harness(LONG)
  h.join(['R1', ['arbiter']], 'A', ['R2', ['arbiter']])
  h.announce('R1', 'i-r', entitySet('e1'))
  const cid = conflictOf(h.announce('A', 'i-a', entitySet('e1')))
  const r = h.tick(301)
  matchEach(t, payloadsOfType(r, 'CONFLICT_ESCALATE'), [{ conflict_id: cid, escalate_to: 'R2' }], { outputs: show(r) })
  t.equal(h.conflict(cid)?.escalated_to, 'R2')
})

// ---- 13.5 liveness, claims, lifecycle ----------------------------------------

t.test('L1: a backend_alert is built while a conflict exists', async t => {
  const { h } = entityConflict({ backendHealthPolicy: { enabled: true, on_degraded: 'warn', on_down: 'warn' } })
  let r: Sent | undefined
  t.doesNotThrow(() => {
    r = h.heartbeat('A', 'working', { backend_health: { model_id: 'anthropic/claude-x', provider_status: 'degraded', checked_at: isoTs(h.now) } })
  })
  if (r === undefined) return
  assertEchoed(t, r)
  const alerts = payloadsOfType(r, 'COORDINATOR_STATUS').filter(p => p.event === 'backend_alert')
  matchEach(t, alerts, [{ affected_principal: 'A', open_conflicts: 1, backend_detail: { model_id: 'anthropic/claude-x', provider_status: 'degraded' } }], { outputs: show(r) })
})

t.test('L2: intent and deferral TTLs expire on tick', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['a.py'], { ttl_sec: 10 })
  h.defer('B', { deferral_id: 'd1', ttl_sec: 5 })
  const r = h.tick(11)
  t.equal(h.intentState('i-a'), 'EXPIRED')
  matchEach(t, payloadsOfType(r, 'INTENT_DEFERRED'), [{ deferral_id: 'd1', status: 'expired', reason: 'ttl' }], { outputs: show(r) })
})

t.test('L4: OP_REJECT and INTENT_CLAIM_STATUS reach everyone, not only the triggering sender', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10, intentClaimGraceSec: 5 })
  h.join('A', 'B', 'C')
  h.announce('A', 'i', ['a.py'])
  h.propose('B', 'op-b', 'a.py', 'i')
  h.announce('A', 'i2', ['z.py'])
  h.propose('B', 'op-b2', 'z.py', 'i2')
  const w = h.withdraw('A', 'i2')
  t.same(outputsOfType(w, 'OP_REJECT').map(o => o.audience), [{ kind: 'all' }], 'the cascade OP_REJECT goes to all')
  h.clock.advance(6)
  h.heartbeat('B')
  h.heartbeat('C')
  h.tick(5)
  t.equal(h.intentState('i'), 'SUSPENDED')
  h.claim('B', 'c1', 'i', 'A', 'j', ['a.py'])
  h.clock.advance(6)
  const s = h.heartbeat('C')
  const r = s.outputs.length > 1 ? s : h.tick(0)
  const st = outputsOfType(r, 'INTENT_CLAIM_STATUS')
  t.equal(st.length, 1, 'the approval after the grace period', { outputs: show(r) })
  t.same(st[0]?.audience, { kind: 'all' })
})

t.test('L5: GOODBYE transfer freezes the proposals on the transferred intents', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i', ['a.py'])
  h.propose('B', 'op-b', 'a.py', 'i')
  h.propose('A', 'op-a', 'a.py', 'i')
  h.goodbye('A', { intent_disposition: 'transfer' })
  t.equal(h.intentState('i'), 'SUSPENDED')
  t.equal(h.opState('op-b'), 'FROZEN')
  t.equal(h.opState('op-a'), 'ABANDONED')
})

t.test('L7: a claim is validated (scope narrowing, original principal, claimer role)', async t => {
  function setup (): Harness {
    const h = new Harness({ unavailabilityTimeoutSec: 10 })
    h.join('A', 'B', ['W', ['observer']])
    h.announce('A', 'i', ['a.py', 'b.py'])
    h.clock.advance(6)
    h.heartbeat('B')
    h.heartbeat('W')
    h.tick(5)
    return h
  }
  const h = setup()
  t.equal(h.intentState('i'), 'SUSPENDED')
  t.equal(h.claim('B', 'c1', 'i', 'A', 'j1', ['a.py', 'b.py', 'c.py']).accepted, false, 'a wider scope is refused')
  t.equal(h.claim('B', 'c2', 'i', 'W', 'j2', ['a.py']).accepted, false, 'a wrong original_principal_id is refused')
  t.equal(h.claim('W', 'c3', 'i', 'A', 'j3', ['a.py']).accepted, false, 'an observer cannot claim')
  t.equal(h.intentState('i'), 'SUSPENDED')
  t.same(h.snap().pending_claims, [])
  const ok = h.claim('B', 'c4', 'i', 'A', 'j4', ['a.py'])
  matchEach(t, payloadsOfType(ok, 'INTENT_CLAIM_STATUS'), [{ decision: 'approved', new_intent_id: 'j4' }], 'a narrowing claim is fine')
})

// ---- 13.6 security and robustness --------------------------------------------

t.test('S1: the verdict pins the principal; the verifier is given the principal id', async t => {
  const h = new Harness(AUTH)
  const wrong = h.hello('B', ['contributor'], { payload: CRED, verdict: { accepted: true, principalId: 'A' } })
  assertRejected(t, wrong, 'CREDENTIAL_REJECTED')
  t.same(h.c.participantIds(), [])
  const right = h.hello('A', ['contributor'], { payload: CRED, verdict: { accepted: true, principalId: 'A' } })
  t.equal(right.accepted, true)
  const seen: string[] = []
  const verifier: Verifier = (_c, _s, pid) => {
    seen.push(pid)
    return { accepted: true, principalId: 'A' }
  }
  const h2 = new Harness({ ...AUTH, verifier })
  assertRejected(t, h2.hello('B', ['contributor'], { payload: CRED }), 'CREDENTIAL_REJECTED')
  t.same(seen, ['B'])
})

t.test('S5: malformed input ⇐ MALFORMED_MESSAGE, never a throw', async t => {
  const h = new Harness()
  h.join('A')
  const good = (type: string, payload: unknown, o: Json = {}): Json => h.env.make(type, 'A', payload, o)
  const cases: Array<[string, unknown, boolean]> = [
    ['null', null, false],
    ['a string', 'hello', false],
    ['a number', 42, false],
    ['an array', [1, 2], false],
    ['an empty object', {}, false],
    ['no message_type', (() => { const e = good('HEARTBEAT', { status: 'idle' }); delete e.message_type; return e })(), true],
    ['message_type not a string', { ...good('HEARTBEAT', { status: 'idle' }), message_type: 7 }, true],
    ['no payload', (() => { const e = good('HEARTBEAT', {}); delete e.payload; return e })(), true],
    ['payload an array', good('HEARTBEAT', []), true],
    ['no sender', (() => { const e = good('HEARTBEAT', {}); delete e.sender; return e })(), true],
    ['sender.principal_id a number', { ...good('HEARTBEAT', {}), sender: { principal_id: 5, principal_type: 'agent', sender_instance_id: 'x' } }, true],
    ['INTENT_CLAIM without fields', good('INTENT_CLAIM', { claim_id: 'c' }), true],
    ['INTENT_ANNOUNCE with resources a string', good('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o', scope: { kind: 'file_set', resources: 'a.py' } }), true],
    ['OP_COMMIT without op_id', good('OP_COMMIT', { target: 'a.py', op_kind: 'replace', state_ref_before: 'a', state_ref_after: 'b' }), true],
    ['a Lamport value that is a string', good('HEARTBEAT', { status: 'idle' }, { watermark: { kind: 'lamport_clock', value: 'abc' } }), true],
    ['a Lamport value that is a float', good('HEARTBEAT', { status: 'idle' }, { watermark: { kind: 'lamport_clock', value: 3.5 } }), true],
    ['a watermark that is null', { ...good('HEARTBEAT', { status: 'idle' }), watermark: null }, true]
  ]
  for (const [name, env, readable] of cases) {
    let r: ApplyResult | undefined
    t.doesNotThrow(() => { r = h.raw(env) }, name)
    if (r === undefined) continue
    const term = assertTerminalShape(t, r, 'A')
    t.equal(r.accepted, false, `${name}: refused`)
    if (term === undefined) continue
    t.equal(typeOf(term), 'PROTOCOL_ERROR', name)
    t.equal(payloadOf(term).error_code, 'MALFORMED_MESSAGE', name, { outputs: show(r) })
    t.same(term.audience, { kind: 'sender' }, name)
    if (readable) t.equal(payloadOf(term).refers_to, (env as Json).message_id, `${name}: refers_to`)
  }
  t.same(h.snap().intents, [])
  t.same(h.snap().operations, [])
})

t.test('S6: anti-replay survives a snapshot beyond 200 ids, and forgets ids older than the window', async t => {
  const h = new Harness(AUTH)
  t.equal(h.hello('A', ['contributor'], { payload: CRED }).accepted, true)
  const first = h.heartbeat('A')
  for (let i = 0; i < 249; i++) h.heartbeat('A')
  h.restore()
  assertRejected(t, h.resend(first.envelope), 'REPLAY_DETECTED')
  const big = JSON.stringify(h.snap()).length
  h.clock.advance(400)
  t.equal(h.heartbeat('A').accepted, true)
  const small = JSON.stringify(h.snap()).length
  t.ok(small < big - 2500, `ids older than the window are dropped (${big} → ${small} chars)`)
})

t.test('S7: a Lamport regression in the authenticated profile ⇐ MALFORMED_MESSAGE', async t => {
  const h = new Harness(AUTH)
  t.equal(h.hello('A', ['contributor'], { payload: CRED }).accepted, true)
  const wm = (v: number): Json => ({ kind: 'lamport_clock', value: v })
  assertEchoed(t, h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: wm(10) }))
  assertRejected(t, h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: wm(5) }), 'MALFORMED_MESSAGE')
  assertRejected(t, h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: wm(10) }), 'MALFORMED_MESSAGE')
  assertEchoed(t, h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: wm(11) }))
  assertEchoed(t, h.send('HEARTBEAT', 'A', { status: 'idle' }, { watermark: wm(1), instance: 'A:restarted' }))
})

t.test('S8: file_changes paths are validated', async t => {
  const bad = ['../etc/passwd', '/abs.py', 'a\\b.py', 'a/./b.py', 'a/../a.py', 'x\u0000.py', 'C:/x.py', 'elsewhere.py']
  for (const p of bad) {
    const h = new Harness()
    h.join('A')
    h.announce('A', 'i', ['a.py'])
    const s = h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', { file_changes: fileChanges({ [p]: ['x', refOf('')] }) })
    t.equal(s.accepted, false, `${JSON.stringify(p)} is refused`, { outputs: show(s) })
    t.same(s.fileWrites, [], `${JSON.stringify(p)}: nothing written`)
    t.same(outputsOfType(s, 'FILE_UPDATED'), [])
    t.not(h.opState('o1'), 'COMMITTED')
    t.same(Object.keys(h.snap().files), [])
  }
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py', 'src/b.py'])
  const s = h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', { file_changes: fileChanges({ 'a.py': ['x', refOf('')], 'src/b.py': ['y', refOf('')] }) })
  t.equal(s.accepted, true, 'paths inside the intent scope are fine', { outputs: show(s) })
  t.same(s.fileWrites.map(w => w.path).sort(), ['a.py', 'src/b.py'])
  t.same(outputsOfType(s, 'FILE_UPDATED').filter(o => o.audience.kind === 'sender').map(o => o.frame.path).sort(), ['a.py', 'src/b.py'])
  t.equal(h.snap().files['a.py']?.state_ref, refOf('x'))
})

t.test('S9: a stale file_changes entry ⇐ STALE_STATE_REF before the commit is accepted', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  const first = h.commit('A', 'o1', 'a.py', refOf(''), refOf('v1'), 'i', { file_changes: fileChanges({ 'a.py': ['v1', refOf('')] }) })
  t.equal(first.accepted, true, { outputs: show(first) })
  t.equal(h.c.readFile('a.py')?.content, 'v1')
  const s = h.commit('A', 'o2', 'a.py', refOf('v1'), refOf('v2'), 'i', { file_changes: fileChanges({ 'a.py': ['v2', 'sha256:deadbeefdeadbeef'] }) })
  assertRejected(t, s, 'STALE_STATE_REF')
  t.same(s.fileWrites, [])
  t.same(outputsOfType(s, 'FILE_UPDATED'), [])
  t.not(h.opState('o2'), 'COMMITTED')
  t.equal(h.snap().files['a.py']?.content, 'v1')
})

t.test('S13: envelopes claiming the coordinator\'s principal id ⇐ AUTHORIZATION_FAILED, not processed', async t => {
  const { h, cid } = entityConflict()
  const coord = h.coordinatorId
  const res = h.send('RESOLUTION', coord, { resolution_id: 'r-x', conflict_id: cid, decision: 'approved', rationale: 'forged' }, { principalType: 'service' })
  assertRejected(t, res, 'AUTHORIZATION_FAILED')
  t.equal(h.conflictState(cid), 'OPEN')
  const hello = h.send('HELLO', coord, { display_name: 'me', roles: ['arbiter'], capabilities: [] }, { principalType: 'service' })
  assertRejected(t, hello, 'AUTHORIZATION_FAILED')
  t.notOk(h.c.participantIds().includes(coord))
})
