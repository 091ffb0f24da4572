/**
 * The one mutable state object the handlers share. Index maintenance lives
 * here so that every state transition keeps the indexes (live intents by
 * scope and by principal, pending operations by intent and by principal,
 * conflicts by intent, TTL heap) consistent. The records are in records.ts,
 * the settings and their defaults in settings.ts, bounded history in
 * history.ts.
 */
import type { MessageType } from '../protocol/message-types.js'
import { normalizeScope, type NormalizedScope, type Scope } from '../protocol/scope.js'
import { canTransition } from '../protocol/state-machines.js'
import { buildEnvelope, type Clock, type Ctx } from './envelopes.js'
import { DeadlineHeap } from './heap.js'
import {
  DEAD_OP, isLive, isPendingOp, SETTLED_OP, TERMINAL_CONFLICT, TERMINAL_INTENT,
  type Batch, type Claim, type Conflict, type ConflictState, type Deferral, type FileRec, type Intent, type IntentState, type Operation, type OpState, type Participant
} from './records.js'
import { impactFiles, ScopeIndex } from './scope-index.js'
import type { Settings } from './settings.js'
import type { Audience } from './types.js'

export * from './records.js'
export type { Settings } from './settings.js'

/** Sender incarnations per principal whose Lamport frontier is kept. */
export const FRONTIER_INSTANCES = 8

export class CoreState {
  readonly clock: Clock
  readonly participants = new Map<string, Participant>()
  readonly intents = new Map<string, Intent>()
  readonly index = new ScopeIndex()
  /** principal → live intent ids */
  readonly liveByPrincipal = new Map<string, Set<string>>()
  readonly expiry = new DeadlineHeap()
  readonly ops = new Map<string, Operation>()
  /** intent → PROPOSED/FROZEN op ids */
  readonly pendingByIntent = new Map<string, Set<string>>()
  /** principal → PROPOSED/FROZEN op ids */
  readonly pendingByPrincipal = new Map<string, Set<string>>()
  readonly batches = new Map<string, Batch>()
  readonly conflicts = new Map<string, Conflict>()
  /** non-terminal conflict ids */
  readonly openConflicts = new Set<string>()
  /** intent → open conflict ids naming it */
  readonly conflictsByIntent = new Map<string, Set<string>>()
  /** op → open conflict ids listing it in related_ops */
  readonly conflictsByOp = new Map<string, Set<string>>()
  /** open conflicts with a frozen scope (§7.5) */
  readonly frozen = new Set<string>()
  /**
   * Open conflicts the next auto-dismiss sweep must look at: those with an
   * entity that died since the last sweep, and new participant reports.
   * Invariant: every open conflict whose entities are all dead is in here.
   */
  readonly dismissCandidates = new Set<string>()
  /** resolution-timeout deadlines (created_at + timeout → conflict id), lazily pruned */
  readonly timeouts = new DeadlineHeap()
  conflictSeq = 0
  /** pending claims by original intent id */
  readonly claims = new Map<string, Claim>()
  readonly deferrals = new Map<string, Deferral>()
  /** deferrer → deferral ids, observed intent or principal id → deferral ids, TTL heap */
  readonly deferralsByPrincipal = new Map<string, Set<string>>()
  readonly deferralsByObserved = new Map<string, Set<string>>()
  readonly deferralExpiry = new DeadlineHeap()
  deferralSeq = 0
  readonly files = new Map<string, FileRec>()
  /** directory → number of workspace files below it (a path is never both a file and a directory) */
  readonly dirs = new Map<string, number>()
  /** normalised target → last known state ref (protocol.md §7.2) */
  readonly refs = new Map<string, string>()
  workspaceBytes = 0
  /** anti-replay: message id → drop-after time (authenticated profile) */
  readonly seen = new Map<string, number>()
  /**
   * Authenticated profile: principal → sender instance → last Lamport value
   * (SPEC §12.7 rule 6), admitted senders only, the FRONTIER_INSTANCES most
   * recently used incarnations per principal.
   */
  readonly frontier = new Map<string, Map<string, number>>()
  /** Terminal intent ids in the order they finished (the order history is forgotten in). */
  readonly finishedIntents = new Set<string>()
  /** Settled (COMMITTED, REJECTED, ABANDONED, SUPERSEDED) op ids in the order they settled. */
  readonly finishedOps = new Set<string>()
  /** Terminal (CLOSED, DISMISSED) conflict ids in the order they finished. */
  readonly finishedConflicts = new Set<string>()
  /** Unavailable participants (GOODBYE or liveness timeout) in the order they departed. */
  readonly departed = new Set<string>()
  /** Batches created without a recorded member (every entry refused), in creation order. */
  readonly emptyBatches = new Set<string>()
  /** Forgotten records by state, and forgotten participants (close summary totals stay exact). */
  readonly forgotten = { intents: new Map<string, number>(), ops: new Map<string, number>(), conflicts: new Map<string, number>(), participants: 0 }
  closed = false
  startedAt: number | null = null
  statusDueAt: number | null = null
  intentSeq = 0

