/**
 * The MPAC coordinator core for one session: a pure, deterministic state
 * machine (docs/architecture.md). `apply` runs the inbound pipeline of
 * protocol.md §3 in order (parse, coordinator-id guard, session check,
 * replay protection, Lamport receive rule, closed-session check, HELLO gate,
 * dispatch, pending-claim sweep) and ends every message input with exactly
 * one terminal frame for the sender: the last MPAC envelope it receives for
 * that input, which only sideband FILE_UPDATED pushes may follow (frame order:
 * docs/architecture.md).
 */
import type { ErrorCode } from '../protocol/error-codes.js'
import type { CoordinatorAuthoredType, MessageType, ParticipantMessageType } from '../protocol/message-types.js'
import { protocolErrorPayload } from '../protocol/protocol-error.js'
import { parseEnvelope, type Envelope, type TypedEnvelope } from '../protocol/schemas.js'
import { parseTs } from '../protocol/time.js'
import { clampLamport, lamportOf, MAX_LAMPORT } from '../protocol/watermark.js'
import { checkWorkspacePath } from '../protocol/workspace-path.js'
import { handleBatch } from './batches.js'
import { settle } from './cascades.js'
import { handleClaim, nextClaimDeadline, sweepClaims } from './claims.js'
import { handleReport } from './conflicts.js'
import { degradeFrozenScopes, nextDegradationDeadline } from './degradation.js'
import { clearDeferrals, expireDeferrals, handleDeferred, nextDeferralDeadline } from './deferrals.js'
import { ALL, ECHO, fail, OTHERS, SENDER, Ctx, type Terminal } from './envelopes.js'
import { handleAck, handleEscalate, handleResolution, nextResolutionDeadline, resolutionTimeouts } from './governance.js'
import { pruneHistory } from './history.js'
import { expireIntents, handleAnnounce, handleUpdate, handleWithdraw, nextExpiry } from './intents.js'
import { checkLiveness, handleGoodbye, handleHeartbeat, nextLivenessDeadline, statusHeartbeat, statusPayload } from './liveness.js'
import { handleCommit, handlePropose, handleReject, handleSupersede } from './operations.js'
import { closeSummary, handleHello, helloGate, summary } from './session-info.js'
import { restoreState, takeSnapshot } from './snapshot.js'
import { CORE_DEFAULTS, resolveSettings, type Settings } from './settings.js'
import { CoreState } from './state.js'
import type { ApplyResult, CoordinatorConfig, CoordinatorSnapshot, CoreInput, FileEntry, Output, SessionCloseReason, Verdict } from './types.js'
import { charLength } from '../protocol/text.js'
import { fileSync } from './workspace.js'
import { dashboardConflict, dashboardView, type DashboardView, type DashboardViewOptions, type ViewConflict } from './dashboard-view.js'

type RawPayload = Record<string, unknown>

/** The HELLO-first refusal, in the Python coordinator's words (issue 12.13; same code, INVALID_REFERENCE). */
export function helloFirst (principalId: string): string {
  return `Principal ${principalId} must send HELLO before any other message`
}

/** Largest inbound Lamport value accepted (src/protocol/watermark.ts; re-exported for the core's users). */
export { MAX_LAMPORT }

/**
 * Deepest nesting of objects and arrays accepted in an envelope. Copies,
 * snapshots (structuredClone) and JSON.stringify recurse; a few thousand
 * levels exhaust the stack, so such input is refused before it is stored.
 */
export const MAX_DEPTH = 64

/** Is `v` nested deeper than `max` levels? Iterative, so it never overflows itself. */
function deeperThan (v: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[v, 1]]
  for (let top = stack.pop(); top !== undefined; top = stack.pop()) {
    const [x, d] = top
    if (typeof x !== 'object' || x === null) continue
    if (d > max) return true
    for (const k of Object.keys(x)) stack.push([(x as Record<string, unknown>)[k], d + 1])
  }
  return false
}
/**
 * A handler receives the envelope with the payload parseEnvelope validated
 * for its type (TypedEnvelope<T>: the payload type is inferred from
 * PAYLOAD_SCHEMAS).
 */
