/**
 * Configuration of the `mpac-mcp` shim (bridge.md §2): environment variables,
 * workspace detection, derived session id and port, local vs remote mode.
 * Everything is read from an `env` object passed in (never `process.env`
 * directly) and the result is frozen.
 */
import { createHash } from 'node:crypto'
import { existsSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import { homedir, userInfo } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { ConfigInvalid } from '../errors.js'
import { SCHEMA_LIMITS } from '../protocol/schemas.js'
import { derivePort, deriveSessionId } from '../protocol/workspace-id.js'

export type Env = Readonly<Record<string, string | undefined>>

export const DEFAULT_ROLES: readonly string[] = ['contributor']
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'conflict.ack',
  'conflict.escalate',
  'conflict.resolve',
  'intent.broadcast',
  'intent.claim',
  'intent.withdraw',
  'op.commit'
]
export const GOODBYE_DISPOSITIONS = ['withdraw', 'transfer', 'expire'] as const
export type GoodbyeDisposition = typeof GOODBYE_DISPOSITIONS[number]

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const

/**
 * Every environment variable of the shim (besides HOME, USER, XDG_STATE_HOME
 * and NODE_EXTRA_CA_CERTS) and the mode in which it has an effect. A
 * variable set for the other mode is reported by `modeWarnings`, except
 * MPAC_SESSION_ID in local mode, which is an error (the agent would join
 * another session than the one named).
 */
export const SHIM_VARIABLES = {
  MPAC_WORKSPACE_DIR: 'both',
  MPAC_COORDINATOR_URL: 'both',
  MPAC_SESSION_ID: 'remote',
  MPAC_COORDINATOR_TOKEN: 'remote',
  MPAC_AGENT_NAME: 'both',
  MPAC_PRINCIPAL_ID: 'both',
  MPAC_AGENT_ROLES: 'both',
  MPAC_AGENT_CAPABILITIES: 'both',
  MPAC_SIDECAR_HOST: 'local',
  MPAC_SIDECAR_PORT: 'local',
  MPAC_SIDECAR_IDLE_EXIT: 'local',
  MPAC_GOODBYE_DISPOSITION: 'both',
  MPAC_REQUEST_TIMEOUT_MS: 'both',
  MPAC_CLAIM_WAIT_MS: 'both',
  MPAC_LOG_LEVEL: 'both',
  MPAC_HOOKS: 'both'
} as const satisfies Record<string, 'both' | 'local' | 'remote'>

/**
 * A configuration value that cannot be used (MPAC_ERR_CONFIG_INVALID), found
 * before anything connects: the CLI reports it with exit code 2.
 */
