import t from 'tap'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isError, isType, joined, type Frame, type TestClient } from '../helpers/ws.js'

const payload = (f: Frame): Frame => f.payload as Frame

/** Keeps a participant alive while a test waits for something else (activity, not a sleep). */
function keepAlive (t: { teardown (fn: () => void): void }, c: TestClient, pid: string, sessionId: string): void {
  const timer = setInterval(() => { if (!c.isClosed) c.send(envelope('HEARTBEAT', pid, { status: 'working' }, sessionId)) }, 100)
  t.teardown(() => clearInterval(timer))
}

t.test('SESSION_INFO reflects every policy setting', async t => {
  const srv = await startServer(t, {
    argv: [
      '--compliance-profile', 'governance', '--execution-model', 'pre_commit',
      '--unavailability-timeout', '45', '--resolution-timeout', '120', '--claim-grace', '5', '--heartbeat-interval', '15',
      '--backend-health-policy', '{"enabled":true,"on_down":"suspend_and_claim"}'
    ]
  })
  const { client, info } = await joined(`${srv.url}/session/p`, 'agent:a', { roles: ['owner'] })
  t.teardown(() => client.close())
  const p = payload(info)
  t.equal(p.compliance_profile, 'governance')
  t.equal(p.execution_model, 'pre_commit')
  t.equal(p.security_profile, 'open')
  const live = p.liveness_policy as Frame
  t.equal(live.heartbeat_interval_sec, 15)
  t.equal(live.unavailability_timeout_sec, 45)
  t.equal(live.resolution_timeout_sec, 120)
  t.equal(live.intent_claim_grace_period_sec, 5)
  t.match(live.backend_health_policy, { enabled: true, on_down: 'suspend_and_claim' })

  const plain = await startServer(t)
  const { client: c2, info: i2 } = await joined(`${plain.url}/session/p`, 'agent:a')
  t.teardown(() => c2.close())
  t.equal(payload(i2).compliance_profile, 'core')
  t.equal(payload(i2).execution_model, 'post_commit')
  t.equal((payload(i2).liveness_policy as Frame).unavailability_timeout_sec, 90)
})

t.test('governance + pre_commit: OP_PROPOSE → authorization → OP_COMMIT', async t => {
  const srv = await startServer(t, { argv: ['--compliance-profile', 'governance', '--execution-model', 'pre_commit'] })
  const { client: a } = await joined(`${srv.url}/session/g`, 'agent:a', { roles: ['owner'] })
  t.teardown(() => a.close())
  await a.request(announce('agent:a', 'i1', ['f.txt'], 'g'))
  const propose = envelope('OP_PROPOSE', 'agent:a', { op_id: 'op1', intent_id: 'i1', target: 'f.txt', op_kind: 'replace' }, 'g')
  a.send(propose)
  const auth = await a.next(f => f.message_type === 'COORDINATOR_STATUS' && payload(f).event === 'authorization')
  t.equal(payload(auth).authorized_op_id, 'op1')
  t.equal((await a.next(f => f.message_id === propose.message_id)).message_type, 'OP_PROPOSE', 'proposal relayed')
  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op1', intent_id: 'i1', target: 'f.txt', op_kind: 'replace',
    state_ref_before: 'sha256:0000000000000000', state_ref_after: 'sha256:1111111111111111'
  }, 'g')
  t.equal((await a.request(commit)).message_type, 'OP_COMMIT', 'the authorized op commits')
  const unauthorized = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op-x', intent_id: 'i1', target: 'f.txt', op_kind: 'replace',
    state_ref_before: 'sha256:1111111111111111', state_ref_after: 'sha256:2222222222222222'
  }, 'g')
  a.send(unauthorized)
  const status = await a.next(f => f.message_type === 'COORDINATOR_STATUS' && payload(f).event === 'authorization')
  t.equal(payload(status).authorized_op_id, 'op-x', 'an unknown op id in OP_COMMIT is a proposal, not a commit')
})

