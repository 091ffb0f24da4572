/**
 * The hook ops of one shim session (agent-hooks §7.1, §7.3, §7.6): each
 * request of src/hooks/protocol.ts answered from the live session view,
 * with no coordinator round trip except this client session's auto intent
 * (announce, widen, renew, withdraw) and a re-base when the view is older
 * than VIEW_STALE_MS.
 *
 * Contract:
 * - Owns: per client session (the client's session id, else the shim's
 *   CLAUDE_CODE_SESSION_ID): its auto intent, the files already reminded,
 *   when it was last warned (`warn_user`, at most once per
 *   WARN_USER_INTERVAL_MS) and last given events by post_edit (at most once
 *   per POST_EDIT_EVENTS_INTERVAL_MS). Time comes from the injected clock.
 * - Promises: `handle()` never throws and always resolves with one reply;
 *   a malformed request gets `error` and `decision: 'none'`. Denies name the
 *   holder (or the frozen conflict) and what to do, in `reason`. The only
 *   messages it sends are this shim's own INTENT_ANNOUNCE / INTENT_UPDATE /
 *   INTENT_WITHDRAW of auto intents, and SESSION_SUMMARY queries.
 * - Never: returns a token or secret, or follows other agents' text as
 *   anything but quoted data.
 */
import type { Logger } from 'pino'
import {
  AUTO_INTENT_TTL_SEC, EDIT_MODES, HOOK_OPS, HOOK_PROTOCOL_VERSION, POST_EDIT_EVENTS_INTERVAL_MS, VIEW_REBASE_MS, VIEW_STALE_MS,
  WARN_USER_INTERVAL_MS, emptyReply, quoteText, sanitizeText,
  type CoordinatorHealth, type EditMode, type HookDecisionRecord, type HookErrorCode, type HookEvent, type HookFrozen, type HookHolder, type HookOp, type HookReply
} from '../../hooks/protocol.js'
import { MpacError } from '../../errors.js'
import { normalisePath, toRepoPath, type ShimSession } from '../session.js'
import { buildDigest } from './digest.js'
import type { ViewIntent } from './view.js'

/** How long a request waits for a re-base of a stale view before it answers `stale`. */
const REBASE_WAIT_MS = 500
/** How long a request waits for a connection being made (a SessionStart hook often beats the shim's start-up). */
const CONNECT_WAIT_MS = 700
/** A deny is confirmed by a fresh summary unless the view was re-based this recently (an intent may have expired unseen). */
const DENY_CONFIRM_MS = 1_000
/** The auto intent's TTL is renewed by post_edit at most this often. */
const RENEW_INTERVAL_MS = 60_000
/** Hooks count as active (periodic re-base) this long after the last request. */
const ACTIVE_WINDOW_MS = 60_000
const MAX_PATHS = 1_000
const MAX_CLIENT_SESSIONS = 256
const EVENTS_PER_REPLY = 20
const RECENT_DECISIONS = 20

const CLIENT_LABELS: Readonly<Record<string, string>> = { claude: 'Claude Code', cursor: 'Cursor', codex: 'Codex CLI', gemini: 'Gemini CLI', git: 'git' }

interface ClientState {
  autoIntentId: string | undefined
  autoFiles: Set<string>
  renewedAt: number
  warnedAt: number | undefined
  eventsAt: number | undefined
  reminded: Set<string>
  /** Auto-intent changes of this client session run one at a time. */
  chain: Promise<unknown>
}

export interface HookServiceOptions {
  readonly session: ShimSession
  readonly logger: Logger
  readonly now?: () => number
  /** The client session the shim was started for (CLAUDE_CODE_SESSION_ID), used when a request names none. */
  readonly clientSessionId?: string | null
  readonly pid?: number
  /** Called when a `context` with `source: 'clear'` names a new client session id (the endpoint rewrites its registry entry). */
  readonly onClientSession?: (clientSessionId: string) => void
}

type Req = Record<string, unknown>

class BadRequest extends Error {
  constructor (readonly code: HookErrorCode, message: string) { super(message) }
}

