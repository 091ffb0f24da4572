/**
 * OP_PROPOSE, OP_COMMIT, OP_REJECT, OP_SUPERSEDE (protocol.md §4.13–§4.17,
 * §7), with the TS fixes: duplicate op ids are refused (O7; except that a
 * post_commit OP_COMMIT may re-use an id its own principal committed), pre_commit
 * completions are frozen- and stale-checked (O3), participant OP_REJECT
 * exists (O1), OP_SUPERSEDE checks ownership and target and advances the ref
 * map (O5). file_changes are validated and stale-checked before acceptance.
 */
import type { Payload } from '../protocol/schemas.js'
import { normalizePath } from '../protocol/scope.js'
import { ALL, fail, RELAY, type Ctx, type Terminal } from './envelopes.js'
import { frozenDescription, frozenTarget } from './conflicts.js'
import { rejectOp, settle } from './cascades.js'
import { isPendingOp, TERMINAL_INTENT, type CoreState, type Operation } from './state.js'
import { applyFileChanges, parseFileChanges, shortRef, staleFile, type FileChange } from './workspace.js'

export function isObserverOnly (st: CoreState, pid: string): boolean {
  const p = st.participants.get(pid)
  return p !== undefined && p.roles.length > 0 && p.roles.every(r => r === 'observer')
}

/** SPEC §7.7: in the governance profile an operation MUST follow an INTENT_ANNOUNCE. */
export function intentGate (st: CoreState, intentId: string | undefined): Terminal | undefined {
  if (st.s.complianceProfile !== 'governance') return undefined
  if (intentId === undefined) return fail('INVALID_REFERENCE', 'governance profile: operations must reference an intent (intent_id)')
  if (!st.intents.has(intentId)) return fail('INVALID_REFERENCE', `unknown intent ${intentId}`)
  return undefined
}

/** protocol.md §7.2: the last known ref for the normalised target. */
export function staleRef (st: CoreState, target: string, before: string | null | undefined): Terminal | undefined {
  const known = st.refs.get(normalizePath(target))
  if (known !== undefined && typeof before === 'string' && before !== known) {
    return fail('STALE_STATE_REF', `Stale state_ref_before for ${target}: the coordinator has ${shortRef(known)}, the commit says ${shortRef(before)}`, { target, current_state_ref: known })
  }
  return undefined
}

export function authorize (st: CoreState, ctx: Ctx, o: Operation, batchId?: string): void {
  o.authorized_at = ctx.now
  o.authorized_by = st.coordinatorId
  st.emit(ctx, 'COORDINATOR_STATUS', {
    event: 'authorization',
    coordinator_id: st.coordinatorId,
    session_health: st.sessionHealth(),
    authorized_op_id: o.op_id,
    authorized_by: st.coordinatorId,
    authorized_batch_id: batchId ?? null
  }, ALL)
}

export function newOp (ctx: Ctx, sender: string, p: OpFields, state: Operation['state'], batchId: string | null, uncoordinated: boolean): Operation {
  return {
    op_id: p.op_id,
    intent_id: p.intent_id ?? null,
    principal_id: sender,
    state,
    target: p.target,
    op_kind: p.op_kind ?? 'replace',
    state_ref_before: p.state_ref_before ?? null,
    state_ref_after: p.state_ref_after ?? null,
    batch_id: batchId,
    authorized_at: null,
    authorized_by: null,
    created_at: ctx.now,
    change_ref: p.change_ref ?? null,
    summary: p.summary ?? null,
    uncoordinated
  }
}

export function isUncoordinated (st: CoreState, intentId: string | undefined | null): boolean {
  if (intentId === undefined || intentId === null) return true
  // SPEC §7.7: an op without an ACTIVE intent is flagged `uncoordinated` (fix O2, flag form).
  return st.intents.get(intentId)?.state !== 'ACTIVE'
}

/** Registers a PROPOSED op and validates it against its intent (PY steps 2–5 of §4.13). */
export function registerProposal (st: CoreState, ctx: Ctx, p: OpFields, sender: string, batchId: string | null, authorizeNow: boolean): Operation {
  const o = newOp(ctx, sender, p, 'PROPOSED', batchId, isUncoordinated(st, p.intent_id))
  st.addOp(ctx, o)
  st.linkOp(o)
  const i = o.intent_id !== null ? st.intents.get(o.intent_id) : undefined
  if (i !== undefined && TERMINAL_INTENT.has(i.state)) rejectOp(st, ctx, o, 'intent_terminated', i.last_message_id)
  else if (i !== undefined && i.state === 'SUSPENDED') st.setOpState(ctx, o, 'FROZEN')
  if (authorizeNow && o.state === 'PROPOSED' && st.s.executionModel === 'pre_commit') authorize(st, ctx, o, batchId ?? undefined)
  return o
}

