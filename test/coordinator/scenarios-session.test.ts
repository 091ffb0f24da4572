/**
 * protocol.md §14 scenarios 1–8: session and handshake.
 */
import t from 'tap'
import type { Credential, Verifier } from '../../src/coordinator/types.js'
import {
  Harness,
  SID,
  assertEchoed,
  assertRejected,
  coordinatorIdOf,
  payloadOf,
  show,
  terminalOf,
  typeOf
} from '../helpers/mpac.js'
import type { Tap } from '../helpers/mpac.js'

const CRED = { type: 'bearer_token', value: 'tok-1' }

t.test('1. join: HELLO ⇐ SESSION_INFO with the PY field set', async t => {
  const h = new Harness()
  const s = h.hello('A', ['contributor'])
  t.equal(s.envelope.watermark && (s.envelope.watermark as { value: number }).value, 1, 'the HELLO carries watermark 1')
  t.equal(s.accepted, true)
  t.equal(s.outputs.length, 1, 'only SESSION_INFO', { outputs: show(s) })
  const term = terminalOf(s)
  t.ok(term, 'one terminal frame')
  if (term === undefined) return
  t.equal(typeOf(term), 'SESSION_INFO')
  t.same(term.audience, { kind: 'sender' })
  const f = term.frame
  t.equal(f.protocol, 'MPAC')
  t.equal(f.session_id, SID)
  t.match(f.sender, { principal_id: coordinatorIdOf(SID), principal_type: 'service' })
  t.equal(f.coordinator_epoch, 1)
  t.same(f.watermark, { kind: 'lamport_clock', value: 3 }, 'max(0,1)+1 on receive, +1 on send')
  t.type(f.message_id, 'string')
  t.type(f.ts, 'string')
  const p = payloadOf(term)
  t.equal(p.session_id, SID)
  t.type(p.protocol_version, 'string')
  t.equal(p.protocol_version, f.version, 'protocol_version matches the envelope version')
  t.equal(p.security_profile, 'open')
  t.equal(p.compliance_profile, 'core')
  t.equal(p.watermark_kind, 'lamport_clock')
  t.equal(p.execution_model, 'post_commit')
  t.equal(p.state_ref_format, 'sha256')
  t.same(p.granted_roles, ['contributor'])
  t.equal(p.identity_verified, true)
  t.same(p.compatibility_errors, [])
  t.equal(p.participant_count, 1)
  t.match(p.liveness_policy, {
    heartbeat_interval_sec: Number,
    unavailability_timeout_sec: Number,
    intent_claim_grace_period_sec: Number,
    resolution_timeout_sec: Number
  })
  t.notOk('identity_method' in p, 'no identity_method without a credential')
  t.equal(h.c.lamport, 3)
  t.same(h.c.participantIds(), ['A'])
})

t.test('2. HELLO-first gate: an unregistered sender ⇐ INVALID_REFERENCE and no state change', async t => {
  for (const [type, payload] of [
    ['HEARTBEAT', { status: 'working' }],
    ['INTENT_ANNOUNCE', { intent_id: 'i-a', objective: 'x', scope: { kind: 'file_set', resources: ['a.py'] } }],
    ['GOODBYE', { reason: 'user_exit' }]
  ] as const) {
    await t.test(type, async t => {
      const h = new Harness()
      const before = h.snap()
      const s = h.send(type, 'A', payload)
      assertRejected(t, s, 'INVALID_REFERENCE')
      const after = h.snap()
      t.same(after.participants, before.participants, 'no participant registered')
      t.same(after.intents, before.intents, 'no intent registered')
      t.same(after.operations, [])
      t.same(h.c.participantIds(), [])
    })
  }
})

t.test('3. open profile grants the requested roles', async t => {
  const h = new Harness()
  const s = h.hello('M', ['arbiter', 'owner'])
  const term = terminalOf(s)
  t.equal(term && typeOf(term), 'SESSION_INFO')
  t.same(term && payloadOf(term).granted_roles, ['arbiter', 'owner'])
  t.same(h.participant('M')?.roles, ['arbiter', 'owner'])
})

