/**
 * One shim's presence in one coordinator session: the configured client,
 * intent ownership rebuilt from the coordinator's SESSION_SUMMARY (active
 * intents whose `principal_id` is ours) on every (re)connect and every
 * summary, ids, and the pool that maps a workspace (`repo_path`) to its
 * session.
 */
import { randomBytes } from 'node:crypto'
import { isAbsolute, relative, sep } from 'node:path'
import type { Logger } from 'pino'
import { CoordinatorClient, type Envelope, type Frame, type SessionInfo } from './client.js'
import { claimAgentSlot } from './agent-slot.js'
import { assertWorkspace, loadShimConfig, type Env, type ShimConfig } from './config.js'
import { ensureLocalSidecar, localSecretOf, verifyLocalConnection } from './sidecar.js'
import { PathOutsideRepo, type MpacError } from '../errors.js'
import { SessionView } from './hooks/view.js'

export interface IntentRecord {
  readonly intent_id: string
  readonly principal_id: string
  readonly objective: string
  readonly state: string
  readonly scope: unknown
  readonly claimed_by?: string | null
  readonly [key: string]: unknown
}

export interface ConflictRecord {
  readonly conflict_id: string
  readonly state?: string
  readonly category?: string
  readonly intent_a?: string
  readonly intent_b?: string
  readonly principal_a?: string
  readonly principal_b?: string
  readonly [key: string]: unknown
}

export interface ParticipantRecord {
  readonly principal_id: string
  readonly display_name?: string
  readonly roles?: readonly string[]
  readonly status?: string
  readonly is_available?: boolean
  readonly [key: string]: unknown
}

export interface Summary {
  readonly session_id: string
  readonly participant_count: number
  readonly active_intent_count: number
  readonly open_conflict_count: number
  readonly participants: ParticipantRecord[]
  readonly active_intents: IntentRecord[]
  readonly open_conflicts: ConflictRecord[]
}

function asArray<T> (value: unknown): T[] {
  return Array.isArray(value) ? value as T[] : []
}

function asCount (value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback
}

export function parseSummary (frame: Frame): Summary {
  const s = (frame['session'] ?? {}) as Frame
  const participants = asArray<ParticipantRecord>(s['participants'])
  const activeIntents = asArray<IntentRecord>(s['active_intents'])
  const openConflicts = asArray<ConflictRecord>(s['open_conflicts'])
  return {
    session_id: typeof s['session_id'] === 'string' ? s['session_id'] : '',
    participant_count: asCount(s['participant_count'], participants.length),
    active_intent_count: asCount(s['active_intent_count'], activeIntents.length),
    open_conflict_count: asCount(s['open_conflict_count'], openConflicts.length),
    participants,
    active_intents: activeIntents,
    open_conflicts: openConflicts
  }
}

/**
 * Normalises a file path the agent gives: an absolute path inside the
 * workspace becomes workspace-relative; `./`, repeated and trailing `/` are
 * dropped (protocol.md §6.2), so `./a.py` and `a.py` name the same file.
 */
export function normalisePath (workspaceDir: string, path: string): string {
  let p = path.trim()
  if (isAbsolute(p)) {
    const rel = relative(workspaceDir, p)
    if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) p = rel
  }
  p = p.split(sep).join('/')
  p = p.replace(/\/{2,}/g, '/')
  while (p.startsWith('./')) p = p.slice(2)
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p
}

/**
 * A file argument as a repository path (normalisePath), or an MpacError
 * (MPAC_ERR_PATH_OUTSIDE_REPO) naming the rule when it leaves the
 * repository (`..` segments, an absolute path elsewhere) or names VCS
 * metadata (`.git`, `.hg`, `.svn` at any depth). Such a path is never a
 * file the agents share, so no intent is ever held on it.
 */
export function toRepoPath (workspaceDir: string, path: string): string {
  const p = normalisePath(workspaceDir, path)
  const outside = (why: string): MpacError => new PathOutsideRepo(JSON.stringify(path), why, { hint: `name files relative to the repository root ${workspaceDir}` })
  if (isAbsolute(p) || p.startsWith('/') || /^[A-Za-z]:/.test(p)) throw outside('is outside the repository (an absolute path elsewhere)')
  const segments = p.split('/')
  if (segments.includes('..')) throw outside('leaves the repository (a ".." segment)')
  const vcs = segments.find(s => ['.git', '.hg', '.svn'].includes(s.toLowerCase()))
  if (vcs !== undefined) throw outside(`is VCS metadata (${vcs}); the coordinator never reads or writes it`)
  return p
}

/** toRepoPath for each file: deduplicated, sorted, blanks dropped. */
export function toRepoFiles (workspaceDir: string, files: readonly string[]): string[] {
  return [...new Set(files.map(f => f.trim()).filter(f => f !== '' && f !== '.').map(f => toRepoPath(workspaceDir, f)).filter(f => f !== '' && f !== '.'))].sort()
}