type Handler<T extends MessageType> = (st: CoreState, ctx: Ctx, env: TypedEnvelope<T>, verdict: Verdict | undefined) => Terminal

const echo = (): Terminal => ECHO

/**
 * One handler per type a participant may send (compiler-checked: a type added
 * to MESSAGE_TYPES needs an entry here unless it is listed in
 * COORDINATOR_AUTHORED_TYPES).
 */
const HANDLERS: { readonly [T in ParticipantMessageType]: Handler<T> } = {
  HELLO: (st, ctx, env, verdict) => handleHello(st, ctx, env.sender, env.payload, verdict, env.message_id),
  HEARTBEAT: (st, ctx, env) => handleHeartbeat(st, ctx, env.payload, env.sender.principal_id),
  GOODBYE: (st, ctx, env) => handleGoodbye(st, ctx, env.payload, env.sender.principal_id),
  INTENT_ANNOUNCE: (st, ctx, env) => handleAnnounce(st, ctx, env.payload, env.sender.principal_id, env.message_id),
  INTENT_UPDATE: (st, ctx, env) => handleUpdate(st, ctx, env.payload, env.sender.principal_id, env.message_id),
  INTENT_WITHDRAW: (st, ctx, env) => handleWithdraw(st, ctx, env.payload, env.sender.principal_id),
  // The resolution form (with `status`) is the coordinator's; a participant's copy is echoed.
  INTENT_DEFERRED: (st, ctx, env) => 'status' in env.payload ? ECHO : handleDeferred(st, ctx, env.payload, env.sender.principal_id),
  INTENT_CLAIM: (st, ctx, env) => handleClaim(st, ctx, env.payload, env.sender.principal_id, env.message_id),
  OP_PROPOSE: (st, ctx, env) => handlePropose(st, ctx, env.payload, env.sender.principal_id),
  OP_COMMIT: (st, ctx, env) => handleCommit(st, ctx, env.payload, env.sender.principal_id),
  OP_BATCH_COMMIT: (st, ctx, env) => handleBatch(st, ctx, env.payload, env.sender.principal_id),
  OP_REJECT: (st, ctx, env) => handleReject(st, ctx, env.payload, env.sender.principal_id),
  OP_SUPERSEDE: (st, ctx, env) => handleSupersede(st, ctx, env.payload, env.sender.principal_id),
  CONFLICT_REPORT: (st, ctx, env) => handleReport(st, ctx, env.payload, env.sender.principal_id, env.message_id),
  CONFLICT_ACK: (st, ctx, env) => handleAck(st, ctx, env.payload, env.sender.principal_id),
  CONFLICT_ESCALATE: (st, ctx, env) => handleEscalate(st, ctx, env.payload, env.sender.principal_id),
  RESOLUTION: (st, ctx, env) => handleResolution(st, ctx, env.payload, env.sender.principal_id, env.watermark !== undefined),
  // A participant's PROTOCOL_ERROR is echoed and changes nothing (as before this table was complete).
  PROTOCOL_ERROR: echo
}

/** Coordinator-authored types a participant sends anyway: echoed, never acted on. */
const COORDINATOR_AUTHORED: { readonly [T in CoordinatorAuthoredType]: Handler<T> } = {
  SESSION_INFO: echo,
  SESSION_CLOSE: echo,
  COORDINATOR_STATUS: echo,
  INTENT_CLAIM_STATUS: echo
}

/** Every type's handler (the two tables are disjoint; together they cover MessageType). */
const TABLE: { readonly [T in MessageType]: Handler<T> } = { ...HANDLERS, ...COORDINATOR_AUTHORED }

/**
 * Runs the handler of `type` on an envelope parseEnvelope validated as that
 * type (the one place where the validated type is asserted: TypeScript cannot
 * correlate `type` with `env.payload` through a union).
 */
