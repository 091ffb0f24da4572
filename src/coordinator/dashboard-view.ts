/**
 * The dashboard's read-only projection of one session (agent-hooks-and-
 * dashboard.md §9.2, "View JSON"): what SESSION_SUMMARY lacks (intent
 * created/expires, conflict files, acks, escalated_to, resolution due time
 * and frozen flag, recent commits) plus the attention queue a team lead
 * works from (§8.2 item 2). Pure: it reads the state at `now` and changes
 * nothing (not journaled). Every list is capped (DASHBOARD_LIST_CAP) and
 * `totals` says how many there were. The timeline (`events`) is not here:
 * the server keeps it from the frames the session broadcasts.
 */
import { formatTs } from '../protocol/time.js'
import type { Conflict, CoreState, Intent } from './state.js'

/** Longest list of any section. */
export const DASHBOARD_LIST_CAP = 200
/** Finished conflicts shown after the open ones (so a resolution stays visible). */
const FINISHED_CONFLICTS = 20
/** Live intents expiring within this many seconds are attention items (default). */
export const EXPIRING_WITHIN_SEC = 300

export interface DashboardViewOptions {
  readonly expiringWithinSec?: number
}

export interface ViewParticipant {
  readonly principal_id: string
  readonly display_name: string
  readonly principal_type: string
  readonly roles: string[]
  readonly status: string
  readonly is_available: boolean
  readonly last_seen: string
  readonly joined_at: string
  readonly live_intents: number
}

export interface ViewIntent {
  readonly intent_id: string
  readonly principal_id: string
  readonly objective: string
  readonly state: string
  readonly scope_kind: string
  readonly files: string[]
  readonly created_at: string
  readonly expires_at: string | null
  readonly claimed_by: string | null
}

export interface ViewAck { readonly principal_id: string, readonly ack_type: string, readonly at: string }

export interface ViewConflict {
  readonly conflict_id: string
  readonly category: string
  readonly severity: string
  readonly state: string
  readonly principal_a: string | null
  readonly principal_b: string | null
  readonly intent_a: string | null
  readonly intent_b: string | null
  readonly objective_a: string | null
  readonly objective_b: string | null
  readonly files: string[]
  readonly created_at: string
  readonly acks: ViewAck[]
  readonly escalated_to: string | null
  readonly escalated_at: string | null
  readonly resolution_due_at: string | null
  readonly frozen: boolean
  readonly decision: string | null
  readonly resolved_by: string | null
}

export interface ViewCommit {
  readonly op_id: string
  readonly principal_id: string
  readonly intent_id: string | null
  readonly target: string
  readonly state_ref_before: string | null
  readonly state_ref_after: string | null
  readonly at: string
  readonly outcome: string
}

export interface ViewFile {
  /** The path's directory (`.` at the top), for grouping. */
  readonly directory: string
  readonly path: string
  readonly holders: Array<{ readonly principal_id: string, readonly intent_id: string, readonly state: string }>
}

export type AttentionKind = 'escalation' | 'unacked_conflict' | 'suspended_intent' | 'pending_claim' | 'frozen_scope' | 'expiring_intent'

export interface ViewAttention {
  /** `kind:ref`, unique in the list (the key a client patches by). */
  readonly id: string
  readonly kind: AttentionKind
  readonly ref: string
  readonly principal_id: string | null
  readonly summary: string
  readonly since: string
  readonly due_at: string | null
}

export interface DashboardView {
  readonly session_id: string
  readonly captured_at: string
  readonly closed: boolean
  readonly health: Record<string, unknown>
  readonly policies: Record<string, unknown>
  readonly participants: ViewParticipant[]
  readonly intents: ViewIntent[]
  readonly conflicts: ViewConflict[]
  readonly commits: ViewCommit[]
  readonly files: ViewFile[]
  readonly attention: ViewAttention[]
  readonly totals: { readonly participants: number, readonly intents: number, readonly open_conflicts: number, readonly commits: number, readonly files: number, readonly attention: number }
}

const ts = (ms: number | null | undefined): string | null => (ms === null || ms === undefined || !Number.isFinite(ms)) ? null : formatTs(ms)

/** The files (or entities, task ids, the glob) an intent's scope names, as shown. */
function scopeItems (i: Intent): string[] {
  const n = i.norm
  if (n.items.size > 0) return [...n.items]
  if (n.pattern !== undefined) return [n.pattern]
  if (n.canonicalUris !== undefined) return [...n.canonicalUris]
  return []
}

function liveIntents (st: CoreState): Intent[] {
  const out: Intent[] = []
  for (const ids of st.liveByPrincipal.values()) {
    for (const id of ids) {
      const i = st.intents.get(id)
      if (i !== undefined) out.push(i)
    }
  }
  return out.sort((a, b) => a.seq - b.seq)
}