/** Deduplicated, sorted, blanks dropped, normalised. */
export function normaliseFiles (workspaceDir: string, files: readonly string[]): string[] {
  return [...new Set(files.map(f => normalisePath(workspaceDir, f)).filter(f => f !== '' && f !== '.'))].sort()
}

/** Resources of a scope, normalised; undefined when the scope has none (another kind). */
export function scopeFiles (scope: unknown): string[] | undefined {
  if (scope === null || typeof scope !== 'object') return undefined
  const resources = (scope as Frame)['resources']
  if (!Array.isArray(resources)) return undefined
  return resources.filter((r): r is string => typeof r === 'string').map(r => normalisePath('/', r))
}

export interface SessionOptions {
  readonly logger: Logger
  /** Client overrides (tests, bench). */
  readonly heartbeatIntervalMs?: number
  readonly sidecarStartTimeoutMs?: number
  readonly env?: NodeJS.ProcessEnv
  /** Clock of the session view (tests). */
  readonly now?: () => number
}

export class ShimSession {
  readonly config: ShimConfig
  readonly client: CoordinatorClient
  readonly #log: Logger
  /** intent_id → record, for intents of ours that are not terminal. */
  readonly owned = new Map<string, IntentRecord>()
  /** Latest FILE_UPDATED per path. */
  readonly fileUpdates = new Map<string, Frame>()
  readonly #slug: string
  /** Claims this session sent: claim_id → the intent an approval creates for us. */
  readonly #claims = new Map<string, IntentRecord>()
  readonly #onClose: (() => void) | undefined
  /** The live view of the session the hooks are answered from (hooks/view.ts). */
  readonly view: SessionView
  #rebaseTimer: NodeJS.Timeout | undefined

  constructor (config: ShimConfig, options: SessionOptions & { onClose?: () => void }) {
    this.config = config
    this.#onClose = options.onClose
    this.#log = options.logger.child({ sessionId: config.sessionId })
    this.view = new SessionView(config.identity.principalId, options.now ?? Date.now)
    this.#slug = config.identity.displayName.toLowerCase().replace(/\s+/g, '-').replace(/[^a-z0-9._-]/g, '') || 'agent'
    this.client = new CoordinatorClient({
      url: config.url,
      sessionId: config.sessionId,
      sessionIdPinned: config.sessionIdPinned,
      identity: config.identity,
      token: config.token,
      logger: this.#log,
      requestTimeoutMs: config.requestTimeoutMs,
      ...(options.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
      ...(config.isRemote
        ? {}
        : {
            helloSecret: () => localSecretOf(config).secret,
            verifyConnection: query => verifyLocalConnection(config, query),
            beforeConnect: () => ensureLocalSidecar(config, this.#log, {
              ...(options.sidecarStartTimeoutMs !== undefined ? { startTimeoutMs: options.sidecarStartTimeoutMs } : {}),
              ...(options.env !== undefined ? { env: options.env } : {})
            })
          }),
      onConnected: info => this.#onConnected(info),
      onEnvelope: env => this.#onEnvelope(env),
      // The view is re-based by every summary the moment it arrives, so a relay that follows it is applied after it.
      onSidebandFrame: frame => {
        if (frame['type'] === 'SESSION_SUMMARY_RESPONSE') this.view.rebase((frame['session'] ?? {}) as Frame)
      },
      onPush: frame => {
        if (frame['type'] === 'FILE_UPDATED' && typeof frame['path'] === 'string') this.fileUpdates.set(frame['path'], frame)
      }
    })
  }

  get principalId (): string { return this.config.identity.principalId }
  /** The session id in use (adopted from SESSION_INFO when the URL did not pin one). */
  get sessionId (): string { return this.client.sessionId }

  /** Result context every tool reports. */
  context (): { workspace_dir: string, session_id: string } {
    return { workspace_dir: this.config.workspaceDir, session_id: this.sessionId }
  }

  /** `<kind>-<agent name>-<8 hex>` (bridge.md §1.1). */
  newId (kind: 'intent' | 'op' | 'claim' | 'resolution'): string {
    return `${kind}-${this.#slug}-${randomBytes(4).toString('hex')}`
  }

  /** A claim id and its replacement intent id: `claim-<name>-<8 hex>`, `intent-<name>-claim-<same 8 hex>` (bridge.md §1.1). */
  newClaimIds (): { claimId: string, newIntentId: string } {
    const hex = randomBytes(4).toString('hex')
    return { claimId: `claim-${this.#slug}-${hex}`, newIntentId: `intent-${this.#slug}-claim-${hex}` }
  }

  /** Remembers a claim we sent, so its approval (even one arriving after take_over_task returned) makes the new intent ours. */
  trackClaim (claimId: string, intent: IntentRecord): void {
    this.#claims.set(claimId, intent)
  }