function dispatch<T extends MessageType> (type: T, st: CoreState, ctx: Ctx, env: Envelope, verdict: Verdict | undefined): Terminal {
  const handler: Handler<T> = TABLE[type]
  return handler(st, ctx, env as TypedEnvelope<T>, verdict)
}

/**
 * The relay/echo frame of an inbound envelope: a new top-level object with
 * only PY's ten envelope keys and PY's three sender keys (protocol.md §2.1
 * TS-REC; Python clients' envelope parser raises on any other key, so
 * spec-optional keys such as `in_reply_to` or `sender.extensions` are
 * dropped), and the payload untouched except that `file_changes` are removed
 * from a copy. Shallow: nested values are shared with the inbound object.
 */
export function wireFrame (raw: Record<string, unknown>, stripFiles: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of WIRE_KEYS) if (k in raw) out[k] = raw[k]
  const sender = raw.sender as Record<string, unknown>
  const s: Record<string, unknown> = {}
  for (const k of WIRE_SENDER_KEYS) if (k in sender) s[k] = sender[k]
  out.sender = s
  if (stripFiles) out.payload = withoutFiles(raw.payload as RawPayload)
  return out
}

const WIRE_KEYS = ['protocol', 'version', 'message_type', 'message_id', 'session_id', 'sender', 'ts', 'payload', 'watermark', 'coordinator_epoch'] as const
const WIRE_SENDER_KEYS = ['principal_id', 'principal_type', 'sender_instance_id'] as const

/** The payload with file contents removed from a copy (the original when it carries none). */
function withoutFiles (payload: RawPayload): RawPayload {
  let copy: RawPayload | undefined
  if ('file_changes' in payload) {
    copy = { ...payload }
    delete copy.file_changes
  }
  const ops = payload.operations
  if (Array.isArray(ops) && ops.some(o => typeof o === 'object' && o !== null && 'file_changes' in o)) {
    copy ??= { ...payload }
    copy.operations = ops.map((o: unknown) => {
      if (typeof o !== 'object' || o === null || !('file_changes' in o)) return o
      const c = { ...(o as RawPayload) }
      delete c.file_changes
      return c
    })
  }
  return copy ?? payload
}

export class Coordinator {
  #st: CoreState
  readonly sessionId: string
  readonly coordinatorId: string

  constructor (config: CoordinatorConfig, state?: CoreState) {
    const settings: Settings = resolveSettings(config)
    this.#st = state ?? new CoreState(settings, config.sessionId, config.protocolVersion ?? CORE_DEFAULTS.protocolVersion)
    this.sessionId = this.#st.clock.sessionId
    this.coordinatorId = this.#st.coordinatorId
  }

  static restore (snapshot: CoordinatorSnapshot, config: CoordinatorConfig): Coordinator {
    const settings = resolveSettings(config)
    return new Coordinator(config, restoreState(snapshot, settings))
  }

