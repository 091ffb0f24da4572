/**
 * zod schemas of the MPAC envelope and of the payloads of all 22 message
 * types (protocol.md §2, §4): a superset of the JSON Schemas in
 * shared/schema, extended with INTENT_DEFERRED, the STALE_INTENT and
 * STALE_STATE_REF error codes, `file_changes` and the Python runtime's extra
 * payload keys.
 *
 * Be liberal in what you accept (SPEC §21.2): an unknown key, in the
 * envelope, the sender, the payload or any object nested in it, is ignored.
 * The schemas stay strict objects so that `parseEnvelope` learns exactly
 * which keys are unknown: it accepts the message when those are its only
 * problems and returns a copy without them (`ignored` names them), so that
 * handlers, records and relays only ever see known fields, while the raw
 * message (which the runtime journals) keeps them for audit. A misspelt
 * required field still fails as missing. Every object accepts
 * `extensions`; the documented open-ended bags (extensions, policies,
 * duplicate_candidate) keep any key.
 *
 * Where the schemas accept more than the JSON Schemas (each choice follows
 * what Python clients send and the Python coordinator tolerates; the
 * schemas never fill defaults, the core applies them):
 * - absence tolerated: HELLO `roles` and `capabilities`; HEARTBEAT `status`
 *   (idle); GOODBYE `reason`; OP_BATCH_COMMIT `atomicity` (all_or_nothing);
 *   INTENT_DEFERRED `deferral_id` (the coordinator generates one);
 *   RESOLUTION `resolution_id` (generated) and `rationale` (the Python
 *   Participant omits both); CONFLICT_REPORT `basis`, `based_on_watermark`
 *   and `description` (the Python shape: principal_a/b, intent_a/b);
 * - any non-empty string instead of the enum, because Python never checks
 *   the value and its clients send others: GOODBYE `reason` (`completed`),
 *   RESOLUTION `decision` (free text), CONFLICT_ACK `ack_type`, CONFLICT_REPORT
 *   `category` (implementations may add categories), HELLO `roles`
 *   (Python's default is `participant`), INTENT_DEFERRED `category`;
 * - `null` allowed: OP_COMMIT / batch entry `state_ref_before` and
 *   `state_ref_after` (the Python Participant sends null for a ref it was
 *   not given; the core treats a null before-ref as "not checked"), and a
 *   `file_changes` entry's `state_ref_before`;
 * - numbers instead of integers: `ttl_sec` (Python accepts floats);
 * - scope kind `query` without `expression`/`language` (Python drops both);
 * - `ts` is any string up to 64 characters: its RFC 3339 form is checked by
 *   the core's replay protection (REPLAY_DETECTED, protocol.md §3 step 3b).
 *
 * Sizes: ids are 1–256 characters (`sender_instance_id` up to 512, as it
 * embeds the principal id), free text up to 16 KiB, arrays up to 10,000
 * items; TTLs are capped so that expiry times stay representable. File
 * contents are not limited here; the core enforces byte limits.
 */
import { z } from 'zod'
import { ERROR_CODES } from './error-codes.js'
import { COORDINATOR_AUTHORED_TYPES, isMessageType, type MessageType } from './message-types.js'

export const SCHEMA_LIMITS = Object.freeze({
  /** identifiers: message, session, principal, intent, op, conflict, … ids */
  id: 256,
  senderInstanceId: 512,
  /** objectives, descriptions, rationales, reasons, summaries */
  text: 16 * 1024,
  /** resources, targets, patterns, canonical URIs, file paths */
  resource: 4096,
  /** short labels: versions, kinds, op_kind, categories, timestamps */
  label: 256,
  /** items of any array */
  items: 10_000,
  /** roles, capabilities */
  smallItems: 256,
  /** `ttl_sec` (about 31 years) and `expiry_ms` */
  ttlSec: 1_000_000_000,
  expiryMs: 1_000_000_000_000
})

const L = SCHEMA_LIMITS

// ---------------------------------------------------------------------------
// building blocks

