import t, { type Test } from 'tap'
import { ERROR_CODES } from '../../src/protocol/error-codes.js'
import { COORDINATOR_AUTHORED_TYPES, MESSAGE_TYPES, type MessageType, type ParticipantMessageType } from '../../src/protocol/message-types.js'
import {
  EnvelopeSchema, IntentAnnouncePayloadSchema, IntentDeferredPayloadSchema, MAX_IGNORED, PAYLOAD_SCHEMAS, SCHEMA_LIMITS, ScopeSchema,
  WatermarkSchema, parseEnvelope,
  type ConflictReportPayload, type Envelope, type IntentAnnouncePayload, type OpCommitPayload, type ParseResult, type Payload
} from '../../src/protocol/schemas.js'
import type { Scope } from '../../src/protocol/scope.js'
import type { Watermark } from '../../src/protocol/watermark.js'
import type { DependencyDetail } from '../../src/protocol/dependency.js'
import type { z } from 'zod'

// Compile-time: what the schemas produce fits the shared interfaces.
const scopeFits: Scope = {} as z.infer<typeof ScopeSchema>
const watermarkFits: Watermark = {} as z.infer<typeof WatermarkSchema>
const envelopeWatermarkFits: Watermark | undefined = ({} as Envelope).watermark
const detailFits: DependencyDetail | undefined = ({} as ConflictReportPayload).dependency_detail
void scopeFits; void watermarkFits; void envelopeWatermarkFits; void detailFits

const SENDER = { principal_id: 'agent:alice', principal_type: 'agent', sender_instance_id: 'agent:alice:6f1c2a3e-1111-4222-8333-444455556666' }
const COORDINATOR_AUTHORED: ReadonlySet<string> = new Set(['SESSION_INFO', 'SESSION_CLOSE', 'COORDINATOR_STATUS', 'INTENT_CLAIM_STATUS'])

function env (type: string, payload: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    protocol: 'MPAC',
    version: '0.1.13',
    message_type: type,
    message_id: 'msg-1',
    session_id: 'sess-1',
    sender: { ...SENDER },
    ts: '2026-04-29T01:23:45.123456Z',
    payload,
    watermark: { kind: 'lamport_clock', value: 3 },
    ...(COORDINATOR_AUTHORED.has(type) ? { coordinator_epoch: 1 } : {}),
    ...extra
  }
}

function without (o: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...o }
  delete copy[key]
  return copy
}

function fail (t: Test, r: ParseResult, description: string | RegExp, msg = ''): void {
  if (r.ok) {
    t.fail(`expected MALFORMED_MESSAGE: ${msg || String(description)}`)
    return
  }
  t.equal(r.code, 'MALFORMED_MESSAGE')
  if (typeof description === 'string') t.equal(r.description, description, msg)
  else t.match(r.description, description, msg)
  t.ok(r.description.length <= 300, 'description at most 300 characters')
}

function ok (t: Test, r: ParseResult, msg?: string): void {
  t.ok(r.ok, msg ?? (r.ok ? 'ok' : r.description))
  if (!r.ok) t.comment(r.description)
}

/** Accepted, with exactly these keys ignored; returns the envelope the core would use. */
function ignores (t: Test, r: ParseResult, ignored: string[], msg = ''): Record<string, unknown> | undefined {
  ok(t, r, msg || `ignores ${ignored.join(', ')}`)
  if (!r.ok) return undefined
  t.same(r.ignored, ignored, `${msg} ignored`)
  return r.envelope
}

const SCOPE = { kind: 'file_set', resources: ['src/db.py', 'src/models.py'] }
const WM = { kind: 'lamport_clock', value: 7 }

