/**
 * The shared workspace (protocol.md §11.4 TS-REC): file texts committed
 * through `payload.file_changes`, validated (path rules, target or intent
 * scope, size limits) and stale-checked before the commit is accepted, then
 * written together with the op. The per-target ref map (§7.2) and the files
 * are one source of truth: a file write updates the ref map.
 */
import { normalizeScope } from '../protocol/scope.js'
import { stateRef } from '../protocol/state-ref.js'
import { checkWorkspacePath } from '../protocol/workspace-path.js'
import { overlaps } from './overlap.js'
import { fail, type Ctx, type Terminal } from './envelopes.js'
import type { CoreState } from './state.js'

export interface FileChange { path: string, content: string, before: string | null, bytes: number }

/** What one message writes so far (a batch shares one across its entries): paths, and bytes added to the workspace. */
export interface PendingLayout { readonly files: Set<string>, readonly dirs: Set<string>, added: number }

export function pendingLayout (): PendingLayout {
  return { files: new Set(), dirs: new Set(), added: 0 }
}

/** `a/b/c` → `a`, `a/b`. */
function ancestors (path: string): string[] {
  const out: string[] = []
  for (let i = path.indexOf('/'); i > 0; i = path.indexOf('/', i + 1)) out.push(path.slice(0, i))
  return out
}

/** Keeps `st.dirs` (directory → number of files below it) in step with a file appearing (+1) or going (-1). */
export function trackPath (st: CoreState, path: string, delta: 1 | -1): void {
  for (const d of ancestors(path)) {
    const n = (st.dirs.get(d) ?? 0) + delta
    if (n > 0) st.dirs.set(d, n)
    else st.dirs.delete(d)
  }
}

/**
 * A path must not be a file and a directory at once, in the workspace or in
 * this message: the disk mirror (and git) could not hold both.
 */
function layoutProblem (st: CoreState, path: string, pending: PendingLayout): string | undefined {
  if (st.dirs.has(path) || pending.dirs.has(path)) return `${path} is a directory`
  const up = ancestors(path)
  for (const a of up) if (st.files.has(a) || pending.files.has(a)) return `${a} is a file`
  pending.files.add(path)
  for (const a of up) pending.dirs.add(a)
  return undefined
}