t.test('a silent participant is declared unavailable on time and another takes over with INTENT_CLAIM', async t => {
  const srv = await startServer(t, { argv: ['--unavailability-timeout', '0.6', '--heartbeat-interval', '5'] })
  const url = `${srv.url}/session/l`
  const { client: silent } = await joined(url, 'agent:silent')
  await silent.request(announce('agent:silent', 'i-s', ['s.txt'], 'l'))
  const { client: other } = await joined(url, 'agent:other')
  t.teardown(() => { silent.close(); other.close() })
  keepAlive(t, other, 'agent:other', 'l')
  const started = Date.now()
  const unavailable = await other.next(isError('PARTICIPANT_UNAVAILABLE'), 4000)
  t.match(JSON.stringify(unavailable.payload), /agent:silent/, 'PARTICIPANT_UNAVAILABLE about the silent one')
  t.ok(Date.now() - started < 1600, `within a second of the timeout (${Date.now() - started} ms)`)
  const claim = envelope('INTENT_CLAIM', 'agent:other', {
    claim_id: 'c1', original_intent_id: 'i-s', original_principal_id: 'agent:silent', new_intent_id: 'i-o',
    objective: 'take over', scope: { kind: 'file_set', resources: ['s.txt'] }
  }, 'l')
  other.send(claim)
  const status = await other.next(isType('INTENT_CLAIM_STATUS'), 4000)
  t.equal(payload(status).decision, 'approved')
  t.equal(payload(status).claim_id, 'c1')
})

t.test('an unresolved conflict escalates after the resolution timeout', async t => {
  const srv = await startServer(t, { argv: ['--resolution-timeout', '0.5'] })
  const url = `${srv.url}/session/r`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  t.teardown(() => { a.close(); b.close() })
  keepAlive(t, a, 'agent:a', 'r')
  keepAlive(t, b, 'agent:b', 'r')
  await a.request(announce('agent:a', 'i-a', ['a.txt'], 'r'))
  await b.request(announce('agent:b', 'i-b', ['b.txt'], 'r'))
  const report = envelope('CONFLICT_REPORT', 'agent:a', {
    conflict_id: 'conf-1', related_intents: ['i-a', 'i-b'], category: 'semantic_goal_conflict', severity: 'high',
    basis: { kind: 'human_report' }, based_on_watermark: { kind: 'lamport_clock', value: 1 }, description: 'goals clash'
  }, 'r')
  t.equal((await a.request(report)).message_type, 'CONFLICT_REPORT')
  const started = Date.now()
  const timeout = await a.next(f => isError('RESOLUTION_TIMEOUT')(f) || f.message_type === 'CONFLICT_ESCALATE', 4000)
  t.ok(timeout, `escalated (${String(timeout.message_type)} ${String(payload(timeout).error_code ?? '')})`)
  t.ok(Date.now() - started < 2000, 'on time')
})

t.test('governance + pre_commit: a rejected proposal cannot be committed', async t => {
  const srv = await startServer(t, { argv: ['--compliance-profile', 'governance', '--execution-model', 'pre_commit'] })
  const url = `${srv.url}/session/rej`
  const { client: a } = await joined(url, 'agent:a', { roles: ['contributor'] })
  const { client: owner } = await joined(url, 'agent:owner', { roles: ['owner'] })
  t.teardown(() => { a.close(); owner.close() })
  await a.request(announce('agent:a', 'i1', ['r.txt'], 'rej'))
  const propose = envelope('OP_PROPOSE', 'agent:a', { op_id: 'op-r', intent_id: 'i1', target: 'r.txt', op_kind: 'replace' }, 'rej')
  t.equal((await a.request(propose)).message_type, 'OP_PROPOSE', 'proposal accepted and relayed')
  const reject = envelope('OP_REJECT', 'agent:owner', { op_id: 'op-r', reason: 'policy_violation' }, 'rej')
  t.equal((await owner.request(reject)).message_type, 'OP_REJECT', 'the owner rejects it')
  t.equal((await a.next(f => f.message_id === reject.message_id)).message_type, 'OP_REJECT', 'the proposer is told')
  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op-r', intent_id: 'i1', target: 'r.txt', op_kind: 'replace',
    state_ref_before: 'sha256:0000000000000000', state_ref_after: 'sha256:1111111111111111'
  }, 'rej')
  const refused = await a.request(commit)
  t.equal(refused.message_type, 'PROTOCOL_ERROR', 'the commit of a rejected proposal is refused')
  t.equal(payload(refused).error_code, 'INVALID_REFERENCE')
  t.notOk(owner.received.some(f => f.message_id === commit.message_id), 'and not relayed')
})