/** The fields a new operation is built from: an OP_PROPOSE payload, or an OP_COMMIT payload or batch entry (with state refs). */
export type OpFields = Payload<'OP_PROPOSE'> & Partial<Pick<Payload<'OP_COMMIT'>, 'state_ref_before' | 'state_ref_after'>>

export function handlePropose (st: CoreState, ctx: Ctx, p: Payload<'OP_PROPOSE'>, sender: string): Terminal {
  if (st.ops.has(p.op_id)) return fail('INVALID_REFERENCE', `operation ${p.op_id} already exists`)
  if (isObserverOnly(st, sender)) return fail('AUTHORIZATION_FAILED', 'observers may not propose operations')
  const gate = intentGate(st, p.intent_id)
  if (gate !== undefined) return gate
  // SPEC §7.5: an OP_PROPOSE whose target overlaps a frozen scope MUST be rejected.
  const frozenBy = frozenTarget(st, [p.target], sender)
  if (frozenBy !== undefined) return fail('SCOPE_FROZEN', frozenDescription(st, frozenBy, `target ${p.target} lies in a frozen scope`))
  registerProposal(st, ctx, p, sender, null, true)
  settle(st, ctx)
  return RELAY
}

export function commitOp (st: CoreState, ctx: Ctx, o: Operation, p: OpFields): void {
  o.target = p.target
  if (p.op_kind !== undefined) o.op_kind = p.op_kind
  if (p.intent_id !== undefined) o.intent_id = o.intent_id ?? p.intent_id
  o.state_ref_before = p.state_ref_before ?? o.state_ref_before
  o.state_ref_after = p.state_ref_after ?? o.state_ref_after
  if (p.change_ref !== undefined) o.change_ref = p.change_ref
  if (p.summary !== undefined) o.summary = p.summary
  st.setOpState(ctx, o, 'COMMITTED')
  if (o.state_ref_after !== null) st.refs.set(normalizePath(o.target), o.state_ref_after)
}

export function handleCommit (st: CoreState, ctx: Ctx, p: Payload<'OP_COMMIT'>, sender: string): Terminal {
  const found = st.ops.get(p.op_id)
  const pre = st.s.executionModel === 'pre_commit'
  // Python parity (docs/compatibility.md, O7): the `mpac` agent names its ops op-<name>-<file> and reuses the id
  // for its next task on that file. A post_commit OP_COMMIT re-using an id its own principal COMMITTED (outside a
  // batch) is a new commit of that op; the old record is replaced once every check has passed.
  const replaced = found !== undefined && !pre && found.state === 'COMMITTED' && found.principal_id === sender && found.batch_id === null ? found : undefined
  const existing = replaced === undefined ? found : undefined
  if (existing === undefined) {
    if (isObserverOnly(st, sender)) return fail('AUTHORIZATION_FAILED', 'observers may not commit operations')
    const gate = intentGate(st, p.intent_id)
    if (gate !== undefined) return gate
  } else if (existing.state === 'FROZEN') {
    return fail('SCOPE_FROZEN', `operation ${p.op_id} is frozen (its intent is suspended)`)
  } else if (existing.state !== 'PROPOSED') {
    // Fix O7 (and O3 for completions of rejected or abandoned ops).
    return fail('INVALID_REFERENCE', `operation ${p.op_id} already exists (${existing.state})`)
  } else if (existing.principal_id !== sender) {
    return fail('AUTHORIZATION_FAILED', `operation ${p.op_id} was proposed by ${existing.principal_id}`)
  } else if (pre && existing.authorized_at === null) {
    return fail('AUTHORIZATION_FAILED', `operation ${p.op_id} has not been authorized`)
  }
  // SPEC §7.5: OP_COMMIT into a frozen scope MUST be rejected (pre_commit too: fix O3).
  const frozenBy = frozenTarget(st, [p.target], sender)
  if (frozenBy !== undefined) return fail('SCOPE_FROZEN', frozenDescription(st, frozenBy, `target ${p.target} lies in a frozen scope`))
  if (pre && existing === undefined) {
    // SPEC §7.8: an initial OP_COMMIT for an unknown op id is the proposal. Its file_changes are validated
    // (a hostile path is an error) but written only by the completing OP_COMMIT, after authorization.
    const checked = parseFileChanges(st, p.file_changes, sender, new Map([[normalizePath(p.target), p.state_ref_before ?? null]]))
    if (!Array.isArray(checked)) return checked
    registerProposal(st, ctx, p, sender, null, true)
    settle(st, ctx)
    return RELAY
  }
  const stale = staleRef(st, p.target, p.state_ref_before)
  if (stale !== undefined) return stale
  const target = normalizePath(p.target)
  const changes = parseFileChanges(st, p.file_changes, sender, new Map([[target, p.state_ref_before ?? null]]))
  if (!Array.isArray(changes)) return changes
  const frozen = frozenFiles(st, changes, sender)
  if (frozen !== undefined) return frozen
  const fstale = staleFile(st, changes)
  if (fstale !== undefined) return fstale
  let o = existing
  if (o === undefined) {
    if (replaced !== undefined) st.dropOp(ctx, replaced)
    o = newOp(ctx, sender, p, 'COMMITTED', null, isUncoordinated(st, p.intent_id))
    st.addOp(ctx, o)
    if (o.state_ref_after !== null) st.refs.set(target, o.state_ref_after)
  } else {
    commitOp(st, ctx, o, p)
  }
  st.linkOp(o)
  applyChanges(st, ctx, changes, sender)
  return RELAY
}

