/**
 * What every client adapter shares: the hook events of `mpac-mcp hook
 * <event>`, the adapter contract, reading paths out of a tool's input, and
 * the words the agent and the user read (a deny reason naming the holder,
 * its objective and what to do; context lines; the fail-closed message).
 * Other agents' text (names, objectives, ids) is quoted as data, never as
 * instructions. Pure: no I/O.
 */
import { isAbsolute, resolve } from 'node:path'
import { quoteText, sanitizeText, type HookHolder, type HookReply, type HookRequest } from '../protocol.js'

export const HOOK_EVENTS = ['session-start', 'user-prompt', 'pre-edit', 'post-edit', 'stop', 'session-end'] as const
export type HookEventName = typeof HOOK_EVENTS[number]

export const CLIENTS = ['claude', 'cursor', 'codex', 'gemini'] as const
export type ClientName = typeof CLIENTS[number]

/** What an adapter reads from the client's stdin JSON. */
export interface ParsedInput {
  /** The client's session id (rendezvous rule 1), when it sent one. */
  readonly sessionId: string | null
  /** Where the hook acts (rendezvous rule 3). */
  readonly cwds: readonly string[]
  /** The question for the shim; null: nothing to ask (not an edit, an event we ignore). */
  readonly request: HookRequest | null
  /** SessionStart `source` (startup, resume, clear, compact). */
  readonly source?: string | null
}

/** The hook's answer: stdout (null: print nothing) and the exit code (always 0: denies are JSON decisions). */
export interface HookOutput {
  readonly stdout: string | null
  readonly exitCode: 0
}

export interface Adapter {
  /** undefined: the input is not what this client sends (malformed). */
  parse (event: HookEventName, input: Record<string, unknown>): ParsedInput | undefined
  /** The client's answer for the shim's reply; `request` is what was asked. */
  render (event: HookEventName, request: HookRequest, reply: HookReply): HookOutput
  /** MPAC_HOOK_FAIL=closed: the deny for an edit that could not be checked (other events: nothing). */
  failClosed (event: HookEventName, message: string): HookOutput
}

export const SILENT: HookOutput = Object.freeze({ stdout: null, exitCode: 0 })

export function json (value: unknown): HookOutput {
  return { stdout: JSON.stringify(value), exitCode: 0 }
}

export function str (v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null
}

export function record (v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {}
}

/** `path` made absolute against `cwd` (clients mostly send absolute paths already). */
export function absolute (path: string, cwd: string | null): string {
  return isAbsolute(path) || cwd === null ? path : resolve(cwd, path)
}

/** The file a tool edits: `file_path` (Write, Edit, MultiEdit), `notebook_path` (NotebookEdit), or `path`/`target_file` (other clients). */
export function toolInputPaths (toolInput: unknown, cwd: string | null): string[] {
  const input = record(toolInput)
  for (const key of ['file_path', 'notebook_path', 'path', 'target_file']) {
    const p = str(input[key])
    if (p !== null) return [absolute(p, cwd)]
  }
  return []
}

/**
 * The files an `apply_patch` patch touches (Codex): the paths of its
 * `*** Add File:`, `*** Update File:`, `*** Delete File:` and `*** Move to:`
 * headers, in order, without duplicates.
 */
export function patchPaths (patch: string, cwd: string | null): string[] {
  const out: string[] = []
  for (const line of patch.split(/\r?\n/)) {
    const m = /^\*\*\* (?:Add File|Update File|Delete File|Move to): (.+)$/.exec(line)
    if (m === null) continue
    const p = absolute((m[1] as string).trim(), cwd)
    if (!out.includes(p)) out.push(p)
  }
  return out
}

function files (list: readonly string[]): string {
  const shown = list.slice(0, 5).map(f => sanitizeText(f, 200))
  return shown.join(', ') + (list.length > 5 ? ` and ${list.length - 5} more` : '')
}

function holderName (h: HookHolder): string {
  const name = sanitizeText(h.display_name, 60)
  const id = sanitizeText(h.principal_id, 80)
  return name !== '' && name !== id ? `${name} (${id})` : id
}

/** Longest shim-composed text (a reason or a note) passed on, in characters. */
const SHIM_TEXT_MAX = 2000

/**
 * The deny reason the agent reads (and acts on): who holds what, why, and
 * what to do. The shim's own `reason` when it sent one; else composed here
 * from the holders and frozen conflicts.
 */
