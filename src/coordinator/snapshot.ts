/**
 * Snapshot and restore (protocol.md §12.2; types.ts CoordinatorSnapshot):
 * the SPEC keys plus everything needed to continue exactly (deferrals,
 * pending claims, files, the ref map, batches, the id sequence, the
 * anti-replay window, timers). A snapshot is a deep copy and JSON-safe.
 */
import { formatTs } from '../protocol/time.js'
import { addDeferral } from './deferrals.js'
import { trackPath } from './workspace.js'
import { CoreState, type Batch, type Claim, type Conflict, type Deferral, type Intent, type Operation, type Participant, type Settings } from './state.js'
import type { CoordinatorSnapshot } from './types.js'

const clone = <T>(v: T): T => structuredClone(v)

function intentOut (i: Intent): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(i)) if (k !== 'norm' && k !== 'impact') out[k] = clone(v)
  return out
}

export function takeSnapshot (st: CoreState, now: number | undefined): CoordinatorSnapshot {
  const s = st.s
  const at = now ?? st.startedAt ?? 0
  return {
    snapshot_version: 2,
    session_id: st.clock.sessionId,
    protocol_version: st.clock.version,
    captured_at: formatTs(at),
    coordinator_epoch: st.clock.epoch,
    lamport_clock: st.clock.lamport,
    session_closed: st.closed,
    id_sequence: st.clock.seq,
    intent_sequence: st.intentSeq,
    conflict_sequence: st.conflictSeq,
    deferral_sequence: st.deferralSeq,
    started_at: st.startedAt,
    status_due_at: st.statusDueAt,
    anti_replay: {
      replay_window_sec: s.replayWindowSec,
      recent_message_ids: [...st.seen.keys()],
      seen: [...st.seen.entries()],
      sender_frontier: Object.fromEntries([...st.frontier].flatMap(([pid, m]) => [...m].map(([inst, v]) => [`${pid}|${inst}`, { last_lamport: v, principal_id: pid, sender_instance_id: inst }])))
    },
    governance_policy: { require_acknowledgment: true, intent_expiry_grace_sec: s.intentExpiryGraceSec },
    liveness_policy: {
      heartbeat_interval_sec: s.heartbeatIntervalSec,
      unavailability_timeout_sec: s.unavailabilityTimeoutSec,
      intent_claim_grace_period_sec: s.intentClaimGraceSec,
      resolution_timeout_sec: s.resolutionTimeoutSec
    },
    participants: [...st.participants.values()].map(p => clone(p)) as unknown as CoordinatorSnapshot['participants'],
    intents: [...st.intents.values()].map(intentOut) as unknown as CoordinatorSnapshot['intents'],
    operations: [...st.ops.values()].map(o => clone(o)) as unknown as CoordinatorSnapshot['operations'],
    conflicts: [...st.conflicts.values()].map(c => clone(c)) as unknown as CoordinatorSnapshot['conflicts'],
    batches: [...st.batches.values()].map(b => clone(b)),
    pending_claims: [...st.claims.values()].map(c => clone(c) as unknown as Record<string, unknown>),
    deferrals: [...st.deferrals.values()].map(d => clone(d) as unknown as Record<string, unknown>),
    files: Object.fromEntries([...st.files].map(([p, f]) => [p, { content: f.content, state_ref: f.state_ref }])),
    state_refs: Object.fromEntries(st.refs),
    finished_intents: [...st.finishedIntents],
    finished_operations: [...st.finishedOps],
    finished_conflicts: [...st.finishedConflicts],
    departed_participants: [...st.departed],
    empty_batches: [...st.emptyBatches],
    forgotten: {
      intents: Object.fromEntries(st.forgotten.intents),
      operations: Object.fromEntries(st.forgotten.ops),
      conflicts: Object.fromEntries(st.forgotten.conflicts),
      participants: st.forgotten.participants
    }
  }
}

function strings (v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
}