/** Valid payloads per type: the minimal form first, then richer forms (SPEC and Python shapes). */
const VALID: { readonly [T in MessageType]: ReadonlyArray<Record<string, unknown>> } = {
  HELLO: [
    { display_name: 'Alice' },
    { display_name: 'Alice', roles: ['participant'], capabilities: [] },
    {
      display_name: 'Alice',
      roles: ['contributor', 'arbiter'],
      capabilities: ['intent.broadcast', 'op.commit', 'conflict.escalate'],
      implementation: { name: 'mpac-mcp', version: '0.1.0' },
      credential: { type: 'bearer_token', value: 'tok', issuer: 'me', expires_at: '2026-05-01T00:00:00Z' },
      backend: { model_id: 'anthropic/claude-sonnet-4.6', provider: 'anthropic' },
      extensions: { 'vendor.x': { a: 1 } }
    },
    { display_name: 'Bob', roles: ['owner'], capabilities: [], credential: { type: 'bearer_token', value: '' } }
  ],
  SESSION_INFO: [
    {
      session_id: 'sess-1',
      protocol_version: '0.1.13',
      security_profile: 'open',
      compliance_profile: 'core',
      watermark_kind: 'lamport_clock',
      execution_model: 'post_commit',
      state_ref_format: 'sha256',
      granted_roles: ['contributor']
    },
    {
      session_id: 'sess-1',
      protocol_version: '0.1.15',
      security_profile: 'authenticated',
      compliance_profile: 'governance',
      watermark_kind: 'lamport_clock',
      execution_model: 'pre_commit',
      state_ref_format: 'sha256',
      governance_policy: { require_acknowledgment: true, intent_expiry_grace_sec: 30.0 },
      liveness_policy: { heartbeat_interval_sec: 30, unavailability_timeout_sec: 90, intent_claim_grace_period_sec: 0, resolution_timeout_sec: 300, backend_health_policy: { enabled: false } },
      participant_count: 2,
      granted_roles: ['owner'],
      identity_verified: true,
      identity_method: 'bearer_token',
      identity_issuer: 'team',
      compatibility_errors: [],
      security_config: {},
      resource_registry: {}
    }
  ],
  HEARTBEAT: [
    {},
    { status: 'idle' },
    {
      status: 'working',
      active_intent_id: 'intent-1',
      summary: 'editing',
      backend_health: {
        model_id: 'anthropic/claude-sonnet-4.6',
        provider_status: 'degraded',
        checked_at: '2026-04-07T10:00:00Z',
        status_detail: null,
        alternatives: [{ provider: 'openai', status: 'operational', suggested_model: 'openai/gpt-5' }],
        switched_from: 'anthropic/claude-opus-4',
        switch_reason: 'provider_degraded'
      }
    }
  ],
  GOODBYE: [
    {},
    { reason: 'completed', intent_disposition: 'withdraw' },
    { reason: 'user_exit', active_intents: ['intent-1'], intent_disposition: 'transfer' }
  ],
  SESSION_CLOSE: [
    { reason: 'completed', final_lamport_clock: 12 },
    {
      reason: 'manual',
      final_lamport_clock: 0,
      summary: {
        total_intents: 3, completed_intents: 1, expired_intents: 0, withdrawn_intents: 2, total_operations: 4, committed_operations: 3,
        rejected_operations: 1, abandoned_operations: 0, total_conflicts: 1, resolved_conflicts: 1, total_participants: 2, duration_sec: 60
      },
      active_intents_disposition: 'withdraw_all',
      transcript_ref: 'file:///tmp/t.jsonl'
    }
  ],
  COORDINATOR_STATUS: [
    { event: 'heartbeat', coordinator_id: 'service:coordinator-sess-1', session_health: 'healthy', active_participants: 2, open_conflicts: 0, snapshot_lamport_clock: 9 },
    { event: 'authorization', coordinator_id: 'c', session_health: 'degraded', authorized_op_id: 'op-1', authorized_by: 'c', authorized_batch_id: 'b-1' },
    { event: 'handover', coordinator_id: 'c', session_health: 'recovering', successor_coordinator_id: 'c2', next_coordinator_epoch: 2 },
    { event: 'backend_alert', coordinator_id: 'c', session_health: 'healthy', affected_principal: 'agent:alice', backend_detail: { model_id: 'a/b', provider_status: 'down', status_detail: null, alternatives: [] } },
    { event: 'recovered', coordinator_id: 'c', session_health: 'recovering' }
  ],
  INTENT_ANNOUNCE: [
    { intent_id: 'intent-1', objective: 'Refactor', scope: SCOPE },
    { intent_id: 'intent-1', objective: '', scope: SCOPE, ttl_sec: 60.5, expiry_ms: 30000 },
    {
      intent_id: 'intent-1',
      objective: 'Fix sort_by_recent()',
      scope: { kind: 'file_set', resources: ['notes_app/db.py'], extensions: { impact: ['notes_app/views.py'], impact_symbols: { 'notes_app/views.py': null }, affects_symbols: ['notes_app.db.sort_by_recent'] } },
      assumptions: ['tests pass'],
      priority: 'high',
      ttl_sec: 300,
      parent_intent_id: 'intent-0',
      supersedes_intent_id: 'intent-0',
      extensions: {}
    }
  ],
  INTENT_UPDATE: [
    { intent_id: 'intent-1' },
    { intent_id: 'intent-1', objective: 'More', scope: { kind: 'entity_set', entities: ['users'] }, assumptions: [], ttl_sec: 0 }
  ],
  INTENT_WITHDRAW: [
    { intent_id: 'intent-1' },
    { intent_id: 'intent-1', reason: 'yielded' }
  ],
  INTENT_DEFERRED: [
    { scope: SCOPE },
    {
      deferral_id: 'def-1',
      scope: SCOPE,
      reason: 'yielded',
      observed_intent_ids: ['intent-9'],
      observed_principals: ['agent:bob'],
      ttl_sec: 60,
      category: 'duplicate_yield'
    },
    {
      deferral_id: 'def-1',
      principal_id: 'agent:alice',
      scope: SCOPE,
      reason: 'yielded',
      observed_intent_ids: [],
      observed_principals: [],
      expires_at: '2026-04-29T01:24:45.123000+00:00',
      category: 'queue'
    },
    { deferral_id: 'def-1', principal_id: 'agent:alice', status: 'resolved', reason: 'principal_announced' },
    { deferral_id: 'def-1', principal_id: 'agent:alice', status: 'expired' }
  ],
  INTENT_CLAIM: [
    { claim_id: 'claim-1', original_intent_id: 'intent-1', original_principal_id: 'agent:bob', new_intent_id: 'intent-2', objective: 'Continue', scope: SCOPE },
    { claim_id: 'claim-1', original_intent_id: 'intent-1', original_principal_id: 'agent:bob', new_intent_id: 'intent-2', objective: 'Continue', scope: SCOPE, justification: 'bob left' }
  ],
  INTENT_CLAIM_STATUS: [
    { claim_id: 'claim-1', original_intent_id: 'intent-1', new_intent_id: 'intent-2', decision: 'approved' },
    { claim_id: 'claim-1', original_intent_id: 'intent-1', new_intent_id: 'intent-2', decision: 'approved', approved_by: 'agent:owner' },
    { claim_id: 'claim-1', original_intent_id: 'intent-1', decision: 'withdrawn', reason: 'original_owner_rejoined' },
    { claim_id: 'claim-1', original_intent_id: 'intent-1', decision: 'rejected', reason: 'intent_no_longer_suspended' }
  ],
  OP_PROPOSE: [
    { op_id: 'op-1', target: 'src/db.py', op_kind: 'replace' },
    { op_id: 'op-1', target: 'src/db.py', op_kind: 'patch', intent_id: 'intent-1', change_ref: 'diff://1', summary: 's' }
  ],
  OP_COMMIT: [
    { op_id: 'op-1', target: 'src/db.py', op_kind: 'replace', state_ref_before: 'sha256:e3b0c44298fc1c14', state_ref_after: 'sha256:2cf24dba5fb0a30e' },
    { op_id: 'op-1', intent_id: 'intent-1', target: 'src/db.py', op_kind: 'replace', state_ref_before: null, state_ref_after: null },
    {
      op_id: 'op-1',
      intent_id: 'intent-1',
      target: 'src/db.py',
      op_kind: 'replace',
      state_ref_before: 'sha256:e3b0c44298fc1c14',
      state_ref_after: 'sha256:2cf24dba5fb0a30e',
      change_ref: 'x',
      summary: 'y',
      file_changes: {
        'src/db.py': { content: 'hello', state_ref_before: 'sha256:e3b0c44298fc1c14' },
        'src/new.py': { content: '' },
        'src/other.py': { content: 'z', state_ref_before: null }
      }
    }
  ],
  OP_BATCH_COMMIT: [
    { batch_id: 'b-1', operations: [{ op_id: 'op-1', target: 'a', op_kind: 'replace', state_ref_before: 'r0', state_ref_after: 'r1' }] },
    {
      batch_id: 'b-1',
      atomicity: 'best_effort',
      intent_id: 'intent-1',
      summary: 's',
      operations: [
        { op_id: 'op-1', intent_id: 'intent-1', target: 'a', op_kind: 'replace', state_ref_before: 'r0', state_ref_after: 'r1', change_ref: 'c', summary: 's' },
        { op_id: 'op-2', target: 'b', op_kind: 'replace', state_ref_before: null, state_ref_after: 'r2', file_changes: { b: { content: 'b' } } }
      ]
    }
  ],
  OP_REJECT: [
    { op_id: 'op-1', reason: 'policy_violation' },
    { op_id: 'op-1', reason: 'intent_terminated', refers_to: 'msg-0' },
    { op_id: 'b-1', reason: 'batch_validation_failed', rejected_ops: ['op-1', 'op-2'] }
  ],
  OP_SUPERSEDE: [
    { op_id: 'op-2', supersedes_op_id: 'op-1', target: 'src/db.py' },
    { op_id: 'op-2', supersedes_op_id: 'op-1', target: 'src/db.py', intent_id: 'intent-1', reason: 'redo', op_kind: 'replace', state_ref_after: 'sha256:1' }
  ],
  CONFLICT_REPORT: [
    // the Python Participant's shape
    { conflict_id: 'c-1', category: 'scope_overlap', severity: 'medium', principal_a: 'agent:alice', principal_b: 'agent:bob', intent_a: 'intent-1', intent_b: 'intent-2' },
    // SPEC shape
    { conflict_id: 'c-1', related_intents: ['intent-1'], related_ops: [], category: 'semantic_goal_conflict', severity: 'high', basis: { kind: 'human_report' }, based_on_watermark: WM, description: 'd', suggested_action: 's' },
    // our coordinator's superset, dependency breakage
    {
      conflict_id: 'c-1',
      category: 'dependency_breakage',
      severity: 'medium',
      principal_a: 'agent:alice',
      principal_b: 'agent:bob',
      intent_a: 'intent-1',
      intent_b: 'intent-2',
      related_intents: ['intent-1', 'intent-2'],
      related_ops: [],
      basis: {
        kind: 'rule',
        rule_id: 'dependency.breakage.v1',
        matcher: 'm',
        match_type: 'uncertain',
        confidence: 0.5,
        matched_pair: { left: { source_intent_id: 'intent-1', content: 'a' }, right: { source_intent_id: 'intent-2', content: 'b' } },
        explanation: 'e'
      },
      based_on_watermark: { kind: 'lamport_clock', value: 10 },
      description: 'Intent intent-1 may break intent-2',
      dependency_detail: { ab: [{ file: 'notes_app/views.py', symbols: ['notes_app.db.sort_by_recent'] }], ba: [{ file: 'x.py', symbols: null }] }
    },
    { conflict_id: 'c-2', category: 'vendor_specific_category', severity: 'info', involved_principals: ['agent:alice', 'agent:bob'] }
  ],
  CONFLICT_ACK: [
    { conflict_id: 'c-1', ack_type: 'seen' },
    { conflict_id: 'c-1', ack_type: 'dispute' }
  ],
  CONFLICT_ESCALATE: [
    { conflict_id: 'c-1', escalate_to: 'agent:arbiter', reason: 'stuck' },
    { conflict_id: 'c-1', escalate_to: 'agent:arbiter', reason: 'resolution_timeout', context: 'ctx' }
  ],
  RESOLUTION: [
    // the Python Participant omits resolution_id, and rationale when empty
    { conflict_id: 'c-1', decision: 'approved' },
    { conflict_id: 'c-1', decision: 'accept_a', rationale: 'free-text decision' },
    { resolution_id: 'r-1', conflict_id: 'c-1', decision: 'rejected', rationale: 'r', outcome: { accepted: ['intent-1'], rejected: ['op-1'], merged: [], rollback: 'not_required' } },
    { resolution_id: 'r-1', conflict_id: 'c-1', decision: 'dismissed', rationale: 'all_related_entities_terminated' }
  ],
  PROTOCOL_ERROR: [
    { error_code: 'MALFORMED_MESSAGE', description: 'bad' },
    {
      error_code: 'STALE_INTENT',
      refers_to: 'msg-1',
      description: "Files ['notes_app/db.py'] are already being modified by intent intent-9 (principal agent:bob). Defer and wait.",
      holder_intent_id: 'intent-9',
      holder_principal_id: 'agent:bob',
      shared_files: ['notes_app/db.py'],
      duplicate_candidate: { candidate: true, confidence: 'high', current: { action: 'fix', symbols: [], postconditions: [] } }
    },
    { error_code: 'STALE_STATE_REF', refers_to: 'msg-2', description: 'stale' },
    { error_code: 'PARTICIPANT_UNAVAILABLE', description: 'gone', principal_id: 'agent:bob' },
    { error_code: 'RESOLUTION_TIMEOUT', description: 'slow', conflict_id: 'c-1' },
    { error_code: 'INTENT_BACKOFF', description: 'wait', extensions: { retry_after_sec: 5 } }
  ]
}

