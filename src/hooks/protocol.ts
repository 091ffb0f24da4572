/**
 * The local hook protocol (agent-hooks-and-dashboard.md §7.1): how a
 * short-lived hook process (`mpac-mcp hook <event>`, `mpac-mcp guard`) asks
 * the running shim of its agent for a decision. This module is the shared
 * contract of both ends; it and everything in `src/hooks/` import only
 * `node:` builtins (the hook process must start fast: never the MCP SDK,
 * pino, zod or undici; test/architecture.test.ts enforces it).
 *
 * Transport. A Unix socket `<socketDir>/<shim pid>.sock` (socketDir: 0700,
 * socket: 0600; see `socketDir`), on Windows the named pipe
 * `\\.\pipe\mpac-mcp-<uid>-<pid>`. One JSON object per line (UTF-8, `\n`
 * terminated) per request, exactly one reply line per request, in order. A
 * request line longer than MAX_REQUEST_BYTES closes the connection after an
 * `error` reply. Every request and reply carries `v: HOOK_PROTOCOL_VERSION`;
 * a request with another `v`, an unknown `op` or a malformed field gets a
 * reply with `error` set and `decision: 'none'` (fail open). The client
 * gives up after CLIENT_DEADLINE_MS and lets the edit proceed.
 *
 * Rendezvous. On start the shim writes a registry entry
 * `<stateDir>/hooks/<pid>.json` (0600, `HookRegistryEntry`) and removes it
 * on exit. A hook finds its shim by, in order: `client_session_id` equal to
 * the client's session id, `client_pid` equal to its parent or grandparent
 * pid, the only live shim whose `workspace_dir` contains the cwd. Entries of
 * dead pids are stale and may be removed by anyone.
 *
 * Ops (every reply is a `HookReply`; fields not listed are at their empty
 * defaults: `decision: 'none'`, empty arrays, `announced: null`):
 * - `ping`: the view's age, the shim's identity (`identity`) and its last
 *   check_edit / guard_check decisions (`recent`).
 * - `check_edit {paths, mode?, tool?, tool_use_id?, agent_id?}` (the
 *   PreToolUse decision, §7.3; each path absolute or workspace-relative,
 *   paths outside the workspace are ignored; the worst path wins):
 *   another principal's ACTIVE intent covers a path → `deny` + `holders`;
 *   a path in the frozen scope of an open conflict → `deny` + `frozen`;
 *   covered by one of my live intents → `none`; covered only by another's
 *   SUSPENDED intent → `none` + `suspended`; unannounced with mode
 *   `announce` (default) → the shim widens this client session's auto
 *   intent through the coordinator: accepted → `announced` (the paths
 *   newly announced; `none` when they already were), lost the race →
 *   `deny` + `holders`; mode `remind` → `none` + an `events` entry of kind
 *   `unannounced`; mode `require` → `deny` + `reason`. Coordinator down or
 *   view stale → `none` with `coordinator: 'down'|'stale'` (fail open).
 * - `post_edit {paths?, tool_use_id?}`: renews the auto intent's TTL;
 *   `events` carries the new events that concern this agent, at most one
 *   non-empty delivery per POST_EDIT_EVENTS_INTERVAL_MS per client session.
 * - `context {source?}`: `context` is the SessionStart digest (≤
 *   CONTEXT_MAX_CHARS); this consumer's event cursor moves to now. With
 *   `source: 'clear'` (Claude Code's /clear gives the hooks a new session
 *   id while the shim keeps its spawn-time one) the shim adopts the
 *   request's `client_session_id`: its registry entry is rewritten and the
 *   previous client session's auto intent carries over.
 * - `events_since {consumer?}`: the events that concern this agent and that
 *   this consumer (default: the client session id) has not received yet;
 *   each event is delivered once per consumer.
 * - `session_end`: withdraws this client session's auto intent(s).
 * - `guard_check {paths}`: `block` (paths held by another's ACTIVE intent or
 *   frozen) and `warn` (paths held only by SUSPENDED intents, and paths in
 *   none of my intents), for `mpac-mcp guard`.
 * Any reply may carry `warn_user`: one line to show the user (e.g. that the
 * coordinator is unreachable), set by the shim at most once per
 * WARN_USER_INTERVAL_MS per client session.
 *
 * Security (§7.7): the socket carries queries and this shim's own
 * announce/update/withdraw only; no token or secret ever crosses it. Other
 * agents' text (objectives, names, paths) arrives sanitised with
 * `sanitizeText`; the hook quotes it as data.
 */
