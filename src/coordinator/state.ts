/**
 * The coordinator's records and the one mutable state object the handlers
 * share. Index maintenance lives here so that every state transition keeps
 * the indexes (live intents by scope and by principal, pending operations by
 * intent and by principal, conflicts by intent, TTL heap) consistent.
 */
import type { MessageType } from '../protocol/message-types.js'
import { normalizeScope, type NormalizedScope, type Scope } from '../protocol/scope.js'
import { buildEnvelope, type Clock, type Ctx } from './envelopes.js'
import { DeadlineHeap } from './heap.js'
import { impactFiles, ScopeIndex } from './scope-index.js'
import type { Audience, BackendHealthPolicy, CoordinatorConfig, RolePolicy, Verifier } from './types.js'

export type IntentState = 'ACTIVE' | 'SUSPENDED' | 'EXPIRED' | 'WITHDRAWN' | 'SUPERSEDED' | 'TRANSFERRED'
export type OpState = 'PROPOSED' | 'FROZEN' | 'COMMITTED' | 'REJECTED' | 'ABANDONED' | 'SUPERSEDED'
export type ConflictState = 'OPEN' | 'ACKED' | 'ESCALATED' | 'RESOLVED' | 'CLOSED' | 'DISMISSED'

export interface Participant {
  principal_id: string
  principal_type: string
  display_name: string
  roles: string[]
  capabilities: string[]
  status: string
  is_available: boolean
  last_seen: number
  last_message_id: string | null
  sender_instance_id: string | null
  joined_at: number
  backend_model_id: string | null
  backend_provider: string | null
  backend_provider_status: string
}

export interface Intent {
  intent_id: string
  principal_id: string
  state: IntentState
  objective: string
  scope: Scope
  received_at: number
  expires_at: number | null
  ttl_sec: number | null
  last_message_id: string
  claimed_by: string | null
  priority: string | null
  assumptions: string[]
  parent_intent_id: string | null
  /** Registration order (the race lock reports the earliest holder). */
  seq: number
  /** Suspended by backend health (§9.7), restored on provider recovery. */
  backend_suspended: boolean
  norm: NormalizedScope
  impact: string[]
}

export interface Operation {
  op_id: string
  intent_id: string | null
  principal_id: string
  state: OpState
  target: string
  op_kind: string
  state_ref_before: string | null
  state_ref_after: string | null
  batch_id: string | null
  authorized_at: number | null
  authorized_by: string | null
  created_at: number
  change_ref: string | null
  summary: string | null
  /** SPEC §7.7: no live intent referenced. */
  uncoordinated: boolean
}

export interface Conflict {
  conflict_id: string
  state: ConflictState
  category: string
  severity: string
  principal_a: string | null
  principal_b: string | null
  intent_a: string | null
  intent_b: string | null
  related_intents: string[]
  related_ops: string[]
  created_at: number
  escalated_to: string | null
  escalated_at: number | null
  resolution_id: string | null
  resolved_by: string | null
  decision: string | null
  scope_frozen: boolean
  timeout_reported: boolean
  /** §8.5 progressive degradation (only when configured): when the scope froze, the phase reached, the owner allowed to write in phase 2. */
  frozen_at?: number
  phase?: number
  bypass_principal?: string
  /** The message that created it (the CONFLICT_REPORT's message_id). */
  message_id: string
  reporter: string
  /** Creation order (0 when created: `addConflict` assigns it). Sweeps act in this order. */
  seq: number
}

export interface Claim {
  claim_id: string
  original_intent_id: string
  original_principal_id: string
  new_intent_id: string
  claimer: string
  objective: string
  scope: Scope
  justification: string | null
  submitted_at: number
  message_id: string
}

export interface Deferral {
  deferral_id: string
  principal_id: string
  scope: Scope
  reason: string
  observed_intent_ids: string[]
  observed_principals: string[]
  category: string
  received_at: number
  expires_at: number
  /** Insertion order (0 when created: `addDeferral` assigns it; a replacement gets a new one). */
  seq: number
}

export interface Batch {
  batch_id: string
  principal_id: string
  atomicity: string
  op_ids: string[]
}

export interface FileRec { content: string; state_ref: string; bytes: number }

export interface Settings {
  securityProfile: 'open' | 'authenticated'
  complianceProfile: 'core' | 'governance'
  executionModel: 'post_commit' | 'pre_commit'
  heartbeatIntervalSec: number
  unavailabilityTimeoutSec: number
  resolutionTimeoutSec: number
  intentClaimGraceSec: number
  intentExpiryGraceSec: number
  defaultIntentTtlSec: number
  deferralTtlSec: number
  replayWindowSec: number
  rolePolicy: RolePolicy | undefined
  verifier: Verifier | undefined
  backendHealthPolicy: BackendHealthPolicy | undefined
  maxWorkspaceBytes: number
  maxFileBytes: number
  maxParticipants: number
  maxIntentsPerParticipant: number
  maxIntentsPerSession: number
  maxScopeFiles: number
  maxOpenConflicts: number
  checkEnvelopeSessionId: boolean
  maxFinishedRecords: number
  /** §8.5 step 2; undefined = disabled. */
  frozenScopePhases: { phase1Sec: number, phase2Sec: number, phase3: boolean } | undefined
}