t.test('every type has fixtures and a payload schema', async t => {
  t.strictSame(Object.keys(VALID).sort(), [...MESSAGE_TYPES].sort())
  t.strictSame(Object.keys(PAYLOAD_SCHEMAS).sort(), [...MESSAGE_TYPES].sort())
  t.ok(Object.isFrozen(PAYLOAD_SCHEMAS))
})

t.test('PAYLOAD_SCHEMAS keeps each type: Payload<T> is the inferred payload, not unknown', async t => {
  // Compile-time half (npm run typecheck): with a `z.ZodType` table these lines fail to compile.
  const commit: Payload<'OP_COMMIT'> = PAYLOAD_SCHEMAS.OP_COMMIT.parse(VALID.OP_COMMIT[0])
  const same: OpCommitPayload = commit
  const withdraw: Payload<'INTENT_WITHDRAW'> = PAYLOAD_SCHEMAS.INTENT_WITHDRAW.parse({ intent_id: 'i-1' })
  // @ts-expect-error an INTENT_WITHDRAW payload has no op_id
  t.equal(withdraw.op_id, undefined)
  // @ts-expect-error a HEARTBEAT payload is not an OP_COMMIT payload
  const wrong: Payload<'OP_COMMIT'> = PAYLOAD_SCHEMAS.HEARTBEAT.parse({})
  t.equal(typeof same.op_id, 'string')
  t.equal(withdraw.intent_id, 'i-1')
  t.ok(wrong)
})

t.test('coordinator-authored types are message types that require coordinator_epoch; the rest are participant types', async t => {
  t.strictSame([...COORDINATOR_AUTHORED_TYPES].sort(), [...COORDINATOR_AUTHORED].sort())
  for (const type of COORDINATOR_AUTHORED_TYPES) t.ok(MESSAGE_TYPES.includes(type), type)
  // @ts-expect-error SESSION_INFO is coordinator-authored, not a participant type
  const notParticipant: ParticipantMessageType = 'SESSION_INFO'
  const participant: ParticipantMessageType = 'PROTOCOL_ERROR'
  t.ok(notParticipant && participant)
  for (const type of MESSAGE_TYPES) {
    const payload = VALID[type][0] as Record<string, unknown>
    const authored = (COORDINATOR_AUTHORED_TYPES as readonly string[]).includes(type)
    t.equal(parseEnvelope(without(env(type, payload), 'coordinator_epoch')).ok, !authored, `${type} without coordinator_epoch`)
    t.equal(parseEnvelope(env(type, payload, { coordinator_epoch: 1 })).ok, true, `${type} with coordinator_epoch`)
  }
})

