/**
 * Test helpers for the coordinator core: envelope builders with per-sender
 * Lamport counters, a manual clock, a harness that journals every input (so a
 * test can replay or restore), and small readers of `ApplyResult`s.
 *
 * Principal ids in the scenarios are the letters protocol.md §14 uses
 * (A, B, C agents; O owner; R arbiter; V reviewer).
 */
import { createHash } from 'node:crypto'
import type { TAP } from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type {
  ApplyResult,
  Audience,
  CoordinatorConfig,
  CoordinatorSnapshot,
  CoreInput,
  Output,
  SessionCloseReason,
  Verdict
} from '../../src/coordinator/types.js'

/** 2026-05-01T00:00:00Z: a whole second, so formatted times have no fraction. */
export const T0 = Date.UTC(2026, 4, 1, 0, 0, 0)
export const SID = 'sess-1'

export type Json = Record<string, unknown>

export function coordinatorIdOf (sessionId: string): string {
  return `service:coordinator-${sessionId}`
}

/** `sha256:` + first 16 hex of SHA-256(UTF-8 text), computed independently of src/. */
export function refOf (text: string): string {
  return 'sha256:' + createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 16)
}

export function isoTs (ms: number): string {
  return new Date(ms).toISOString()
}

/** A manual clock in epoch milliseconds. */
export class TestClock {
  now: number
  constructor (start = T0) {
    this.now = start
  }

  /** Moves forward by `sec` seconds (fractions allowed) and returns the new time. */
  advance (sec: number): number {
    this.now += Math.round(sec * 1000)
    return this.now
  }

  set (ms: number): number {
    this.now = ms
    return this.now
  }
}

export interface EnvOptions {
  messageId?: string
  /** Overrides the `ts` string (default: the clock time, ISO format). */
  ts?: string
  /** Overrides the watermark; `null` omits it. Default: the sender's next Lamport value. */
  watermark?: unknown
  instance?: string
  principalType?: string
  sessionId?: string
  /** Extra top-level envelope keys. */
  extra?: Json
}

/** Builds participant envelopes: unique message ids, strictly increasing Lamport values per sender incarnation. */
export class Envelopes {
  #seq = 0
  readonly #lamport = new Map<string, number>()
  constructor (readonly sessionId: string, readonly clock: TestClock) {}

  nextLamport (pid: string, instance = `${pid}:inst-1`): number {
    const key = `${pid}|${instance}`
    const v = (this.#lamport.get(key) ?? 0) + 1
    this.#lamport.set(key, v)
    return v
  }

  make (type: string, pid: string, payload: unknown, o: EnvOptions = {}): Json {
    const instance = o.instance ?? `${pid}:inst-1`
    this.#seq++
    const env: Json = {
      protocol: 'MPAC',
      version: '0.1.15',
      message_type: type,
      message_id: o.messageId ?? `m-${pid}-${type.toLowerCase()}-${this.#seq}`,
      session_id: o.sessionId ?? this.sessionId,
      sender: {
        principal_id: pid,
        principal_type: o.principalType ?? defaultPrincipalType(pid),
        sender_instance_id: instance
      },
      ts: o.ts ?? isoTs(this.clock.now),
      payload
    }
    if (o.watermark === undefined) {
      env.watermark = { kind: 'lamport_clock', value: this.nextLamport(pid, instance) }
    } else if (o.watermark !== null) {
      env.watermark = o.watermark
    }
    if (o.extra !== undefined) Object.assign(env, o.extra)
    return env
  }
}

function defaultPrincipalType (pid: string): string {
  return pid === 'O' || pid === 'O2' || pid === 'R' || pid === 'R2' || pid === 'V' ? 'human' : 'agent'
}

export function fileSet (...resources: string[]): Json {
  return { kind: 'file_set', resources }
}

export function entitySet (...entities: string[]): Json {
  return { kind: 'entity_set', entities }
}

/** A `message` input's result plus the envelope that was sent. */
export type Sent = ApplyResult & { readonly id: string; readonly envelope: Json; readonly sender: string }

export interface OpEntry {
  op_id: string
  target: string
  op_kind?: string
  state_ref_before?: string
  state_ref_after?: string
  intent_id?: string
  [key: string]: unknown
}

/**
 * One coordinator, a clock and an envelope builder. Every input goes through
 * `apply` and is journaled in `inputs`, so tests can replay or restore.
 */
export class Harness {
  readonly clock: TestClock
  readonly config: CoordinatorConfig
  readonly env: Envelopes
  readonly inputs: CoreInput[] = []
  c: Coordinator