export function restoreState (snap: CoordinatorSnapshot, s: Settings): CoreState {
  const st = new CoreState(s, snap.session_id, snap.protocol_version)
  st.clock.epoch = snap.coordinator_epoch
  st.clock.lamport = snap.lamport_clock
  st.clock.seq = typeof snap.id_sequence === 'number' ? snap.id_sequence : 0
  st.closed = snap.session_closed
  st.startedAt = typeof snap.started_at === 'number' ? snap.started_at : null
  st.statusDueAt = typeof snap.status_due_at === 'number' ? snap.status_due_at : null
  const ar = snap.anti_replay as { seen?: Array<[string, number]>, sender_frontier?: Record<string, { last_lamport: number, principal_id?: string, sender_instance_id?: string }> } | undefined
  for (const [id, t] of ar?.seen ?? []) st.seen.set(id, t)
  for (const [k, v] of Object.entries(ar?.sender_frontier ?? {})) {
    const bar = k.indexOf('|')
    st.recordFrontier(v.principal_id ?? k.slice(0, bar), v.sender_instance_id ?? k.slice(bar + 1), v.last_lamport)
  }
  // Finish order first: the records added below keep these positions.
  for (const id of strings(snap.finished_intents)) st.finishedIntents.add(id)
  for (const id of strings(snap.finished_operations)) st.finishedOps.add(id)
  for (const id of strings(snap.finished_conflicts)) st.finishedConflicts.add(id)
  for (const id of strings(snap.empty_batches)) st.emptyBatches.add(id)
  const fg = snap.forgotten as { intents?: Record<string, number>, operations?: Record<string, number>, conflicts?: Record<string, number>, participants?: number } | undefined
  for (const [k, v] of Object.entries(fg?.intents ?? {})) st.forgotten.intents.set(k, v)
  for (const [k, v] of Object.entries(fg?.operations ?? {})) st.forgotten.ops.set(k, v)
  for (const [k, v] of Object.entries(fg?.conflicts ?? {})) st.forgotten.conflicts.set(k, v)
  if (typeof fg?.participants === 'number') st.forgotten.participants = fg.participants
  for (const p of snap.participants) {
    const rec = clone(p) as unknown as Participant
    st.participants.set(rec.principal_id, rec)
  }
  // Departure order (older snapshots: the unavailable participants in roster order).
  const departed = Array.isArray(snap.departed_participants) ? strings(snap.departed_participants) : snap.participants.filter(p => !p.is_available).map(p => p.principal_id)
  for (const id of departed) if (st.participants.get(id)?.is_available === false) st.departed.add(id)
  for (const raw of snap.intents) {
    const r = clone(raw) as unknown as Intent
    st.addIntent(undefined, st.newIntent(r))
  }
  st.intentSeq = typeof snap.intent_sequence === 'number' ? snap.intent_sequence : st.intentSeq
  for (const raw of snap.operations) st.addOp(undefined, clone(raw) as unknown as Operation)
  for (const raw of snap.conflicts) st.addConflict(undefined, clone(raw) as unknown as Conflict)
  for (const raw of (snap.batches as Batch[] | undefined) ?? []) st.batches.set(raw.batch_id, clone(raw))
  if (Array.isArray(snap.empty_batches)) {
    for (const id of st.emptyBatches) if (!st.batches.has(id)) st.emptyBatches.delete(id)
  } else {
    // Older snapshots: the member-less batches in creation order.
    for (const b of st.batches.values()) if (!b.op_ids.some(id => st.ops.get(id)?.batch_id === b.batch_id)) st.emptyBatches.add(b.batch_id)
  }
  for (const raw of snap.pending_claims) {
    const c = clone(raw) as unknown as Claim
    st.claims.set(c.original_intent_id, c)
  }
  for (const raw of snap.deferrals) {
    const d = clone(raw) as unknown as Deferral
    addDeferral(st, d)
  }
  for (const [path, f] of Object.entries(snap.files)) {
    const bytes = Buffer.byteLength(f.content, 'utf8')
    st.files.set(path, { content: f.content, state_ref: f.state_ref, bytes })
    trackPath(st, path, 1)
    st.workspaceBytes += bytes
  }
  if (typeof snap.conflict_sequence === 'number' && snap.conflict_sequence > st.conflictSeq) st.conflictSeq = snap.conflict_sequence
  if (typeof snap.deferral_sequence === 'number' && snap.deferral_sequence > st.deferralSeq) st.deferralSeq = snap.deferral_sequence
  const refs = snap.state_refs as Record<string, string> | undefined
  for (const [k, v] of Object.entries(refs ?? {})) st.refs.set(k, v)
  return st
}