t.test('valid messages of every type parse, and the envelope is the input itself', async t => {
  for (const type of MESSAGE_TYPES) {
    for (const [i, payload] of VALID[type].entries()) {
      const raw = env(type, payload)
      const r = parseEnvelope(raw)
      ok(t, r, `${type} #${i}`)
      if (r.ok) {
        t.equal(r.envelope, raw, `${type} #${i} not copied`)
        t.equal(r.type, type)
      }
      t.ok(PAYLOAD_SCHEMAS[type].safeParse(payload).success, `${type} #${i} via PAYLOAD_SCHEMAS`)
    }
  }
})

t.test('payloads accept extensions and ignore unknown keys (SPEC §21.2)', async t => {
  for (const type of MESSAGE_TYPES) {
    for (const [i, payload] of VALID[type].entries()) {
      ok(t, parseEnvelope(env(type, { ...payload, extensions: { 'vendor.x': true } })), `${type} #${i} + extensions`)
      const raw = env(type, { ...payload, bogus_field: 1 })
      const clean = ignores(t, parseEnvelope(raw), ['payload.bogus_field'], `${type} #${i} + bogus`)
      t.same(clean?.payload, payload, `${type} #${i}: the envelope the core sees has the payload without it`)
      t.equal((raw.payload as Record<string, unknown>).bogus_field, 1, `${type} #${i}: the input is not modified`)
      fail(t, parseEnvelope(env(type, { ...payload, extensions: [] })), 'payload.extensions: expected object, got array', `${type} #${i} bad extensions`)
    }
  }
})

t.test('payload schemas cover every property of the published JSON Schemas', async t => {
  // property lists of shared/schema/messages/*.schema.json
  const published: Partial<Record<MessageType, string[]>> = {
    HELLO: ['display_name', 'roles', 'capabilities', 'credential', 'implementation', 'backend'],
    SESSION_INFO: ['session_id', 'protocol_version', 'security_profile', 'compliance_profile', 'watermark_kind', 'execution_model', 'state_ref_format', 'governance_policy', 'liveness_policy', 'participant_count', 'granted_roles', 'identity_verified', 'identity_method', 'identity_issuer', 'compatibility_errors'],
    HEARTBEAT: ['status', 'active_intent_id', 'summary', 'backend_health'],
    GOODBYE: ['reason', 'active_intents', 'intent_disposition'],
    SESSION_CLOSE: ['reason', 'final_lamport_clock', 'summary', 'active_intents_disposition', 'transcript_ref'],
    COORDINATOR_STATUS: ['event', 'coordinator_id', 'session_health', 'active_participants', 'open_conflicts', 'snapshot_lamport_clock', 'successor_coordinator_id', 'next_coordinator_epoch', 'authorized_op_id', 'authorized_batch_id', 'authorized_by', 'affected_principal', 'backend_detail'],
    INTENT_ANNOUNCE: ['intent_id', 'objective', 'scope', 'assumptions', 'priority', 'ttl_sec', 'parent_intent_id', 'supersedes_intent_id'],
    INTENT_UPDATE: ['intent_id', 'objective', 'scope', 'assumptions', 'ttl_sec'],
    INTENT_WITHDRAW: ['intent_id', 'reason'],
    INTENT_CLAIM: ['claim_id', 'original_intent_id', 'original_principal_id', 'new_intent_id', 'objective', 'scope', 'justification'],
    INTENT_CLAIM_STATUS: ['claim_id', 'original_intent_id', 'new_intent_id', 'decision', 'reason', 'approved_by'],
    OP_PROPOSE: ['op_id', 'intent_id', 'target', 'op_kind', 'change_ref', 'summary'],
    OP_COMMIT: ['op_id', 'intent_id', 'target', 'op_kind', 'state_ref_before', 'state_ref_after', 'change_ref', 'summary'],
    OP_BATCH_COMMIT: ['batch_id', 'intent_id', 'atomicity', 'operations', 'summary'],
    OP_REJECT: ['op_id', 'reason'],
    OP_SUPERSEDE: ['op_id', 'supersedes_op_id', 'intent_id', 'target', 'op_kind', 'reason', 'state_ref_after'],
    CONFLICT_REPORT: ['conflict_id', 'related_intents', 'related_ops', 'category', 'severity', 'basis', 'based_on_watermark', 'description', 'suggested_action'],
    CONFLICT_ACK: ['conflict_id', 'ack_type'],
    CONFLICT_ESCALATE: ['conflict_id', 'escalate_to', 'reason', 'context'],
    RESOLUTION: ['resolution_id', 'conflict_id', 'decision', 'outcome', 'rationale'],
    PROTOCOL_ERROR: ['error_code', 'refers_to', 'description']
  }
  for (const [type, keys] of Object.entries(published) as Array<[MessageType, string[]]>) {
    const fields = new Set<string>()
    for (const p of VALID[type]) for (const k of Object.keys(p)) fields.add(k)
    for (const k of keys) t.ok(fields.has(k), `${type}.${k} appears in an accepted fixture`)
  }
  t.strictSame(Object.keys(ScopeSchema.shape).sort(), ['canonical_uris', 'entities', 'expression', 'extensions', 'kind', 'language', 'pattern', 'resources', 'task_ids'])
  t.strictSame(Object.keys(EnvelopeSchema.shape).sort(), [
    'coordinator_epoch', 'extensions', 'in_reply_to', 'message_id', 'message_type', 'payload', 'policy_ref', 'protocol', 'sender',
    'session_id', 'signature', 'trace_id', 'ts', 'version', 'watermark'
  ])
  for (const code of ERROR_CODES) ok(t, parseEnvelope(env('PROTOCOL_ERROR', { error_code: code, description: '' })), code)
})

t.test('non-objects are malformed with no ids', async t => {
  const cases: Array<[unknown, string]> = [
    [null, 'null'], [[], 'array'], ['{}', 'string'], [42, 'number'], [undefined, 'undefined'], [true, 'boolean']
  ]
  for (const [raw, kind] of cases) {
    const r = parseEnvelope(raw)
    fail(t, r, `message must be a JSON object, got ${kind}`)
    if (!r.ok) t.same([r.messageId, r.principalId], [undefined, undefined])
  }
})