/** SPEC §7.5: a file written by a commit is as much a write into a frozen scope as its target. */
export function frozenFiles (st: CoreState, changes: readonly FileChange[], sender?: string): Terminal | undefined {
  if (st.frozen.size === 0) return undefined
  for (const c of changes) {
    const by = frozenTarget(st, [c.path], sender)
    if (by !== undefined) return fail('SCOPE_FROZEN', frozenDescription(st, by, `file_changes: ${c.path} lies in a frozen scope`))
  }
  return undefined
}

export function applyChanges (st: CoreState, ctx: Ctx, changes: readonly FileChange[], sender: string): void {
  if (changes.length > 0) applyFileChanges(st, ctx, changes, sender)
}

export function handleReject (st: CoreState, ctx: Ctx, p: Payload<'OP_REJECT'>, sender: string): Terminal {
  // SPEC §16.6.1: the rejector is a reviewer, owner or arbiter (fix O1).
  if (!st.hasRole(sender, 'reviewer', 'owner', 'arbiter')) return fail('AUTHORIZATION_FAILED', 'OP_REJECT requires the reviewer, owner or arbiter role')
  const o = st.ops.get(p.op_id)
  const batch = o === undefined ? st.batches.get(p.op_id) : undefined
  const targets = o !== undefined ? [o] : batch !== undefined ? batch.op_ids.map(id => st.ops.get(id)).filter((x): x is Operation => x !== undefined && isPendingOp(x)) : []
  if (targets.length === 0) return fail('INVALID_REFERENCE', o === undefined ? `unknown operation ${p.op_id}` : `operation ${p.op_id} is ${o.state}`)
  for (const t of targets) {
    if (!isPendingOp(t)) return fail('INVALID_REFERENCE', `operation ${t.op_id} is ${t.state}`)
  }
  for (const t of targets) st.setOpState(ctx, t, 'REJECTED')
  ctx.needsSweep = true
  settle(st, ctx)
  return RELAY
}

export function handleSupersede (st: CoreState, ctx: Ctx, p: Payload<'OP_SUPERSEDE'>, sender: string): Terminal {
  if (st.ops.has(p.op_id)) return fail('INVALID_REFERENCE', `operation ${p.op_id} already exists`)
  const old = st.ops.get(p.supersedes_op_id)
  if (old === undefined) return fail('INVALID_REFERENCE', `unknown operation ${p.supersedes_op_id}`)
  if (old.state !== 'COMMITTED') return fail('INVALID_REFERENCE', `operation ${p.supersedes_op_id} is ${old.state}, not COMMITTED`)
  if (old.principal_id !== sender && !st.hasRole(sender, 'owner', 'arbiter')) {
    return fail('AUTHORIZATION_FAILED', `operation ${old.op_id} was committed by ${old.principal_id}`)
  }
  // SPEC §16.6.1: the superseding op targets the same resource.
  if (normalizePath(p.target) !== normalizePath(old.target)) return fail('INVALID_REFERENCE', `target ${p.target} differs from ${old.target}`)
  st.setOpState(ctx, old, 'SUPERSEDED')
  const o = newOp(ctx, sender, {
    op_id: p.op_id,
    target: p.target,
    op_kind: p.op_kind ?? old.op_kind,
    intent_id: p.intent_id ?? old.intent_id ?? undefined,
    state_ref_before: old.state_ref_after ?? undefined,
    state_ref_after: p.state_ref_after
  }, 'COMMITTED', null, isUncoordinated(st, p.intent_id ?? old.intent_id))
  st.addOp(ctx, o)
  st.linkOp(o)
  // Fix O5: the state-ref chain continues in the ref map.
  if (o.state_ref_after !== null) st.refs.set(normalizePath(o.target), o.state_ref_after)
  ctx.needsSweep = true
  settle(st, ctx)
  return RELAY
}