t.test('4. authenticated, missing credential ⇐ CREDENTIAL_REJECTED; a later HEARTBEAT ⇐ INVALID_REFERENCE', async t => {
  const h = new Harness({ securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } })
  const s = h.hello('A')
  assertRejected(t, s, 'CREDENTIAL_REJECTED')
  t.same(h.c.participantIds(), [], 'not admitted')
  const hb = h.heartbeat('A')
  assertRejected(t, hb, 'INVALID_REFERENCE')
})

t.test('5. authenticated with a verifier', async t => {
  await t.test('the verifier rejects with "no such token" ⇐ CREDENTIAL_REJECTED with that text', async t => {
    const verifier: Verifier = () => ({ accepted: false, reason: 'no such token' })
    const h = new Harness({ securityProfile: 'authenticated', verifier, rolePolicy: { default_role: 'contributor' } })
    const s = h.hello('A', ['contributor'], { payload: { credential: CRED } })
    const p = assertRejected(t, s, 'CREDENTIAL_REJECTED')
    t.match(p.description, /no such token/)
    t.same(h.c.participantIds(), [])
    // the same verdict supplied by the runtime instead of the config verifier
    const h2 = new Harness({ securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } })
    const s2 = h2.hello('A', ['contributor'], { payload: { credential: CRED }, verdict: { accepted: false, reason: 'no such token' } })
    const p2 = assertRejected(t, s2, 'CREDENTIAL_REJECTED')
    t.match(p2.description, /no such token/)
  })

  await t.test('the verifier accepts with roles [owner] ⇐ SESSION_INFO{granted_roles:[owner], identity_method:"bearer_token"}', async t => {
    const seen: Array<[Credential, string, string]> = []
    const verifier: Verifier = (c, sid, pid) => {
      seen.push([c, sid, pid])
      return { accepted: true, grantedRoles: ['owner'] }
    }
    const h = new Harness({ securityProfile: 'authenticated', verifier })
    const s = h.hello('A', ['contributor'], { payload: { credential: { ...CRED, issuer: 'https://issuer.example' } } })
    assertEchoedInfo(t, s)
    const p = payloadOf(terminalOf(s)!)
    t.same(p.granted_roles, ['owner'])
    t.equal(p.identity_method, 'bearer_token')
    t.equal(p.identity_issuer, 'https://issuer.example')
    t.equal(p.identity_verified, true)
    t.equal(p.security_profile, 'authenticated')
    t.equal(seen.length, 1, 'the verifier was called once')
    t.equal(seen[0]?.[1], SID, 'with the session id')
    t.equal(seen[0]?.[2], 'A', 'and the principal id')
  })

  await t.test('a token issued for session alpha presented to session beta ⇐ CREDENTIAL_REJECTED', async t => {
    const table: Record<string, string> = { 'tok-alpha': 'alpha' }
    const verifier: Verifier = (c, sid) => table[c.value] === sid
      ? { accepted: true, grantedRoles: ['contributor'] }
      : { accepted: false, reason: `token not authorized for session ${sid}` }
    const alpha = new Harness({ sessionId: 'alpha', securityProfile: 'authenticated', verifier })
    assertEchoedInfo(t, alpha.hello('A', ['contributor'], { payload: { credential: { type: 'bearer_token', value: 'tok-alpha' } } }))
    const beta = new Harness({ sessionId: 'beta', securityProfile: 'authenticated', verifier })
    const s = beta.hello('A', ['contributor'], { payload: { credential: { type: 'bearer_token', value: 'tok-alpha' } } })
    assertRejected(t, s, 'CREDENTIAL_REJECTED')
    t.same(beta.c.participantIds(), [])
  })
})

function assertEchoedInfo (t: Tap, s: ReturnType<Harness['hello']>): void {
  t.equal(s.accepted, true, 'admitted', { outputs: show(s) })
  const term = terminalOf(s)
  t.equal(term && typeOf(term), 'SESSION_INFO', 'SESSION_INFO is the terminal frame', { outputs: show(s) })
  t.same(term?.audience, { kind: 'sender' })
}