t.test('envelope: unknown keys ignored, optional fields', async t => {
  const raw = env('HEARTBEAT', {}, { foo: 1 })
  const clean = ignores(t, parseEnvelope(raw), ['foo'])
  t.same(clean, env('HEARTBEAT', {}), 'the envelope the core sees has everything else')
  t.equal(raw.foo, 1, 'the input keeps it')
  const r = parseEnvelope(env('HEARTBEAT', {}, { foo: 1, ts: 5 }))
  fail(t, r, 'ts: expected string, got number', 'a real problem is named, the unknown key is not')
  if (!r.ok) t.same([r.messageId, r.principalId], ['msg-1', 'agent:alice'], 'ids readable although the envelope is bad')

  ignores(t, parseEnvelope(env('HEARTBEAT', {}, { a: 1, b: 2, c: 3, d: 4, e: 5 })), ['a', 'b', 'c', 'd', 'e'])
  ok(t, parseEnvelope(env('HEARTBEAT', {}, {
    in_reply_to: 'msg-0', trace_id: 'trace-1', policy_ref: 'policy://x', signature: 'c2ln', extensions: { 'vendor.x': {} }, coordinator_epoch: 3
  })), 'spec-optional envelope fields')
  ok(t, parseEnvelope(without(env('HEARTBEAT', {}), 'watermark')), 'watermark is optional')

  const s = ignores(t, parseEnvelope(env('HEARTBEAT', {}, { sender: { ...SENDER, role: 'x' } })), ['sender.role'])
  t.same(s?.sender, SENDER, 'sender without it')
  const w = ignores(t, parseEnvelope(env('HEARTBEAT', {}, { watermark: { kind: 'lamport_clock', value: 3, origin: 'py' } })), ['watermark.origin'])
  t.same(w?.watermark, { kind: 'lamport_clock', value: 3 }, 'watermark without it')
  ok(t, parseEnvelope(env('HEARTBEAT', {}, { sender: { ...SENDER, extensions: { a: 1 } } })), 'sender.extensions')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { sender: { ...SENDER, principal_type: 'bot' } })), 'sender.principal_type: expected one of "human", "agent", "service"')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { sender: 'alice' })), 'sender: expected object, got string')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { protocol: 'mpac' })), 'protocol: expected "MPAC"')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { coordinator_epoch: 0 })), 'coordinator_epoch: must be >= 1')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { coordinator_epoch: 1.5 })), 'coordinator_epoch: expected integer, got number')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { coordinator_epoch: 2 ** 60 })), 'coordinator_epoch: must be <= 9007199254740991')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { ts: 1714000000 })), 'ts: expected string, got number')
  ok(t, parseEnvelope(env('HEARTBEAT', {}, { ts: 'yesterday' })), 'ts format is left to replay protection')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { ts: 'x'.repeat(65) })), 'ts: longer than 64 characters')
  fail(t, parseEnvelope(env('HEARTBEAT', {}, { message_type: '' })), 'message_type: must not be empty')
})

t.test('readable ids are returned only when they are valid ids', async t => {
  const noId = env('HEARTBEAT', {}, { foo: 1 })
  delete noId.message_id
  let r = parseEnvelope(noId)
  fail(t, r, 'message_id: missing required field', 'the unknown key is not counted as a problem')
  if (!r.ok) t.same([r.messageId, r.principalId], [undefined, 'agent:alice'])

  r = parseEnvelope(env('HEARTBEAT', {}, { message_id: 7 }))
  fail(t, r, 'message_id: expected string, got number')
  if (!r.ok) t.equal(r.messageId, undefined)

  r = parseEnvelope(env('HEARTBEAT', {}, { message_id: 'm'.repeat(257) }))
  fail(t, r, 'message_id: longer than 256 characters')
  if (!r.ok) t.equal(r.messageId, undefined)

  r = parseEnvelope(env('HEARTBEAT', {}, { message_id: '' }))
  fail(t, r, 'message_id: must not be empty')
  if (!r.ok) t.equal(r.messageId, undefined)

  r = parseEnvelope(env('HEARTBEAT', {}, { sender: ['agent:alice'] }))
  fail(t, r, 'sender: expected object, got array')
  if (!r.ok) t.same([r.messageId, r.principalId], ['msg-1', undefined])

  r = parseEnvelope(env('HEARTBEAT', { status: 'sleepy' }))
  fail(t, r, 'payload.status: expected one of "idle", "working", "blocked", "awaiting_review", "offline"')
  if (!r.ok) t.same([r.messageId, r.principalId], ['msg-1', 'agent:alice'], 'ids on a payload error')
})

t.test('watermark rules', async t => {
  const wm = (w: unknown) => parseEnvelope(env('HEARTBEAT', {}, { watermark: w }))
  ok(t, wm({ kind: 'lamport_clock', value: 0 }))
  ok(t, wm({ kind: 'lamport_clock', value: Number.MAX_SAFE_INTEGER, extensions: {} }))
  ok(t, wm({ kind: 'vector_clock', value: { alice: 3 }, lamport_value: 4 }))
  ok(t, wm({ kind: 'opaque', value: 'frontier-1' }))
  ok(t, wm({ kind: 'causal_frontier', value: null }))
  fail(t, wm({ kind: 'lamport_clock', value: 1.5 }), 'watermark.value: expected non-negative integer for kind lamport_clock, got number')
  fail(t, wm({ kind: 'lamport_clock', value: '5' }), 'watermark.value: expected non-negative integer for kind lamport_clock, got string')
  fail(t, wm({ kind: 'lamport_clock', value: -1 }), 'watermark.value: expected non-negative integer for kind lamport_clock, got number')
  fail(t, wm({ kind: 'lamport_clock', value: null }), 'watermark.value: expected non-negative integer for kind lamport_clock, got null')
  fail(t, wm({ kind: 'lamport_clock', value: 2 ** 53 }), /^watermark\.value: expected non-negative integer/)
  fail(t, wm({ kind: 'lamport_clock' }), 'watermark.value: missing required field')
  fail(t, wm({ value: 3 }), 'watermark.kind: missing required field')
  fail(t, wm({ kind: 'opaque', value: 'x', lamport_value: -1 }), 'watermark.lamport_value: must be >= 0')
  fail(t, wm({ kind: 'opaque', value: 'x', lamport_value: 2.5 }), 'watermark.lamport_value: expected integer, got number')
  ignores(t, wm({ kind: 'lamport_clock', value: 1, node: 'a' }), ['watermark.node'])
  fail(t, wm([1]), 'watermark: expected object, got array')
})

t.test('unknown message types: envelope checked, payload only an object', async t => {
  let r = parseEnvelope(env('FUTURE_THING', { anything: [1, 2, 3] }))
  t.ok(r.ok)
  if (r.ok) t.equal(r.type, undefined)
  r = parseEnvelope(env('FUTURE_THING', [1]))
  fail(t, r, 'payload: expected object, got array')
  fail(t, parseEnvelope(env('HELLO', null)), 'payload: expected object, got null')
  fail(t, parseEnvelope(without(env('HELLO', {}), 'payload')), 'payload: missing required field')
  fail(t, parseEnvelope(env('x'.repeat(65), {})), 'message_type: longer than 64 characters')
})