/** The resources both intents of a conflict name (all of either's when they overlap only by pattern or kind). */
function conflictFiles (st: CoreState, c: Conflict): string[] {
  const a = c.intent_a === null ? undefined : st.intents.get(c.intent_a)
  const b = c.intent_b === null ? undefined : st.intents.get(c.intent_b)
  const fa = a === undefined ? [] : scopeItems(a)
  const fb = b === undefined ? [] : scopeItems(b)
  const shared = fa.filter(f => fb.includes(f))
  if (shared.length > 0) return shared
  return [...new Set([...fa, ...fb])]
}

function dueAt (st: CoreState, c: Conflict): number | null {
  return st.timeoutEligible(c) ? c.created_at + st.s.resolutionTimeoutSec * 1000 : null
}

function viewConflict (st: CoreState, c: Conflict): ViewConflict {
  const objective = (id: string | null): string | null => id === null ? null : (st.intents.get(id)?.objective ?? null)
  return {
    conflict_id: c.conflict_id,
    category: c.category,
    severity: c.severity,
    state: c.state,
    principal_a: c.principal_a,
    principal_b: c.principal_b,
    intent_a: c.intent_a,
    intent_b: c.intent_b,
    objective_a: objective(c.intent_a),
    objective_b: objective(c.intent_b),
    files: conflictFiles(st, c),
    created_at: formatTs(c.created_at),
    acks: (c.acks ?? []).map(a => ({ principal_id: a.principal_id, ack_type: a.ack_type, at: formatTs(a.at) })),
    escalated_to: c.escalated_to,
    escalated_at: ts(c.escalated_at),
    resolution_due_at: ts(dueAt(st, c)),
    frozen: c.scope_frozen,
    decision: c.decision,
    resolved_by: c.resolved_by
  }
}

/** The newest `n` ids of an insertion-ordered set, newest first. */
function newest (ids: ReadonlySet<string>, n: number, keep: (id: string) => boolean): string[] {
  const all = [...ids]
  const out: string[] = []
  for (let k = all.length - 1; k >= 0 && out.length < n; k--) {
    const id = all[k] as string
    if (keep(id)) out.push(id)
  }
  return out
}

export function dashboardView (st: CoreState, now: number, opts: DashboardViewOptions = {}): DashboardView {
  const cap = DASHBOARD_LIST_CAP
  const s = st.s
  const live = liveIntents(st)

  const allParticipants = [...st.participants.values()]
  const participants: ViewParticipant[] = allParticipants.slice(0, cap).map(p => ({
    principal_id: p.principal_id,
    display_name: p.display_name,
    principal_type: p.principal_type,
    roles: [...p.roles],
    status: p.status,
    is_available: p.is_available,
    last_seen: formatTs(p.last_seen),
    joined_at: formatTs(p.joined_at),
    live_intents: st.liveByPrincipal.get(p.principal_id)?.size ?? 0
  }))

  const intents: ViewIntent[] = live.slice(0, cap).map(i => ({
    intent_id: i.intent_id,
    principal_id: i.principal_id,
    objective: i.objective,
    state: i.state,
    scope_kind: i.scope.kind,
    files: scopeItems(i),
    created_at: formatTs(i.received_at),
    expires_at: ts(i.expires_at),
    claimed_by: i.claimed_by
  }))

  const open: Conflict[] = []
  for (const id of st.openConflicts) {
    const c = st.conflicts.get(id)
    if (c !== undefined) open.push(c)
  }
  open.sort((a, b) => a.seq - b.seq)
  const finished = newest(st.finishedConflicts, FINISHED_CONFLICTS, id => st.conflicts.has(id))
    .map(id => st.conflicts.get(id) as Conflict)
  const conflicts = [...open, ...finished].slice(0, cap).map(c => viewConflict(st, c))

  const commitIds = newest(st.finishedOps, cap, id => {
    const o = st.ops.get(id)
    return o !== undefined && (o.state === 'COMMITTED' || o.state === 'REJECTED')
  })
  let commitTotal = 0
  for (const id of st.finishedOps) {
    const state = st.ops.get(id)?.state
    if (state === 'COMMITTED' || state === 'REJECTED') commitTotal++
  }
  const commits: ViewCommit[] = commitIds.map(id => {
    const o = st.ops.get(id) as NonNullable<ReturnType<typeof st.ops.get>>
    return {
      op_id: o.op_id,
      principal_id: o.principal_id,
      intent_id: o.intent_id,
      target: o.target,
      state_ref_before: o.state_ref_before,
      state_ref_after: o.state_ref_after,
      at: formatTs(o.authorized_at ?? o.created_at),
      outcome: o.state
    }
  })

  const byFile = new Map<string, ViewFile['holders']>()
  for (const i of live) {
    if (i.scope.kind !== 'file_set') continue
    for (const path of i.norm.items) {
      let h = byFile.get(path)
      if (h === undefined) byFile.set(path, h = [])
      h.push({ principal_id: i.principal_id, intent_id: i.intent_id, state: i.state })
    }
  }
  const paths = [...byFile.keys()].sort()
  const files: ViewFile[] = paths.slice(0, cap).map(path => {
    const slash = path.lastIndexOf('/')
    return { directory: slash < 0 ? '.' : path.slice(0, slash), path, holders: byFile.get(path) as ViewFile['holders'] }
  })

  const attention = attentionItems(st, now, live, open, opts.expiringWithinSec ?? EXPIRING_WITHIN_SEC)

  return {
    session_id: st.clock.sessionId,
    captured_at: formatTs(now),
    closed: st.closed,
    health: {
      session_health: st.sessionHealth(),
      epoch: st.clock.epoch,
      lamport_clock: st.clock.lamport,
      protocol_version: st.clock.version,
      started_at: ts(st.startedAt),
      closed: st.closed,
      participants_online: st.availableCount()
    },
    policies: {
      security_profile: s.securityProfile,
      compliance_profile: s.complianceProfile,
      execution_model: s.executionModel,
      heartbeat_interval_sec: s.heartbeatIntervalSec,
      unavailability_timeout_sec: s.unavailabilityTimeoutSec,
      resolution_timeout_sec: s.resolutionTimeoutSec,
      intent_claim_grace_sec: s.intentClaimGraceSec
    },
    participants,
    intents,
    conflicts,
    commits,
    files,
    attention: attention.slice(0, cap),
    totals: {
      participants: allParticipants.length,
      intents: live.length,
      open_conflicts: open.length,
      commits: commitTotal,
      files: paths.length,
      attention: attention.length
    }
  }
}