  constructor (readonly s: Settings, sessionId: string, version: string) {
    this.clock = { sessionId, coordinatorId: `service:coordinator-${sessionId}`, version, epoch: 1, lamport: 0, seq: 0 }
  }

  get coordinatorId (): string { return this.clock.coordinatorId }

  recordFrontier (pid: string, instance: string, value: number): void {
    let m = this.frontier.get(pid)
    if (m === undefined) {
      m = new Map()
      this.frontier.set(pid, m)
    }
    m.delete(instance)
    m.set(instance, value)
    if (m.size > FRONTIER_INSTANCES) m.delete(m.keys().next().value as string)
  }

  emit (ctx: Ctx, type: MessageType, payload: Record<string, unknown>, audience: Audience): Record<string, unknown> {
    const env = buildEnvelope(this.clock, type, payload, ctx.now)
    ctx.out.push({ audience, frame: env })
    ctx.dirty = true
    return env
  }

  hasRole (pid: string, ...roles: string[]): boolean {
    const p = this.participants.get(pid)
    if (p === undefined) return false
    for (const r of roles) if (p.roles.includes(r)) return true
    return false
  }

  /** Principals holding owner or arbiter (CONFLICT_REPORT audience). */
  authorities (): string[] {
    const out: string[] = []
    for (const p of this.participants.values()) if (p.roles.includes('owner') || p.roles.includes('arbiter')) out.push(p.principal_id)
    return out
  }

  /** A participant went away (GOODBYE or unavailable): it joins the departed order. */
  depart (pid: string): void {
    this.departed.delete(pid)
    this.departed.add(pid)
  }

  /** A participant is back (HELLO, resumed HEARTBEAT). */
  arrive (pid: string): void {
    this.departed.delete(pid)
  }

  /**
   * Gone (GOODBYE or unavailable) and holding nothing: no live intent, no
   * pending operation, no pending claim, no deferral (its own or observing
   * it). Such a participant may be forgotten (it must HELLO again).
   */
  forgettableParticipant (p: Participant): boolean {
    const pid = p.principal_id
    if (p.is_available || this.liveByPrincipal.has(pid) || this.pendingByPrincipal.has(pid)) return false
    if (this.deferralsByPrincipal.has(pid) || this.deferralsByObserved.has(pid)) return false
    for (const c of this.claims.values()) if (c.claimer === pid) return false
    return true
  }

  /** Removes a participant record (full session, or bounded history); counted in the close summary. */
  forgetParticipant (pid: string): void {
    if (!this.participants.delete(pid)) return
    this.frontier.delete(pid)
    this.departed.delete(pid)
    this.forgotten.participants++
  }

  /** Registers a batch record; one no member of which was recorded is bounded history at once. */
  addBatch (b: Batch): void {
    this.batches.set(b.batch_id, b)
    if (!b.op_ids.some(id => this.ops.get(id)?.batch_id === b.batch_id)) this.emptyBatches.add(b.batch_id)
  }

  openConflictCount (): number { return this.openConflicts.size }
  sessionHealth (): string { return this.openConflicts.size === 0 ? 'healthy' : 'degraded' }
  availableCount (): number {
    let n = 0
    for (const p of this.participants.values()) if (p.is_available) n++
    return n
  }