function kindOf (v: unknown): string {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'array'
  return typeof v
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The message for a value of the wrong type (or a missing one). */
function wrongType (expected: string, input: unknown): string {
  return input === undefined ? 'missing required field' : `expected ${expected}, got ${kindOf(input)}`
}

const id = () => z.string().min(1).max(L.id)
const text = () => z.string().max(L.text)
const nonEmptyText = () => z.string().min(1).max(L.text)
const label = () => z.string().min(1).max(L.label)
const resource = () => z.string().min(1).max(L.resource)
const stateRefString = () => z.string().max(L.label)
const nonNegInt = () => z.int().min(0)

/** A JSON object with any keys (extensions and documented open bags). */
const anyObject = () => z.custom<Record<string, unknown>>(isRecord, {
  error: iss => wrongType('object', iss.input)
})

const extensions = () => anyObject().optional()

/** An array of strings; a non-array says "expected array of strings". */
function stringArray (item: z.ZodString, maxItems: number = L.items) {
  // the array's error also sees its length check, which keeps the per-parse message
  return z.array(item, { error: iss => iss.code === 'invalid_type' ? wrongType('array of strings', iss.input) : undefined }).max(maxItems)
}

const idArray = () => stringArray(id())
const resourceArray = () => stringArray(z.string().max(L.resource))

// ---------------------------------------------------------------------------
// shared objects

// the field each known kind requires
const SCOPE_REQUIRED: Readonly<Record<string, 'resources' | 'entities' | 'task_ids' | 'pattern'>> = Object.assign(
  Object.create(null) as Record<string, 'resources' | 'entities' | 'task_ids' | 'pattern'>,
  { file_set: 'resources', entity_set: 'entities', task_set: 'task_ids', resource_path: 'pattern' } as const
)

/** protocol.md §6.1. Unknown kinds are opaque and preserved. */
export const ScopeSchema = z.strictObject({
  kind: label(),
  resources: resourceArray().optional(),
  pattern: z.string().max(L.resource).optional(),
  task_ids: resourceArray().optional(),
  expression: text().optional(),
  language: z.string().max(L.label).optional(),
  entities: resourceArray().optional(),
  canonical_uris: resourceArray().optional(),
  extensions: extensions()
}).superRefine((scope, ctx) => {
  const required = SCOPE_REQUIRED[scope.kind]
  if (required !== undefined && scope[required] === undefined) {
    ctx.addIssue({ code: 'custom', path: [required], message: `missing required field (scope kind ${scope.kind})` })
  }
})

/** protocol.md §2.4. A lamport_clock value must be a non-negative safe integer. */
export const WatermarkSchema = z.strictObject({
  kind: label(),
  // present for every kind; an integer for lamport_clock, a map for vector_clock, else a string
  value: z.custom<unknown>(v => v !== undefined, { error: 'missing required field' }),
  lamport_value: nonNegInt().optional(),
  extensions: extensions()
}).superRefine((w, ctx) => {
  if (w.kind === 'lamport_clock' && !(typeof w.value === 'number' && Number.isSafeInteger(w.value) && w.value >= 0)) {
    ctx.addIssue({ code: 'custom', path: ['value'], message: `expected non-negative integer for kind lamport_clock, got ${kindOf(w.value)}` })
  }
})

export const SenderSchema = z.strictObject({
  principal_id: id(),
  principal_type: z.enum(['human', 'agent', 'service']),
  sender_instance_id: z.string().min(1).max(L.senderInstanceId),
  extensions: extensions()
})

/** The envelope (protocol.md §2.1). The payload is only checked to be an object here. */
export const EnvelopeSchema = z.strictObject({
  protocol: z.literal('MPAC'),
  version: label(),
  message_type: z.string().min(1).max(64),
  message_id: id(),
  session_id: id(),
  sender: SenderSchema,
  ts: z.string().max(64),
  payload: anyObject(),
  watermark: WatermarkSchema.optional(),
  coordinator_epoch: z.int().min(1).optional(),
  in_reply_to: id().optional(),
  trace_id: id().optional(),
  policy_ref: z.string().max(L.resource).optional(),
  signature: z.string().max(L.text).optional(),
  extensions: extensions()
})

const ProviderStatusSchema = z.enum(['operational', 'degraded', 'down', 'unknown'])

const AlternativeSchema = z.strictObject({
  provider: z.string().max(L.label).optional(),
  status: ProviderStatusSchema.optional(),
  suggested_model: z.string().max(L.label).optional(),
  extensions: extensions()
})

/** protocol.md §4.18 `basis`. */
export const BasisSchema = z.strictObject({
  kind: z.enum(['rule', 'heuristic', 'model_inference', 'semantic_match', 'human_report']),
  rule_id: z.string().max(L.label).optional(),
  matcher: z.string().max(L.label).optional(),
  match_type: z.enum(['contradictory', 'equivalent', 'uncertain']).optional(),
  confidence: z.number().min(0).max(1).optional(),
  matched_pair: z.strictObject({
    left: z.strictObject({ source_intent_id: id().optional(), content: text().optional() }).optional(),
    right: z.strictObject({ source_intent_id: id().optional(), content: text().optional() }).optional()
  }).optional(),
  explanation: text().optional(),
  extensions: extensions()
})

/** protocol.md §4.21 `outcome`. */
export const OutcomeSchema = z.strictObject({
  accepted: idArray().optional(),
  rejected: idArray().optional(),
  merged: idArray().optional(),
  rollback: z.string().max(L.resource).optional(),
  extensions: extensions()
})

/**
 * `file_changes` (protocol.md §11.4): path → the full new text. Paths are checked by the core.
 * A path named `__proto__` is refused up front: zod's record drops that key from its output,
 * so the change would otherwise vanish silently from an accepted commit.
 */
export const FileChangesSchema = z.unknown().refine(
  v => v === null || typeof v !== 'object' || !Object.prototype.hasOwnProperty.call(v, '__proto__'),
  { error: 'a file named "__proto__" is not supported' }
).pipe(z.record(
  z.string().min(1).max(L.resource),
  z.strictObject({
    content: z.string(),
    state_ref_before: stateRefString().nullable().optional(),
    extensions: extensions()
  })
).refine(v => Object.keys(v).length <= L.items, { error: `more than ${L.items} files` }))

const DependencyDirectionSchema = z.array(z.strictObject({
  file: z.string().max(L.resource),
  symbols: resourceArray().nullable()
})).max(L.items)

// ---------------------------------------------------------------------------
// payloads (protocol.md §4)

export const HelloPayloadSchema = z.strictObject({
  display_name: z.string().max(L.label),
  roles: stringArray(id(), L.smallItems).optional(),
  capabilities: stringArray(id(), L.smallItems).optional(),
  implementation: z.strictObject({
    name: z.string().max(L.label).optional(),
    version: z.string().max(L.label).optional(),
    extensions: extensions()
  }).optional(),
  // an empty `value` reaches the core, which answers CREDENTIAL_REJECTED
  credential: z.strictObject({
    type: label(),
    value: z.string().max(L.text),
    issuer: z.string().max(L.resource).optional(),
    expires_at: z.string().max(64).optional(),
    extensions: extensions()
  }).optional(),
  backend: z.strictObject({
    model_id: label(),
    provider: label(),
    extensions: extensions()
  }).optional(),
  extensions: extensions()
})

export const SessionInfoPayloadSchema = z.strictObject({
  session_id: id(),
  protocol_version: label(),
  security_profile: z.enum(['open', 'authenticated', 'verified']),
  compliance_profile: z.enum(['core', 'governance', 'semantic']),
  watermark_kind: label(),
  execution_model: z.enum(['pre_commit', 'post_commit']),
  state_ref_format: label(),
  governance_policy: anyObject().optional(),
  liveness_policy: anyObject().optional(),
  participant_count: nonNegInt().optional(),
  granted_roles: stringArray(id(), L.smallItems),
  identity_verified: z.boolean().optional(),
  identity_method: z.string().max(L.label).optional(),
  identity_issuer: z.string().max(L.resource).optional(),
  compatibility_errors: stringArray(text()).optional(),
  security_config: anyObject().optional(),
  resource_registry: anyObject().optional(),
  extensions: extensions()
})

export const HeartbeatPayloadSchema = z.strictObject({
  status: z.enum(['idle', 'working', 'blocked', 'awaiting_review', 'offline']).optional(),
  active_intent_id: id().optional(),
  summary: text().optional(),
  backend_health: z.strictObject({
    model_id: label(),
    provider_status: ProviderStatusSchema,
    checked_at: z.string().max(64),
    status_detail: text().nullable().optional(),
    alternatives: z.array(AlternativeSchema).max(L.smallItems).optional(),
    switched_from: z.string().max(L.label).optional(),
    switch_reason: z.enum(['provider_down', 'provider_degraded', 'manual', 'cost_optimization']).optional(),
    extensions: extensions()
  }).optional(),
  extensions: extensions()
})

export const GoodbyePayloadSchema = z.strictObject({
  reason: label().optional(),
  active_intents: idArray().optional(),
  intent_disposition: z.enum(['withdraw', 'transfer', 'expire']).optional(),
  extensions: extensions()
})

export const SessionClosePayloadSchema = z.strictObject({
  reason: z.enum(['completed', 'timeout', 'policy', 'coordinator_shutdown', 'manual']),
  final_lamport_clock: nonNegInt(),
  summary: z.strictObject({
    total_intents: nonNegInt().optional(),
    completed_intents: nonNegInt().optional(),
    expired_intents: nonNegInt().optional(),
    withdrawn_intents: nonNegInt().optional(),
    total_operations: nonNegInt().optional(),
    committed_operations: nonNegInt().optional(),
    rejected_operations: nonNegInt().optional(),
    abandoned_operations: nonNegInt().optional(),
    total_conflicts: nonNegInt().optional(),
    resolved_conflicts: nonNegInt().optional(),
    total_participants: nonNegInt().optional(),
    duration_sec: nonNegInt().optional(),
    extensions: extensions()
  }).optional(),
  active_intents_disposition: z.enum(['withdraw_all', 'expire_all']).optional(),
  transcript_ref: z.string().max(L.resource).optional(),
  extensions: extensions()
})

const COORDINATOR_STATUS_REQUIRED = {
  handover: ['successor_coordinator_id', 'next_coordinator_epoch'],
  authorization: ['authorized_op_id', 'authorized_by'],
  backend_alert: ['affected_principal', 'backend_detail']
} as const

export const CoordinatorStatusPayloadSchema = z.strictObject({
  event: z.enum(['heartbeat', 'recovered', 'handover', 'assumed', 'authorization', 'backend_alert']),
  coordinator_id: id(),
  session_health: z.enum(['healthy', 'degraded', 'recovering']),
  active_participants: nonNegInt().optional(),
  open_conflicts: nonNegInt().optional(),
  snapshot_lamport_clock: nonNegInt().optional(),
  successor_coordinator_id: id().optional(),
  next_coordinator_epoch: z.int().min(1).optional(),
  authorized_op_id: id().optional(),
  authorized_batch_id: id().optional(),
  authorized_by: id().optional(),
  affected_principal: id().optional(),
  backend_detail: z.strictObject({
    model_id: label(),
    provider_status: ProviderStatusSchema,
    status_detail: text().nullable().optional(),
    alternatives: z.array(AlternativeSchema).max(L.smallItems).optional(),
    extensions: extensions()
  }).optional(),
  extensions: extensions()
}).superRefine((p, ctx) => {
  const required: readonly string[] = p.event in COORDINATOR_STATUS_REQUIRED
    ? COORDINATOR_STATUS_REQUIRED[p.event as keyof typeof COORDINATOR_STATUS_REQUIRED]
    : []
  for (const key of required) {
    if ((p as Record<string, unknown>)[key] === undefined) {
      ctx.addIssue({ code: 'custom', path: [key], message: `missing required field (event ${p.event})` })
    }
  }
})

const ttlSec = () => z.number().min(0).max(L.ttlSec)

export const IntentAnnouncePayloadSchema = z.strictObject({
  intent_id: id(),
  objective: text(),
  scope: ScopeSchema,
  assumptions: stringArray(text()).optional(),
  priority: z.enum(['low', 'normal', 'high', 'critical']).optional(),
  ttl_sec: ttlSec().optional(),
  /** legacy Python TTL in milliseconds */
  expiry_ms: z.number().min(0).max(L.expiryMs).optional(),
  parent_intent_id: id().optional(),
  supersedes_intent_id: id().optional(),
  extensions: extensions()
})

export const IntentUpdatePayloadSchema = z.strictObject({
  intent_id: id(),
  objective: text().optional(),
  scope: ScopeSchema.optional(),
  assumptions: stringArray(text()).optional(),
  ttl_sec: ttlSec().optional(),
  extensions: extensions()
})

export const IntentWithdrawPayloadSchema = z.strictObject({
  intent_id: id(),
  reason: text().optional(),
  extensions: extensions()
})

/** INTENT_DEFERRED as a client sends it, and as the coordinator re-emits it (protocol.md §4.10). */
export const IntentDeferredActivePayloadSchema = z.strictObject({
  deferral_id: id().optional(),
  principal_id: id().optional(),
  scope: ScopeSchema,
  reason: text().optional(),
  observed_intent_ids: idArray().optional(),
  observed_principals: idArray().optional(),
  ttl_sec: ttlSec().optional(),
  expires_at: z.string().max(64).optional(),
  /** `queue` or `duplicate_yield`; the core maps anything else to `queue` */
  category: label().optional(),
  extensions: extensions()
})

/** The coordinator's resolution form: the deferral ended. */
export const IntentDeferredResolutionPayloadSchema = z.strictObject({
  deferral_id: id(),
  principal_id: id(),
  status: z.enum(['resolved', 'expired']),
  reason: text().optional(),
  extensions: extensions()
})

export const IntentDeferredPayloadSchema = z.union([IntentDeferredResolutionPayloadSchema, IntentDeferredActivePayloadSchema])

export const IntentClaimPayloadSchema = z.strictObject({
  claim_id: id(),
  original_intent_id: id(),
  original_principal_id: id(),
  new_intent_id: id(),
  objective: text(),
  scope: ScopeSchema,
  justification: text().optional(),
  extensions: extensions()
})

export const IntentClaimStatusPayloadSchema = z.strictObject({
  claim_id: id(),
  original_intent_id: id(),
  new_intent_id: id().optional(),
  decision: z.enum(['approved', 'rejected', 'withdrawn']),
  reason: text().optional(),
  approved_by: id().optional(),
  extensions: extensions()
}).superRefine((p, ctx) => {
  const key = p.decision === 'approved' ? 'new_intent_id' : 'reason'
  if (p[key] === undefined) ctx.addIssue({ code: 'custom', path: [key], message: `missing required field (decision ${p.decision})` })
})

export const OpProposePayloadSchema = z.strictObject({
  op_id: id(),
  target: resource(),
  op_kind: label(),
  intent_id: id().optional(),
  change_ref: z.string().max(L.resource).optional(),
  summary: text().optional(),
  extensions: extensions()
})

const operationFields = {
  op_id: id(),
  target: resource(),
  op_kind: label(),
  state_ref_before: stateRefString().nullable(),
  state_ref_after: stateRefString().nullable(),
  intent_id: id().optional(),
  change_ref: z.string().max(L.resource).optional(),
  summary: text().optional(),
  file_changes: FileChangesSchema.optional(),
  extensions: extensions()
}

export const OpCommitPayloadSchema = z.strictObject(operationFields)

/** One entry of OP_BATCH_COMMIT `operations`. */
export const BatchOperationSchema = z.strictObject(operationFields)

export const OpBatchCommitPayloadSchema = z.strictObject({
  batch_id: id(),
  atomicity: z.enum(['all_or_nothing', 'best_effort']).optional(),
  operations: z.array(BatchOperationSchema).min(1).max(L.items),
  intent_id: id().optional(),
  summary: text().optional(),
  extensions: extensions()
})

export const OpRejectPayloadSchema = z.strictObject({
  op_id: id(),
  reason: nonEmptyText(),
  /** the terminated intent's last message id (cascade rejections) */
  refers_to: id().optional(),
  /** batch rejections: the offending entries */
  rejected_ops: idArray().optional(),
  extensions: extensions()
})

export const OpSupersedePayloadSchema = z.strictObject({
  op_id: id(),
  supersedes_op_id: id(),
  target: resource(),
  intent_id: id().optional(),
  reason: text().optional(),
  op_kind: label().optional(),
  state_ref_after: stateRefString().optional(),
  extensions: extensions()
})

export const ConflictReportPayloadSchema = z.strictObject({
  conflict_id: id(),
  related_intents: idArray().optional(),
  related_ops: idArray().optional(),
  category: label(),
  severity: z.enum(['info', 'low', 'medium', 'high', 'critical']),
  basis: BasisSchema.optional(),
  based_on_watermark: WatermarkSchema.optional(),
  description: text().optional(),
  suggested_action: text().optional(),
  // the Python shape (principal_a / intent_a is the announcing side)
  principal_a: id().optional(),
  principal_b: id().optional(),
  intent_a: id().optional(),
  intent_b: id().optional(),
  involved_principals: idArray().optional(),
  dependency_detail: z.strictObject({
    ab: DependencyDirectionSchema.optional(),
    ba: DependencyDirectionSchema.optional(),
    extensions: extensions()
  }).optional(),
  extensions: extensions()
})

export const ConflictAckPayloadSchema = z.strictObject({
  conflict_id: id(),
  /** seen | accepted | disputed, but any non-empty string */
  ack_type: label(),
  extensions: extensions()
})

export const ConflictEscalatePayloadSchema = z.strictObject({
  conflict_id: id(),
  escalate_to: id(),
  reason: text(),
  context: text().optional(),
  extensions: extensions()
})

export const ResolutionPayloadSchema = z.strictObject({
  resolution_id: id().optional(),
  conflict_id: id(),
  /** approved | rejected | dismissed | human_override | policy_override | merged, but any non-empty string */
  decision: label(),
  outcome: OutcomeSchema.optional(),
  rationale: text().optional(),
  extensions: extensions()
})

export const ProtocolErrorPayloadSchema = z.strictObject({
  error_code: z.enum(ERROR_CODES),
  description: text(),
  refers_to: id().optional(),
  // STALE_INTENT details (protocol.md §6.4, §6.6)
  holder_intent_id: id().optional(),
  holder_principal_id: id().optional(),
  shared_files: resourceArray().optional(),
  duplicate_candidate: anyObject().optional(),
  // the ids Python puts in refers_to (PARTICIPANT_UNAVAILABLE, RESOLUTION_TIMEOUT; §13.1 W7)
  principal_id: id().optional(),
  conflict_id: id().optional(),
  extensions: extensions()
})

// ---------------------------------------------------------------------------
// inferred types

export type Envelope = z.infer<typeof EnvelopeSchema>
export type Sender = z.infer<typeof SenderSchema>
export type FileChanges = z.infer<typeof FileChangesSchema>
export type BatchOperation = z.infer<typeof BatchOperationSchema>
export type HelloPayload = z.infer<typeof HelloPayloadSchema>
export type SessionInfoPayload = z.infer<typeof SessionInfoPayloadSchema>
export type HeartbeatPayload = z.infer<typeof HeartbeatPayloadSchema>
export type GoodbyePayload = z.infer<typeof GoodbyePayloadSchema>
export type SessionClosePayload = z.infer<typeof SessionClosePayloadSchema>
export type CoordinatorStatusPayload = z.infer<typeof CoordinatorStatusPayloadSchema>
export type IntentAnnouncePayload = z.infer<typeof IntentAnnouncePayloadSchema>
export type IntentUpdatePayload = z.infer<typeof IntentUpdatePayloadSchema>
export type IntentWithdrawPayload = z.infer<typeof IntentWithdrawPayloadSchema>
export type IntentDeferredActivePayload = z.infer<typeof IntentDeferredActivePayloadSchema>
export type IntentDeferredResolutionPayload = z.infer<typeof IntentDeferredResolutionPayloadSchema>
export type IntentDeferredPayload = z.infer<typeof IntentDeferredPayloadSchema>
export type IntentClaimPayload = z.infer<typeof IntentClaimPayloadSchema>
export type IntentClaimStatusPayload = z.infer<typeof IntentClaimStatusPayloadSchema>
export type OpProposePayload = z.infer<typeof OpProposePayloadSchema>
export type OpCommitPayload = z.infer<typeof OpCommitPayloadSchema>
export type OpBatchCommitPayload = z.infer<typeof OpBatchCommitPayloadSchema>
export type OpRejectPayload = z.infer<typeof OpRejectPayloadSchema>
export type OpSupersedePayload = z.infer<typeof OpSupersedePayloadSchema>
export type ConflictReportPayload = z.infer<typeof ConflictReportPayloadSchema>
export type ConflictAckPayload = z.infer<typeof ConflictAckPayloadSchema>
export type ConflictEscalatePayload = z.infer<typeof ConflictEscalatePayloadSchema>
export type ResolutionPayload = z.infer<typeof ResolutionPayloadSchema>
export type ProtocolErrorPayload = z.infer<typeof ProtocolErrorPayloadSchema>

// ---------------------------------------------------------------------------
// parsing

/**
 * The payload schema of every message type, compiled once (zod's
 * ahead-of-time fast path; failures fall back to the runtime parser, which
 * produces the issues).
 */
export const PAYLOAD_SCHEMAS = Object.freeze({
  HELLO: z.compile(HelloPayloadSchema),
  SESSION_INFO: z.compile(SessionInfoPayloadSchema),
  HEARTBEAT: z.compile(HeartbeatPayloadSchema),
  GOODBYE: z.compile(GoodbyePayloadSchema),
  SESSION_CLOSE: z.compile(SessionClosePayloadSchema),
  COORDINATOR_STATUS: z.compile(CoordinatorStatusPayloadSchema),
  INTENT_ANNOUNCE: z.compile(IntentAnnouncePayloadSchema),
  INTENT_UPDATE: z.compile(IntentUpdatePayloadSchema),
  INTENT_WITHDRAW: z.compile(IntentWithdrawPayloadSchema),
  INTENT_DEFERRED: z.compile(IntentDeferredPayloadSchema),
  INTENT_CLAIM: z.compile(IntentClaimPayloadSchema),
  INTENT_CLAIM_STATUS: z.compile(IntentClaimStatusPayloadSchema),
  OP_PROPOSE: z.compile(OpProposePayloadSchema),
  OP_COMMIT: z.compile(OpCommitPayloadSchema),
  OP_BATCH_COMMIT: z.compile(OpBatchCommitPayloadSchema),
  OP_REJECT: z.compile(OpRejectPayloadSchema),
  OP_SUPERSEDE: z.compile(OpSupersedePayloadSchema),
  CONFLICT_REPORT: z.compile(ConflictReportPayloadSchema),
  CONFLICT_ACK: z.compile(ConflictAckPayloadSchema),
  CONFLICT_ESCALATE: z.compile(ConflictEscalatePayloadSchema),
  RESOLUTION: z.compile(ResolutionPayloadSchema),
  PROTOCOL_ERROR: z.compile(ProtocolErrorPayloadSchema)
} as const satisfies { readonly [T in MessageType]: z.ZodType })

/** The validated payload of message type `T`, inferred from its schema (`Payload<'OP_COMMIT'>`). */
export type Payload<T extends MessageType> = z.infer<typeof PAYLOAD_SCHEMAS[T]>

/** An envelope whose payload parseEnvelope validated as message type `T`. */
export type TypedEnvelope<T extends MessageType> = Omit<Envelope, 'payload'> & { readonly message_type: T, payload: Payload<T> }

const ENVELOPE = z.compile(EnvelopeSchema)
const DEFERRED_ACTIVE = z.compile(IntentDeferredActivePayloadSchema)
const DEFERRED_RESOLUTION = z.compile(IntentDeferredResolutionPayloadSchema)

/** The validator parseEnvelope uses per type: the table, except that INTENT_DEFERRED picks its form by `status`. */
function payloadValidator (type: MessageType, payload: Record<string, unknown>): z.ZodType {
  if (type === 'INTENT_DEFERRED') return 'status' in payload ? DEFERRED_RESOLUTION : DEFERRED_ACTIVE
  return PAYLOAD_SCHEMAS[type]
}

/** The envelope schema requires coordinator_epoch on these coordinator-authored types. */
const EPOCH_REQUIRED: ReadonlySet<MessageType> = new Set(COORDINATOR_AUTHORED_TYPES)

export type ParseResult =
  /**
   * `type` undefined: an unknown message_type (the core echoes or ignores it); its payload was only checked to be an object.
   * `envelope` is the input itself when it has no unknown key, else a copy without them; `ignored` names the
   * keys left out (`payload.position`, `sender.role`; at most MAX_IGNORED of them).
   */
  | { ok: true; envelope: Envelope; type: MessageType | undefined; ignored: readonly string[] }
  | { ok: false; code: 'MALFORMED_MESSAGE'; description: string; messageId: string | undefined; principalId: string | undefined }

const MAX_DESCRIPTION = 300

type Issue = z.core.$ZodIssue
type RawIssue = z.core.$ZodRawIssue

const EXPECTED_NAMES: Readonly<Record<string, string>> = { int: 'integer', record: 'object' }

function issueMessage (iss: RawIssue): string | undefined {
  switch (iss.code) {
    case 'invalid_type':
      return wrongType(EXPECTED_NAMES[iss.expected] ?? iss.expected, iss.input)
    case 'too_small':
      // every minimum length we declare is 1
      if (iss.origin === 'string' || iss.origin === 'array') return 'must not be empty'
      return `must be >= ${iss.minimum}`
    case 'too_big':
      if (iss.origin === 'string') return `longer than ${iss.maximum} characters`
      if (iss.origin === 'array') return `more than ${iss.maximum} items`
      return `must be <= ${iss.maximum}`
    case 'invalid_key':
      return 'invalid key (empty or too long)'
    case 'invalid_value':
      return iss.values.length === 1
        ? `expected ${JSON.stringify(iss.values[0])}`
        : `expected one of ${iss.values.map(v => JSON.stringify(v)).join(', ')}`
    default:
      return undefined
  }
}

const PARSE_PARAMS = { error: issueMessage } as const

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/

function clip (s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n - 1) + '…'
}