import { mkdirSync, lstatSync, chmodSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'

export const HOOK_PROTOCOL_VERSION = 1

/** Largest request line the shim reads (bytes, without the newline). */
export const MAX_REQUEST_BYTES = 64 * 1024
/** Connections a shim serves at once; more are closed at once. */
export const MAX_CONNECTIONS = 16
/** How long a hook waits for a reply before it lets the edit proceed. */
export const CLIENT_DEADLINE_MS = 1_000
/** A view older than this answers `coordinator: 'stale'`. */
export const VIEW_STALE_MS = 5_000
/** While hooks are active the view is re-based by SESSION_SUMMARY at most this often. */
export const VIEW_REBASE_MS = 10_000
/** `warn_user` at most once per client session per this interval (§7.6). */
export const WARN_USER_INTERVAL_MS = 5 * 60_000
/** post_edit piggybacks events at most once per client session per this interval (§7.3). */
export const POST_EDIT_EVENTS_INTERVAL_MS = 60_000
/** The SessionStart digest's maximum length. */
export const CONTEXT_MAX_CHARS = 1_500
/** Intents the digest lists before "…and N more (who_is_working)". */
export const CONTEXT_MAX_INTENTS = 10
/** Other agents' text (objective, name) is cut at this many characters. */
export const QUOTE_MAX_CHARS = 120
/** TTL of an auto intent, renewed on every edit. */
export const AUTO_INTENT_TTL_SEC = 1_800

export const HOOK_OPS = ['check_edit', 'post_edit', 'context', 'events_since', 'session_end', 'guard_check', 'ping'] as const
export type HookOp = typeof HOOK_OPS[number]

export const EDIT_MODES = ['announce', 'remind', 'require'] as const
/** What check_edit does with an unannounced path (default `announce`). */
export type EditMode = typeof EDIT_MODES[number]

export const HOOK_CLIENTS = ['claude', 'cursor', 'codex', 'gemini', 'git', 'other'] as const
export type HookClient = typeof HOOK_CLIENTS[number]

/** Fields every request may carry. */
export interface HookRequestBase {
  readonly v: typeof HOOK_PROTOCOL_VERSION
  readonly op: HookOp
  /** Which client's hook asks (used for logs and the auto intent's objective). */
  readonly client?: HookClient
  /** The client's session id (Claude Code: stdin `session_id`); keys the auto intent, throttles and cursors. */
  readonly client_session_id?: string | null
  /** Claude Code subagent id, when a subagent's tool fired the hook (logged only). */
  readonly agent_id?: string | null
}

export interface PingRequest extends HookRequestBase { readonly op: 'ping' }

export interface CheckEditRequest extends HookRequestBase {
  readonly op: 'check_edit'
  /** The client's tool (`Write`, `Edit`, `apply_patch`, …). */
  readonly tool?: string
  readonly tool_use_id?: string | null
  /** Absolute, or relative to the workspace. */
  readonly paths: readonly string[]
  readonly mode?: EditMode
}

export interface PostEditRequest extends HookRequestBase {
  readonly op: 'post_edit'
  readonly tool?: string
  readonly tool_use_id?: string | null
  readonly paths?: readonly string[]
}

export interface ContextRequest extends HookRequestBase {
  readonly op: 'context'
  /** The SessionStart source (`startup`, `resume`, `clear`, `compact`); `clear` re-keys the shim to this client session. */
  readonly source?: string | null
}

export interface EventsSinceRequest extends HookRequestBase {
  readonly op: 'events_since'
  /** Whose cursor (default: `client_session_id`, else `client`). */
  readonly consumer?: string | null
}

export interface SessionEndRequest extends HookRequestBase { readonly op: 'session_end' }

export interface GuardCheckRequest extends HookRequestBase {
  readonly op: 'guard_check'
  /** Staged paths (absolute or workspace-relative; both names of a rename). */
  readonly paths: readonly string[]
}

export type HookRequest =
  | PingRequest | CheckEditRequest | PostEditRequest | ContextRequest
  | EventsSinceRequest | SessionEndRequest | GuardCheckRequest

export type HookDecision = 'none' | 'deny' | 'announced'
/** `ok`: connected and the view is fresh; `stale`: connected but the view is older than VIEW_STALE_MS; `down`: no connection. */
export type CoordinatorHealth = 'ok' | 'down' | 'stale'

/** Another principal's intent that covers a path (all text sanitised). */
export interface HookHolder {
  readonly principal_id: string
  readonly display_name: string
  readonly intent_id: string
  readonly objective: string
  readonly state: string
  /** The asked paths (workspace-relative) this intent covers. */
  readonly files: readonly string[]
  /** SUSPENDED holders: since when the principal is unavailable (RFC 3339), when known. */
  readonly since?: string | null
}

/** An open conflict whose frozen scope covers a path. */
export interface HookFrozen {
  readonly conflict_id: string
  readonly category: string
  readonly state: string
  readonly intent_ids: readonly string[]
  readonly principals: readonly string[]
  readonly files: readonly string[]
}

export const HOOK_EVENT_KINDS = [
  'conflict', // a conflict naming my intent: reported, acknowledged, escalated, resolved
  'claim', // a claim on my intent, or its decision
  'suspended', // my intent suspended
  'taken_over', // my intent taken over by another principal
  'escalation', // a conflict escalated to me as arbiter
  'frozen', // a freeze on my files
  'announced_my_file', // someone announced a file I edited in this session
  'unannounced', // check_edit mode remind: a path in none of my intents
  'coordinator' // reserved: the coordinator went down or came back (not emitted yet; `coordinator` on every reply says it)
] as const
export type HookEventKind = typeof HOOK_EVENT_KINDS[number]

export interface HookEvent {
  /** Monotonic per shim; cursors count in it. */
  readonly seq: number
  readonly kind: HookEventKind
  /** One short factual sentence; other agents' text in it is sanitised and quoted. */
  readonly text: string
  readonly intent_id?: string | null
  readonly conflict_id?: string | null
  readonly principal_id?: string | null
  readonly files?: readonly string[]
  readonly at: string
}

export interface HookDecisionRecord {
  readonly at: string
  readonly op: HookOp
  readonly decision: HookDecision
  readonly coordinator: CoordinatorHealth
  readonly paths: readonly string[]
  readonly client_session_id: string
  readonly ms: number
}

export interface HookIdentity {
  readonly pid: number
  readonly session_id: string
  readonly principal_id: string
  readonly display_name: string
  readonly workspace_dir: string
}

export interface HookReply {
  readonly v: typeof HOOK_PROTOCOL_VERSION
  readonly op: HookOp | null
  readonly decision: HookDecision
  readonly coordinator: CoordinatorHealth
  /** Milliseconds since the view last heard from the coordinator (null before the first summary). */
  readonly view_age_ms: number | null
  readonly holders: readonly HookHolder[]
  readonly frozen: readonly HookFrozen[]
  readonly suspended: readonly HookHolder[]
  /** check_edit with mode announce: the paths newly announced and the auto intent carrying them. */
  readonly announced: { readonly intent_id: string, readonly files: readonly string[] } | null
  readonly events: readonly HookEvent[]
  /** op `context`: the digest. */
  readonly context?: string
  /** With `deny`: the reason, ready to show the agent (names the holder or conflict and what to do). */
  readonly reason?: string
  /** Without a deny: one line of context for the agent (a file announced for it, a SUSPENDED holder, a reminder). */
  readonly note?: string
  /** op `guard_check`. */
  readonly block?: readonly string[]
  readonly warn?: readonly string[]
  /** op `ping`. */
  readonly identity?: HookIdentity
  /** op `ping`: the shim's last decisions, newest last (for `mpac-mcp hook doctor`). */
  readonly recent?: readonly HookDecisionRecord[]
  /** One line for the user (§7.6), throttled by the shim. */
  readonly warn_user?: string | null
  /** Set when the request could not be served (the decision is then `none`). */
  readonly error?: { readonly code: string, readonly message: string } | null
}

/** Codes of `HookReply.error`. */
export const HOOK_ERROR_CODES = ['BAD_REQUEST', 'BAD_VERSION', 'UNKNOWN_OP', 'TOO_LARGE', 'INTERNAL'] as const
export type HookErrorCode = typeof HOOK_ERROR_CODES[number]

/** A reply with every field at its empty default. */
export function emptyReply (op: HookOp | null, coordinator: CoordinatorHealth, viewAgeMs: number | null): HookReply {
  return { v: HOOK_PROTOCOL_VERSION, op, decision: 'none', coordinator, view_age_ms: viewAgeMs, holders: [], frozen: [], suspended: [], announced: null, events: [] }
}

/** `$XDG_STATE_HOME/mpac-mcp/hooks/<pid>.json`, mode 0600, written by the shim on start and removed on exit. */
export interface HookRegistryEntry {
  readonly v: typeof HOOK_PROTOCOL_VERSION
  /** The shim's pid. */
  readonly pid: number
  /** The shim's parent (the agent client, e.g. the claude process). */
  readonly client_pid: number
  /** The client's session id at the shim's start (CLAUDE_CODE_SESSION_ID), or null. */
  readonly client_session_id: string | null
  readonly workspace_dir: string
  readonly session_id: string
  readonly principal_id: string
  /** The socket (or pipe) path. */
  readonly socket: string
  /** RFC 3339. */
  readonly started_at: string
}

type Env = Readonly<Record<string, string | undefined>>

function readEnv (env: Env, name: string): string | undefined {
  const value = env[name]?.trim()
  return value === undefined || value === '' ? undefined : value
}

/** The per-user state directory `$XDG_STATE_HOME/mpac-mcp` (`~/.local/state/mpac-mcp` when unset); the same rule as the shim's config. */
export function hookStateDir (env: Env = process.env): string {
  const home = readEnv(env, 'HOME') ?? homedir()
  const xdg = readEnv(env, 'XDG_STATE_HOME')
  const expanded = xdg === undefined ? undefined : (xdg === '~' || xdg.startsWith('~/')) ? join(home, xdg.slice(1)) : xdg
  const base = expanded !== undefined ? resolve(expanded) : join(home, '.local', 'state')
  return join(base, 'mpac-mcp')
}

/** Where registry entries live: `<state dir>/hooks`. */
export function registryDir (env: Env = process.env): string {
  return join(hookStateDir(env), 'hooks')
}

export function registryFile (dir: string, pid: number): string {
  return join(dir, `${pid}.json`)
}

const uid = (): number | undefined => typeof process.getuid === 'function' ? process.getuid() : undefined

/** Longest socket path used (the Unix-socket limit is 104 bytes on macOS, 108 on Linux, terminator included). */
export const MAX_SOCKET_PATH = 100

/**
 * `$XDG_RUNTIME_DIR/mpac-mcp` when XDG_RUNTIME_DIR is an absolute path short
 * enough for a socket path (`<dir>/<7-digit pid>.sock` within
 * MAX_SOCKET_PATH bytes), else `/tmp/mpac-mcp-<uid>`.
 */
export function socketDir (env: Env = process.env): string {
  const runtime = readEnv(env, 'XDG_RUNTIME_DIR')
  if (runtime !== undefined && isAbsolute(runtime)) {
    const dir = join(runtime, 'mpac-mcp')
    if (Buffer.byteLength(join(dir, '4194304.sock'), 'utf8') <= MAX_SOCKET_PATH) return dir
  }
  return join('/tmp', `mpac-mcp-${uid() ?? 'user'}`)
}

/** The socket of shim `pid` in `dir`, or the named pipe on Windows. */
export function socketPath (dir: string, pid: number, platform: NodeJS.Platform = process.platform): string {
  if (platform === 'win32') return `\\\\.\\pipe\\mpac-mcp-${uid() ?? 'user'}-${pid}`
  return join(dir, `${pid}.sock`)
}

/**
 * Makes `dir` (and its parents) if missing and checks it is a private directory:
 * a real directory (not a symlink), ours, mode 0700 (a wider mode is tightened).
 * Throws an Error naming the problem otherwise.
 */
export function ensurePrivateDir (dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`)
  const me = uid()
  if (me !== undefined && st.uid !== me) throw new Error(`${dir} belongs to uid ${st.uid}, not to you (uid ${me})`)
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700)
}

// C0 and C1 controls, DEL, line/paragraph separators, bidi overrides and isolates, zero-width characters, BOM.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200b-\u200f\ufeff]+/g

/** Text of a value from the wire: strings as they are, other scalars printed, objects as JSON, nothing for null/undefined. */
function scalarText (s: unknown): string {
  if (typeof s === 'string') return s
  if (typeof s === 'number' || typeof s === 'boolean' || typeof s === 'bigint') return String(s)
  if (s === undefined || s === null || typeof s === 'function' || typeof s === 'symbol') return ''
  return JSON.stringify(s)
}

/**
 * Other agents' text made safe to quote: control characters (newlines
 * included), bidi overrides and zero-width characters become one space,
 * runs of spaces collapse, the ends are trimmed, and text longer than `max`
 * characters (code points) is cut to `max - 1` and ends with `…`.
 */
export function sanitizeText (s: unknown, max: number = QUOTE_MAX_CHARS): string {
  const text = scalarText(s).replace(UNSAFE, ' ').replace(/\s+/g, ' ').trim()
  const points = Array.from(text)
  if (points.length <= max) return text
  return `${points.slice(0, Math.max(0, max - 1)).join('').trimEnd()}…`
}

/** `sanitizeText` in double quotes, with inner double quotes replaced by single ones (so the quote cannot be closed early). */
export function quoteText (s: unknown, max: number = QUOTE_MAX_CHARS): string {
  return `"${sanitizeText(s, max).replace(/"/g, '\'')}"`
}
