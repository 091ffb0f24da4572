/**
 * OP_BATCH_COMMIT (protocol.md §4.15, §7.4) with the TS fixes: pre_commit
 * initial vs completion is decided by batch_id and an unknown or re-used
 * entry is INVALID_REFERENCE (O11); a SUSPENDED-intent entry fails an
 * all_or_nothing batch and rejected best_effort entries get their own
 * OP_REJECT (O12); stale best_effort entries are reported (O6).
 */
import type { BatchOperation, Payload } from '../protocol/schemas.js'
import { normalizePath } from '../protocol/scope.js'
import { ALL, fail, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { frozenDescription, frozenTarget } from './conflicts.js'
import { settle } from './cascades.js'
import { commitOp, frozenFiles, intentGate, isObserverOnly, isUncoordinated, newOp, registerProposal, type OpFields } from './operations.js'
import { TERMINAL_INTENT, type CoreState } from './state.js'
import { applyFileChanges, parseFileChanges, pendingLayout, shortRef, staleFile, type FileChange } from './workspace.js'

type Entry = BatchOperation

/**
 * Each entry's file_changes, validated against that entry's target (or the
 * sender's intent scope), the workspace limits counting every entry. Not
 * stale-checked: the callers decide per entry (best_effort) or per message.
 */
function entryChanges (st: CoreState, entries: readonly Entry[], sender: string): Map<string, FileChange[]> | Terminal {
  const out = new Map<string, FileChange[]>()
  const paths = new Set<string>()
  const layout = pendingLayout()
  for (const e of entries) {
    if (e.file_changes === undefined) continue
    const changes = parseFileChanges(st, e.file_changes, sender, new Map([[normalizePath(e.target), e.state_ref_before ?? null]]), layout)
    if (!Array.isArray(changes)) return changes
    for (const c of changes) {
      if (paths.has(c.path)) return fail('MALFORMED_MESSAGE', `file_changes: ${c.path} appears in more than one batch entry`)
      paths.add(c.path)
    }
    // SPEC §7.5: any file in a frozen scope rejects the whole batch, as a frozen target does.
    const frozen = frozenFiles(st, changes, sender)
    if (frozen !== undefined) return frozen
    out.set(e.op_id, changes)
  }
  return out
}

function applyEntryChanges (st: CoreState, ctx: Ctx, changes: Map<string, FileChange[]>, opIds: readonly string[], sender: string): void {
  for (const id of opIds) {
    const c = changes.get(id)
    if (c !== undefined) applyFileChanges(st, ctx, c, sender)
  }
}

interface Rejected { op_id: string, reason: string, refers_to?: string, detail?: string }

function batchFailure (st: CoreState, ctx: Ctx, batchId: string, rejected: readonly Rejected[]): Terminal {
  const ids = rejected.map(r => r.op_id)
  // SPEC §16.6: a batch rejection is an OP_REJECT whose op_id is the batch_id, listing the entries.
  st.emit(ctx, 'OP_REJECT', { op_id: batchId, reason: 'batch_validation_failed', rejected_ops: ids }, ALL)
  const stale = rejected.some(r => r.reason === 'stale_state_ref')
  const detail = rejected.map(r => `${r.op_id}: ${r.detail ?? r.reason}`).join('; ')
  return fail(stale ? 'STALE_STATE_REF' : 'INVALID_REFERENCE', `batch ${batchId} rejected (all_or_nothing): ${detail}`, { rejected_ops: ids })
}

function entryReject (st: CoreState, ctx: Ctx, batchId: string, r: Rejected): void {
  st.emit(ctx, 'OP_REJECT', { op_id: r.op_id, reason: r.reason, refers_to: r.refers_to ?? null, batch_id: batchId, description: r.detail ?? null }, ALL)
}

export function handleBatch (st: CoreState, ctx: Ctx, p: Payload<'OP_BATCH_COMMIT'>, sender: string): Terminal {
  const entries = Array.isArray(p.operations) ? p.operations : []
  if (entries.length === 0) return fail('MALFORMED_MESSAGE', 'OP_BATCH_COMMIT.operations must not be empty')
  const ids = new Set(entries.map(e => e.op_id))
  if (ids.size !== entries.length) return fail('MALFORMED_MESSAGE', 'OP_BATCH_COMMIT.operations repeats an op_id')
  const allOrNothing = p.atomicity !== 'best_effort'
  // SPEC §7.5: any entry target in a frozen scope rejects the whole batch.
  const frozenBy = frozenTarget(st, entries.map(e => e.target), sender)
  if (frozenBy !== undefined) return fail('SCOPE_FROZEN', frozenDescription(st, frozenBy, 'a batch entry targets a frozen scope'))
  const pre = st.s.executionModel === 'pre_commit'
  const known = st.batches.get(p.batch_id)
  if (pre && known !== undefined) return completion(st, ctx, p, entries, sender)
  if (known !== undefined) return fail('INVALID_REFERENCE', `batch ${p.batch_id} already exists`)
  for (const e of entries) if (st.ops.has(e.op_id)) return fail('INVALID_REFERENCE', `operation ${e.op_id} already exists`)
  if (isObserverOnly(st, sender)) return fail('AUTHORIZATION_FAILED', 'observers may not commit operations')
  for (const e of entries) {
    const gate = intentGate(st, e.intent_id ?? p.intent_id)
    if (gate !== undefined) return gate
  }
  return pre ? initial(st, ctx, p, entries, sender, allOrNothing) : postCommit(st, ctx, p, entries, sender, allOrNothing)
}

function mismatch (p: Payload<'OP_BATCH_COMMIT'>, e: OpFields): boolean {
  return e.intent_id !== undefined && p.intent_id !== undefined && e.intent_id !== p.intent_id
}

function withIntent (p: Payload<'OP_BATCH_COMMIT'>, e: OpFields): OpFields {
  return e.intent_id !== undefined || p.intent_id === undefined ? e : { ...e, intent_id: p.intent_id }
}

function postCommit (st: CoreState, ctx: Ctx, p: Payload<'OP_BATCH_COMMIT'>, entries: Entry[], sender: string, allOrNothing: boolean): Terminal {
  const changes = entryChanges(st, entries, sender)
  if (!(changes instanceof Map)) return changes
  const overlay = new Map<string, string>()
  const rejected: Rejected[] = []
  const accepted: OpFields[] = []
  for (const raw of entries) {
    const e = withIntent(p, raw)
    const t = normalizePath(e.target)
    if (mismatch(p, raw)) {
      rejected.push({ op_id: e.op_id, reason: 'intent_mismatch', detail: `intent_id ${String(raw.intent_id)} differs from the batch intent_id ${String(p.intent_id)}` })
      continue
    }
    const knownRef = overlay.get(t) ?? st.refs.get(t)
    if (knownRef !== undefined && typeof e.state_ref_before === 'string' && e.state_ref_before !== knownRef) {
      rejected.push({ op_id: e.op_id, reason: 'stale_state_ref', detail: `stale state_ref_before for ${e.target}: the coordinator has ${shortRef(knownRef)}, the entry says ${shortRef(e.state_ref_before)}` })
      continue
    }
    const i = e.intent_id !== undefined ? st.intents.get(e.intent_id) : undefined
    if (i !== undefined && TERMINAL_INTENT.has(i.state)) {
      rejected.push({ op_id: e.op_id, reason: 'intent_terminated', refers_to: i.last_message_id })
      continue
    }
    // The workspace's own stale check, per entry like the ref check (best_effort keeps the others).
    const fstale = staleFile(st, changes.get(e.op_id) ?? [])
    if (fstale !== undefined) {
      rejected.push({ op_id: e.op_id, reason: 'stale_state_ref', detail: fstale.kind === 'error' ? fstale.description : undefined })
      continue
    }
    accepted.push(e)
    if (typeof e.state_ref_after === 'string') overlay.set(t, e.state_ref_after)
  }
  if (allOrNothing && rejected.length > 0) return batchFailure(st, ctx, p.batch_id, rejected)
  for (const r of rejected) entryReject(st, ctx, p.batch_id, r)
  const opIds: string[] = []
  for (const e of accepted) {
    const o = newOp(ctx, sender, e, 'COMMITTED', p.batch_id, isUncoordinated(st, e.intent_id))
    st.addOp(ctx, o)
    st.linkOp(o)
    if (o.state_ref_after !== null) st.refs.set(normalizePath(o.target), o.state_ref_after)
    opIds.push(o.op_id)
  }
  st.addBatch({ batch_id: p.batch_id, principal_id: sender, atomicity: allOrNothing ? 'all_or_nothing' : 'best_effort', op_ids: opIds })
  applyEntryChanges(st, ctx, changes, opIds, sender)
  ctx.dirty = true
  return RELAY
}

function initial (st: CoreState, ctx: Ctx, p: Payload<'OP_BATCH_COMMIT'>, entries: Entry[], sender: string, allOrNothing: boolean): Terminal {
  const rejected: Rejected[] = []
  for (const raw of entries) {
    const e = withIntent(p, raw)
    if (mismatch(p, raw)) {
      rejected.push({ op_id: e.op_id, reason: 'intent_mismatch' })
      continue
    }
    const i = e.intent_id !== undefined ? st.intents.get(e.intent_id) : undefined
    if (i !== undefined && TERMINAL_INTENT.has(i.state)) rejected.push({ op_id: e.op_id, reason: 'intent_terminated', refers_to: i.last_message_id })
    // Fix O12: a partial authorization is not atomic.
    else if (allOrNothing && i !== undefined && i.state === 'SUSPENDED') rejected.push({ op_id: e.op_id, reason: 'intent_suspended' })
  }
  if (allOrNothing && rejected.length > 0) return batchFailure(st, ctx, p.batch_id, rejected)
  const opIds: string[] = []
  for (const raw of entries) {
    const e = withIntent(p, raw)
    if (mismatch(p, raw)) {
      entryReject(st, ctx, p.batch_id, { op_id: e.op_id, reason: 'intent_mismatch' })
      continue
    }
    // registerProposal emits OP_REJECT{intent_terminated} itself; SUSPENDED → FROZEN, unauthorized.
    registerProposal(st, ctx, e, sender, p.batch_id, true)
    opIds.push(e.op_id)
  }
  st.addBatch({ batch_id: p.batch_id, principal_id: sender, atomicity: allOrNothing ? 'all_or_nothing' : 'best_effort', op_ids: opIds })
  settle(st, ctx)
  return RELAY
}

function completion (st: CoreState, ctx: Ctx, p: Payload<'OP_BATCH_COMMIT'>, entries: Entry[], sender: string): Terminal {
  const batch = st.batches.get(p.batch_id)
  if (batch === undefined) return fail('INVALID_REFERENCE', `unknown batch ${p.batch_id}`)
  if (batch.principal_id !== sender) return fail('AUTHORIZATION_FAILED', `batch ${p.batch_id} was proposed by ${batch.principal_id}`)
  const overlay = new Map<string, string>()
  for (const e of entries) {
    const o = st.ops.get(e.op_id)
    if (o === undefined || o.batch_id !== p.batch_id) return fail('INVALID_REFERENCE', `operation ${e.op_id} is not part of batch ${p.batch_id}`)
    if (o.state === 'FROZEN') return fail('SCOPE_FROZEN', `operation ${e.op_id} is frozen (its intent is suspended)`)
    if (o.state !== 'PROPOSED') return fail('INVALID_REFERENCE', `operation ${e.op_id} is ${o.state}`)
    if (o.authorized_at === null) return fail('AUTHORIZATION_FAILED', `operation ${e.op_id} has not been authorized`)
    const t = normalizePath(e.target)
    const knownRef = overlay.get(t) ?? st.refs.get(t)
    if (knownRef !== undefined && typeof e.state_ref_before === 'string' && e.state_ref_before !== knownRef) {
      return fail('STALE_STATE_REF', `Stale state_ref_before for ${e.target}: the coordinator has ${shortRef(knownRef)}, the entry ${e.op_id} says ${shortRef(e.state_ref_before)}`, { target: e.target, current_state_ref: knownRef })
    }
    if (typeof e.state_ref_after === 'string') overlay.set(t, e.state_ref_after)
  }
  const changes = entryChanges(st, entries, sender)
  if (!(changes instanceof Map)) return changes
  for (const c of changes.values()) {
    const stale = staleFile(st, c)
    if (stale !== undefined) return stale
  }
  for (const e of entries) {
    const o = st.ops.get(e.op_id)
    if (o !== undefined) {
      commitOp(st, ctx, o, e)
      st.linkOp(o)
    }
  }
  applyEntryChanges(st, ctx, changes, entries.map(e => e.op_id), sender)
  return RELAY
}