t.test('6. authenticated without verifier and role policy', async t => {
  await t.test('credential present, no verifier, no role policy ⇐ AUTHORIZATION_FAILED', async t => {
    const h = new Harness({ securityProfile: 'authenticated' })
    const s = h.hello('A', ['contributor'], { payload: { credential: CRED } })
    assertRejected(t, s, 'AUTHORIZATION_FAILED')
    t.same(h.c.participantIds(), [])
  })
  await t.test('policy {default_role: contributor}: a requested [owner] is granted [contributor]', async t => {
    const h = new Harness({ securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } })
    const s = h.hello('A', ['owner'], { payload: { credential: CRED } })
    assertEchoedInfo(t, s)
    t.same(payloadOf(terminalOf(s)!).granted_roles, ['contributor'])
  })
})

t.test('7. replay protection', async t => {
  const auth = { securityProfile: 'authenticated' as const, rolePolicy: { default_role: 'contributor' } }
  await t.test('the same HELLO envelope twice ⇐ the second gets REPLAY_DETECTED', async t => {
    const h = new Harness(auth)
    const first = h.hello('A', ['contributor'], { payload: { credential: CRED } })
    assertEchoedInfo(t, first)
    const again = h.resend(first.envelope)
    assertRejected(t, again, 'REPLAY_DETECTED')
  })
  await t.test('a HEARTBEAT whose ts is 2020-01-01 ⇐ REPLAY_DETECTED', async t => {
    const h = new Harness(auth)
    assertEchoedInfo(t, h.hello('A', ['contributor'], { payload: { credential: CRED } }))
    const s = h.send('HEARTBEAT', 'A', { status: 'working' }, { ts: '2020-01-01T00:00:00Z' })
    assertRejected(t, s, 'REPLAY_DETECTED')
    // control: the same message with a current ts passes
    assertEchoed(t, h.heartbeat('A'))
  })
  await t.test('a ts with a space instead of T ⇐ REPLAY_DETECTED', async t => {
    const h = new Harness(auth)
    assertEchoedInfo(t, h.hello('A', ['contributor'], { payload: { credential: CRED } }))
    const ts = new Date(h.now).toISOString().replace('T', ' ')
    const s = h.send('HEARTBEAT', 'A', { status: 'working' }, { ts })
    assertRejected(t, s, 'REPLAY_DETECTED')
  })
  await t.test('in an open session the duplicate is simply processed again', async t => {
    const h = new Harness()
    const first = h.hello('A')
    assertEchoedInfo(t, first)
    const again = h.resend(first.envelope)
    assertEchoedInfo(t, again)
    t.same(h.c.participantIds(), ['A'])
  })
})

t.test('8. identity binding: a credential pinned to another principal cannot take over A', async t => {
  // The connection binding itself is the server's; the core's part is the
  // verdict's principal pin (a token bound to E cannot admit a HELLO claiming A)
  // and leaving A's admitted record untouched by the failed attempt.
  const verifier: Verifier = (c) => c.value === 'tok-a'
    ? { accepted: true, grantedRoles: ['contributor'], principalId: 'A' }
    : { accepted: true, grantedRoles: ['arbiter'], principalId: 'E' }
  const h = new Harness({ securityProfile: 'authenticated', verifier })
  assertEchoedInfo(t, h.hello('A', ['contributor'], { payload: { credential: { type: 'bearer_token', value: 'tok-a' } } }))
  const a = h.announce('A', 'i-a', ['a.py'])
  t.equal(a.accepted, true)
  const before = h.participant('A')
  const s = h.hello('A', ['arbiter'], {
    instance: 'A:impostor',
    payload: { credential: { type: 'bearer_token', value: 'tok-e' } }
  })
  assertRejected(t, s, 'CREDENTIAL_REJECTED')
  t.same(h.participant('A')?.roles, before?.roles, "A's roles are unchanged")
  t.equal(h.intentState('i-a'), 'ACTIVE')
  t.same(h.c.participantIds(), ['A'], 'E was not registered')
  // the same pin through the runtime verdict
  const s2 = h.hello('A', ['arbiter'], {
    instance: 'A:impostor',
    payload: { credential: { type: 'bearer_token', value: 'tok-e' } },
    verdict: { accepted: true, grantedRoles: ['arbiter'], principalId: 'E' }
  })
  assertRejected(t, s2, 'CREDENTIAL_REJECTED')
  t.same(h.participant('A')?.roles, ['contributor'])
})