function num (v: number | undefined, d: number, name: string): number {
  if (v === undefined) return d
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`invalid coordinator config: ${name} must be a non-negative number`)
  return v
}

/** Resolves defaults; throws only on a bad configuration (never on input). */
export function resolveSettings (c: CoordinatorConfig): Settings {
  if (typeof c.sessionId !== 'string' || c.sessionId.length === 0) throw new TypeError('invalid coordinator config: sessionId is required')
  const sp = c.securityProfile ?? 'open'
  if ((sp as string) === 'verified') throw new TypeError('invalid coordinator config: the verified security profile is not implemented')
  if (sp !== 'open' && sp !== 'authenticated') throw new TypeError(`invalid coordinator config: securityProfile ${String(sp)}`)
  const cp = c.complianceProfile ?? 'core'
  if (cp !== 'core' && cp !== 'governance') throw new TypeError(`invalid coordinator config: complianceProfile ${String(cp)}`)
  const em = c.executionModel ?? 'post_commit'
  if (em !== 'post_commit' && em !== 'pre_commit') throw new TypeError(`invalid coordinator config: executionModel ${String(em)}`)
  // SPEC §7.8: pre_commit requires the governance profile.
  if (em === 'pre_commit' && cp !== 'governance') throw new TypeError('invalid coordinator config: pre_commit requires the governance compliance profile')
  return {
    securityProfile: sp,
    complianceProfile: cp,
    executionModel: em,
    heartbeatIntervalSec: num(c.heartbeatIntervalSec, 30, 'heartbeatIntervalSec') || 30,
    unavailabilityTimeoutSec: num(c.unavailabilityTimeoutSec, 90, 'unavailabilityTimeoutSec'),
    resolutionTimeoutSec: num(c.resolutionTimeoutSec, 300, 'resolutionTimeoutSec'),
    intentClaimGraceSec: num(c.intentClaimGraceSec, 0, 'intentClaimGraceSec'),
    intentExpiryGraceSec: num(c.intentExpiryGraceSec, 30, 'intentExpiryGraceSec'),
    defaultIntentTtlSec: num(c.defaultIntentTtlSec, 0, 'defaultIntentTtlSec'),
    deferralTtlSec: num(c.deferralTtlSec, 60, 'deferralTtlSec'),
    replayWindowSec: num(c.replayWindowSec, 300, 'replayWindowSec'),
    rolePolicy: c.rolePolicy,
    verifier: c.verifier,
    backendHealthPolicy: c.backendHealthPolicy,
    maxWorkspaceBytes: num(c.maxWorkspaceBytes, 64 * 1024 * 1024, 'maxWorkspaceBytes'),
    maxFileBytes: num(c.maxFileBytes, 4 * 1024 * 1024, 'maxFileBytes'),
    maxParticipants: num(c.maxParticipants, 256, 'maxParticipants'),
    maxIntentsPerParticipant: num(c.maxIntentsPerParticipant, 256, 'maxIntentsPerParticipant'),
    maxIntentsPerSession: num(c.maxIntentsPerSession, 4096, 'maxIntentsPerSession'),
    maxScopeFiles: num(c.maxScopeFiles, 1024, 'maxScopeFiles'),
    maxOpenConflicts: num(c.maxOpenConflicts, 1024, 'maxOpenConflicts'),
    checkEnvelopeSessionId: c.checkEnvelopeSessionId !== false,
    maxFinishedRecords: num(c.maxFinishedRecords, 1000, 'maxFinishedRecords'),
    frozenScopePhases: c.frozenScopePhases === undefined
      ? undefined
      : {
          phase1Sec: num(c.frozenScopePhases.phase1Sec, 60, 'frozenScopePhases.phase1Sec'),
          phase2Sec: num(c.frozenScopePhases.phase2Sec, 240, 'frozenScopePhases.phase2Sec'),
          phase3: c.frozenScopePhases.phase3 !== false
        }
  }
}

/** Sender incarnations per principal whose Lamport frontier is kept. */
export const FRONTIER_INSTANCES = 8

export const TERMINAL_INTENT: ReadonlySet<string> = new Set(['EXPIRED', 'WITHDRAWN', 'SUPERSEDED', 'TRANSFERRED'])
export const TERMINAL_CONFLICT: ReadonlySet<string> = new Set(['CLOSED', 'DISMISSED'])
export const DEAD_OP: ReadonlySet<string> = new Set(['REJECTED', 'ABANDONED', 'SUPERSEDED'])

