/**
 * Internals the scenario tests do not reach: configuration errors, admission
 * details (role policy constraints, verifier failures, participant limit),
 * backend health (§9.7), unusual inputs, claim and governance edge cases,
 * coordinator-only message types, recovery and close.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import { pyListRepr } from '../../src/coordinator/admission.js'
import { COORDINATOR_AUTHORED_TYPES } from '../../src/protocol/message-types.js'
import type { CoordinatorConfig, CoreInput } from '../../src/coordinator/types.js'
import { Harness, T0, assertEchoed, assertRejected, assertRelayed, entitySet, errorsOf, fileSet, payloadsOfType, terminalOf, type Json } from '../helpers/mpac.js'

t.test('configuration errors throw; inputs never do', async t => {
  const bad: Array<Partial<CoordinatorConfig>> = [
    { sessionId: '' },
    { securityProfile: 'verified' as 'open' },
    { securityProfile: 'weird' as 'open' },
    { complianceProfile: 'semantic' as 'core' },
    { executionModel: 'later' as 'post_commit' },
    { executionModel: 'pre_commit' },
    { heartbeatIntervalSec: -1 },
    { maxFileBytes: Number.NaN }
  ]
  for (const c of bad) t.throws(() => new Coordinator({ sessionId: 's', ...c }), TypeError, JSON.stringify(c))
  const c = new Coordinator({ sessionId: 's' })
  t.equal(c.coordinatorId, 'service:coordinator-s')
  for (const junk of [null, 42, 'x', [], { message_type: 'HELLO' }, { protocol: 'MPAC' }]) {
    const r = c.handle(junk, T0)
    t.equal(r.accepted, false)
    t.equal(r.outputs.length, 1)
    t.match(r.outputs[0], { terminal: true, audience: { kind: 'sender' }, frame: { message_type: 'PROTOCOL_ERROR', payload: { error_code: 'MALFORMED_MESSAGE' } } })
  }
  t.doesNotThrow(() => c.handle({ protocol: 'MPAC' }, Number.NaN), 'an unusable time does not throw')
  const unknown = c.apply({ kind: 'bogus', now: T0 } as unknown as CoreInput)
  t.same(unknown.outputs, [])
  t.equal(unknown.accepted, false)
})

t.test('envelopes: coordinator ids are deterministic and UUID-shaped; null payload values are dropped', async t => {
  const run = (): Json[] => {
    const h = new Harness()
    h.join('A')
    return h.announce('A', 'i', ['a.py']).outputs.map(o => o.frame as Json)
  }
  t.same(run(), run(), 'same inputs, same outputs')
  const h = new Harness()
  const info = terminalOf(h.hello('A'))?.frame as Json
  t.match(info.message_id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/)
  t.same(Object.keys(info), ['protocol', 'version', 'message_type', 'message_id', 'session_id', 'sender', 'ts', 'payload', 'watermark', 'coordinator_epoch'])
  t.notOk('identity_method' in (info.payload as Json))
})

t.test('role policy: assignments, allowed principal types, max_count; default role fallback', async t => {
  const h = new Harness({
    rolePolicy: {
      default_role: 'contributor',
      role_assignments: { O: ['owner', 'arbiter'], O2: ['owner'], R: ['arbiter'] },
      role_constraints: { arbiter: { allowed_principal_types: ['human'] }, owner: { max_count: 1 } }
    }
  })
  t.match(payloadsOfType(h.hello('O', ['owner', 'arbiter', 'owner']), 'SESSION_INFO'), [{ granted_roles: ['owner', 'arbiter'] }])
  t.match(payloadsOfType(h.hello('O2', ['owner']), 'SESSION_INFO'), [{ granted_roles: ['contributor'] }], 'max_count reached → default')
  t.match(payloadsOfType(h.hello('R', ['arbiter'], { principalType: 'agent' }), 'SESSION_INFO'), [{ granted_roles: ['contributor'] }], 'agents may not be arbiters here')
  t.match(payloadsOfType(h.hello('O', ['owner']), 'SESSION_INFO'), [{ granted_roles: ['owner'] }], 'a rejoin does not count itself')
  t.match(payloadsOfType(h.hello('X'), 'SESSION_INFO'), [{ granted_roles: ['contributor'] }])
})

t.test('admission limits and verifier failures', async t => {
  const h = new Harness({ maxParticipants: 2 })
  h.join('A', 'B')
  assertRejected(t, h.hello('C'), 'AUTHORIZATION_FAILED')
  assertEchoed(t, h.heartbeat('A'))
  t.match(payloadsOfType(h.hello('A', []), 'SESSION_INFO'), [{ granted_roles: ['contributor'] }], 'a re-HELLO is not a new participant; no roles → contributor')
  const cred = { credential: { type: 'api_key', value: 'k', issuer: 'https://issuer' } }
  const a = new Harness({ securityProfile: 'authenticated', verifier: () => { throw new Error('boom') } })
  const r = assertRejected(t, a.hello('A', ['owner'], { payload: cred }), 'CREDENTIAL_REJECTED')
  t.match(r.description, /boom/)
  const b = new Harness({ securityProfile: 'authenticated', verifier: () => ({ accepted: true }) })
  assertRejected(t, b.hello('A', ['owner'], { payload: cred }), 'AUTHORIZATION_FAILED')
  assertRejected(t, b.hello('A', ['owner'], { payload: { credential: { type: 'api_key', value: '' } } }), 'CREDENTIAL_REJECTED')
  const info = payloadsOfType(b.hello('A', ['owner'], { payload: cred, verdict: { accepted: true, grantedRoles: ['owner'], principalId: 'A' } }), 'SESSION_INFO')
  t.match(info, [{ identity_verified: true, identity_method: 'api_key', identity_issuer: 'https://issuer', granted_roles: ['owner'] }])
})

t.test('backend health (§9.7): alerts, suspend_and_claim, recovery, switch policy', async t => {
  const policy = { enabled: true, on_degraded: 'warn', on_down: 'suspend_and_claim', auto_switch: 'allowed', allowed_providers: ['anthropic', 'openai'] } as const
  const h = new Harness({ backendHealthPolicy: policy, unavailabilityTimeoutSec: 10_000 })
  h.join('A', 'B')
  h.hello('A', ['contributor'], { payload: { backend: { model_id: 'anthropic/claude', provider: 'anthropic' } } })
  t.match(payloadsOfType(h.hello('B'), 'SESSION_INFO'), [{ liveness_policy: { backend_health_policy: { enabled: true } } }])
  h.announce('A', 'i', ['a.py'])
  h.announce('A', 'k', entitySet('x'))
  h.announce('B', 'j', entitySet('x'))
  h.propose('B', 'op', 'a.py', 'i')
  const bh = (status: string, extra: Json = {}): Json => ({ backend_health: { model_id: 'anthropic/claude', provider_status: status, checked_at: '2026-05-01T00:00:00Z', ...extra } })
  const deg = h.heartbeat('A', 'working', bh('degraded', { status_detail: 'slow' }))
  assertEchoed(t, deg)
  t.match(payloadsOfType(deg, 'COORDINATOR_STATUS'), [{ event: 'backend_alert', affected_principal: 'A', session_health: 'degraded', open_conflicts: 2, backend_detail: { provider_status: 'degraded', status_detail: 'slow', alternatives: [] } }])
  t.same(payloadsOfType(h.heartbeat('A', 'working', bh('degraded')), 'COORDINATOR_STATUS'), [], 'no alert without a change')
  const down = h.heartbeat('A', 'working', bh('down'))
  t.match(payloadsOfType(down, 'INTENT_UPDATE'), [{ intent_id: 'i', objective: '[SUSPENDED: backend down] work on i' }, { intent_id: 'k' }])
  t.equal(h.intentState('i'), 'SUSPENDED')
  t.equal(h.opState('op'), 'FROZEN')
  const up = h.heartbeat('A', 'working', bh('operational'))
  t.match(payloadsOfType(up, 'COORDINATOR_STATUS'), [{ event: 'backend_alert', backend_detail: { provider_status: 'operational' } }])
  t.equal(h.intentState('i'), 'ACTIVE', 'fix L6: restored on recovery')
  t.equal(h.opState('op'), 'PROPOSED')
  assertRejected(t, h.heartbeat('A', 'working', { backend_health: { model_id: 'mistral/large', provider_status: 'operational', checked_at: '2026-05-01T00:00:00Z', switched_from: 'anthropic/claude' } }), 'BACKEND_SWITCH_DENIED')
  assertEchoed(t, h.heartbeat('A', 'working', { backend_health: { model_id: 'openai/gpt', provider_status: 'operational', checked_at: '2026-05-01T00:00:00Z', switched_from: 'anthropic/claude' } }))
  const f = new Harness({ backendHealthPolicy: { enabled: true, auto_switch: 'forbidden', on_degraded: 'ignore' } })
  f.join('A')
  assertRejected(t, f.heartbeat('A', 'working', { backend_health: { model_id: 'x', provider_status: 'degraded', checked_at: '2026-05-01T00:00:00Z', switched_from: 'y' } }), 'BACKEND_SWITCH_DENIED')
  t.same(payloadsOfType(f.heartbeat('A', 'working', bh('degraded')), 'COORDINATOR_STATUS'), [], 'ignore')
  const off = new Harness()
  off.join('A')
  t.same(off.heartbeat('A', 'working', bh('down')).outputs.length, 1, 'no policy: recorded only')
})

t.test('coordinator-only and unknown types are echoed; participant resolution-form deferrals are ignored', async t => {
  const h = new Harness()
  h.join('A')
  // Every type listed as coordinator-authored (a new one needs a payload here), a participant's PROTOCOL_ERROR, an unknown type.
  for (const type of [...COORDINATOR_AUTHORED_TYPES, 'PROTOCOL_ERROR', 'X_VENDOR']) {
    const payloads: Record<string, Json> = {
      SESSION_INFO: { session_id: 's', protocol_version: '1', security_profile: 'open', compliance_profile: 'core', watermark_kind: 'lamport_clock', execution_model: 'post_commit', state_ref_format: 'sha256', granted_roles: [] },
      COORDINATOR_STATUS: { event: 'heartbeat', coordinator_id: 'x', session_health: 'healthy' },
      INTENT_CLAIM_STATUS: { claim_id: 'c', original_intent_id: 'i', decision: 'rejected', reason: 'no' },
      PROTOCOL_ERROR: { error_code: 'CAUSAL_GAP', description: 'gap' },
      SESSION_CLOSE: { reason: 'manual', final_lamport_clock: 1 },
      X_VENDOR: { anything: 1 }
    }
    const epoch = (COORDINATOR_AUTHORED_TYPES as readonly string[]).includes(type) ? { extra: { coordinator_epoch: 1 } } : {}
    t.ok(payloads[type], `a payload for ${type}`)
    assertEchoed(t, h.send(type, 'A', payloads[type], epoch), type)
  }
  const d = h.send('INTENT_DEFERRED', 'A', { deferral_id: 'd', principal_id: 'A', status: 'resolved' })
  assertEchoed(t, d)
  t.equal(d.outputs.length, 1)
  t.equal(h.c.closed, false)
})

t.test('the coordinator principal id, foreign session ids, the closed session', async t => {
  const h = new Harness()
  h.join('A')
  assertRejected(t, h.hello(h.coordinatorId), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.send('HEARTBEAT', 'A', {}, { sessionId: 'other' }), 'INVALID_REFERENCE')
  h.close()
  t.same(h.close().outputs, [], 'a second close does nothing')
  assertRejected(t, h.hello('B'), 'SESSION_CLOSED')
  assertRelayed(t, h.goodbye('A'))
  t.equal(h.participant('A')?.status, 'offline')
})

t.test('recovered: epoch + 1, grace on last_seen, COORDINATOR_STATUS recovered', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10, heartbeatIntervalSec: 1000 })
  h.join('A')
  const r = h.apply({ kind: 'recovered', now: T0 + 5000, graceSec: 20 })
  t.equal(h.c.epoch, 2)
  t.match(r.outputs, [{ audience: { kind: 'all' }, frame: { coordinator_epoch: 2, payload: { event: 'recovered' } } }])
  t.equal(h.c.nextDeadline(), T0 + 5000 + 20_000 + 10_000 + 1, 'nobody is unavailable before now + grace + timeout')
})

t.test('claims: validation and sweep outcomes', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1, intentClaimGraceSec: 100, heartbeatIntervalSec: 1000 })
  h.join('A', 'B', ['W', ['observer']])
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.announce('A', 'i2', ['z.py'], { ttl_sec: 50 })
  h.announce('B', 'busy', ['c.py'])
  h.clock.advance(0.5)
  h.heartbeat('B', 'offline')
  h.heartbeat('W', 'offline')
  h.clock.advance(0.6)
  h.tick()
  t.equal(h.intentState('i'), 'SUSPENDED')
  assertRejected(t, h.claim('B', 'c0', 'i', 'Z', 'j', ['a.py']), 'INVALID_REFERENCE')
  assertRejected(t, h.claim('W', 'c0', 'i', 'A', 'j', ['a.py']), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.claim('B', 'c0', 'i', 'A', 'busy', ['a.py']), 'INVALID_REFERENCE')
  assertRejected(t, h.claim('B', 'c0', 'i', 'A', 'j', ['a.py', 'q.py']), 'INVALID_REFERENCE')
  assertRelayed(t, h.claim('B', 'c1', 'i', 'A', 'j', ['a.py']))
  assertRelayed(t, h.claim('B', 'c2', 'i2', 'A', 'j2', ['z.py']))
  t.equal(h.c.nextDeadline(), T0 + 50_000, 'the TTL of i2 comes before the claim grace')
  const exp = h.tick(60)
  t.match(payloadsOfType(exp, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c2', decision: 'rejected', reason: 'intent_no_longer_suspended' }], 'expiry ends the claim')
  t.equal(h.intent('i')?.claimed_by, 'B')
  const back = h.hello('A')
  t.match(payloadsOfType(back, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c1', decision: 'withdrawn', reason: 'original_owner_rejoined' }])
  t.equal(h.intentState('i'), 'ACTIVE')
  t.equal(h.intent('i')?.claimed_by, null)
  assertRejected(t, h.claim('A', 'c3', 'i', 'A', 'j3', ['a.py']), 'INVALID_REFERENCE')
})

t.test('governance edge cases: ack, escalate, resolution, participant reports', async t => {
  const h = new Harness({ resolutionTimeoutSec: 0 })
  h.join('A', 'B', 'C', ['O', ['owner']], ['R', ['arbiter']], ['R2', ['arbiter']])
  h.announce('A', 'i-a', entitySet('e'))
  const cid = String(payloadsOfType(h.announce('B', 'i-b', entitySet('e')), 'CONFLICT_REPORT')[0]?.conflict_id)
  assertRejected(t, h.ack('C', cid), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.ack('A', 'nope'), 'INVALID_REFERENCE')
  assertRelayed(t, h.ack('A', cid, 'disputed'))
  t.equal(h.conflictState(cid), 'OPEN', 'disputed leaves it OPEN')
  assertRejected(t, h.escalate('C', cid, 'R'), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.escalate('A', cid, 'nobody'), 'INVALID_REFERENCE')
  assertRejected(t, h.escalate('A', cid, 'C'), 'AUTHORIZATION_FAILED')
  assertRelayed(t, h.escalate('A', cid, 'R'))
  assertRejected(t, h.escalate('B', cid, 'O'), 'AUTHORIZATION_FAILED', 'only the target or an arbiter re-targets')
  assertRelayed(t, h.escalate('R2', cid, 'O'))
  assertRelayed(t, h.ack('O', cid))
  t.equal(h.conflictState(cid), 'ESCALATED')
  assertRelayed(t, h.resolve('O', cid, 'merged', { resolution_id: undefined }))
  assertRejected(t, h.ack('A', cid), 'INVALID_REFERENCE')
  assertRejected(t, h.escalate('A', cid, 'R'), 'INVALID_REFERENCE')
  assertRejected(t, h.report('A', { conflict_id: cid, category: 'scope_overlap', severity: 'low', related_intents: ['i-a'] }), 'INVALID_REFERENCE')
  assertRejected(t, h.report('A', { conflict_id: 'p0', category: 'scope_overlap', severity: 'low' }), 'MALFORMED_MESSAGE')
  assertRelayed(t, h.report('C', { conflict_id: 'p1', category: 'semantic_goal_conflict', severity: 'high', principal_a: 'A', principal_b: 'B', intent_a: 'i-a', intent_b: 'i-b' }))
  assertRelayed(t, h.report('C', { conflict_id: 'p2', category: 'concurrent_write', severity: 'low', related_intents: ['i-a', 'i-b', 'i-a'], related_ops: ['x'] }))
  t.match(h.conflict('p2'), { principal_a: 'A', principal_b: 'B', related_intents: ['i-a', 'i-b'] })
  assertRelayed(t, h.report('C', { conflict_id: 'p3', category: 'x', severity: 'info', related_ops: ['nothing'], involved_principals: ['A', 'B'] }))
  const w = h.withdraw('A', 'i-a')
  t.same(payloadsOfType(w, 'RESOLUTION').map(p => p.conflict_id), ['p3'], 'a report on unknown ops only is dismissed at the next sweep')
  const auth = new Harness({ securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor', role_assignments: { O: ['owner'] } } })
  const cred = { payload: { credential: { type: 'api_key', value: 'k' } } }
  auth.hello('A', ['contributor'], cred)
  auth.hello('B', ['contributor'], cred)
  auth.hello('O', ['owner'], cred)
  auth.announce('A', 'i-a', entitySet('e'))
  const c2 = String(payloadsOfType(auth.announce('B', 'i-b', entitySet('e')), 'CONFLICT_REPORT')[0]?.conflict_id)
  assertRejected(t, auth.send('RESOLUTION', 'O', { resolution_id: 'r', conflict_id: c2, decision: 'approved', rationale: 'x' }, { watermark: null }), 'MALFORMED_MESSAGE')
})

t.test('intent edge cases: supersedes_intent_id, update errors, withdraw of a SUSPENDED intent, py list repr', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1 })
  h.join('A', 'B')
  h.announce('A', 'i1', entitySet('x'))
  h.announce('B', 'b1', ['b.py'])
  assertRejected(t, h.announce('A', 'i2', entitySet('y'), { supersedes_intent_id: 'nope' }), 'INVALID_REFERENCE')
  assertRejected(t, h.announce('A', 'i2', entitySet('y'), { supersedes_intent_id: 'b1' }), 'AUTHORIZATION_FAILED')
  assertRelayed(t, h.announce('A', 'i2', entitySet('y'), { supersedes_intent_id: 'i1', priority: 'high', assumptions: ['x'] }))
  t.equal(h.intentState('i1'), 'SUPERSEDED')
  assertRelayed(t, h.announce('A', 'q1', { kind: 'query', expression: 'q' }))
  assertRelayed(t, h.announce('A', 'q2', { kind: 'query', expression: 'q2' }))
  t.equal(h.intentState('q1'), 'SUPERSEDED', 'same non-indexable kind overlaps')
  assertRelayed(t, h.announce('A', 'u1', { kind: 'file_set', resources: ['u.py'], canonical_uris: ['resource://u'] }))
  assertRelayed(t, h.announce('A', 'u2', { kind: 'file_set', resources: ['v.py'], canonical_uris: ['resource://u'] }))
  t.equal(h.intentState('u1'), 'SUPERSEDED', 'canonical URIs decide')
  assertRejected(t, h.update('A', 'nope', { objective: 'x' }), 'INVALID_REFERENCE')
  assertRejected(t, h.update('A', 'i1', { objective: 'x' }), 'INVALID_REFERENCE')
  assertRelayed(t, h.update('A', 'i2', { objective: 'new', assumptions: ['a'], scope: fileSet('n.py') }))
  t.equal(h.intent('i2')?.objective, 'new')
  const s = h.update('A', 'i2', { scope: fileSet('n.py', 'b.py') })
  t.match(assertRejected(t, s, 'STALE_INTENT'), { holder_intent_id: 'b1', shared_files: ['b.py'] })
  t.notOk('duplicate_candidate' in (errorsOf(s)[0] as Json))
  h.clock.advance(0.5)
  h.heartbeat('A')
  h.clock.advance(0.6)
  h.tick()
  t.equal(h.intentState('b1'), 'SUSPENDED')
  assertRelayed(t, h.withdraw('B', 'b1'))
  t.equal(h.intentState('b1'), 'WITHDRAWN')
  assertRejected(t, h.withdraw('B', 'b1'), 'INVALID_REFERENCE')
  t.equal(pyListRepr(['a.py', "it's.py", 'both\'"', 'back\\slash', 'tab\t\n\r\u0001']), `['a.py', "it's.py", 'both\\'"', 'back\\\\slash', 'tab\\t\\n\\r\\x01']`)
})

t.test('operations: supersede and reject edge cases, governance intent gate, observers', async t => {
  const h = new Harness({ complianceProfile: 'governance' })
  h.join('A', 'B', ['O', ['owner']], ['W', ['observer']], ['V', ['reviewer']])
  h.announce('A', 'i', ['a.py'])
  assertRejected(t, h.propose('A', 'p0', 'a.py'), 'INVALID_REFERENCE')
  assertRejected(t, h.propose('A', 'p0', 'a.py', 'nope'), 'INVALID_REFERENCE')
  assertRejected(t, h.commit('A', 'p0', 'a.py', 'r0', 'r1', 'nope'), 'INVALID_REFERENCE')
  assertRejected(t, h.propose('W', 'p0', 'a.py', 'i'), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.commit('W', 'p0', 'a.py', 'r0', 'r1', 'i'), 'AUTHORIZATION_FAILED')
  assertRelayed(t, h.propose('A', 'p1', 'a.py', 'i'))
  assertRejected(t, h.propose('A', 'p1', 'a.py', 'i'), 'INVALID_REFERENCE')
  assertRejected(t, h.commit('B', 'p1', 'a.py', 'r0', 'r1', 'i'), 'AUTHORIZATION_FAILED')
  assertRelayed(t, h.commit('A', 'p1', 'a.py', 'r0', 'r1', 'i', { change_ref: 'git:abc', summary: 'done' }))
  t.equal(h.opState('p1'), 'COMMITTED')
  assertRejected(t, h.supersede('A', 'p1', 'p1', 'a.py'), 'INVALID_REFERENCE')
  assertRejected(t, h.supersede('A', 's1', 'nope', 'a.py'), 'INVALID_REFERENCE')
  assertRejected(t, h.supersede('B', 's1', 'p1', 'a.py'), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.supersede('A', 's1', 'p1', 'b.py'), 'INVALID_REFERENCE')
  assertRelayed(t, h.supersede('O', 's1', 'p1', './a.py', { op_kind: 'patch' }))
  t.match(h.op('s1'), { state: 'COMMITTED', state_ref_before: 'r1', state_ref_after: null, op_kind: 'patch', intent_id: 'i' })
  assertRejected(t, h.opReject('V', 'nope'), 'INVALID_REFERENCE')
})

t.test('checkEnvelopeSessionId: a foreign envelope session_id is refused by default and admitted when the check is off', async t => {
  const strict = new Harness()
  assertRejected(t, strict.hello('A', ['contributor'], { sessionId: 'elsewhere' }), 'INVALID_REFERENCE')
  t.same(strict.snap().participants, [], 'nobody admitted')
  const lax = new Harness({ checkEnvelopeSessionId: false })
  const r = lax.hello('A', ['contributor'], { sessionId: 'elsewhere' })
  t.equal(r.accepted, true)
  t.equal(terminalOf(r)?.frame.session_id, lax.sessionId, 'SESSION_INFO carries the coordinator\'s session id')
  assertRelayed(t, lax.announce('A', 'i', ['a.py'], {}, { sessionId: 'elsewhere' }))
  t.equal(lax.intentState('i'), 'ACTIVE')
})