  constructor (config: Partial<CoordinatorConfig> = {}, clock = new TestClock()) {
    this.clock = clock
    this.config = { sessionId: SID, ...config }
    this.env = new Envelopes(this.config.sessionId, clock)
    this.c = new Coordinator(this.config)
  }

  get sessionId (): string {
    return this.config.sessionId
  }

  get coordinatorId (): string {
    return coordinatorIdOf(this.config.sessionId)
  }

  get now (): number {
    return this.clock.now
  }

  apply (input: CoreInput): ApplyResult {
    this.inputs.push(input)
    return this.c.apply(input)
  }

  /** Sends an already-built envelope (or any value) at the clock time. */
  raw (envelope: unknown, verdict?: Verdict): ApplyResult {
    const input: CoreInput = verdict === undefined
      ? { kind: 'message', now: this.clock.now, envelope }
      : { kind: 'message', now: this.clock.now, envelope, verdict }
    return this.apply(input)
  }

  /** Re-sends an envelope built earlier. */
  resend (envelope: Json, verdict?: Verdict): Sent {
    const r = this.raw(envelope, verdict)
    return { ...r, id: String(envelope.message_id), envelope, sender: senderOf(envelope) }
  }

  send (type: string, pid: string, payload: unknown, o: EnvOptions & { verdict?: Verdict } = {}): Sent {
    const envelope = this.env.make(type, pid, payload, o)
    return this.resend(envelope, o.verdict)
  }

  hello (pid: string, roles: string[] = ['contributor'], o: EnvOptions & { verdict?: Verdict, payload?: Json } = {}): Sent {
    const payload: Json = {
      display_name: `Agent ${pid}`,
      roles,
      capabilities: ['intent.broadcast', 'intent.update', 'intent.withdraw', 'intent.claim', 'op.propose', 'op.commit', 'op.batch_commit', 'op.reject', 'conflict.report', 'conflict.ack'],
      ...o.payload
    }
    return this.send('HELLO', pid, payload, o)
  }

  /** HELLO for each principal with the given roles (contributor when not listed). */
  join (...pids: Array<string | [string, string[]]>): void {
    for (const p of pids) {
      const r = typeof p === 'string' ? this.hello(p) : this.hello(p[0], p[1])
      if (!r.accepted) throw new Error(`HELLO of ${typeof p === 'string' ? p : p[0]} was refused: ${JSON.stringify(r.outputs)}`)
    }
  }

  announce (pid: string, intentId: string, scope: Json | string[], extra: Json = {}, o: EnvOptions = {}): Sent {
    const s = Array.isArray(scope) ? fileSet(...scope) : scope
    return this.send('INTENT_ANNOUNCE', pid, { intent_id: intentId, objective: `work on ${intentId}`, scope: s, ...extra }, o)
  }

  update (pid: string, intentId: string, fields: Json): Sent {
    return this.send('INTENT_UPDATE', pid, { intent_id: intentId, ...fields })
  }

  withdraw (pid: string, intentId: string, reason?: string): Sent {
    return this.send('INTENT_WITHDRAW', pid, reason === undefined ? { intent_id: intentId } : { intent_id: intentId, reason })
  }

  propose (pid: string, opId: string, target: string, intentId?: string, extra: Json = {}): Sent {
    const payload: Json = { op_id: opId, target, op_kind: 'replace', ...extra }
    if (intentId !== undefined) payload.intent_id = intentId
    return this.send('OP_PROPOSE', pid, payload)
  }

  commit (pid: string, opId: string, target: string, before: string, after: string, intentId?: string, extra: Json = {}): Sent {
    const payload: Json = { op_id: opId, target, op_kind: 'replace', state_ref_before: before, state_ref_after: after, ...extra }
    if (intentId !== undefined) payload.intent_id = intentId
    return this.send('OP_COMMIT', pid, payload)
  }