type PathVerdict =
  | { kind: 'held', holders: ViewIntent[] }
  | { kind: 'frozen', conflicts: HookFrozen[] }
  | { kind: 'mine' }
  | { kind: 'suspended', holders: ViewIntent[] }
  | { kind: 'free' }

function stringField (req: Req, name: string, max = 256): string | undefined {
  const v = req[name]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'string' || v.length > max) throw new BadRequest('BAD_REQUEST', `${name} must be a string of at most ${max} characters`)
  return v
}

function pathsField (req: Req, required: boolean): string[] {
  const v = req['paths']
  if (v === undefined || v === null) {
    if (required) throw new BadRequest('BAD_REQUEST', 'paths must be an array of strings')
    return []
  }
  if (!Array.isArray(v) || v.length > MAX_PATHS || !v.every(p => typeof p === 'string' && p.length <= 4096)) {
    throw new BadRequest('BAD_REQUEST', `paths must be an array of at most ${MAX_PATHS} strings`)
  }
  return v as string[]
}

export class HookService {
  readonly #session: ShimSession
  readonly #log: Logger
  readonly #now: () => number
  #defaultClient: string | null
  readonly #pid: number
  readonly #onClientSession: ((id: string) => void) | undefined
  readonly #clients = new Map<string, ClientState>()
  #recent: HookDecisionRecord[] = []
  #lastRequestAt: number | undefined
  #rebaseTimer: NodeJS.Timeout | undefined

  constructor (options: HookServiceOptions) {
    this.#session = options.session
    this.#log = options.logger
    this.#now = options.now ?? Date.now
    this.#defaultClient = options.clientSessionId ?? null
    this.#pid = options.pid ?? process.pid
    this.#onClientSession = options.onClientSession
  }