  // ---- intents ------------------------------------------------------------

  newIntent (f: Omit<Intent, 'norm' | 'impact' | 'seq' | 'backend_suspended'> & { backend_suspended?: boolean, seq?: number }): Intent {
    // An explicit literal (not a spread) keeps one hidden class for every intent.
    const seq = f.seq ?? ++this.intentSeq
    if (seq > this.intentSeq) this.intentSeq = seq
    return {
      intent_id: f.intent_id,
      principal_id: f.principal_id,
      state: f.state,
      objective: f.objective,
      scope: f.scope,
      received_at: f.received_at,
      expires_at: f.expires_at,
      ttl_sec: f.ttl_sec,
      last_message_id: f.last_message_id,
      claimed_by: f.claimed_by,
      priority: f.priority,
      assumptions: f.assumptions,
      parent_intent_id: f.parent_intent_id,
      seq,
      backend_suspended: f.backend_suspended ?? false,
      norm: normalizeScope(f.scope),
      impact: impactFiles(f.scope)
    }
  }

  addIntent (ctx: Ctx | undefined, i: Intent): void {
    this.intents.set(i.intent_id, i)
    if (TERMINAL_INTENT.has(i.state)) this.finishedIntents.add(i.intent_id)
    if (isLive(i)) this.#indexIntent(i)
    if (i.expires_at !== null && isLive(i)) this.expiry.pushCompacting(i.expires_at, i.intent_id, this.#expiryCurrent)
    if (ctx !== undefined) ctx.dirty = true
  }

  #indexIntent (i: Intent): void {
    this.index.add(i.intent_id, i.norm, i.impact)
    let s = this.liveByPrincipal.get(i.principal_id)
    if (s === undefined) {
      s = new Set()
      this.liveByPrincipal.set(i.principal_id, s)
    }
    s.add(i.intent_id)
  }