t.test('required string arrays', async t => {
  const info = without(VALID.SESSION_INFO[0] as Record<string, unknown>, 'granted_roles')
  fail(t, parseEnvelope(env('SESSION_INFO', info)), 'payload.granted_roles: missing required field')
  fail(t, parseEnvelope(env('SESSION_INFO', { ...info, granted_roles: 'owner' })), 'payload.granted_roles: expected array of strings, got string')
  fail(t, parseEnvelope(env('HELLO', { display_name: 'a', roles: Array.from({ length: 257 }, () => 'r') })), 'payload.roles: more than 256 items')
})

t.test('coordinator_epoch is required on coordinator-authored types', async t => {
  for (const type of COORDINATOR_AUTHORED) {
    const raw = env(type, VALID[type as MessageType][0])
    delete raw.coordinator_epoch
    fail(t, parseEnvelope(raw), `coordinator_epoch: missing required field (message_type ${type})`)
  }
})

t.test('scope rules', async t => {
  const announce = (scope: unknown) => parseEnvelope(env('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o', scope }))
  ok(t, announce({ kind: 'file_set', resources: [] }), 'empty resources')
  ok(t, announce({ kind: 'entity_set', entities: ['users'] }))
  ok(t, announce({ kind: 'task_set', task_ids: ['T-1'] }))
  ok(t, announce({ kind: 'resource_path', pattern: 'src/**/*.py' }))
  ok(t, announce({ kind: 'query', expression: 'SELECT 1', language: 'sql' }))
  ok(t, announce({ kind: 'query' }), 'query without expression (Python drops it)')
  ok(t, announce({ kind: 'custom', canonical_uris: ['resource://repo/a'] }))
  ok(t, announce({ kind: 'something_new', extensions: { x: 1 } }), 'unknown kinds are opaque')
  ok(t, announce({ kind: 'entity_set', entities: [], resources: ['a'] }), 'extra kind fields are preserved')
  fail(t, announce({ kind: 'file_set' }), 'payload.scope.resources: missing required field (scope kind file_set)')
  fail(t, announce({ kind: 'entity_set' }), 'payload.scope.entities: missing required field (scope kind entity_set)')
  fail(t, announce({ kind: 'task_set' }), 'payload.scope.task_ids: missing required field (scope kind task_set)')
  fail(t, announce({ kind: 'resource_path' }), 'payload.scope.pattern: missing required field (scope kind resource_path)')
  fail(t, announce({ resources: ['a'] }), 'payload.scope.kind: missing required field')
  fail(t, announce({ kind: '', resources: [] }), 'payload.scope.kind: must not be empty')
  fail(t, announce({ kind: 'file_set', resources: 'a.py' }), 'payload.scope.resources: expected array of strings, got string')
  fail(t, announce({ kind: 'file_set', resources: ['a', 3] }), 'payload.scope.resources[1]: expected string, got number')
  const scoped = ignores(t, announce({ kind: 'file_set', resources: ['a'], files: ['b'] }), ['payload.scope.files'])
  t.same((scoped?.payload as Record<string, unknown>).scope, { kind: 'file_set', resources: ['a'] })
  fail(t, announce({ kind: 'file_set', resourcse: ['a'] }), 'payload.scope.resources: missing required field (scope kind file_set)', 'a misspelt required scope field is missing')
  fail(t, announce('src/a.py'), 'payload.scope: expected object, got string')
  fail(t, parseEnvelope(env('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o' })), 'payload.scope: missing required field')
  fail(t, announce({ kind: 'file_set', resources: Array.from({ length: SCHEMA_LIMITS.items + 1 }, (_, i) => `f${i}`) }), 'payload.scope.resources: more than 10000 items')
  ok(t, announce({ kind: 'file_set', resources: Array.from({ length: SCHEMA_LIMITS.items }, (_, i) => `f${i}`) }), '10,000 resources')
  fail(t, announce({ kind: 'file_set', resources: ['a'.repeat(4097)] }), 'payload.scope.resources[0]: longer than 4096 characters')
})

t.test('ids, text and numbers', async t => {
  const announce = (p: Record<string, unknown>) => parseEnvelope(env('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o', scope: SCOPE, ...p }))
  fail(t, announce({ intent_id: '' }), 'payload.intent_id: must not be empty')
  fail(t, announce({ intent_id: 'i'.repeat(257) }), 'payload.intent_id: longer than 256 characters')
  ok(t, announce({ intent_id: 'i'.repeat(256) }))
  fail(t, announce({ intent_id: 5 }), 'payload.intent_id: expected string, got number')
  ok(t, announce({ objective: 'o'.repeat(16384) }))
  fail(t, announce({ objective: 'o'.repeat(16385) }), 'payload.objective: longer than 16384 characters')
  fail(t, announce({ ttl_sec: -1 }), 'payload.ttl_sec: must be >= 0')
  fail(t, announce({ ttl_sec: 1e12 }), 'payload.ttl_sec: must be <= 1000000000')
  fail(t, announce({ ttl_sec: '60' }), 'payload.ttl_sec: expected number, got string')
  fail(t, announce({ priority: 'urgent' }), 'payload.priority: expected one of "low", "normal", "high", "critical"')
  fail(t, announce({ assumptions: [{}] }), 'payload.assumptions[0]: expected string, got object')

  const bigFile = 'x'.repeat(5 * 1024 * 1024)
  ok(t, parseEnvelope(env('OP_COMMIT', { ...VALID.OP_COMMIT[0], file_changes: { 'a.txt': { content: bigFile } } })), 'file contents are not size-limited here')
  // JSON.parse makes "__proto__" an own key that zod's record would drop silently from an accepted commit.
  const proto = JSON.parse('{"__proto__": {"content": "x"}, "a.txt": {"content": "y"}}') as Record<string, unknown>
  fail(t, parseEnvelope(env('OP_COMMIT', { ...VALID.OP_COMMIT[0], file_changes: proto })), 'payload.file_changes: a file named "__proto__" is not supported')
})

t.test('free-string enums accept any non-empty string', async t => {
  ok(t, parseEnvelope(env('GOODBYE', { reason: 'completed' })))
  fail(t, parseEnvelope(env('GOODBYE', { reason: '' })), 'payload.reason: must not be empty')
  fail(t, parseEnvelope(env('GOODBYE', { intent_disposition: 'keep' })), 'payload.intent_disposition: expected one of "withdraw", "transfer", "expire"')
  ok(t, parseEnvelope(env('RESOLUTION', { conflict_id: 'c', decision: 'merge' })))
  fail(t, parseEnvelope(env('RESOLUTION', { conflict_id: 'c', decision: '' })), 'payload.decision: must not be empty')
  ok(t, parseEnvelope(env('CONFLICT_ACK', { conflict_id: 'c', ack_type: 'whatever' })))
  fail(t, parseEnvelope(env('CONFLICT_ACK', { conflict_id: 'c' })), 'payload.ack_type: missing required field')
  fail(t, parseEnvelope(env('CONFLICT_REPORT', { conflict_id: 'c', category: 'x', severity: 'huge' })), 'payload.severity: expected one of "info", "low", "medium", "high", "critical"')
})