/** Operation states after which an op only changes by OP_SUPERSEDE: history that may be forgotten. */
export const SETTLED_OP: ReadonlySet<string> = new Set(['COMMITTED', 'REJECTED', 'ABANDONED', 'SUPERSEDED'])

export function isLive (i: Intent): boolean { return i.state === 'ACTIVE' || i.state === 'SUSPENDED' }
export function isPendingOp (o: Operation): boolean { return o.state === 'PROPOSED' || o.state === 'FROZEN' }

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

  /**
   * Bounded history (CoordinatorConfig.maxFinishedRecords): while more than
   * the maximum of terminal intents (or settled operations, terminal
   * conflicts, member-less batches, departed participants) are kept, forgets
   * the earliest finished ones that nothing live refers to. Runs at the end of
   * every input; deterministic (finish order is part of the snapshot).
   * Returns whether anything was forgotten.
   */
  prune (): boolean {
    const max = this.s.maxFinishedRecords
    let changed = false
    let excess = this.finishedIntents.size - max
    if (excess > 0) {
      for (const id of this.finishedIntents) {
        if (excess <= 0) break
        const i = this.intents.get(id)
        if (i !== undefined && this.#intentPinned(i)) continue
        this.finishedIntents.delete(id)
        if (i !== undefined) {
          this.intents.delete(id)
          bump(this.forgotten.intents, i.state)
        }
        excess--
        changed = true
      }
    }
    excess = this.finishedOps.size - max
    if (excess > 0) {
      for (const id of this.finishedOps) {
        if (excess <= 0) break
        const o = this.ops.get(id)
        if (o !== undefined && this.#opPinned(o)) continue
        this.finishedOps.delete(id)
        if (o !== undefined) {
          this.ops.delete(id)
          bump(this.forgotten.ops, o.state)
          if (o.batch_id !== null) this.#dropBatchIfEmpty(o.batch_id)
        }
        excess--
        changed = true
      }
    }
    // Terminal conflicts: nothing refers to one any more (RESOLUTION/ACK/ESCALATE need a live one).
    excess = this.finishedConflicts.size - max
    if (excess > 0) {
      for (const id of this.finishedConflicts) {
        if (excess <= 0) break
        this.finishedConflicts.delete(id)
        const c = this.conflicts.get(id)
        if (c !== undefined && TERMINAL_CONFLICT.has(c.state)) {
          this.conflicts.delete(id)
          bump(this.forgotten.conflicts, c.state)
        }
        excess--
        changed = true
      }
    }
    excess = this.emptyBatches.size - max
    if (excess > 0) {
      for (const id of this.emptyBatches) {
        if (excess <= 0) break
        this.emptyBatches.delete(id)
        this.#dropBatchIfEmpty(id)
        excess--
        changed = true
      }
    }
    excess = this.departed.size - max
    if (excess > 0) {
      for (const pid of this.departed) {
        if (excess <= 0) break
        const p = this.participants.get(pid)
        if (p !== undefined && !this.forgettableParticipant(p)) continue
        if (p === undefined) this.departed.delete(pid)
        else this.forgetParticipant(pid)
        excess--
        changed = true
      }
    }
    return changed
  }

  /** Still referenced by an open conflict, a pending claim, a deferral or a pending op. */
  #intentPinned (i: Intent): boolean {
    const id = i.intent_id
    if (!TERMINAL_INTENT.has(i.state)) return true
    if (this.conflictsByIntent.has(id) || this.deferralsByObserved.has(id) || this.pendingByIntent.has(id) || this.claims.has(id)) return true
    for (const c of this.claims.values()) if (c.new_intent_id === id) return true
    return false
  }

  /** Still referenced by an open conflict, or a member of a batch with a pending op. */
  #opPinned (o: Operation): boolean {
    if (!SETTLED_OP.has(o.state) || this.conflictsByOp.has(o.op_id)) return true
    if (o.batch_id === null) return false
    const b = this.batches.get(o.batch_id)
    if (b === undefined) return false
    for (const id of b.op_ids) {
      const x = this.ops.get(id)
      if (x !== undefined && isPendingOp(x)) return true
    }
    return false
  }

  #dropBatchIfEmpty (batchId: string): void {
    const b = this.batches.get(batchId)
    if (b === undefined) return
    for (const id of b.op_ids) if (this.ops.get(id)?.batch_id === batchId) return
    this.batches.delete(batchId)
    this.emptyBatches.delete(batchId)
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
    const out = new Array(v.length)
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

function bump (m: Map<string, number>, key: string): void {
  m.set(key, (m.get(key) ?? 0) + 1)
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