export function denyReason (reply: HookReply): string {
  const fromShim = str(reply.reason)
  if (fromShim !== null && (reply.holders.length > 0 || reply.frozen.length > 0 || fromShim.startsWith('mpac'))) return sanitizeText(fromShim, SHIM_TEXT_MAX)
  const parts: string[] = []
  for (const h of reply.holders) {
    parts.push(`mpac: ${files(h.files)} ${h.files.length > 1 ? 'are' : 'is'} being edited by ${holderName(h)} under intent ${sanitizeText(h.intent_id, 80)} (${sanitizeText(h.state, 20)}), objective ${quoteText(h.objective)}.`)
  }
  for (const c of reply.frozen) {
    const who = c.principals.map(p => sanitizeText(p, 80)).join(' and ')
    parts.push(`mpac: ${files(c.files)} ${c.files.length > 1 ? 'are' : 'is'} frozen by open conflict ${sanitizeText(c.conflict_id, 80)} (${sanitizeText(c.category, 40)}, ${sanitizeText(c.state, 20)})${who !== '' ? ` between ${who}` : ''}.`)
  }
  if (parts.length === 0) parts.push(`mpac: ${sanitizeText(reply.reason ?? 'this edit is not allowed now', 400)}`)
  parts.push('This edit was not made.')
  if (reply.holders.length > 0) parts.push('Work on other files, ask the user, or run check_overlap later; the file is free once that intent is withdrawn (escalate_conflict if it cannot wait).')
  if (reply.frozen.length > 0) parts.push('The conflict must be resolved first: ack_conflict, escalate_conflict or resolve_conflict, or ask the user.')
  return parts.join(' ')
}

/**
 * Context lines for an answer that does not deny: the shim's `note` when it
 * sent one (else suspended holders and what was announced for the agent,
 * composed here), then the events not already in the note. An edit the shim
 * could not check is mentioned only with the shim's throttled `warn_user`
 * (§7.6: once per 5 minutes, to the user and to the agent).
 */
export function contextLines (request: HookRequest, reply: HookReply): string[] {
  const lines: string[] = []
  const unchecked = request.op === 'check_edit' && reply.coordinator !== 'ok' && reply.decision !== 'announced'
  const warned = str(reply.warn_user) !== null
  // The shim's note is about the edit asked (announced, suspended holder, reminder, unchecked).
  const note = request.op === 'check_edit' ? str(reply.note) : null
  if (note !== null) {
    if (!unchecked || warned) lines.push(sanitizeText(note, SHIM_TEXT_MAX))
  } else {
    for (const h of reply.suspended) {
      const since = str(h.since) !== null ? ` (offline since ${sanitizeText(h.since, 40)})` : ''
      lines.push(`mpac: ${files(h.files)} belongs to SUSPENDED intent ${sanitizeText(h.intent_id, 80)} of ${holderName(h)}${since}, objective ${quoteText(h.objective)}. take_over_task(${sanitizeText(h.intent_id, 80)}) continues their work; begin_task claims the file.`)
    }
    if (reply.announced !== null && reply.announced.files.length > 0) {
      lines.push(`mpac announced ${files(reply.announced.files)} for you (intent ${sanitizeText(reply.announced.intent_id, 80)}). begin_task with a real objective replaces it; yield_task when done.`)
    }
    if (unchecked && warned) lines.push('mpac: this edit was not checked against other agents\' work; announce it with begin_task when who_is_working works again.')
  }
  for (const e of reply.events) {
    const text = sanitizeText(e.text, 400)
    if (note === null || !note.includes(text)) lines.push(`mpac: ${text}`)
  }
  return lines
}

/** What a strict team's hook says when it could not check an edit (MPAC_HOOK_FAIL=closed). */
export function failClosedReason (message: string): string {
  return `mpac could not verify this edit against other agents' work (${sanitizeText(message, 300)}), and MPAC_HOOK_FAIL=closed refuses unchecked edits. This edit was not made. Set MPAC_HOOK_FAIL=open or run \`mpac-mcp hook doctor\` to find out why.`
}

/** Common request fields. */
export function base (client: ClientName, sessionId: string | null, agentId: unknown): { v: 1, client: ClientName, client_session_id: string | null, agent_id: string | null } {
  return { v: 1, client, client_session_id: sessionId, agent_id: str(agentId) }
}