t.test('conditional requirements', async t => {
  const claimStatus = (p: Record<string, unknown>) => parseEnvelope(env('INTENT_CLAIM_STATUS', { claim_id: 'c', original_intent_id: 'o', ...p }))
  fail(t, claimStatus({ decision: 'approved' }), 'payload.new_intent_id: missing required field (decision approved)')
  fail(t, claimStatus({ decision: 'rejected' }), 'payload.reason: missing required field (decision rejected)')
  fail(t, claimStatus({ decision: 'withdrawn', new_intent_id: 'n' }), 'payload.reason: missing required field (decision withdrawn)')
  fail(t, claimStatus({ decision: 'maybe' }), 'payload.decision: expected one of "approved", "rejected", "withdrawn"')

  const status = (p: Record<string, unknown>) => parseEnvelope(env('COORDINATOR_STATUS', { coordinator_id: 'c', session_health: 'healthy', ...p }))
  fail(t, status({ event: 'authorization' }), 'payload.authorized_op_id: missing required field (event authorization) (and 1 more problem)')
  fail(t, status({ event: 'authorization', authorized_op_id: 'op' }), 'payload.authorized_by: missing required field (event authorization)')
  fail(t, status({ event: 'handover', successor_coordinator_id: 'c2' }), 'payload.next_coordinator_epoch: missing required field (event handover)')
  fail(t, status({ event: 'backend_alert', affected_principal: 'p' }), 'payload.backend_detail: missing required field (event backend_alert)')
  ok(t, status({ event: 'assumed' }))
  fail(t, status({ event: 'reboot' }), 'payload.event: expected one of "heartbeat", "recovered", "handover", "assumed", "authorization", "backend_alert"')
})

t.test('INTENT_DEFERRED forms', async t => {
  const deferred = (p: Record<string, unknown>) => parseEnvelope(env('INTENT_DEFERRED', p))
  fail(t, deferred({ deferral_id: 'd', principal_id: 'p', status: 'gone' }), 'payload.status: expected one of "resolved", "expired"')
  fail(t, deferred({ deferral_id: 'd', status: 'resolved' }), 'payload.principal_id: missing required field')
  ignores(t, deferred({ deferral_id: 'd', principal_id: 'p', status: 'resolved', scope: SCOPE }), ['payload.scope'], 'resolution form has no scope')
  fail(t, deferred({ reason: 'yielded' }), 'payload.scope: missing required field')
  fail(t, deferred({ scope: SCOPE, observed_intent_ids: 'intent-1' }), 'payload.observed_intent_ids: expected array of strings, got string')
  fail(t, deferred({ scope: SCOPE, observed_principals: [''] }), 'payload.observed_principals[0]: must not be empty')
  t.ok(IntentDeferredPayloadSchema.safeParse({ scope: SCOPE }).success)
  t.ok(IntentDeferredPayloadSchema.safeParse({ deferral_id: 'd', principal_id: 'p', status: 'expired' }).success)
  t.notOk(IntentDeferredPayloadSchema.safeParse({ deferral_id: 'd' }).success)
})

t.test('operations, batches and file_changes', async t => {
  const commit = (p: Record<string, unknown>) => parseEnvelope(env('OP_COMMIT', { ...VALID.OP_COMMIT[0], ...p }))
  fail(t, commit({ state_ref_before: undefined }), 'payload.state_ref_before: missing required field')
  fail(t, commit({ state_ref_after: 5 }), 'payload.state_ref_after: expected string, got number')
  fail(t, commit({ target: '' }), 'payload.target: must not be empty')
  fail(t, commit({ file_changes: { 'src/a b.py': {} } }), 'payload.file_changes["src/a b.py"].content: missing required field')
  ignores(t, commit({ file_changes: { a: { content: 'x', mode: '644' } } }), ['payload.file_changes.a.mode'])
  fail(t, commit({ file_changes: { a: 'text' } }), 'payload.file_changes.a: expected object, got string')
  fail(t, commit({ file_changes: [] }), 'payload.file_changes: expected object, got array')
  fail(t, commit({ file_changes: { '': { content: '' } } }), 'payload.file_changes[""]: invalid key (empty or too long)')
  const many: Record<string, unknown> = {}
  for (let i = 0; i <= SCHEMA_LIMITS.items; i++) many[`f${i}`] = { content: '' }
  fail(t, commit({ file_changes: many }), 'payload.file_changes: more than 10000 files')

  const batch = (p: Record<string, unknown>) => parseEnvelope(env('OP_BATCH_COMMIT', { batch_id: 'b', ...p }))
  fail(t, batch({ operations: [] }), 'payload.operations: must not be empty')
  fail(t, batch({}), 'payload.operations: missing required field')
  fail(t, batch({ operations: [{ target: 'a', op_kind: 'replace', state_ref_before: 'r', state_ref_after: 's' }] }), 'payload.operations[0].op_id: missing required field')
  const b = ignores(t, batch({ operations: [VALID.OP_COMMIT[0], { ...VALID.OP_COMMIT[0], x: 1 }] }), ['payload.operations[1].x'])
  t.same((b?.payload as Record<string, unknown>).operations, [VALID.OP_COMMIT[0], VALID.OP_COMMIT[0]])
  fail(t, batch({ atomicity: 'some', operations: [VALID.OP_COMMIT[0]] }), 'payload.atomicity: expected one of "all_or_nothing", "best_effort"')

  // a compile-time check that the inferred types carry the PY extensions
  const p: OpCommitPayload = VALID.OP_COMMIT[2] as OpCommitPayload
  t.equal(p.file_changes?.['src/db.py']?.content, 'hello')
})

t.test('descriptions stay short and readable for hostile input', async t => {
  const longKey = 'k'.repeat(5000)
  let r = parseEnvelope(env('HEARTBEAT', {}, { [longKey]: 1 }))
  ok(t, r, 'an unknown long key is ignored')
  if (r.ok) t.match(r.ignored, [/^\["k+…"\]$/], 'and named clipped')
  r = parseEnvelope(env('OP_COMMIT', { ...VALID.OP_COMMIT[0], file_changes: { [`${'d/'.repeat(100)}x"y`]: {} } }))
  fail(t, r, /^payload\.file_changes\["(d\/)+.*…"\]\.content: missing required field$/)
  r = parseEnvelope(env('PROTOCOL_ERROR', { error_code: 'NOPE', description: '' }))
  fail(t, r, /^payload\.error_code: expected one of "MALFORMED_MESSAGE", .*…$/)
  if (!r.ok) t.equal(r.description.length, 300)
  const text = JSON.stringify(env('HEARTBEAT', {})).replace('{', '{"__proto__":{"polluted":1},')
  r = parseEnvelope(JSON.parse(text))
  ok(t, r, 'an own "__proto__" key is an unknown key like any other')
  if (r.ok) {
    t.same(r.ignored, ['__proto__'])
    t.notOk(Object.hasOwn(r.envelope, '__proto__'), 'left out of the envelope the core sees')
    t.equal(Object.getPrototypeOf(r.envelope), Object.prototype, 'whose prototype is untouched')
  }
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution')
})