  /** The client session id requests without one are counted under (CLAUDE_CODE_SESSION_ID, or the one adopted after /clear). */
  get clientSessionId (): string | null { return this.#defaultClient }

  get session (): ShimSession { return this.#session }

  /** While hooks are active, re-bases the view every VIEW_REBASE_MS (stops with `stop()`). */
  start (): void {
    if (this.#rebaseTimer !== undefined) return
    this.#rebaseTimer = setInterval(() => {
      const last = this.#lastRequestAt
      const since = this.#session.view.sinceRebase()
      if (last === undefined || this.#now() - last > ACTIVE_WINDOW_MS || this.#session.client.state !== 'open') return
      if (since !== null && since < VIEW_REBASE_MS) return
      this.#session.summary().catch(err => this.#log.debug({ err: (err as Error).message }, 'hook view rebase failed'))
    }, VIEW_REBASE_MS)
    this.#rebaseTimer.unref()
  }

  stop (): void {
    if (this.#rebaseTimer !== undefined) clearInterval(this.#rebaseTimer)
    this.#rebaseTimer = undefined
  }

  /** One request (a parsed JSON line) → its reply. Never throws. */
  async handle (raw: unknown): Promise<HookReply> {
    this.#lastRequestAt = this.#now()
    this.#session.view.markUsed()
    const opName = raw !== null && typeof raw === 'object' && typeof (raw as Req)['op'] === 'string' ? (raw as Req)['op'] as string : null
    const op = opName !== null && (HOOK_OPS as readonly string[]).includes(opName) ? opName as HookOp : null
    try {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new BadRequest('BAD_REQUEST', 'a request is one JSON object per line')
      const req = raw as Req
      if (req['v'] !== HOOK_PROTOCOL_VERSION) throw new BadRequest('BAD_VERSION', `this shim speaks hook protocol v${HOOK_PROTOCOL_VERSION}, got v${String(req['v'])}`)
      if (op === null) throw new BadRequest('UNKNOWN_OP', `unknown op ${JSON.stringify(opName)}; one of ${HOOK_OPS.join(', ')}`)
      return await this.#dispatch(op, req)
    } catch (err) {
      const bad = err instanceof BadRequest
      if (!bad) this.#log.warn({ err: (err as Error).message, op }, 'hook request failed')
      else this.#log.warn({ code: err.code, op }, `hook request refused: ${err.message}`)
      return { ...emptyReply(op, this.#quickHealth(), this.#session.view.age()), error: { code: bad ? err.code : 'INTERNAL', message: (err as Error).message } }
    }
  }

  async #dispatch (op: HookOp, req: Req): Promise<HookReply> {
    const started = this.#now()
    const key = stringField(req, 'client_session_id') ?? this.#defaultClient ?? stringField(req, 'client', 32) ?? 'default'
    const client = this.#client(key)
    switch (op) {
      case 'ping': return this.#ping()
      case 'check_edit': return this.#remember(key, started, req, await this.#checkEdit(req, key, client))
      case 'post_edit': return await this.#postEdit(req, key, client)
      case 'context': return await this.#context(req, key, client)
      case 'events_since': return await this.#eventsSince(req, key, client)
      case 'session_end': return await this.#sessionEnd(client)
      case 'guard_check': return this.#remember(key, started, req, await this.#guardCheck(req, client))
    }
  }

  #remember (key: string, started: number, req: Req, reply: HookReply): HookReply {
    const paths = this.#repoPaths(pathsField(req, false))
    this.#recent.push({
      at: new Date(this.#now()).toISOString(),
      op: reply.op ?? 'check_edit',
      decision: reply.decision,
      coordinator: reply.coordinator,
      paths: paths.slice(0, 10).map(p => sanitizeText(p, 200)),
      client_session_id: sanitizeText(key, 64),
      ms: this.#now() - started
    })
    if (this.#recent.length > RECENT_DECISIONS) this.#recent = this.#recent.slice(-RECENT_DECISIONS)
    return reply
  }

  #client (key: string): ClientState {
    let c = this.#clients.get(key)
    if (c === undefined) {
      c = { autoIntentId: undefined, autoFiles: new Set(), renewedAt: 0, warnedAt: undefined, eventsAt: undefined, reminded: new Set(), chain: Promise.resolve() }
      this.#clients.set(key, c)
      if (this.#clients.size > MAX_CLIENT_SESSIONS) {
        for (const [k, v] of this.#clients) {
          if (v.autoIntentId === undefined) { this.#clients.delete(k); break }
        }
      }
    }
    return c
  }

  // ------------------------------------------------------------------ health

  #quickHealth (): CoordinatorHealth {
    if (this.#session.client.state !== 'open') return 'down'
    const age = this.#session.view.age()
    return age !== null && age <= VIEW_STALE_MS ? 'ok' : 'stale'
  }

  /** ok, or after one bounded re-base of a view older than VIEW_STALE_MS; stale / down otherwise. */
  async #health (): Promise<CoordinatorHealth> {
    const state = this.#session.client.state
    if (state === 'connecting' || state === 'idle') {
      await this.#bounded(this.#session.ready(), CONNECT_WAIT_MS, 'connect')
      if (this.#session.client.state === 'connecting') return 'stale'
    }
    const quick = this.#quickHealth()
    if (quick !== 'stale') return quick
    await this.#rebase()
    return this.#quickHealth()
  }

  /** One SESSION_SUMMARY re-base, waited for at most REBASE_WAIT_MS. */
  async #rebase (): Promise<void> {
    await this.#bounded(this.#session.summary(), REBASE_WAIT_MS, 'rebase')
  }

  async #bounded (work: Promise<unknown>, ms: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        work,
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms) })
      ])
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, `hook ${what} failed`)
    } finally {
      if (timer !== undefined) clearTimeout(timer)
    }
  }

  /** The reply for a coordinator that cannot vouch for the view: no decision, one warning per WARN_USER_INTERVAL_MS. */
  #failOpen (op: HookOp, health: CoordinatorHealth, client: ClientState): HookReply {
    const now = this.#now()
    let warn: string | null = null
    if (client.warnedAt === undefined || now - client.warnedAt >= WARN_USER_INTERVAL_MS) {
      client.warnedAt = now
      warn = health === 'down'
        ? 'mpac: coordinator unreachable (MPAC_ERR_REMOTE_UNAVAILABLE); edits are not being checked'
        : 'mpac: the coordinator is not answering in time; edits are not being checked'
    }
    return {
      ...emptyReply(op, health, this.#session.view.age()),
      warn_user: warn,
      note: 'mpac: this edit was not checked against other agents\' work; announce it with begin_task when who_is_working works again.'
    }
  }

  // ------------------------------------------------------------------- paths

  /** Workspace-relative paths; paths outside the workspace (or VCS metadata) are dropped. */
  #repoPaths (paths: readonly string[]): string[] {
    const ws = this.#session.config.workspaceDir
    const out = new Set<string>()
    for (const p of paths) {
      if (p.trim() === '') continue
      try {
        const rel = toRepoPath(ws, normalisePath(ws, p))
        if (rel !== '' && rel !== '.') out.add(rel)
      } catch (err) {
        if (!(err instanceof MpacError)) throw err
      }
    }
    return [...out].sort()
  }

  #verdict (path: string): PathVerdict {
    const view = this.#session.view
    const me = view.principalId
    const held: ViewIntent[] = []
    const suspended: ViewIntent[] = []
    let mine = false
    for (const i of view.intents.values()) {
      if (i.files === undefined || !i.files.includes(path)) continue
      if (i.principal_id === me) {
        if (i.state === 'ACTIVE' || i.state === 'SUSPENDED' || i.state === 'ANNOUNCED') mine = true
      } else if (i.state === 'ACTIVE') {
        held.push(i)
      } else if (i.state === 'SUSPENDED') {
        suspended.push(i)
      }
    }
    if (held.length > 0) return { kind: 'held', holders: held }
    const frozen: HookFrozen[] = []
    for (const c of view.conflicts.values()) {
      if (!c.frozen) continue
      const files = view.frozenFiles(c)
      if (!files.includes(path)) continue
      frozen.push({
        conflict_id: sanitizeText(c.conflict_id),
        category: sanitizeText(c.category),
        state: c.state,
        intent_ids: [c.intent_a, c.intent_b].filter((x): x is string => x !== null).map(x => sanitizeText(x)),
        principals: [c.principal_a, c.principal_b].filter((x): x is string => x !== null).map(x => sanitizeText(x)),
        files: [path]
      })
    }
    if (frozen.length > 0) return { kind: 'frozen', conflicts: frozen }
    if (mine) return { kind: 'mine' }
    if (suspended.length > 0) return { kind: 'suspended', holders: suspended }
    return { kind: 'free' }
  }

  #holder (i: ViewIntent, files: readonly string[]): HookHolder {
    const view = this.#session.view
    const part = view.participants.get(i.principal_id)
    const since = part?.unavailable_since
    return {
      principal_id: sanitizeText(i.principal_id),
      display_name: view.nameOf(i.principal_id),
      intent_id: sanitizeText(i.intent_id),
      objective: sanitizeText(i.objective),
      state: i.state,
      files: files.map(f => sanitizeText(f, 200)),
      since: since !== null && since !== undefined ? new Date(since).toISOString() : null
    }
  }

  /** Holders grouped by intent, each with the asked files it covers. */
  #holders (pairs: Array<[string, ViewIntent]>): HookHolder[] {
    const byIntent = new Map<string, { intent: ViewIntent, files: string[] }>()
    for (const [path, i] of pairs) {
      const e = byIntent.get(i.intent_id) ?? { intent: i, files: [] }
      if (!e.files.includes(path)) e.files.push(path)
      byIntent.set(i.intent_id, e)
    }
    return [...byIntent.values()].map(e => this.#holder(e.intent, e.files))
  }

  #holdReason (h: HookHolder): string {
    const files = h.files.join(', ')
    return `mpac: ${files} ${h.files.length === 1 ? 'is' : 'are'} being edited by ${quoteText(h.display_name)} (${h.principal_id}) under intent ${h.intent_id} (${h.state}), objective ${quoteText(h.objective)}. This edit was not made. Work on other files, ask the user, or run check_overlap later; the file is free once that intent is withdrawn.`
  }

  #frozenReason (f: HookFrozen): string {
    return `mpac: ${f.files.join(', ')} is in the frozen scope of conflict ${f.conflict_id} (${f.category}, intents ${f.intent_ids.join(' and ')}). This edit was not made. The conflict must be resolved first: ack_conflict / escalate_conflict, or ask the user.`
  }

  // ---------------------------------------------------------------- the ops

  #ping (): HookReply {
    const s = this.#session
    return {
      ...emptyReply('ping', this.#quickHealth(), s.view.age()),
      identity: { pid: this.#pid, session_id: s.sessionId, principal_id: s.principalId, display_name: s.config.identity.displayName, workspace_dir: s.config.workspaceDir },
      recent: [...this.#recent]
    }
  }

  async #checkEdit (req: Req, key: string, client: ClientState): Promise<HookReply> {
    const paths = this.#repoPaths(pathsField(req, true))
    const modeRaw = stringField(req, 'mode', 16) ?? 'announce'
    if (!(EDIT_MODES as readonly string[]).includes(modeRaw)) throw new BadRequest('BAD_REQUEST', `mode must be one of ${EDIT_MODES.join(', ')}`)
    const mode = modeRaw as EditMode
    const agentId = stringField(req, 'agent_id')
    const tool = stringField(req, 'tool', 64)
    if (paths.length === 0) return emptyReply('check_edit', this.#quickHealth(), this.#session.view.age())
    const health = await this.#health()
    if (health !== 'ok') return this.#failOpen('check_edit', health, client)

    let verdicts = paths.map(p => [p, this.#verdict(p)] as const)
    const since = this.#session.view.sinceRebase()
    if (verdicts.some(([, v]) => v.kind === 'held' || v.kind === 'frozen') && (since === null || since > DENY_CONFIRM_MS)) {
      // Never refuse an edit on a holder that may be gone (TTL expiry is not relayed): confirm first.
      await this.#rebase()
      verdicts = paths.map(p => [p, this.#verdict(p)] as const)
    }
    const held: Array<[string, ViewIntent]> = []
    const suspended: Array<[string, ViewIntent]> = []
    const frozen: HookFrozen[] = []
    const free: string[] = []
    for (const [path, v] of verdicts) {
      if (v.kind === 'held') for (const i of v.holders) held.push([path, i])
      else if (v.kind === 'frozen') frozen.push(...v.conflicts)
      else if (v.kind === 'suspended') for (const i of v.holders) suspended.push([path, i])
      else if (v.kind === 'free') free.push(path)
    }
    const age = (): number | null => this.#session.view.age()
    if (held.length > 0 || frozen.length > 0) {
      const holders = this.#holders(held)
      const reason = [...holders.map(h => this.#holdReason(h)), ...frozen.map(f => this.#frozenReason(f))].join(' ')
      this.#log.info({ tool, agentId, paths, holders: holders.map(h => h.intent_id), frozen: frozen.map(f => f.conflict_id) }, 'hook: edit denied')
      return { ...emptyReply('check_edit', 'ok', age()), decision: 'deny', holders, frozen, suspended: this.#holders(suspended), reason }
    }
    this.#session.view.noteEdited(paths)
    const suspendedHolders = this.#holders(suspended)
    const suspendedNote = suspendedHolders.map(h => `${h.files.join(', ')} belongs to SUSPENDED intent ${h.intent_id} of ${quoteText(h.display_name)}${h.since !== null && h.since !== undefined ? ` (offline since ${h.since})` : ''}. take_over_task(${h.intent_id}) continues their work; begin_task claims the file.`).join(' ')
    if (free.length === 0) {
      return { ...emptyReply('check_edit', 'ok', age()), suspended: suspendedHolders, ...(suspendedNote !== '' ? { note: `mpac: ${suspendedNote}` } : {}) }
    }
    if (mode === 'require') {
      return { ...emptyReply('check_edit', 'ok', age()), decision: 'deny', suspended: suspendedHolders, reason: `mpac: ${free.join(', ')} ${free.length === 1 ? 'is' : 'are'} not in any of your intents. This edit was not made. Announce first: begin_task(objective, files), then edit.` }
    }
    if (mode === 'remind') {
      const fresh = free.filter(f => !client.reminded.has(f))
      for (const f of fresh) client.reminded.add(f)
      const events: HookEvent[] = fresh.length === 0
        ? []
        : [{ seq: 0, kind: 'unannounced', text: `${fresh.join(', ')} ${fresh.length === 1 ? 'is' : 'are'} not in any of your intents; call begin_task(objective, files).`, files: fresh, at: new Date(this.#now()).toISOString() }]
      const note = [events[0]?.text, suspendedNote].filter(s => s !== undefined && s !== '').join(' ')
      return { ...emptyReply('check_edit', 'ok', age()), suspended: suspendedHolders, events, ...(note !== '' ? { note: `mpac: ${note}` } : {}) }
    }
    const outcome = await this.#serial(client, () => this.#announce(key, client, free, agentId ?? null, typeof req['client'] === 'string' ? req['client'] : 'other'))
    if (outcome.kind === 'lost') {
      const reason = outcome.holders.map(h => this.#holdReason(h)).join(' ') || `mpac: ${outcome.why}. This edit was not made.`
      this.#log.info({ tool, agentId, paths, why: outcome.why }, 'hook: lost the race for an edit')
      return { ...emptyReply('check_edit', 'ok', age()), decision: 'deny', holders: outcome.holders, suspended: suspendedHolders, reason }
    }
    if (outcome.kind === 'failed') {
      // Not a verdict on the file (a limit, the connection): fail open, say so.
      return { ...emptyReply('check_edit', this.#quickHealth(), age()), suspended: suspendedHolders, error: { code: 'INTERNAL', message: outcome.why }, note: `mpac: could not announce ${free.join(', ')} for you (${sanitizeText(outcome.why, 200)}); announce it with begin_task.` }
    }
    const note = `mpac announced ${free.join(', ')} for you (intent ${outcome.intentId}). begin_task with a real objective replaces it; yield_task when done.${suspendedNote !== '' ? ' ' + suspendedNote : ''}`
    return { ...emptyReply('check_edit', 'ok', age()), decision: 'announced', announced: { intent_id: outcome.intentId, files: free }, suspended: suspendedHolders, note }
  }

  #serial<T> (client: ClientState, fn: () => Promise<T>): Promise<T> {
    const run = client.chain.then(fn, fn)
    client.chain = run.catch(() => {})
    return run
  }

  #objective (key: string, clientName: string, agentId: string | null): string {
    const label = CLIENT_LABELS[clientName] ?? 'client'
    const sub = agentId !== null ? `, subagent ${sanitizeText(agentId, 40)}` : ''
    return `auto: edits by ${this.#session.config.identity.displayName} (${label} session ${sanitizeText(key.slice(0, 8))}${sub})`
  }

  /** The live auto intent of this client session, if the view still has it ACTIVE. */
  #liveAuto (client: ClientState): ViewIntent | undefined {
    if (client.autoIntentId === undefined) return undefined
    const i = this.#session.view.intents.get(client.autoIntentId)
    if (i === undefined || i.principal_id !== this.#session.principalId || i.state !== 'ACTIVE') {
      client.autoIntentId = undefined
      client.autoFiles.clear()
      return undefined
    }
    return i
  }

  async #announce (key: string, client: ClientState, files: string[], agentId: string | null, clientName: string): Promise<
    { kind: 'announced', intentId: string } | { kind: 'lost', holders: HookHolder[], why: string } | { kind: 'failed', why: string }> {
    // Another check may have announced these files while this one waited its turn.
    const still = files.filter(f => this.#verdict(f).kind === 'free')
    const held = files.filter(f => this.#verdict(f).kind === 'held')
    if (held.length > 0) {
      const pairs: Array<[string, ViewIntent]> = []
      for (const f of held) { const v = this.#verdict(f); if (v.kind === 'held') for (const i of v.holders) pairs.push([f, i]) }
      return { kind: 'lost', holders: this.#holders(pairs), why: 'another agent announced the file first' }
    }
    const live = this.#liveAuto(client)
    if (still.length === 0 && live !== undefined) return { kind: 'announced', intentId: live.intent_id }
    const session = this.#session
    let union = [...new Set([...(live?.files ?? []), ...still])].sort()
    let scope = { kind: 'file_set', resources: union }
    let intentId = live?.intent_id ?? ''
    let reply
    try {
      if (live !== undefined) {
        intentId = live.intent_id
        reply = await session.client.request('INTENT_UPDATE', { intent_id: intentId, scope, ttl_sec: AUTO_INTENT_TTL_SEC })
      }
      if (live === undefined || (reply !== undefined && !reply.accepted && reply.error?.error_code === 'INVALID_REFERENCE')) {
        // No auto intent yet, or it ended unseen (expired, superseded by a begin_task): a new one.
        client.autoIntentId = undefined
        if (live !== undefined) {
          session.owned.delete(live.intent_id)
          union = [...still].sort()
          scope = { kind: 'file_set', resources: union }
        }
        intentId = `${session.newId('intent')}-auto`
        reply = await session.client.request('INTENT_ANNOUNCE', { intent_id: intentId, objective: this.#objective(key, clientName, agentId), scope, ttl_sec: AUTO_INTENT_TTL_SEC })
      }
    } catch (err) {
      return { kind: 'failed', why: err instanceof MpacError ? `${err.code}: ${err.message}` : (err as Error).message }
    }
    if (reply === undefined) return { kind: 'failed', why: 'no reply' }
    if (!reply.accepted) {
      const e = reply.error
      if (e?.error_code === 'STALE_INTENT') {
        const holderId = typeof e['holder_intent_id'] === 'string' ? e['holder_intent_id'] : ''
        const holderPid = typeof e['holder_principal_id'] === 'string' ? e['holder_principal_id'] : ''
        const shared = Array.isArray(e['shared_files']) ? (e['shared_files'] as unknown[]).filter((x): x is string => typeof x === 'string') : still
        const known = session.view.intents.get(holderId)
        const intent: ViewIntent = known ?? { intent_id: holderId, principal_id: holderPid, objective: '', state: 'ACTIVE', files: shared }
        return { kind: 'lost', holders: [this.#holder(intent, shared)], why: 'another agent announced the file first' }
      }
      if (e?.error_code === 'SCOPE_FROZEN') return { kind: 'lost', holders: [], why: `the file is in a frozen scope (${sanitizeText(e.description ?? '', 200)}); resolve the conflict first (ack_conflict / escalate_conflict)` }
      return { kind: 'failed', why: `${e?.error_code ?? 'rejected'}: ${e?.description ?? ''}` }
    }
    client.autoIntentId = intentId
    client.autoFiles = new Set(union)
    client.renewedAt = this.#now()
    session.owned.set(intentId, { intent_id: intentId, principal_id: session.principalId, objective: session.view.intents.get(intentId)?.objective ?? this.#objective(key, clientName, agentId), state: 'ACTIVE', scope, claimed_by: null })
    return { kind: 'announced', intentId }
  }

  async #postEdit (req: Req, key: string, client: ClientState): Promise<HookReply> {
    const paths = this.#repoPaths(pathsField(req, false))
    this.#session.view.noteEdited(paths)
    const health = await this.#health()
    const live = this.#liveAuto(client)
    if (live !== undefined && health !== 'down' && this.#now() - client.renewedAt >= RENEW_INTERVAL_MS) {
      await this.#serial(client, async () => {
        try {
          const reply = await this.#session.client.request('INTENT_UPDATE', { intent_id: live.intent_id, ttl_sec: AUTO_INTENT_TTL_SEC })
          if (reply.accepted) client.renewedAt = this.#now()
        } catch (err) {
          this.#log.debug({ err: (err as Error).message }, 'auto intent renewal failed')
        }
      })
    }
    const consumer = stringField(req, 'consumer') ?? key
    const now = this.#now()
    let events: HookEvent[] = []
    if ((client.eventsAt === undefined || now - client.eventsAt >= POST_EDIT_EVENTS_INTERVAL_MS) && this.#session.view.hasEventsFor(consumer)) {
      events = this.#session.view.eventsFor(consumer, EVENTS_PER_REPLY)
      client.eventsAt = now
    }
    if (health !== 'ok') return { ...this.#failOpen('post_edit', health, client), events }
    return { ...emptyReply('post_edit', health, this.#session.view.age()), events }
  }

  async #context (req: Req, key: string, client: ClientState): Promise<HookReply> {
    const source = stringField(req, 'source', 32)
    const named = stringField(req, 'client_session_id')
    if (source === 'clear' && named !== undefined && named !== this.#defaultClient) {
      // /clear: the hooks now carry a new session id; the shim (spawned with the old one) follows it.
      const previous = this.#defaultClient === null ? undefined : this.#clients.get(this.#defaultClient)
      if (previous !== undefined && client.autoIntentId === undefined) {
        this.#clients.set(named, previous)
        if (this.#defaultClient !== null) this.#clients.delete(this.#defaultClient)
        client = previous
      }
      this.#defaultClient = named
      try {
        this.#onClientSession?.(named)
      } catch (err) {
        this.#log.warn({ err: (err as Error).message }, 'hook registry entry not updated')
      }
    }
    const health = await this.#health()
    const consumer = stringField(req, 'consumer') ?? key
    if (health !== 'ok') return { ...this.#failOpen('context', health, client), context: 'mpac coordinates this repository, but its coordinator is not answering now; call who_is_working before editing.' }
    this.#session.view.catchUp(consumer)
    return { ...emptyReply('context', health, this.#session.view.age()), context: buildDigest(this.#session) }
  }

  async #eventsSince (req: Req, key: string, client: ClientState): Promise<HookReply> {
    const consumer = stringField(req, 'consumer') ?? key
    const health = this.#quickHealth()
    const events = this.#session.view.eventsFor(consumer, EVENTS_PER_REPLY)
    if (health === 'down') return { ...this.#failOpen('events_since', health, client), events }
    return { ...emptyReply('events_since', health, this.#session.view.age()), events }
  }

  async #sessionEnd (client: ClientState): Promise<HookReply> {
    const id = client.autoIntentId
    if (id !== undefined && this.#session.client.state === 'open') {
      await this.#serial(client, async () => {
        try {
          await this.#session.client.request('INTENT_WITHDRAW', { intent_id: id, reason: 'client session ended' }, 1_000)
        } catch (err) {
          this.#log.debug({ err: (err as Error).message }, 'auto intent withdraw failed')
        }
      })
    }
    if (id !== undefined) this.#session.owned.delete(id)
    client.autoIntentId = undefined
    client.autoFiles.clear()
    return emptyReply('session_end', this.#quickHealth(), this.#session.view.age())
  }

  async #guardCheck (req: Req, client: ClientState): Promise<HookReply> {
    const paths = this.#repoPaths(pathsField(req, true))
    const health = await this.#health()
    if (health !== 'ok') return { ...this.#failOpen('guard_check', health, client), block: [], warn: [] }
    const block: string[] = []
    const warn: string[] = []
    const held: Array<[string, ViewIntent]> = []
    const suspended: Array<[string, ViewIntent]> = []
    const frozen: HookFrozen[] = []
    for (const path of paths) {
      const v = this.#verdict(path)
      if (v.kind === 'held') { block.push(path); for (const i of v.holders) held.push([path, i]) } else if (v.kind === 'frozen') { block.push(path); frozen.push(...v.conflicts) } else if (v.kind === 'suspended') { warn.push(path); for (const i of v.holders) suspended.push([path, i]) } else if (v.kind === 'free') warn.push(path)
    }
    return { ...emptyReply('guard_check', health, this.#session.view.age()), holders: this.#holders(held), frozen, suspended: this.#holders(suspended), block, warn }
  }
}