  #unindexIntent (i: Intent): void {
    this.index.remove(i.intent_id, i.norm, i.impact)
    const s = this.liveByPrincipal.get(i.principal_id)
    if (s !== undefined) {
      s.delete(i.intent_id)
      if (s.size === 0) this.liveByPrincipal.delete(i.principal_id)
    }
  }

  /** Replace an intent's scope (INTENT_UPDATE), keeping the indexes right. */
  rescope (ctx: Ctx, i: Intent, scope: Scope, norm: NormalizedScope): void {
    if (isLive(i)) this.index.remove(i.intent_id, i.norm, i.impact)
    i.scope = scope
    i.norm = norm
    i.impact = impactFiles(scope)
    if (isLive(i)) this.index.add(i.intent_id, i.norm, i.impact)
    ctx.dirty = true
  }

  readonly #expiryCurrent = (t: number, id: string): boolean => {
    const i = this.intents.get(id)
    return i !== undefined && isLive(i) && i.expires_at === t
  }

  setExpiry (ctx: Ctx, i: Intent, at: number | null): void {
    i.expires_at = at
    if (at !== null) this.expiry.pushCompacting(at, i.intent_id, this.#expiryCurrent)
    ctx.dirty = true
  }

  /** Moves an intent between states, maintaining the live indexes. Cascades are the caller's job. */
  setIntentState (ctx: Ctx, i: Intent, state: IntentState): void {
    checkTransition('intent', i.intent_id, i.state, state)
    const wasLive = isLive(i)
    i.state = state
    const live = isLive(i)
    if (wasLive && !live) this.#unindexIntent(i)
    else if (!wasLive && live) this.#indexIntent(i)
    if (TERMINAL_INTENT.has(state)) {
      this.finishedIntents.add(i.intent_id)
      this.#dismissCandidates(this.conflictsByIntent.get(i.intent_id))
    }
    ctx.dirty = true
  }

  /** Live (ACTIVE or SUSPENDED) intents of the session. */
  liveIntentCount (): number {
    let n = 0
    for (const ids of this.liveByPrincipal.values()) n += ids.size
    return n
  }

  liveIntentsOf (pid: string): Intent[] {
    const ids = this.liveByPrincipal.get(pid)
    if (ids === undefined) return []
    const out: Intent[] = []
    for (const id of ids) {
      const i = this.intents.get(id)
      if (i !== undefined) out.push(i)
    }
    return out
  }

  // ---- operations ---------------------------------------------------------

  addOp (ctx: Ctx | undefined, o: Operation): void {
    this.ops.set(o.op_id, o)
    if (isPendingOp(o)) this.#indexOp(o)
    else if (SETTLED_OP.has(o.state)) this.finishedOps.add(o.op_id)
    if (ctx !== undefined) ctx.dirty = true
  }

  #indexOp (o: Operation): void {
    if (o.intent_id !== null) addTo(this.pendingByIntent, o.intent_id, o.op_id)
    addTo(this.pendingByPrincipal, o.principal_id, o.op_id)
  }

  #unindexOp (o: Operation): void {
    if (o.intent_id !== null) removeFrom(this.pendingByIntent, o.intent_id, o.op_id)
    removeFrom(this.pendingByPrincipal, o.principal_id, o.op_id)
  }

  setOpState (ctx: Ctx, o: Operation, state: OpState): void {
    checkTransition('operation', o.op_id, o.state, state)
    const was = isPendingOp(o)
    o.state = state
    const now = isPendingOp(o)
    if (was && !now) this.#unindexOp(o)
    else if (!was && now) this.#indexOp(o)
    if (SETTLED_OP.has(state)) this.finishedOps.add(o.op_id)
    if (DEAD_OP.has(state)) this.#dismissCandidates(this.conflictsByOp.get(o.op_id))
    ctx.dirty = true
  }

  /**
   * Removes an operation record (replaced by a re-used op id, or forgotten
   * history). Open conflicts listing it drop it from related_ops and become
   * dismiss candidates (they lost an entity); resolved conflicts keep the id.
   */
  dropOp (ctx: Ctx | undefined, o: Operation): void {
    if (this.ops.get(o.op_id) !== o) return
    if (isPendingOp(o)) this.#unindexOp(o)
    this.ops.delete(o.op_id)
    this.finishedOps.delete(o.op_id)
    const cids = this.conflictsByOp.get(o.op_id)
    if (cids !== undefined) {
      this.conflictsByOp.delete(o.op_id)
      for (const cid of cids) {
        const c = this.conflicts.get(cid)
        if (c === undefined) continue
        const at = c.related_ops.indexOf(o.op_id)
        if (at >= 0) c.related_ops.splice(at, 1)
        this.dismissCandidates.add(cid)
      }
      if (ctx !== undefined) ctx.needsSweep = true
    }
    if (ctx !== undefined) ctx.dirty = true
  }

  #dismissCandidates (ids: ReadonlySet<string> | undefined): void {
    if (ids !== undefined) for (const id of ids) if (this.openConflicts.has(id)) this.dismissCandidates.add(id)
  }

  pendingOps (map: Map<string, Set<string>>, key: string): Operation[] {
    const ids = map.get(key)
    if (ids === undefined) return []
    const out: Operation[] = []
    for (const id of ids) {
      const o = this.ops.get(id)
      if (o !== undefined) out.push(o)
    }
    return out
  }

  // ---- conflicts ----------------------------------------------------------

  /**
   * Registers a conflict (new, or from a snapshot: then every open one is a
   * dismiss candidate, which keeps the candidate invariant without storing it).
   */
  addConflict (ctx: Ctx | undefined, c: Conflict): void {
    if (!(c.seq > 0)) c.seq = ++this.conflictSeq
    else if (c.seq > this.conflictSeq) this.conflictSeq = c.seq
    const id = c.conflict_id
    this.conflicts.set(id, c)
    if (!TERMINAL_CONFLICT.has(c.state)) {
      this.openConflicts.add(id)
      if (c.scope_frozen) this.frozen.add(id)
      if (this.timeoutEligible(c)) this.timeouts.push(c.created_at + this.s.resolutionTimeoutSec * 1000, id)
      this.dismissCandidates.add(id)
      for (const i of c.related_intents) addTo(this.conflictsByIntent, i, id)
      for (const o of c.related_ops) addTo(this.conflictsByOp, o, id)
    } else this.finishedConflicts.add(id)
    if (ctx !== undefined) ctx.dirty = true
  }

  /** OPEN or ACKED, neither frozen nor reported, and a timeout is configured (§8.5 step 1). */
  timeoutEligible (c: Conflict): boolean {
    return this.s.resolutionTimeoutSec > 0 && (c.state === 'OPEN' || c.state === 'ACKED') && !c.scope_frozen && !c.timeout_reported
  }

  setConflictState (ctx: Ctx, c: Conflict, state: ConflictState): void {
    checkTransition('conflict', c.conflict_id, c.state, state)
    c.state = state
    if (TERMINAL_CONFLICT.has(state)) {
      this.openConflicts.delete(c.conflict_id)
      this.frozen.delete(c.conflict_id)
      this.dismissCandidates.delete(c.conflict_id)
      for (const i of c.related_intents) removeFrom(this.conflictsByIntent, i, c.conflict_id)
      for (const o of c.related_ops) removeFrom(this.conflictsByOp, o, c.conflict_id)
      c.scope_frozen = false
      this.finishedConflicts.add(c.conflict_id)
    }
    ctx.dirty = true
  }

  /** A resolution closes a conflict through the transient RESOLVED state (protocol.md §5.3), archived as CLOSED at once. */
  closeResolved (ctx: Ctx, c: Conflict): void {
    this.setConflictState(ctx, c, 'RESOLVED')
    this.setConflictState(ctx, c, 'CLOSED')
  }

  freeze (ctx: Ctx, c: Conflict): void {
    c.scope_frozen = true
    if (this.s.frozenScopePhases !== undefined) c.frozen_at = ctx.now
    this.frozen.add(c.conflict_id)
    ctx.dirty = true
  }

  /** SPEC-side linkage: an op on an intent joins every live conflict naming that intent. */
  linkOp (o: Operation): void {
    if (o.intent_id === null) return
    const ids = this.conflictsByIntent.get(o.intent_id)
    if (ids === undefined) return
    for (const cid of ids) {
      const c = this.conflicts.get(cid)
      if (c !== undefined && this.openConflicts.has(cid) && !c.related_ops.includes(o.op_id)) {
        c.related_ops.push(o.op_id)
        addTo(this.conflictsByOp, o.op_id, cid)
      }
    }
  }

  frozenConflicts (): Conflict[] {
    const out: Conflict[] = []
    for (const id of this.frozen) {
      const c = this.conflicts.get(id)
      if (c !== undefined) out.push(c)
    }
    return out
  }
}