t.test('unknown keys: a misspelt required field is still missing; copies are minimal', async t => {
  fail(t, parseEnvelope(env('CONFLICT_ACK', { confict_id: 'c', ack_type: 'seen' })), 'payload.conflict_id: missing required field', 'misspelt conflict_id')
  fail(t, parseEnvelope(env('OP_COMMIT', { ...without(VALID.OP_COMMIT[0] as Record<string, unknown>, 'state_ref_before'), state_ref_befor: 'r' })),
    'payload.state_ref_before: missing required field', 'misspelt state_ref_before')
  fail(t, parseEnvelope(without(env('HEARTBEAT', {}, { mesage_id: 'm' }), 'message_id')), 'message_id: missing required field', 'misspelt envelope key')
  fail(t, parseEnvelope(env('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o', scope: { kind: 'file_set', resources: 'a.py', note: 1 }, position: 2 })),
    'payload.scope.resources: expected array of strings, got string', 'only the real problem is described')

  // the family-trip CONFLICT_ACK
  const ack = env('CONFLICT_ACK', { conflict_id: 'c', ack_type: 'accepted', position: 'I prefer the coast' })
  const clean = ignores(t, parseEnvelope(ack), ['payload.position'])
  t.same(clean?.payload, { conflict_id: 'c', ack_type: 'accepted' })
  t.not(clean, ack, 'a copy')
  t.equal(clean?.sender, ack.sender, 'untouched branches are shared, not copied')

  const scope = { kind: 'file_set', resources: ['a.py'] }
  const nested = env('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'o', scope: { ...scope, note: { deep: [1] } }, assumptions: ['x'] }, { trace_note: 't' })
  const before = JSON.stringify(nested)
  const n = ignores(t, parseEnvelope(nested), ['trace_note', 'payload.scope.note'])
  t.same(n?.payload, { intent_id: 'i', objective: 'o', scope, assumptions: ['x'] })
  t.equal((n?.payload as Record<string, unknown>).assumptions, (nested.payload as Record<string, unknown>).assumptions, 'shared')
  t.equal(JSON.stringify(nested), before, 'the input is not modified')

  const many: Record<string, unknown> = {}
  for (let i = 0; i < 100; i++) many[`x${i}`] = i
  const r = parseEnvelope(env('HEARTBEAT', many))
  ok(t, r, '100 unknown keys')
  if (r.ok) {
    t.equal(r.ignored.length, MAX_IGNORED, `at most ${MAX_IGNORED} named`)
    t.same(r.envelope.payload, {}, 'all of them left out')
  }
})

t.test('parseEnvelope never throws', async t => {
  // deterministic pseudo-random JSON values mutated into valid envelopes
  let seed = 12345
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  const atoms: unknown[] = [null, true, false, 0, -1, 1.5, 2 ** 60, '', 'x', 'lamport_clock', 'file_set', [], {}, ['a'], { kind: 'file_set' }]
  const randomValue = (depth: number): unknown => {
    const k = rnd(depth > 2 ? 1 : 3)
    if (k === 0) return atoms[rnd(atoms.length)]
    if (k === 1) return Array.from({ length: rnd(3) }, () => randomValue(depth + 1))
    const o: Record<string, unknown> = {}
    for (let i = rnd(4); i > 0; i--) o[['kind', 'value', 'resources', 'scope', 'payload', 'x'][rnd(6)] as string] = randomValue(depth + 1)
    return o
  }
  let failures = 0
  for (let i = 0; i < 3000; i++) {
    const type = MESSAGE_TYPES[rnd(MESSAGE_TYPES.length)] as MessageType
    const fixtures = VALID[type]
    const base = env(type, structuredClone(fixtures[rnd(fixtures.length)]))
    const target = rnd(2) === 0 ? base : base.payload as Record<string, unknown>
    const keys = Object.keys(target)
    target[keys[rnd(keys.length)] as string] = randomValue(0)
    try {
      const r = parseEnvelope(base)
      if (!r.ok && r.description.length > 300) failures++
    } catch {
      failures++
    }
  }
  t.equal(failures, 0)
})

t.test('objects JSON cannot produce do not make it throw either', async t => {
  const getterThrows = env('HEARTBEAT', {})
  Object.defineProperty(getterThrows, 'ts', { enumerable: true, get () { throw new Error('boom') } })
  let r = parseEnvelope(getterThrows)
  fail(t, r, 'message could not be read')
  if (!r.ok) t.same([r.messageId, r.principalId], ['msg-1', 'agent:alice'])

  const idThrows = env('HEARTBEAT', {})
  Object.defineProperty(idThrows, 'message_id', { enumerable: true, get () { throw new Error('boom') } })
  r = parseEnvelope(idThrows)
  fail(t, r, 'message could not be read')
  if (!r.ok) t.same([r.messageId, r.principalId], [undefined, undefined])

  const proxy = new Proxy(env('HEARTBEAT', {}), { ownKeys () { throw new Error('boom') } })
  fail(t, parseEnvelope(proxy), 'message could not be read')
})

t.test('types: a parsed payload can be narrowed by type', async t => {
  const r = parseEnvelope(env('INTENT_ANNOUNCE', VALID.INTENT_ANNOUNCE[2]))
  if (!r.ok || r.type !== 'INTENT_ANNOUNCE') throw new Error('expected an INTENT_ANNOUNCE')
  const p = r.envelope.payload as IntentAnnouncePayload
  t.equal(p.scope.kind, 'file_set')
  t.equal(IntentAnnouncePayloadSchema.safeParse(p).success, true)
})

t.test('the protocol index re-exports every module', async t => {
  const index = await import('../../src/protocol/index.js')
  const modules = await Promise.all([
    import('../../src/protocol/message-types.js'), import('../../src/protocol/error-codes.js'), import('../../src/protocol/schemas.js'),
    import('../../src/protocol/scope.js'), import('../../src/protocol/dependency.js'), import('../../src/protocol/semantics.js'),
    import('../../src/protocol/watermark.js'), import('../../src/protocol/state-ref.js'), import('../../src/protocol/time.js'),
    import('../../src/protocol/workspace-path.js'), import('../../src/protocol/state-machines.js'), import('../../src/protocol/workspace-id.js'), import('../../src/protocol/text.js')
  ])
  for (const mod of modules) {
    for (const [name, value] of Object.entries(mod)) t.equal((index as Record<string, unknown>)[name], value, name)
  }
  t.equal(index.parseEnvelope, parseEnvelope)
})