  batch (pid: string, batchId: string, ops: OpEntry[], atomicity = 'all_or_nothing', intentId?: string, extra: Json = {}): Sent {
    const operations = ops.map(o => ({ op_kind: 'replace', state_ref_before: 'r?', state_ref_after: 'r?', ...o }))
    const payload: Json = { batch_id: batchId, atomicity, operations, ...extra }
    if (intentId !== undefined) payload.intent_id = intentId
    return this.send('OP_BATCH_COMMIT', pid, payload)
  }

  supersede (pid: string, opId: string, supersedesOpId: string, target: string, extra: Json = {}): Sent {
    return this.send('OP_SUPERSEDE', pid, { op_id: opId, supersedes_op_id: supersedesOpId, target, ...extra })
  }

  opReject (pid: string, opId: string, reason = 'policy_violation'): Sent {
    return this.send('OP_REJECT', pid, { op_id: opId, reason })
  }

  defer (pid: string, payload: Json): Sent {
    return this.send('INTENT_DEFERRED', pid, { scope: fileSet('db.py'), ...payload })
  }

  claim (pid: string, claimId: string, originalIntentId: string, originalPrincipalId: string, newIntentId: string, scope: Json | string[], extra: Json = {}): Sent {
    const s = Array.isArray(scope) ? fileSet(...scope) : scope
    return this.send('INTENT_CLAIM', pid, {
      claim_id: claimId,
      original_intent_id: originalIntentId,
      original_principal_id: originalPrincipalId,
      new_intent_id: newIntentId,
      objective: `take over ${originalIntentId}`,
      scope: s,
      ...extra
    })
  }

  report (pid: string, payload: Json): Sent {
    return this.send('CONFLICT_REPORT', pid, payload)
  }

  ack (pid: string, conflictId: string, ackType = 'seen'): Sent {
    return this.send('CONFLICT_ACK', pid, { conflict_id: conflictId, ack_type: ackType })
  }

  escalate (pid: string, conflictId: string, to: string, reason = 'need a decision'): Sent {
    return this.send('CONFLICT_ESCALATE', pid, { conflict_id: conflictId, escalate_to: to, reason })
  }

  resolve (pid: string, conflictId: string, decision = 'approved', extra: Json = {}): Sent {
    return this.send('RESOLUTION', pid, {
      resolution_id: `res-${pid}-${conflictId}-${this.inputs.length}`,
      conflict_id: conflictId,
      decision,
      rationale: 'decided',
      ...extra
    })
  }

  heartbeat (pid: string, status = 'working', extra: Json = {}): Sent {
    return this.send('HEARTBEAT', pid, { status, ...extra })
  }

  goodbye (pid: string, payload: Json = {}): Sent {
    return this.send('GOODBYE', pid, { reason: 'user_exit', ...payload })
  }

  /** Advances the clock by `sec` seconds (default 0) and ticks. */
  tick (sec = 0): ApplyResult {
    this.clock.advance(sec)
    return this.apply({ kind: 'tick', now: this.clock.now })
  }

  close (reason: SessionCloseReason = 'manual'): ApplyResult {
    return this.apply({ kind: 'close', now: this.clock.now, reason })
  }

  fileSync (path: string, content: string | null): ApplyResult {
    return this.apply({ kind: 'file_sync', now: this.clock.now, path, content })
  }

  snap (): CoordinatorSnapshot {
    return this.c.snapshot(this.clock.now)
  }

  intent (id: string): CoordinatorSnapshot['intents'][number] | undefined {
    return this.snap().intents.find(i => i.intent_id === id)
  }

  op (id: string): CoordinatorSnapshot['operations'][number] | undefined {
    return this.snap().operations.find(o => o.op_id === id)
  }

  conflict (id: string): CoordinatorSnapshot['conflicts'][number] | undefined {
    return this.snap().conflicts.find(c => c.conflict_id === id)
  }

  intentState (id: string): string | undefined {
    return this.intent(id)?.state
  }

  opState (id: string): string | undefined {
    return this.op(id)?.state
  }

  conflictState (id: string): string | undefined {
    return this.conflict(id)?.state
  }

  participant (pid: string): CoordinatorSnapshot['participants'][number] | undefined {
    return this.snap().participants.find(p => p.principal_id === pid)
  }

  deferral (id: string): Json | undefined {
    const found: Json | undefined = this.snap().deferrals.find(d => d.deferral_id === id)
    return found
  }