  async ready (): Promise<void> {
    await this.client.ensureConnected()
  }

  /** SESSION_SUMMARY on the persistent connection; reconciles ownership with it. */
  async summary (): Promise<Summary> {
    const summary = parseSummary(await this.client.query({ type: 'SESSION_SUMMARY' }))
    this.#reconcile(summary)
    return summary
  }

  /**
   * A summary shortly after a relay whose effects the view cannot derive
   * (view.apply said so), one at a time, only while hooks use the view (a
   * hook asked in the last minute): agents without hooks send no extra frame.
   */
  #rebaseSoon (): void {
    if (this.#rebaseTimer !== undefined || !this.view.usedWithin(60_000)) return
    this.#rebaseTimer = setTimeout(() => {
      this.#rebaseTimer = undefined
      if (this.client.state !== 'open') return
      this.summary().catch(err => this.#log.debug({ err: (err as Error).message }, 'view rebase failed'))
    }, 20)
    this.#rebaseTimer.unref()
  }

  async readFile (path: string): Promise<Frame> {
    return this.client.query({ type: 'FILE_READ', path })
  }

  /** Is the intent ours and not terminal? Refreshes from the coordinator when the local view says no. */
  async owns (intentId: string): Promise<boolean> {
    if (this.owned.has(intentId)) return true
    await this.summary()
    return this.owned.has(intentId)
  }

  /**
   * GOODBYE with the configured disposition, then close. No `active_intents`
   * list: the coordinator then applies the disposition to every live intent
   * of ours it holds, including any our local view has not caught up with.
   */
  async close (): Promise<void> {
    if (this.#rebaseTimer !== undefined) clearTimeout(this.#rebaseTimer)
    try {
      await this.client.close({ disposition: this.config.goodbyeDisposition, activeIntents: [] })
    } finally {
      this.#onClose?.()
    }
  }

  async #onConnected (info: SessionInfo): Promise<void> {
    this.#log.debug({ grantedRoles: info.granted_roles }, 'admitted')
    await this.summary()
  }

  #reconcile (summary: Summary): void {
    this.owned.clear()
    for (const intent of summary.active_intents) {
      if (intent.principal_id === this.principalId) this.owned.set(intent.intent_id, intent)
    }
  }

  #onEnvelope (env: Envelope): void {
    if (this.view.apply(env)) this.#rebaseSoon()
    const p = env.payload
    if (env.message_type === 'INTENT_WITHDRAW' && env.sender?.principal_id === this.principalId && typeof p['intent_id'] === 'string') {
      this.owned.delete(p['intent_id'])
    } else if (env.message_type === 'INTENT_CLAIM_STATUS' && typeof p['claim_id'] === 'string') {
      const ours = this.#claims.get(p['claim_id'])
      if (ours !== undefined && p['decision'] !== undefined) this.#claims.delete(p['claim_id'])
      if (p['decision'] === 'approved') {
        // Someone (maybe us) took over an intent: the original is no longer ours to commit on.
        if (typeof p['original_intent_id'] === 'string') this.owned.delete(p['original_intent_id'])
        if (ours !== undefined) this.owned.set(ours.intent_id, ours)
      }
    }
  }
}

/** Sessions by (url, session, principal): `repo_path` may point a call at another workspace. */
export class SessionPool {
  readonly #env: Env
  readonly #cwd: string
  readonly #options: SessionOptions
  readonly #sessions = new Map<string, ShimSession>()

  constructor (env: Env, cwd: string, options: SessionOptions) {
    this.#env = env
    this.#cwd = cwd
    this.#options = options
  }

  /** The configuration a call with this `repo_path` uses (throws ConfigError). */
  configFor (repoPath?: string | null): ShimConfig {
    const config = loadShimConfig(this.#env, { cwd: this.#cwd, repoPath: repoPath ?? null })
    assertWorkspace(this.#env, config, repoPath)
    return config
  }

  get (repoPath?: string | null): ShimSession {
    const config = this.configFor(repoPath)
    const key = `${config.url}\n${config.sessionId}\n${config.identity.principalId}`
    let session = this.#sessions.get(key)
    if (session === undefined) {
      // Without MPAC_PRINCIPAL_ID: the lowest identity slot no live shim holds (agent-slot.ts).
      const slot = config.principalExplicit ? undefined : claimAgentSlot(config.stateDir, config.workspaceDir, config.identity)
      const effective = slot === undefined || slot.slot === 1 ? config : Object.freeze({ ...config, identity: slot.identity })
      session = new ShimSession(effective, { ...this.#options, ...(slot !== undefined ? { onClose: () => slot.release() } : {}) })
      this.#sessions.set(key, session)
    }
    return session
  }

  all (): ShimSession[] {
    return [...this.#sessions.values()]
  }

  async closeAll (): Promise<void> {
    await Promise.allSettled(this.all().map(s => s.close()))
  }
}