  get epoch (): number { return this.#st.clock.epoch }
  get lamport (): number { return this.#st.clock.lamport }
  get closed (): boolean { return this.#st.closed }
  participantIds (): string[] { return [...this.#st.participants.keys()] }

  handle (envelope: unknown, now: number, verdict?: Verdict): ApplyResult {
    return this.apply(verdict === undefined ? { kind: 'message', now, envelope } : { kind: 'message', now, envelope, verdict })
  }

  tick (now: number): ApplyResult {
    return this.apply({ kind: 'tick', now })
  }

  apply (input: CoreInput): ApplyResult {
    try {
      const r = this.#apply(input)
      // Bounded history (maxFinishedRecords), after every input so that a replay forgets the same records.
      return pruneHistory(this.#st) && !r.changed ? { ...r, changed: true } : r
    } catch {
      // Only reachable with an unusable input time (formatTs refuses it) or a bug; never throw at the runtime.
      return { outputs: [], changed: true, accepted: false, fileWrites: [] }
    }
  }

  #apply (input: CoreInput): ApplyResult {
    const st = this.#st
    const now = input.now
    const first = st.startedAt === null
    if (first) {
      st.startedAt = now
      st.statusDueAt = now + st.s.heartbeatIntervalSec * 1000
    }
    switch (input.kind) {
      case 'message': return this.#message(now, input.envelope, input.verdict)
      case 'tick': {
        const ctx = new Ctx(now, undefined, undefined)
        this.#timers(ctx)
        return { outputs: ctx.out, changed: first || ctx.dirty || ctx.out.length > 0, accepted: true, fileWrites: [] }
      }
      case 'close': return this.#close(now, input.reason, first)
      case 'recovered': {
        const ctx = new Ctx(now, undefined, undefined)
        st.clock.epoch++
        const until = now + Math.max(0, input.graceSec) * 1000
        for (const p of st.participants.values()) if (p.last_seen < until) p.last_seen = until
        st.statusDueAt = now + st.s.heartbeatIntervalSec * 1000
        st.emit(ctx, 'COORDINATOR_STATUS', { ...statusPayload(st, 'recovered'), snapshot_lamport_clock: st.clock.lamport }, ALL)
        return { outputs: ctx.out, changed: true, accepted: true, fileWrites: [] }
      }
      case 'file_sync': {
        const ctx = new Ctx(now, undefined, undefined)
        fileSync(st, ctx, input.path, input.content)
        return { outputs: [], changed: first || ctx.dirty, accepted: true, fileWrites: [] }
      }
      default:
        return { outputs: [], changed: first, accepted: false, fileWrites: [] }
    }
  }

  #timers (ctx: Ctx): void {
    const st = this.#st
    if (st.closed) return
    // protocol.md §9.4 TS-REC order: expiry → liveness → resolution timeouts → claim sweep; then the status heartbeat.
    expireIntents(st, ctx)
    expireDeferrals(st, ctx)
    settle(st, ctx)
    checkLiveness(st, ctx)
    settle(st, ctx)
    resolutionTimeouts(st, ctx)
    // §8.5 step 2 (when configured), after auto-dismiss (settle) so that it pre-empts every phase.
    degradeFrozenScopes(st, ctx)
    settle(st, ctx)
    sweepClaims(st, ctx)
    settle(st, ctx)
    statusHeartbeat(st, ctx)
  }

  #close (now: number, reason: SessionCloseReason, first: boolean): ApplyResult {
    const st = this.#st
    if (st.closed) return { outputs: [], changed: first, accepted: true, fileWrites: [] }
    const ctx = new Ctx(now, undefined, undefined)
    // SPEC §5.4 G / protocol.md §4.5: withdraw every live intent and abandon pending ops, without per-entity messages.
    for (const i of st.intents.values()) if (i.state === 'ACTIVE' || i.state === 'SUSPENDED') st.setIntentState(ctx, i, 'WITHDRAWN')
    for (const o of st.ops.values()) if (o.state === 'PROPOSED' || o.state === 'FROZEN') st.setOpState(ctx, o, 'ABANDONED')
    st.claims.clear()
    clearDeferrals(st)
    st.closed = true
    const final = st.clock.lamport
    st.emit(ctx, 'SESSION_CLOSE', { reason, final_lamport_clock: final, summary: closeSummary(st, now), active_intents_disposition: 'withdraw_all' }, ALL)
    return { outputs: ctx.out, changed: true, accepted: true, fileWrites: [] }
  }

  #message (now: number, raw: unknown, verdict: Verdict | undefined): ApplyResult {
    const st = this.#st
    const parsed = parseEnvelope(raw)
    if (!parsed.ok) {
      const ctx = new Ctx(now, parsed.principalId, parsed.messageId)
      return this.#finish(ctx, undefined, fail('MALFORMED_MESSAGE', parsed.description))
    }
    const env = parsed.envelope
    const pid = env.sender.principal_id
    const ctx = new Ctx(now, pid, env.message_id)
    // Relays and echoes are built from the validated envelope: unknown keys the sender added are not in it
    // (SPEC §21.2: ignored; the raw input, which the runtime journals, keeps them).
    const known = env as unknown as Record<string, unknown>
    if (deeperThan(raw, MAX_DEPTH)) return this.#finish(ctx, known, fail('MALFORMED_MESSAGE', `the message is nested deeper than ${MAX_DEPTH} levels`))
    // protocol.md §3 step 6 (TS, required; fix S13): nobody speaks as the coordinator.
    if (pid === st.coordinatorId) return this.#finish(ctx, known, fail('AUTHORIZATION_FAILED', 'the coordinator principal id is reserved'))
    if (st.s.checkEnvelopeSessionId && env.session_id !== st.clock.sessionId) return this.#finish(ctx, known, fail('INVALID_REFERENCE', `session_id ${env.session_id} does not match this session`))
    const received = lamportOf(env.watermark)
    // Beyond 2^52 the clock would lose integer precision after a few increments and stop increasing.
    if (received !== undefined && received > MAX_LAMPORT) return this.#finish(ctx, known, fail('MALFORMED_MESSAGE', `watermark value ${received} is too large (at most ${MAX_LAMPORT})`))
    if (st.s.securityProfile !== 'open') {
      const replay = this.#replay(now, env)
      if (replay !== undefined) return this.#finish(ctx, known, replay)
    }
    const instance = env.sender.sender_instance_id
    if (st.s.securityProfile !== 'open' && received !== undefined) {
      // SPEC §12.7 rule 6: values strictly increase per incarnation (enforced in the authenticated profile; fix S7).
      const last = st.frontier.get(pid)?.get(instance)
      // A clock saturated at the ceiling cannot increase any more: repeating MAX_LAMPORT is not a regression.
      if (last !== undefined && received <= last && !(received === MAX_LAMPORT && last === MAX_LAMPORT)) return this.#finish(ctx, known, fail('MALFORMED_MESSAGE', `Lamport regression: watermark ${received} is not above ${last}, the last value of this sender instance`))
    }
    // SPEC §12.7 rule 3: max(local, received) + 1.
    if (received !== undefined) st.clock.lamport = clampLamport(Math.max(st.clock.lamport, received) + 1)
    const type = parsed.type
    const part = st.participants.get(pid)
    // A HELLO is not yet authenticated: it refreshes nothing until it is admitted (handleHello does).
    if (part !== undefined && type !== 'HELLO') {
      part.last_seen = now
      part.last_message_id = env.message_id
    }
    // SPEC §9.6: after SESSION_CLOSE only GOODBYE is accepted.
    if (st.closed && type !== 'GOODBYE') return this.#finish(ctx, known, fail('SESSION_CLOSED', 'the session is closed'))
    if (part === undefined && type !== 'HELLO') return this.#finish(ctx, known, fail('INVALID_REFERENCE', helloFirst(pid)))
    let terminal: Terminal = ECHO
    if (type !== undefined) {
      try {
        terminal = dispatch(type, st, ctx, env, verdict)
      } catch (err) {
        // A bug, never an input error: the message is answered instead of killing the session.
        terminal = fail('MALFORMED_MESSAGE', `internal error while processing ${String(type)}: ${(err as Error).message}`)
      }
    }
    // The incarnation's frontier, for admitted senders only (a refused HELLO leaves no entry).
    if (st.s.securityProfile !== 'open' && received !== undefined && (type === 'HELLO' ? terminal.kind === 'info' : true)) st.recordFrontier(pid, instance, received)
    // protocol.md §3 step 8: the pending-claim sweep after every message that passed the gates.
    if (!st.closed) {
      sweepClaims(st, ctx)
      settle(st, ctx)
    }
    return this.#finish(ctx, known, terminal)
  }

  /**
   * Would this HELLO be refused, and why? Read-only: the same checks, in the
   * same order, as `apply` runs on it (parse, depth, coordinator id, session
   * id, Lamport ceiling, replay window, Lamport regression, closed session,
   * then helloGate's credential, binding, capacity and role checks), without
   * moving the clock, recording the message id or journaling anything. The
   * server asks this before it lets a connection that was never admitted
   * reach `apply`, so refused input from such a connection changes nothing
   * (its refusal is then authored by the server, not by the core).
   * Undefined: `apply` would admit it.
   */
  helloRefusal (raw: unknown, now: number, verdict?: Verdict): { readonly code: ErrorCode, readonly description: string } | undefined {
    const st = this.#st
    const parsed = parseEnvelope(raw)
    if (!parsed.ok) return { code: 'MALFORMED_MESSAGE', description: parsed.description }
    const env = parsed.envelope
    const refuse = (t: Terminal): { code: ErrorCode, description: string } | undefined => t.kind === 'error' ? { code: t.code, description: t.description } : undefined
    if (deeperThan(raw, MAX_DEPTH)) return { code: 'MALFORMED_MESSAGE', description: `the message is nested deeper than ${MAX_DEPTH} levels` }
    const pid = env.sender.principal_id
    if (pid === st.coordinatorId) return { code: 'AUTHORIZATION_FAILED', description: 'the coordinator principal id is reserved' }
    if (st.s.checkEnvelopeSessionId && env.session_id !== st.clock.sessionId) return { code: 'INVALID_REFERENCE', description: `session_id ${env.session_id} does not match this session` }
    const received = lamportOf(env.watermark)
    if (received !== undefined && received > MAX_LAMPORT) return { code: 'MALFORMED_MESSAGE', description: `watermark value ${received} is too large (at most ${MAX_LAMPORT})` }
    if (st.s.securityProfile !== 'open') {
      const replay = this.#replayCheck(now, env)
      if (replay !== undefined) return refuse(replay)
      const last = received === undefined ? undefined : st.frontier.get(pid)?.get(env.sender.sender_instance_id)
      if (last !== undefined && received !== undefined && received <= last && !(received === MAX_LAMPORT && last === MAX_LAMPORT)) {
        return { code: 'MALFORMED_MESSAGE', description: `Lamport regression: watermark ${received} is not above ${last}, the last value of this sender instance` }
      }
    }
    if (parsed.type !== 'HELLO') return { code: 'INVALID_REFERENCE', description: helloFirst(pid) }
    if (st.closed) return { code: 'SESSION_CLOSED', description: 'the session is closed' }
    const gate = helloGate(st, env.sender, (env as TypedEnvelope<'HELLO'>).payload, verdict)
    return 'kind' in gate ? refuse(gate) : undefined
  }

  /** The replay checks of #replay without their side effects (nothing pruned or recorded). */
  #replayCheck (now: number, env: Envelope): Terminal | undefined {
    const st = this.#st
    const window = st.s.replayWindowSec * 1000
    // #replay first drops the leading entries whose time is past; an id among them is not a replay.
    let pruned = false
    for (const [id, dropAt] of st.seen) {
      if (dropAt >= now) break
      if (id === env.message_id) { pruned = true; break }
    }
    if (!pruned && st.seen.has(env.message_id)) return fail('REPLAY_DETECTED', `message_id ${env.message_id} was already seen`)
    const ts = parseTs(env.ts)
    if (ts === undefined) return fail('REPLAY_DETECTED', `ts ${JSON.stringify(env.ts)} is not a strict RFC 3339 timestamp`)
    if (Math.abs(now - ts) > window) return fail('REPLAY_DETECTED', `ts ${env.ts} is outside the ${st.s.replayWindowSec} s replay window`)
    return undefined
  }

  /** SPEC §23.1.5 replay protection: duplicate id, malformed ts, ts outside the window. */
  #replay (now: number, env: Envelope): Terminal | undefined {
    const st = this.#st
    const window = st.s.replayWindowSec * 1000
    for (const [id, dropAt] of st.seen) {
      if (dropAt >= now) break
      st.seen.delete(id)
    }
    if (st.seen.has(env.message_id)) return fail('REPLAY_DETECTED', `message_id ${env.message_id} was already seen`)
    const ts = parseTs(env.ts)
    if (ts === undefined) return fail('REPLAY_DETECTED', `ts ${JSON.stringify(env.ts)} is not a strict RFC 3339 timestamp`)
    if (Math.abs(now - ts) > window) return fail('REPLAY_DETECTED', `ts ${env.ts} is outside the ${st.s.replayWindowSec} s replay window`)
    // Kept until no replay of it could pass the ts check any more.
    st.seen.set(env.message_id, Math.max(now, ts) + window)
    return undefined
  }