  /** Replaces the coordinator by one restored from a JSON round trip of its snapshot. */
  restore (config: Partial<CoordinatorConfig> = {}): CoordinatorSnapshot {
    const s = JSON.parse(JSON.stringify(this.snap())) as CoordinatorSnapshot
    this.c = Coordinator.restore(s, { ...this.config, ...config })
    return s
  }
}

export function senderOf (envelope: unknown): string {
  if (typeof envelope !== 'object' || envelope === null) return ''
  const s = (envelope as Json).sender
  if (typeof s !== 'object' || s === null) return ''
  const p = (s as Json).principal_id
  return typeof p === 'string' ? p : ''
}

// ---- reading results -------------------------------------------------------

export function typeOf (o: Output): string | undefined {
  const f = o.frame
  if (typeof f.message_type === 'string') return f.message_type
  if (typeof f.type === 'string') return f.type
  return undefined
}

export function payloadOf (o: Output): Json {
  const p = o.frame.payload
  return typeof p === 'object' && p !== null ? p as Json : {}
}

/** Outputs whose `message_type` (or sideband `type`) is `type`. */
export function outputsOfType (r: ApplyResult, type: string): Output[] {
  return r.outputs.filter(o => typeOf(o) === type)
}

export function payloadsOfType (r: ApplyResult, type: string): Json[] {
  return outputsOfType(r, type).map(payloadOf)
}

export function terminalsOf (r: ApplyResult): Output[] {
  return r.outputs.filter(o => o.terminal === true)
}

/** The terminal output, when there is exactly one. */
export function terminalOf (r: ApplyResult): Output | undefined {
  const ts = terminalsOf(r)
  return ts.length === 1 ? ts[0] : undefined
}

/** Non-terminal outputs, leaving out the peers' copy of the terminal relay. */
export function extrasOf (r: ApplyResult): Output[] {
  const term = r.outputs.find(o => o.terminal === true)
  return r.outputs.filter(o => o.terminal !== true && !(o.audience.kind === 'others' && o.frame === term?.frame))
}

/** PROTOCOL_ERROR payloads, optionally of one code. */
export function errorsOf (r: ApplyResult, code?: string): Json[] {
  return payloadsOfType(r, 'PROTOCOL_ERROR').filter(p => code === undefined || p.error_code === code)
}

export function isSenderVisible (a: Audience, senderPid: string): boolean {
  if (a.kind === 'sender' || a.kind === 'all') return true
  if (a.kind === 'others') return false
  return a.ids.includes(senderPid)
}

/** The peers' copy of the terminal relay (audience `others`, the terminal's frame), or undefined. */
export function peersRelayOf (r: ApplyResult): Output | undefined {
  const term = terminalOf(r)
  return term === undefined ? undefined : r.outputs.find(o => o.audience.kind === 'others' && o.frame === term.frame)
}

export function audienceIds (a: Audience): string[] {
  return a.kind === 'principals' ? [...a.ids].sort() : []
}

/** Conflict ids of the CONFLICT_REPORTs in a result. */
export function conflictIdsOf (r: ApplyResult): string[] {
  return payloadsOfType(r, 'CONFLICT_REPORT').map(p => String(p.conflict_id))
}

/** The envelope minus `payload.file_changes`: what a relay carries. */
export function relayFormOf (envelope: Json): Json {
  const p = envelope.payload
  if (typeof p !== 'object' || p === null || !('file_changes' in p)) return envelope
  const { file_changes: _drop, ...rest } = p as Json
  void _drop
  return { ...envelope, payload: rest }
}

/** Sorted JSON of a result's outputs, for failure messages. */
export function show (r: ApplyResult): string {
  return JSON.stringify(r.outputs.map(o => ({ a: o.audience, t: o.terminal, type: typeOf(o), p: o.frame.payload ?? o.frame })))
}

// ---- assertions ------------------------------------------------------------

/** The slice of tap's Test these helpers use. */
export type Tap = Pick<TAP, 'ok' | 'notOk' | 'equal' | 'not' | 'same' | 'match' | 'notMatch' | 'fail' | 'type'>

/** `list` has exactly as many elements as `patterns`, each matching its pattern (t.match alone allows extras). */
export function matchEach (t: Tap, list: readonly unknown[], patterns: readonly unknown[], msgOrExtra: string | object = 'matches element by element', more: object = {}): void {
  const msg = typeof msgOrExtra === 'string' ? msgOrExtra : 'matches element by element'
  const extra = typeof msgOrExtra === 'string' ? more : msgOrExtra
  t.equal(list.length, patterns.length, `${msg}: ${patterns.length} element(s)`, extra)
  t.match(list, patterns, msg, extra)
}

/** Exactly one terminal output; it is the last MPAC envelope the sender receives (only sideband pushes follow it). */
export function assertTerminalShape (t: Tap, r: ApplyResult, sender: string): Output | undefined {
  const ts = terminalsOf(r)
  t.equal(ts.length, 1, 'exactly one terminal output', { outputs: show(r) })
  const term = ts[0]
  if (term === undefined) return undefined
  const visible = r.outputs.filter(o => isSenderVisible(o.audience, sender) && typeof o.frame.message_type === 'string')
  t.equal(visible[visible.length - 1], term, 'the terminal output is the last MPAC envelope the sender receives', { outputs: show(r) })
  return term
}

/** Success with a terminal relay of the inbound envelope: the peers' copy first, the sender's terminal one after what the message caused. */
export function assertRelayed (t: Tap, s: Sent, msg = 'relayed to all'): void {
  const term = assertTerminalShape(t, s, s.sender)
  t.equal(s.accepted, true, `${msg}: accepted`, { outputs: show(s) })
  if (term === undefined) return
  t.equal(typeOf(term), s.envelope.message_type, `${msg}: terminal is the relay`, { outputs: show(s) })
  t.equal(term.frame.message_id, s.id, `${msg}: same message_id`)
  t.same(term.audience, { kind: 'sender' }, `${msg}: the terminal copy goes to the sender`)
  t.equal(s.outputs[0]?.frame, term.frame, `${msg}: the first output is the same relay`, { outputs: show(s) })
  t.same(s.outputs[0]?.audience, { kind: 'others' }, `${msg}: to everyone else, before anything the message caused`)
  t.same(term.frame, relayFormOf(s.envelope), `${msg}: the relay carries the inbound fields`)
}

/** Success with a terminal echo to the sender only. */
export function assertEchoed (t: Tap, s: Sent, msg = 'echoed to the sender'): void {
  const term = assertTerminalShape(t, s, s.sender)
  t.equal(s.accepted, true, `${msg}: accepted`, { outputs: show(s) })
  if (term === undefined) return
  t.equal(term.frame.message_id, s.id, `${msg}: same message_id`)
  t.same(term.audience, { kind: 'sender' }, `${msg}: audience sender`)
}

/** MPAC envelopes among the non-terminal outputs. */
export function otherEnvelopes (r: ApplyResult): Output[] {
  return extrasOf(r).filter(o => typeof o.frame.message_type === 'string')
}

/** "⇐ no output": the relay (or echo) is the only MPAC frame. */
export function assertNoOutput (t: Tap, s: Sent, relay: 'all' | 'sender' = 'all'): void {
  if (relay === 'all') assertRelayed(t, s)
  else assertEchoed(t, s)
  t.same(otherEnvelopes(s).map(typeOf), [], 'no coordinator output besides the terminal frame', { outputs: show(s) })
}

/** Rejection: the terminal frame is PROTOCOL_ERROR{code, refers_to} to the sender; nothing is relayed. */
export function assertRejected (t: Tap, s: Sent, code: string, msg = `rejected with ${code}`): Json {
  const term = assertTerminalShape(t, s, s.sender)
  t.equal(s.accepted, false, `${msg}: not accepted`, { outputs: show(s) })
  if (term === undefined) return {}
  const p = payloadOf(term)
  t.equal(typeOf(term), 'PROTOCOL_ERROR', `${msg}: terminal is PROTOCOL_ERROR`, { outputs: show(s) })
  t.equal(p.error_code, code, `${msg}: error_code`, { outputs: show(s) })
  t.equal(p.refers_to, s.id, `${msg}: refers_to the inbound message`)
  t.same(term.audience, { kind: 'sender' }, `${msg}: to the sender only`)
  const relays = s.outputs.filter(o => o.frame.message_id === s.id)
  t.same(relays.length, 0, `${msg}: nothing relayed`)
  return p
}