export class ConfigError extends ConfigInvalid {
  constructor (message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

export interface Identity {
  readonly principalId: string
  readonly displayName: string
  readonly roles: readonly string[]
  readonly capabilities: readonly string[]
}

export interface ShimConfig {
  /** The local workspace (reported as `workspace_dir` by every tool, even in remote mode). */
  readonly workspaceDir: string
  readonly sessionId: string
  /** True when the session id came from `MPAC_SESSION_ID`, the URL path, or is derived in local mode. */
  readonly sessionIdPinned: boolean
  readonly isRemote: boolean
  /** The URL the client connects to. Local: `ws://<host>:<port>/session/<session id>`. Remote: `MPAC_COORDINATOR_URL` verbatim. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** Remote mode only: sent as `Authorization: Bearer` and as the HELLO credential. */
  readonly token: string | undefined
  readonly identity: Identity
  /** MPAC_PRINCIPAL_ID was set: the identity is used as is (no identity slot). */
  readonly principalExplicit: boolean
  readonly goodbyeDisposition: GoodbyeDisposition
  /** MPAC_ALLOW_WITHOUT_SECRET: the auto-started sidecar also admits clients without the local secret (the Python bridge). */
  readonly allowWithoutSecret: boolean
  /** Seconds without participants after which an auto-started sidecar exits; 0 = never. */
  readonly sidecarIdleExitSec: number
  /** Per-user state directory (`$XDG_STATE_HOME/mpac-mcp`). */
  readonly stateDir: string
  /** Safety-net timeout of one coordinator request, in ms (replies normally arrive in milliseconds). */
  readonly requestTimeoutMs: number
  /** How long take_over_task waits for the claim decision after the coordinator accepted the claim. */
  readonly claimWaitMs: number
  /** MPAC_HOOKS: serve the local hook endpoint (docs/agents.md "The local hook endpoint"); default on. */
  readonly hooks: boolean
}

/** Empty counts as unset everywhere (bridge.md §2.1 treated some empty values as real values: a bug). */
function read (env: Env, name: string): string | undefined {
  const value = env[name]
  if (value === undefined) return undefined
  const trimmed = value.trim()
  return trimmed === '' ? undefined : trimmed
}

function expandHome (path: string, env: Env): string {
  if (path === '~' || path.startsWith('~/')) {
    return join(read(env, 'HOME') ?? homedir(), path.slice(1))
  }
  return path
}

/** Comma-separated list: trimmed, blanks dropped, deduplicated, sorted; empty → fallback. */
export function parseList (value: string | undefined, fallback: readonly string[]): string[] {
  if (value === undefined) return [...fallback]
  const items = [...new Set(value.split(',').map(s => s.trim()).filter(s => s !== ''))].sort()
  return items.length === 0 ? [...fallback] : items
}

function parseInteger (env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name)
  if (raw === undefined) return fallback
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got ${JSON.stringify(raw)}`)
  const n = Number(raw)
  if (n < min || n > max) throw new ConfigError(`${name} must be an integer between ${min} and ${max}, got ${n}`)
  return n
}

function parseBool (env: Env, name: string, fallback = false): boolean {
  const raw = read(env, name)?.toLowerCase()
  if (raw === undefined) return fallback
  if (['1', 'true', 'yes', 'on'].includes(raw)) return true
  if (['0', 'false', 'no', 'off'].includes(raw)) return false
  throw new ConfigError(`${name} must be true or false, got ${JSON.stringify(raw)}`)
}

/**
 * Workspace detection (bridge.md §2.2): from `start`, resolved, walk up to the
 * first ancestor holding a `.git` entry (file or directory); without one, the
 * start directory itself.
 */
export function detectWorkspace (start: string): string {
  const origin = resolve(start)
  let dir = origin
  for (;;) {
    if (existsSync(join(dir, '.git'))) return dir
    const parent = dirname(dir)
    if (parent === dir) return origin
    dir = parent
  }
}

/**
 * Which workspace a call works on. The tool argument `repo_path` wins over
 * `MPAC_WORKSPACE_DIR` (the Python bridge did the reverse, contrary to its own
 * docs: bridge.md §9.12); both go through workspace detection, except that an
 * explicit `MPAC_WORKSPACE_DIR` is taken as is.
 */
export function resolveWorkspace (env: Env, cwd: string, repoPath?: string | null): string {
  if (repoPath !== undefined && repoPath !== null && repoPath.trim() !== '') {
    return detectWorkspace(expandHome(repoPath.trim(), env))
  }
  const fromEnv = read(env, 'MPAC_WORKSPACE_DIR')
  if (fromEnv !== undefined) return resolve(expandHome(fromEnv, env))
  return detectWorkspace(cwd)
}

function safeUserName (env: Env): string {
  const fromEnv = read(env, 'USER') ?? read(env, 'USERNAME')
  if (fromEnv !== undefined) return fromEnv
  try {
    return userInfo().username
  } catch {
    return 'user'
  }
}

/**
 * Default agent name: `mpac-mcp-<user>`. Stable across restarts (the Python
 * bridge used the pid, so every restart was a new identity: bridge.md §9.13).
 * Several agents of the same user in the same workspace get distinct
 * identities through identity slots (`mpac-mcp-<user>-2`, …: agent-slot.ts).
 */
export function defaultAgentName (env: Env): string {
  return `mpac-mcp-${safeUserName(env)}`
}

/**
 * Default principal id: `agent:<name>@<first 10 hex of SHA-1(workspace + "\n" + name)>`,
 * and `agent:<name>-<slot>@<same digest>` for identity slot ≥ 2 (agent-slot.ts:
 * several agents started with the same configuration on one machine). It
 * depends only on the workspace, the agent name and the slot, so a restarted
 * agent is the same principal: its re-HELLO reactivates its SUSPENDED intents
 * and the shim rebuilds its ownership from the coordinator's summary.
 */
export function defaultPrincipalId (workspaceDir: string, agentName: string, slot = 1): string {
  const digest = createHash('sha1').update(`${workspaceDir}\n${agentName}`, 'utf8').digest('hex').slice(0, 10)
  return slot === 1 ? `agent:${agentName}@${digest}` : `agent:${agentName}-${slot}@${digest}`
}

/** Session id carried by a coordinator URL path `/session/<id>` (empty segments dropped, trailing ones ignored). */
export function sessionFromUrlPath (pathname: string): string | undefined {
  const segments = pathname.split('/').filter(s => s !== '')
  if (segments[0] === 'session' && segments[1] !== undefined) return decodeURIComponent(segments[1])
  return undefined
}

/** MPAC_LOG_LEVEL, default `info`. */
export function logLevelOf (env: Env): string {
  const level = read(env, 'MPAC_LOG_LEVEL') ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`MPAC_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`)
  }
  return level
}

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

function checkLength (name: string, value: string, max: number): void {
  if (value.length > max) throw new ConfigError(`${name} must be at most ${max} characters, got ${value.length}`)
}

function checkItems (name: string, items: readonly string[]): void {
  if (items.length > SCHEMA_LIMITS.smallItems) throw new ConfigError(`${name} may list at most ${SCHEMA_LIMITS.smallItems} items, got ${items.length}`)
  for (const item of items) {
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(item)) throw new ConfigError(`${name}: ${JSON.stringify(item)} is not a valid name (letters, digits, . _ : -)`)
  }
}

/**
 * The workspace must be an existing directory: the local coordinator runs
 * in it. Names the setting that chose it (`repo_path` or MPAC_WORKSPACE_DIR).
 */
export function assertWorkspace (env: Env, config: ShimConfig, repoPath?: string | null): void {
  let isDir = false
  try {
    isDir = statSync(config.workspaceDir).isDirectory()
  } catch {
    // missing or unreadable
  }
  if (isDir) return
  const what = repoPath !== undefined && repoPath !== null && repoPath.trim() !== ''
    ? `repo_path ${JSON.stringify(repoPath)}`
    : read(env, 'MPAC_WORKSPACE_DIR') !== undefined ? `MPAC_WORKSPACE_DIR ${JSON.stringify(read(env, 'MPAC_WORKSPACE_DIR'))}` : 'the workspace'
  throw new ConfigError(`${what} is not an existing directory (${config.workspaceDir})`)
}

/** Variables set for the other mode: harmless (often inherited from the shell) but worth a line on stderr. */
export function modeWarnings (env: Env, config: ShimConfig): string[] {
  const mode = config.isRemote ? 'remote' : 'local'
  const warnings: string[] = []
  for (const [name, where] of Object.entries(SHIM_VARIABLES)) {
    if (where === 'both' || where === mode || read(env, name) === undefined) continue
    warnings.push(config.isRemote
      ? `${name} has no effect in remote mode (MPAC_COORDINATOR_URL is set); ignored`
      : `${name} has no effect in local mode (MPAC_COORDINATOR_URL is not set); ignored`)
  }
  return warnings
}

/** Start-up check of the whole environment: the configuration, the workspace, and what is ignored. Throws ConfigError. */
export function checkShimEnvironment (env: Env, cwd: string): { config: ShimConfig, warnings: string[] } {
  const config = loadShimConfig(env, { cwd })
  assertWorkspace(env, config)
  return { config, warnings: modeWarnings(env, config) }
}

export function stateDirFor (env: Env): string {
  const xdg = read(env, 'XDG_STATE_HOME')
  const base = xdg !== undefined ? resolve(expandHome(xdg, env)) : join(read(env, 'HOME') ?? homedir(), '.local', 'state')
  return join(base, 'mpac-mcp')
}

export interface LoadOptions {
  /** Where workspace detection starts when neither `repo_path` nor `MPAC_WORKSPACE_DIR` is given. */
  readonly cwd?: string
  /** The tool argument `repo_path`. */
  readonly repoPath?: string | null
}

export function loadShimConfig (env: Env, options: LoadOptions = {}): ShimConfig {
  logLevelOf(env)
  const workspaceDir = resolveWorkspace(env, options.cwd ?? process.cwd(), options.repoPath)
  const derivedSession = deriveSessionId(workspaceDir)

  const agentName = read(env, 'MPAC_AGENT_NAME') ?? defaultAgentName(env)
  const explicitPrincipal = read(env, 'MPAC_PRINCIPAL_ID')
  checkLength('MPAC_AGENT_NAME', agentName, SCHEMA_LIMITS.label)
  if (explicitPrincipal !== undefined) checkLength('MPAC_PRINCIPAL_ID', explicitPrincipal, SCHEMA_LIMITS.id)
  const identity: Identity = Object.freeze({
    principalId: explicitPrincipal ?? defaultPrincipalId(workspaceDir, agentName),
    displayName: agentName,
    roles: Object.freeze(parseList(read(env, 'MPAC_AGENT_ROLES'), DEFAULT_ROLES)),
    capabilities: Object.freeze(parseList(read(env, 'MPAC_AGENT_CAPABILITIES'), DEFAULT_CAPABILITIES))
  })

  checkItems('MPAC_AGENT_ROLES', identity.roles)
  checkItems('MPAC_AGENT_CAPABILITIES', identity.capabilities)

  const disposition = read(env, 'MPAC_GOODBYE_DISPOSITION') ?? 'withdraw'
  if (!(GOODBYE_DISPOSITIONS as readonly string[]).includes(disposition)) {
    throw new ConfigError(`MPAC_GOODBYE_DISPOSITION must be one of ${GOODBYE_DISPOSITIONS.join(', ')}, got ${JSON.stringify(disposition)}`)
  }

  const common = {
    workspaceDir,
    identity,
    principalExplicit: explicitPrincipal !== undefined,
    goodbyeDisposition: disposition as GoodbyeDisposition,
    allowWithoutSecret: parseBool(env, 'MPAC_ALLOW_WITHOUT_SECRET'),
    sidecarIdleExitSec: parseInteger(env, 'MPAC_SIDECAR_IDLE_EXIT', 600, 0, 86_400 * 365),
    stateDir: stateDirFor(env),
    requestTimeoutMs: parseInteger(env, 'MPAC_REQUEST_TIMEOUT_MS', 15_000, 100, 600_000),
    claimWaitMs: parseInteger(env, 'MPAC_CLAIM_WAIT_MS', 5_000, 0, 600_000),
    hooks: parseBool(env, 'MPAC_HOOKS', true)
  }

  const remoteUrl = read(env, 'MPAC_COORDINATOR_URL')
  const sessionOverride = read(env, 'MPAC_SESSION_ID')
  if (sessionOverride !== undefined && !SESSION_ID.test(sessionOverride)) {
    throw new ConfigError(`MPAC_SESSION_ID must be 1-128 of A-Z a-z 0-9 . _ : -, got ${JSON.stringify(sessionOverride)}`)
  }
  if (remoteUrl === undefined) {
    if (sessionOverride !== undefined) {
      throw new ConfigError(`MPAC_SESSION_ID has no effect in local mode (the session id is derived from the workspace: ${derivedSession}); unset it, or set MPAC_COORDINATOR_URL to join session ${JSON.stringify(sessionOverride)} on a coordinator`)
    }
    const host = read(env, 'MPAC_SIDECAR_HOST') ?? '127.0.0.1'
    if (isIP(host) === 0 && !HOST_NAME.test(host)) throw new ConfigError(`MPAC_SIDECAR_HOST must be an IP address or a host name, got ${JSON.stringify(host)}`)
    const port = parseInteger(env, 'MPAC_SIDECAR_PORT', derivePort(workspaceDir), 1, 65_535)
    const urlHost = host.includes(':') ? `[${host}]` : host
    return Object.freeze({
      ...common,
      sessionId: derivedSession,
      sessionIdPinned: true,
      isRemote: false,
      url: `ws://${urlHost}:${port}/session/${encodeURIComponent(derivedSession)}`,
      host,
      port,
      token: undefined
    })
  }

  let parsed: URL
  try {
    parsed = new URL(remoteUrl)
  } catch {
    throw new ConfigError(`MPAC_COORDINATOR_URL is not a URL: ${JSON.stringify(remoteUrl)}`)
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw new ConfigError(`MPAC_COORDINATOR_URL must start with ws:// or wss://, got ${JSON.stringify(parsed.protocol)}`)
  }
  const token = read(env, 'MPAC_COORDINATOR_TOKEN')
  // Sent as an HTTP header: a space or control character would make every connection attempt fail.
  if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) throw new ConfigError('MPAC_COORDINATOR_TOKEN must be printable ASCII without spaces (the value is not shown)')
  const pinnedSession = sessionOverride ?? sessionFromUrlPath(parsed.pathname)
  return Object.freeze({
    ...common,
    sessionId: pinnedSession ?? derivedSession,
    sessionIdPinned: pinnedSession !== undefined,
    isRemote: true,
    url: remoteUrl,
    host: parsed.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: parsed.port !== '' ? Number(parsed.port) : (parsed.protocol === 'wss:' ? 443 : 80),
    token
  })
}