  #finish (ctx: Ctx, raw: Record<string, unknown> | undefined, t: Terminal): ApplyResult {
    const st = this.#st
    const out: Output[] = ctx.out
    let accepted = true
    switch (t.kind) {
      case 'error': {
        accepted = false
        st.emit(ctx, 'PROTOCOL_ERROR', protocolErrorPayload({ code: t.code, refersTo: ctx.messageId, description: t.description, extra: t.extra }), SENDER)
        out[out.length - 1] = { ...out[out.length - 1] as Output, terminal: true }
        break
      }
      case 'info':
        st.emit(ctx, 'SESSION_INFO', t.payload, SENDER)
        out[out.length - 1] = { ...out[out.length - 1] as Output, terminal: true }
        break
      case 'echo':
        out.push({ audience: SENDER, frame: wireFrame(raw as Record<string, unknown>, false), terminal: true })
        break
      case 'relay': {
        // Frame order (protocol.md §11.4, docs/architecture.md): the peers get the relay first, then the
        // FILE_UPDATED pushes, then what the message caused (CONFLICT_REPORT, OP_REJECT, …). The sender
        // gets what it caused, then its terminal relay, then the FILE_UPDATED pushes (sideband frames,
        // never an MPAC envelope after the terminal one).
        const frame = wireFrame(raw as Record<string, unknown>, true)
        const caused = out.splice(0)
        out.push({ audience: OTHERS, frame })
        for (const f of ctx.afterRelay) out.push({ audience: OTHERS, frame: f })
        for (const o of caused) out.push(o)
        out.push({ audience: SENDER, frame, terminal: true })
        for (const f of ctx.afterRelay) out.push({ audience: SENDER, frame: f })
        break
      }
    }
    return { outputs: out, changed: true, accepted, fileWrites: accepted ? ctx.fileWrites : [] }
  }

  snapshot (now?: number): CoordinatorSnapshot {
    return takeSnapshot(this.#st, now)
  }

  summary (now: number, workspaceDir?: string | null): Record<string, unknown> {
    return summary(this.#st, now, workspaceDir ?? null)
  }

  /** The dashboard's read-only projection (dashboard-view.ts); changes nothing, not journaled. */
  dashboardView (now: number, opts?: DashboardViewOptions): DashboardView {
    return dashboardView(this.#st, now, opts)
  }

  /** One conflict as the dashboard shows it, or undefined when unknown. */
  dashboardConflict (conflictId: string): ViewConflict | undefined {
    return dashboardConflict(this.#st, conflictId)
  }

  /** The workspace file at `path`, normalised as file_changes keys are (`./a.py` is `a.py`); undefined for an invalid path. */
  readFile (path: string): { content: string; state_ref: string } | undefined {
    const pc = checkWorkspacePath(path)
    const f = pc.ok ? this.#st.files.get(pc.path) : undefined
    return f === undefined ? undefined : { content: f.content, state_ref: f.state_ref }
  }

  /** protocol.md §11.3: `size` is the length in characters (code points, Python's `len`). */
  listFiles (): FileEntry[] {
    return [...this.#st.files.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([path, f]) => ({ path, state_ref: f.state_ref, size: charLength(f.content) }))
  }

  nextDeadline (): number | undefined {
    const st = this.#st
    if (st.closed) return undefined
    let min: number | undefined
    const consider = (t: number | undefined): void => {
      if (t !== undefined && (min === undefined || t < min)) min = t
    }
    consider(nextExpiry(st))
    consider(nextDeferralDeadline(st))
    consider(nextLivenessDeadline(st))
    consider(nextResolutionDeadline(st))
    consider(nextDegradationDeadline(st))
    consider(nextClaimDeadline(st))
    consider(st.statusDueAt ?? undefined)
    return min
  }
}