/** §8.2 item 2, most urgent kinds first, each kind oldest first. */
function attentionItems (st: CoreState, now: number, live: readonly Intent[], open: readonly Conflict[], expiringWithinSec: number): ViewAttention[] {
  const out: ViewAttention[] = []
  const add = (kind: AttentionKind, ref: string, principal: string | null, summary: string, since: number, due: number | null): void => {
    out.push({ id: `${kind}:${ref}`, kind, ref, principal_id: principal, summary, since: formatTs(since), due_at: ts(due) })
  }
  for (const c of open) {
    if (c.state === 'ESCALATED') {
      add('escalation', c.conflict_id, c.escalated_to, `conflict ${c.conflict_id} waits for ${c.escalated_to ?? 'an arbiter'} to resolve it`, c.escalated_at ?? c.created_at, null)
    }
  }
  for (const c of open) {
    if (c.state === 'OPEN') {
      add('unacked_conflict', c.conflict_id, null, `conflict ${c.conflict_id} between ${c.principal_a ?? '?'} and ${c.principal_b ?? '?'} is not acknowledged`, c.created_at, dueAt(st, c))
    }
  }
  for (const i of live) {
    if (i.state !== 'SUSPENDED' || i.claimed_by !== null) continue
    const owner = st.participants.get(i.principal_id)
    if (owner?.is_available === true) continue
    add('suspended_intent', i.intent_id, i.principal_id, `intent ${i.intent_id} of ${i.principal_id} (offline) waits for a takeover`, owner?.last_seen ?? i.received_at, null)
  }
  const grace = st.s.complianceProfile === 'governance' ? null : st.s.intentClaimGraceSec * 1000
  for (const c of st.claims.values()) {
    add('pending_claim', c.original_intent_id, c.claimer, `${c.claimer} claims intent ${c.original_intent_id} of ${c.original_principal_id}`, c.submitted_at, grace === null ? null : c.submitted_at + grace)
  }
  for (const c of st.frozenConflicts()) {
    add('frozen_scope', c.conflict_id, null, `scope of conflict ${c.conflict_id} is frozen: commits to it are rejected`, c.frozen_at ?? c.created_at, null)
  }
  const horizon = now + expiringWithinSec * 1000
  for (const i of live) {
    if (i.state === 'ACTIVE' && i.expires_at !== null && i.expires_at <= horizon) {
      add('expiring_intent', i.intent_id, i.principal_id, `intent ${i.intent_id} of ${i.principal_id} expires soon`, i.received_at, i.expires_at)
    }
  }
  return out
}

/** The conflict's own record for the conflict page (undefined when unknown or forgotten). */
export function dashboardConflict (st: CoreState, conflictId: string): ViewConflict | undefined {
  const c = st.conflicts.get(conflictId)
  return c === undefined ? undefined : viewConflict(st, c)
}