/** A deep copy of plain JSON data (inputs are JSON; the core never keeps a reference into an input). */
export function copyJson<T> (v: T): T {
  if (typeof v !== 'object' || v === null) return v
  if (Array.isArray(v)) {
    const out: unknown[] = new Array<unknown>(v.length)
    for (let i = 0; i < v.length; i++) out[i] = copyJson(v[i])
    return out as T
  }
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(v)) {
    const x = copyJson((v as Record<string, unknown>)[k])
    // JSON.parse makes `__proto__` an own key; an assignment would set the prototype instead.
    if (k === '__proto__') Object.defineProperty(out, k, { value: x, enumerable: true, writable: true, configurable: true })
    else out[k] = x
  }
  return out as T
}


export function addTo (map: Map<string, Set<string>>, key: string, id: string): void {
  let set = map.get(key)
  if (set === undefined) {
    set = new Set()
    map.set(key, set)
  }
  set.add(id)
}

export function removeFrom (map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key)
  if (set === undefined) return
  set.delete(id)
  if (set.size === 0) map.delete(key)
}

/**
 * The lifecycle tables of src/protocol/state-machines.ts, enforced where
 * states change: an edge missing from a table is a bug in a handler, never
 * an input error, so it throws (the coordinator answers that input with an
 * internal error instead of storing an impossible state). Staying in a
 * state is not a transition.
 */
function checkTransition (machine: 'intent' | 'operation' | 'conflict', id: string, from: string, to: string): void {
  if (from !== to && !canTransition(machine, from, to)) throw new Error(`illegal ${machine} transition ${from} → ${to} (${id})`)
}