function renderPath (path: readonly PropertyKey[]): string {
  let out = ''
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`
    else if (typeof key === 'string' && IDENT.test(key) && key.length <= 64) out += out === '' ? key : `.${key}`
    else out += `[${JSON.stringify(clip(String(key), 64))}]`
  }
  return out
}

function describe (issues: readonly Issue[], prefix: readonly PropertyKey[]): string {
  const first = issues[0] as Issue
  const path = [...prefix, ...first.path]
  const where = path.length === 0 ? 'envelope' : renderPath(path)
  let out: string
  if (first.code === 'unrecognized_keys') {
    const keys = first.keys.slice(0, 3).map(k => JSON.stringify(clip(k, 40))).join(', ')
    const more = first.keys.length > 3 ? ` and ${first.keys.length - 3} more` : ''
    out = `unknown field${first.keys.length === 1 ? '' : 's'} ${keys}${more} in ${where}`
  } else {
    out = `${where}: ${first.message}`
  }
  if (issues.length > 1) out += ` (and ${issues.length - 1} more problem${issues.length === 2 ? '' : 's'})`
  return clip(out, MAX_DESCRIPTION)
}

/** The most ignored keys a ParseResult names (a hostile message may carry thousands). */
export const MAX_IGNORED = 16

/**
 * Copy-on-write removal of keys at paths of a JSON value: every object or
 * array on the way to a changed object is copied once, the input is never
 * modified, and untouched branches stay shared.
 */
class KeyStripper {
  readonly #copies = new Set<object>()
  root: Record<string, unknown>
  constructor (root: Record<string, unknown>) {
    this.root = root
  }

  #own<T extends object> (v: T): T {
    if (this.#copies.has(v)) return v
    const copy = (Array.isArray(v) ? [...v] : { ...v }) as T
    this.#copies.add(copy)
    return copy
  }

  remove (path: readonly PropertyKey[], keys: readonly string[]): void {
    this.root = this.#own(this.root)
    let node: Record<PropertyKey, unknown> = this.root
    for (const k of path) {
      const child = node[k]
      if (typeof child !== 'object' || child === null) return
      const copy = this.#own(child)
      // defineProperty, not assignment: a key named "__proto__" stays an own data property
      Object.defineProperty(node, k, { value: copy, writable: true, enumerable: true, configurable: true })
      node = copy as Record<PropertyKey, unknown>
    }
    for (const k of keys) delete node[k]
  }
}

type Lenient = { ok: true; value: Record<string, unknown> } | { ok: false; description: string }

/**
 * Validates `value`; unknown keys alone do not fail it. Their removal is
 * validated again (a safety net: zod already ran every other check), and the
 * description of a failure leaves unknown keys out, so a misspelt required
 * field reads as missing.
 */
function lenient (schema: z.ZodType, value: Record<string, unknown>, prefix: readonly PropertyKey[], ignored: string[]): Lenient {
  const first = schema.safeParse(value, PARSE_PARAMS)
  if (first.success) return { ok: true, value }
  const issues = first.error.issues
  const real = issues.filter(i => i.code !== 'unrecognized_keys')
  if (real.length > 0) return { ok: false, description: describe(real, prefix) }
  const stripper = new KeyStripper(value)
  for (const iss of issues) {
    if (iss.code !== 'unrecognized_keys') continue
    stripper.remove(iss.path, iss.keys)
    for (const k of iss.keys) if (ignored.length < MAX_IGNORED) ignored.push(renderPath([...prefix, ...iss.path, k]))
  }
  const second = schema.safeParse(stripper.root, PARSE_PARAMS)
  if (!second.success) return { ok: false, description: describe(second.error.issues, prefix) }
  return { ok: true, value: stripper.root }
}

function readableId (v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 && v.length <= L.id ? v : undefined
}

function malformed (description: string, messageId: string | undefined, principalId: string | undefined): ParseResult {
  return { ok: false, code: 'MALFORMED_MESSAGE', description, messageId, principalId }
}

/**
 * Validate one inbound frame (already JSON-parsed): the envelope, and the
 * payload when the type is known. Never throws. On success `envelope` is the
 * input object itself, not a copy, so a relay keeps its keys and their order;
 * only when the input carries unknown keys is it a copy without them (same
 * key order otherwise).
 * On failure the description names the path and the problem
 * (`payload.scope.resources: expected array of strings, got string`), and
 * `messageId` / `principalId` are set whenever they are readable, so the
 * error can refer to the message.
 */
export function parseEnvelope (raw: unknown): ParseResult {
  if (!isRecord(raw)) return malformed(`message must be a JSON object, got ${kindOf(raw)}`, undefined, undefined)
  let messageId: string | undefined
  let principalId: string | undefined
  try {
    messageId = readableId(raw.message_id)
    principalId = isRecord(raw.sender) ? readableId(raw.sender.principal_id) : undefined
    return check(raw, messageId, principalId)
  } catch {
    // only reachable with objects JSON.parse cannot produce (throwing getters, proxies)
    return malformed('message could not be read', messageId, principalId)
  }
}

function check (raw: Record<string, unknown>, messageId: string | undefined, principalId: string | undefined): ParseResult {
  const ignored: string[] = []
  const env = lenient(ENVELOPE, raw, [], ignored)
  if (!env.ok) return malformed(env.description, messageId, principalId)
  const clean = env.value
  const messageType = clean.message_type as string
  if (!isMessageType(messageType)) return { ok: true, envelope: clean as Envelope, type: undefined, ignored }
  if (clean.coordinator_epoch === undefined && EPOCH_REQUIRED.has(messageType)) {
    return malformed(`coordinator_epoch: missing required field (message_type ${messageType})`, messageId, principalId)
  }
  const payload = clean.payload as Record<string, unknown>
  const checked = lenient(payloadValidator(messageType, payload), payload, ['payload'], ignored)
  if (!checked.ok) return malformed(checked.description, messageId, principalId)
  const envelope = checked.value === payload ? clean : { ...clean, payload: checked.value }
  return { ok: true, envelope: envelope as Envelope, type: messageType, ignored }
}