function isObject (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Does `path` lie inside one of the sender's ACTIVE intents? */
function inSenderScope (st: CoreState, sender: string, path: string): boolean {
  const holders = st.index.holders('file_set', path)
  if (holders !== undefined) {
    for (const id of holders) {
      const i = st.intents.get(id)
      if (i !== undefined && i.principal_id === sender && i.state === 'ACTIVE') return true
    }
  }
  let probe
  for (const i of st.liveIntentsOf(sender)) {
    if (i.state !== 'ACTIVE' || i.norm.kind !== 'resource_path') continue
    probe ??= normalizeScope({ kind: 'file_set', resources: [path] })
    // A glob too costly to decide grants nothing.
    if (overlaps(i.norm, probe, false)) return true
  }
  return false
}

/**
 * Validates `file_changes` (undefined → no changes). `targets` are the
 * normalised targets of the message; `fallbackBefore` maps a target to the
 * op's `state_ref_before`, used when an entry has none.
 */
export function parseFileChanges (st: CoreState, raw: unknown, sender: string, targets: ReadonlyMap<string, string | null>, pending = pendingLayout()): FileChange[] | Terminal {
  if (raw === undefined || raw === null) return []
  if (!isObject(raw)) return fail('MALFORMED_MESSAGE', 'payload.file_changes: expected an object of path → {content, state_ref_before}')
  const out: FileChange[] = []
  let total = st.workspaceBytes + pending.added
  for (const key of Object.keys(raw)) {
    const entry = raw[key]
    if (!isObject(entry) || typeof entry.content !== 'string') return fail('MALFORMED_MESSAGE', `payload.file_changes[${JSON.stringify(key)}]: expected {content: string, state_ref_before?: string}`)
    if (entry.state_ref_before !== undefined && entry.state_ref_before !== null && typeof entry.state_ref_before !== 'string') {
      return fail('MALFORMED_MESSAGE', `payload.file_changes[${JSON.stringify(key)}].state_ref_before: expected a string`)
    }
    // Path traversal / absolute paths would let a later disk mirror write outside the workspace (§13.6 S8).
    const pc = checkWorkspacePath(key)
    if (!pc.ok) return fail('MALFORMED_MESSAGE', `payload.file_changes: invalid path ${JSON.stringify(key)}: ${pc.reason}`)
    const path = pc.path
    const clash = layoutProblem(st, path, pending)
    if (clash !== undefined) return fail('MALFORMED_MESSAGE', `payload.file_changes: invalid path ${JSON.stringify(key)}: ${clash}`)
    if (!targets.has(path) && !inSenderScope(st, sender, path)) {
      return fail('AUTHORIZATION_FAILED', `payload.file_changes: ${path} is neither the operation target nor inside an ACTIVE intent of ${sender}`)
    }
    const bytes = Buffer.byteLength(entry.content, 'utf8')
    if (bytes > st.s.maxFileBytes) return fail('MALFORMED_MESSAGE', `payload.file_changes: ${path} is ${bytes} bytes, above the limit of ${st.s.maxFileBytes}`)
    total += bytes - (st.files.get(path)?.bytes ?? 0)
    if (total > st.s.maxWorkspaceBytes) return fail('MALFORMED_MESSAGE', `workspace limit exceeded: the session workspace may hold at most ${st.s.maxWorkspaceBytes} bytes`)
    const before = typeof entry.state_ref_before === 'string' ? entry.state_ref_before : targets.get(path) ?? null
    out.push({ path, content: entry.content, before, bytes })
  }
  pending.added = total - st.workspaceBytes
  return out
}

export function shortRef (r: string | null): string {
  return r === null ? 'none' : r.slice(0, 23)
}

/** Stale check against the workspace (a missing file accepts any before-ref). */
export function staleFile (st: CoreState, changes: readonly FileChange[]): Terminal | undefined {
  for (const c of changes) {
    const cur = st.files.get(c.path)
    if (cur !== undefined && cur.state_ref !== c.before) {
      return fail('STALE_STATE_REF', `Stale state_ref for ${c.path}: expected ${shortRef(cur.state_ref)}, got ${shortRef(c.before)}`, { target: c.path, current_state_ref: cur.state_ref })
    }
  }
  return undefined
}

export function writeFile (st: CoreState, path: string, content: string, bytes: number): string {
  const ref = stateRef(content)
  const old = st.files.get(path)
  if (old === undefined) trackPath(st, path, 1)
  st.workspaceBytes += bytes - (old?.bytes ?? 0)
  st.files.set(path, { content, state_ref: ref, bytes })
  st.refs.set(path, ref)
  return ref
}

/** Applies validated changes; FILE_UPDATED frames are queued for after the relay. */
export function applyFileChanges (st: CoreState, ctx: Ctx, changes: readonly FileChange[], updatedBy: string): void {
  for (const c of changes) {
    const ref = writeFile(st, c.path, c.content, c.bytes)
    ctx.fileWrites.push({ path: c.path, content: c.content, stateRef: ref })
    ctx.afterRelay.push({ type: 'FILE_UPDATED', path: c.path, state_ref: ref, updated_by: updatedBy })
    ctx.dirty = true
  }
}

/** `file_sync` input: the disk now has this content (null = absent). */
export function fileSync (st: CoreState, ctx: Ctx, rawPath: string, content: string | null): void {
  const pc = checkWorkspacePath(rawPath)
  if (!pc.ok) return
  const path = pc.path
  const old = st.files.get(path)
  if (content === null) {
    if (old === undefined) return
    st.workspaceBytes -= old.bytes
    st.files.delete(path)
    trackPath(st, path, -1)
    st.refs.delete(path)
    ctx.dirty = true
    return
  }
  if (old !== undefined && old.content === content) return
  writeFile(st, path, content, Buffer.byteLength(content, 'utf8'))
  ctx.dirty = true
}
