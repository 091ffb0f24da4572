import { createSecureContext } from 'node:tls'
import { readFileSync, statSync } from 'node:fs'
import { isIP } from 'node:net'
import { homedir, hostname } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { z } from 'zod'
import { CORE_DEFAULTS } from '../coordinator/settings.js'
import type { BackendHealthPolicy } from '../coordinator/types.js'
import { TokenTable } from './token-table.js'
import { normalizeOrigin, splitHost } from './upgrade-guard.js'
import { LocalSecretError, readLocalSecret } from '../local-secret.js'
import { deriveSessionId } from '../protocol/workspace-id.js'
import { DEFAULT_LEASE, leaseTimingsProblem } from '../store/ownership.js'
import { DEFAULT_STORE_LANES } from '../store/fleet-types.js'

/**
 * Configuration of `mpac-mcp-sidecar`: every setting is a flag and an
 * `MPAC_*` environment variable (flags beat env; an empty env value counts as
 * unset). Parsed once, validated, frozen. See docs/coordinator.md.
 */

export interface ServerLimits {
  /** Largest WebSocket frame accepted; bigger → close 1009. */
  readonly maxFrameBytes: number
  /** Seconds a connection may stay without an admitted HELLO; then close 4408. */
  readonly prehelloTimeoutSec: number
  /** Frames a connection may send before an admitted HELLO; more → close 4429. */
  readonly prehelloMaxFrames: number
  /** Sustained frames per second per connection (token bucket, burst = one second's worth). */
  readonly maxMsgsPerSec: number
  readonly maxSessions: number
  readonly maxSessionsPerToken: number
  readonly maxParticipants: number
  readonly maxWorkspaceBytes: number
  /** Bytes queued for one connection above which it is a slow consumer → close 4429. */
  readonly maxBufferedBytes: number
  /** Seconds a client may take to send the request headers (Node's headersTimeout; slowloris). */
  readonly headersTimeoutSec: number
  /** Seconds a client may take to send a whole HTTP request (Node's requestTimeout). */
  readonly requestTimeoutSec: number
  /** Open connections that have not been admitted by a HELLO yet, in total; more upgrades → HTTP 503. */
  readonly maxPrehelloConnections: number
  /** The same, per client address; more upgrades from that address → HTTP 429. */
  readonly maxPrehelloPerAddress: number
  /** Live intents per participant / per session, resources per scope, open conflicts per session (core: PROTOCOL_ERROR). */
  readonly maxIntentsPerParticipant: number
  readonly maxIntentsPerSession: number
  readonly maxScopeFiles: number
  readonly maxOpenConflicts: number
  /** Open connections per token (HTTP 429 before the upgrade with a bearer header, else close 4429 at HELLO). */
  readonly maxConnectionsPerToken: number
  /** Open connections per source address (HTTP 429 before the upgrade). */
  readonly maxConnectionsPerAddress: number
  /** Sessions created from one source address since the process started (close 4429). */
  readonly maxSessionsPerAddress: number
  /** Sustained frames per second per token across all its connections (token bucket); authenticated profile. */
  readonly maxMsgsPerSecPerToken: number
  /** Journal bytes one session may append per minute; beyond, inputs get INTENT_BACKOFF with retry_after_sec. */
  readonly maxJournalBytesPerMin: number
  /** Open dashboard SSE streams in total / per token (HTTP 503 / 429 beyond). */
  readonly maxDashboardStreams: number
  readonly maxDashboardStreamsPerToken: number
}

export interface ServerConfig {
  readonly host: string
  readonly port: number
  readonly mode: 'single' | 'multi'
  /** Single-session mode: the one session's id. */
  readonly sessionId: string | undefined
  /** Single-session workspace directory (absolute), when serving a directory on disk. */
  readonly workspaceDir: string | undefined
  readonly securityProfile: 'open' | 'authenticated'
  readonly tokenTable: TokenTable | undefined
  /** Set when the table comes from a file (reloaded on change and SIGHUP). */
  readonly tokenTableFile: string | undefined
  readonly metricsToken: string | undefined
  /** A second listener on 127.0.0.1 serving only GET /metrics, without a token (0 = any free port). */
  readonly metricsPort: number | undefined
  /** Serve /metrics on the main listener without a token (explicit opt-in). */
  readonly metricsPublic: boolean
  /** Node serves TLS itself with these files (paths). */
  readonly tls: { readonly certFile: string, readonly keyFile: string } | undefined
  /** TLS is terminated by a proxy in front of us (banner shows wss://). */
  readonly tlsByProxy: boolean
  readonly allowOpen: boolean
  readonly store: 'sqlite' | 'memory' | 'postgres'
  /** Fleet mode (`--store postgres`): the PostgreSQL store and this node's lease (docs/fleet.md). */
  readonly fleet: FleetConfig | undefined
  /** SQLite `synchronous`: FULL syncs every group commit; NORMAL (WAL) survives process crashes, not power loss. */
  readonly storeSync: 'full' | 'normal'
  readonly dataDir: string
  readonly trustProxy: boolean | string | number
  /** Browser origins (`scheme://host[:port]`) whose WebSocket upgrades are accepted; any other Origin → 403. */
  readonly allowedOrigins: readonly string[]
  /** Host header values accepted besides the server's own addresses (`name`, `name:port`, `*`); others → 403. */
  readonly allowedHosts: readonly string[]
  /** Local mode (the coordinator the shim auto-starts): the secret clients must present (src/local-secret.ts). */
  readonly localSecret: string | undefined
  /** With a local secret: also admit clients that do not present it (the Python bridge). */
  readonly allowWithoutSecret: boolean
  /** Stop the process after this many seconds without any connection (auto-started local sidecar). */
  readonly idleExitSec: number | undefined
  readonly complianceProfile: 'core' | 'governance'
  readonly executionModel: 'post_commit' | 'pre_commit'
  readonly unavailabilityTimeoutSec: number
  readonly resolutionTimeoutSec: number
  readonly claimGraceSec: number
  /** protocol.md §8.5 progressive degradation of frozen scopes (phases 2 and 3); off by default. */
  readonly frozenScopePhases: boolean
  readonly heartbeatIntervalSec: number
  readonly backendHealthPolicy: BackendHealthPolicy | undefined
  /** Slack given to every participant after a restart before liveness applies. */
  readonly restartGraceSec: number
  /** A session without connections for this long is unloaded from memory (snapshot kept). */
  readonly sessionIdleUnloadSec: number
  /** Closed sessions are deleted from the store after this long. */
  readonly closedRetentionSec: number
  /** A session without connections for this long is closed and deleted from the store (0 = never). Multi-session only. */
  readonly idleRetentionSec: number
  readonly limits: ServerLimits
  readonly logLevel: string
  /** Serve the web dashboard at /dashboard (docs/dashboard.md). */
  readonly dashboard: boolean
  /** Why the dashboard is off by default here (logged at start), when it is. */
  readonly dashboardOffReason: string | undefined
  /** Fleet mode's routing (--store postgres; docs/fleet.md). Unused on one machine. */
  readonly routing: FleetRouting
}

export interface FleetRouting {
  /** fly: answer non-owned upgrades with fly-replay; hash: HAProxy's consistent hash + cooperative handover; none: one node on PostgreSQL. */
  readonly router: 'fly' | 'hash' | 'none'
  /** How long an upgrade waits for the owner to release (or its lease to expire) before 503. */
  readonly claimWaitSec: number
  /** The `timeout=` of fly-replay: how long Fly Proxy tries the owner. */
  readonly replayTimeoutSec: number
}

export interface FleetConfig {
  /** `--database-url`, `MPAC_DATABASE_URL`, else `DATABASE_URL` (as Fly sets it on attach). */
  readonly databaseUrl: string
  /** `--database-listen-url`: the direct URL for LISTEN (default the database URL). */
  readonly databaseListenUrl: string
  /** `--node-id`: the lease identity (default FLY_MACHINE_ID, else hostname:port). */
  readonly nodeId: string
  /** `--node-addr`: shown to operators (default host:port). */
  readonly nodeAddr: string
  readonly leaseTtlMs: number
  readonly leaseRenewMs: number
  readonly leaseMarginMs: number
  /** `--store-lanes`: PostgreSQL connections for group commits. */
  readonly storeLanes: number
}

export interface ConfigError { readonly setting: string, readonly message: string }
export type Result<T, E> = { readonly ok: true, readonly value: T } | { readonly ok: false, readonly error: E }

type Kind = 'bool' | 'string'

/** The coordinator's defaults: the settings below that configure the core take them (and print them), so each is written once. */
const CORE = CORE_DEFAULTS
interface SettingSpec { readonly flag: string, readonly env: string, readonly kind: Kind, readonly help: string }

/** Every setting: flag, environment twin, kind and one line of help. The order is the help order. */
export const SETTINGS: readonly SettingSpec[] = [
  { flag: 'host', env: 'MPAC_SIDECAR_HOST', kind: 'string', help: 'bind address (default 127.0.0.1)' },
  { flag: 'port', env: 'MPAC_SIDECAR_PORT', kind: 'string', help: 'TCP port, 0 = any free port (default 8766)' },
  { flag: 'multi-session', env: 'MPAC_MULTI_SESSION', kind: 'bool', help: 'serve many sessions at /session/:id (the default unless --workspace or --session-id)' },
  { flag: 'session-id', env: 'MPAC_SIDECAR_SESSION_ID', kind: 'string', help: 'single-session mode: the session id (default derived from --workspace)' },
  { flag: 'workspace', env: 'MPAC_SIDECAR_WORKSPACE', kind: 'string', help: 'single-session mode: serve this directory (read-through, write-through)' },
  { flag: 'security-profile', env: 'MPAC_SECURITY_PROFILE', kind: 'string', help: 'open | authenticated (default: authenticated with a token table, else open)' },
  { flag: 'token-table-file', env: 'MPAC_TOKEN_TABLE_FILE', kind: 'string', help: 'JSON token table file, reloaded on change and SIGHUP (or MPAC_TOKEN_TABLE with the JSON itself)' },
  { flag: 'tls', env: 'MPAC_TLS', kind: 'bool', help: 'clients use wss://: with --tls-cert/--tls-key Node serves TLS; with --trust-proxy a proxy terminates it' },
  { flag: 'tls-cert', env: 'MPAC_TLS_CERT', kind: 'string', help: 'PEM certificate file' },
  { flag: 'tls-key', env: 'MPAC_TLS_KEY', kind: 'string', help: 'PEM private key file' },
  { flag: 'allow-open', env: 'MPAC_ALLOW_OPEN', kind: 'bool', help: 'allow binding a non-loopback address without a token table' },
  { flag: 'data-dir', env: 'MPAC_DATA_DIR', kind: 'string', help: 'where sessions are stored (default $XDG_STATE_HOME/mpac-mcp/server, or …/local in single-session mode; ~/.local/state when XDG_STATE_HOME is unset)' },
  { flag: 'store', env: 'MPAC_STORE', kind: 'string', help: 'sqlite | memory (default sqlite)' },
  { flag: 'store-sync', env: 'MPAC_STORE_SYNC', kind: 'string', help: 'full (fsync every group commit, survives power loss) | normal (survives process crashes) (default full)' },
  { flag: 'database-url', env: 'MPAC_DATABASE_URL', kind: 'string', help: 'fleet mode (--store postgres): postgres://user@host:port/db (else DATABASE_URL)' },
  { flag: 'database-listen-url', env: 'MPAC_DATABASE_LISTEN_URL', kind: 'string', help: 'fleet mode: a direct URL for LISTEN when --database-url is a transaction-mode pooler (default the database URL)' },
  { flag: 'node-id', env: 'MPAC_NODE_ID', kind: 'string', help: 'fleet mode: this node\'s lease identity (default FLY_MACHINE_ID, else hostname:port)' },
  { flag: 'node-addr', env: 'MPAC_NODE_ADDR', kind: 'string', help: 'fleet mode: this node\'s address as shown to operators (default host:port)' },
  { flag: 'lease-ttl', env: 'MPAC_LEASE_TTL', kind: 'string', help: `fleet mode: seconds a lease renewal lasts on the PostgreSQL clock, at least 3 × --lease-renew (default ${DEFAULT_LEASE.ttlMs / 1000})` },
  { flag: 'lease-renew', env: 'MPAC_LEASE_RENEW', kind: 'string', help: `fleet mode: seconds between lease renewals (default ${DEFAULT_LEASE.renewMs / 1000})` },
  { flag: 'lease-margin', env: 'MPAC_LEASE_MARGIN', kind: 'string', help: `fleet mode: the node stops delivering this many seconds before its lease could expire, below TTL − renew (default ${DEFAULT_LEASE.marginMs / 1000})` },
  { flag: 'store-lanes', env: 'MPAC_STORE_LANES', kind: 'string', help: `fleet mode: PostgreSQL connections for group commits, one batch in flight each (default ${DEFAULT_STORE_LANES})` },
  { flag: 'trust-proxy', env: 'MPAC_TRUST_PROXY', kind: 'string', help: 'proxy address(es) to trust for X-Forwarded-*, a hop count (1 = the nearest proxy), or true/false (default false)' },
  { flag: 'idle-exit', env: 'MPAC_IDLE_EXIT', kind: 'string', help: 'exit after SEC seconds without any connection (default: never)' },
  { flag: 'compliance-profile', env: 'MPAC_COMPLIANCE_PROFILE', kind: 'string', help: `core | governance (default ${CORE.complianceProfile})` },
  { flag: 'execution-model', env: 'MPAC_EXECUTION_MODEL', kind: 'string', help: `post_commit | pre_commit (pre_commit needs governance; default ${CORE.executionModel})` },
  { flag: 'unavailability-timeout', env: 'MPAC_UNAVAILABILITY_TIMEOUT', kind: 'string', help: `seconds of silence before a participant is unavailable (default ${CORE.unavailabilityTimeoutSec})` },
  { flag: 'resolution-timeout', env: 'MPAC_RESOLUTION_TIMEOUT', kind: 'string', help: `seconds before an unresolved conflict escalates (default ${CORE.resolutionTimeoutSec}, 0 = never)` },
  { flag: 'claim-grace', env: 'MPAC_CLAIM_GRACE', kind: 'string', help: `seconds a claim waits for the original owner (default ${CORE.intentClaimGraceSec})` },
  { flag: 'frozen-scope-phases', env: 'MPAC_FROZEN_SCOPE_PHASES', kind: 'bool', help: `progressive degradation of a frozen scope: after ${CORE.frozenScopePhases.phase1Sec} s escalate or let the strictly higher-priority side through, after ${CORE.frozenScopePhases.phase1Sec + CORE.frozenScopePhases.phase2Sec} s first committer wins (default off)` },
  { flag: 'heartbeat-interval', env: 'MPAC_HEARTBEAT_INTERVAL', kind: 'string', help: `seconds between COORDINATOR_STATUS heartbeats (default ${CORE.heartbeatIntervalSec})` },
  { flag: 'backend-health-policy', env: 'MPAC_BACKEND_HEALTH_POLICY', kind: 'string', help: 'backend health policy as JSON, or @file' },
  { flag: 'restart-grace', env: 'MPAC_RESTART_GRACE', kind: 'string', help: 'seconds of liveness slack after a restart (default 30)' },
  { flag: 'session-idle-unload', env: 'MPAC_SESSION_IDLE_UNLOAD', kind: 'string', help: 'unload a session without connections after SEC seconds (default 600)' },
  { flag: 'closed-retention', env: 'MPAC_CLOSED_RETENTION', kind: 'string', help: 'delete closed sessions after SEC seconds (default 86400)' },
  { flag: 'max-frame-bytes', env: 'MPAC_MAX_FRAME_BYTES', kind: 'string', help: 'largest frame accepted (default 1048576)' },
  { flag: 'prehello-timeout', env: 'MPAC_PREHELLO_TIMEOUT', kind: 'string', help: 'seconds a connection may stay without HELLO (default 10)' },
  { flag: 'prehello-max-frames', env: 'MPAC_PREHELLO_MAX_FRAMES', kind: 'string', help: 'frames allowed before HELLO (default 16)' },
  { flag: 'max-msgs-per-sec', env: 'MPAC_MAX_MSGS_PER_SEC', kind: 'string', help: 'frames per second per connection (default 200)' },
  { flag: 'max-sessions', env: 'MPAC_MAX_SESSIONS', kind: 'string', help: 'sessions per server (default 1000)' },
  { flag: 'max-sessions-per-token', env: 'MPAC_MAX_SESSIONS_PER_TOKEN', kind: 'string', help: 'sessions one token may create (default 50)' },
  { flag: 'max-participants', env: 'MPAC_MAX_PARTICIPANTS', kind: 'string', help: `participants per session (default ${CORE.maxParticipants})` },
  { flag: 'max-workspace-bytes', env: 'MPAC_MAX_WORKSPACE_BYTES', kind: 'string', help: `file bytes per session (default ${CORE.maxWorkspaceBytes})` },
  { flag: 'max-buffered-bytes', env: 'MPAC_MAX_BUFFERED_BYTES', kind: 'string', help: 'send buffer per connection before it is cut as a slow consumer (default 4194304)' },
  { flag: 'headers-timeout', env: 'MPAC_HEADERS_TIMEOUT', kind: 'string', help: 'seconds a client may take to send its request headers (default 10)' },
  { flag: 'request-timeout', env: 'MPAC_REQUEST_TIMEOUT', kind: 'string', help: 'seconds a client may take to send a whole HTTP request (default 30)' },
  { flag: 'max-prehello-connections', env: 'MPAC_MAX_PREHELLO_CONNECTIONS', kind: 'string', help: 'open connections not yet admitted by a HELLO, in total; more upgrades get HTTP 503 (default 512)' },
  { flag: 'max-prehello-per-address', env: 'MPAC_MAX_PREHELLO_PER_ADDRESS', kind: 'string', help: 'the same per client address; more upgrades get HTTP 429 (default 64)' },
  { flag: 'metrics-port', env: 'MPAC_METRICS_PORT', kind: 'string', help: 'also serve GET /metrics without a token on 127.0.0.1:PORT (0 = any free port)' },
  { flag: 'metrics-public', env: 'MPAC_METRICS_PUBLIC', kind: 'bool', help: 'serve GET /metrics on the main listener without a token (default: only with MPAC_METRICS_TOKEN)' },
  { flag: 'max-intents-per-participant', env: 'MPAC_MAX_INTENTS_PER_PARTICIPANT', kind: 'string', help: `live intents one participant may hold (default ${CORE.maxIntentsPerParticipant})` },
  { flag: 'max-intents-per-session', env: 'MPAC_MAX_INTENTS_PER_SESSION', kind: 'string', help: `live intents per session (default ${CORE.maxIntentsPerSession})` },
  { flag: 'max-scope-files', env: 'MPAC_MAX_SCOPE_FILES', kind: 'string', help: `files (resources, entities, task ids) in one intent scope (default ${CORE.maxScopeFiles})` },
  { flag: 'max-open-conflicts', env: 'MPAC_MAX_OPEN_CONFLICTS', kind: 'string', help: `open conflicts per session (default ${CORE.maxOpenConflicts})` },
  { flag: 'max-connections-per-token', env: 'MPAC_MAX_CONNECTIONS_PER_TOKEN', kind: 'string', help: 'open connections per token (default 512)' },
  { flag: 'max-connections-per-address', env: 'MPAC_MAX_CONNECTIONS_PER_ADDRESS', kind: 'string', help: 'open connections per client address (default 512)' },
  { flag: 'max-sessions-per-address', env: 'MPAC_MAX_SESSIONS_PER_ADDRESS', kind: 'string', help: 'sessions one client address may create while the process runs (default 100)' },
  { flag: 'max-msgs-per-sec-per-token', env: 'MPAC_MAX_MSGS_PER_SEC_PER_TOKEN', kind: 'string', help: 'frames per second per token across its connections (default 500)' },
  { flag: 'max-journal-bytes-per-min', env: 'MPAC_MAX_JOURNAL_BYTES_PER_MIN', kind: 'string', help: 'journal bytes one session may write per minute, then INTENT_BACKOFF (default 33554432)' },
  { flag: 'session-idle-retention', env: 'MPAC_SESSION_IDLE_RETENTION', kind: 'string', help: 'close and delete a session without connections after SEC seconds, 0 = never (default 2592000, 30 days; multi-session only)' },
  { flag: 'allowed-origin', env: 'MPAC_ALLOWED_ORIGINS', kind: 'string', help: 'comma list of browser origins (scheme://host[:port]) allowed to open WebSockets; any other Origin header → 403 (default: none)' },
  { flag: 'allowed-host', env: 'MPAC_ALLOWED_HOSTS', kind: 'string', help: 'comma list of Host names (name, name:port, or * for any) WebSocket upgrades may use besides localhost/loopback IPs (any port) and the bind address at this port; others → 403' },
  { flag: 'local-secret-file', env: 'MPAC_LOCAL_SECRET_FILE', kind: 'string', help: 'local mode (set by mpac-mcp when it starts the coordinator): clients must present the secret in this 0600 file, and the coordinator proves it knows it' },
  { flag: 'allow-without-secret', env: 'MPAC_ALLOW_WITHOUT_SECRET', kind: 'bool', help: 'with --local-secret-file: also admit clients without the secret, e.g. the Python bridge (the Origin/Host guard still applies; default off)' },
  { flag: 'dashboard', env: 'MPAC_DASHBOARD', kind: 'bool', help: 'serve the read-only web dashboard at /dashboard (default on, except on a non-loopback bind without a token table; --dashboard=false turns it off)' },
  { flag: 'dashboard-max-streams', env: 'MPAC_DASHBOARD_MAX_STREAMS', kind: 'string', help: 'open dashboard live-update streams in total; more get HTTP 503 (default 500)' },
  { flag: 'dashboard-max-streams-per-token', env: 'MPAC_DASHBOARD_MAX_STREAMS_PER_TOKEN', kind: 'string', help: 'open dashboard live-update streams per token; more get HTTP 429 (default 20)' },
  { flag: 'log-level', env: 'LOG_LEVEL', kind: 'string', help: 'fatal | error | warn | info | debug | trace | silent (default info)' },
  { flag: 'log-level', env: 'LOG_LEVEL', kind: 'string', help: 'fatal | error | warn | info | debug | trace | silent (default info)' },
  { flag: 'router', env: 'MPAC_ROUTER', kind: 'string', help: 'fleet mode: fly (fly-replay to the owner) | hash (HAProxy consistent hash + handover) | none (one node) (default fly when FLY_MACHINE_ID is set, else hash)' },
  { flag: 'claim-wait', env: 'MPAC_CLAIM_WAIT', kind: 'string', help: 'fleet mode: seconds an upgrade waits for the owner to release a session (or its lease to expire) before 503 (default 5)' },
  { flag: 'replay-timeout', env: 'MPAC_REPLAY_TIMEOUT', kind: 'string', help: 'fleet mode, --router fly: seconds Fly Proxy tries the owner (timeout= of fly-replay) (default 2)' }
]

const SPEC_BY_FLAG = new Map(SETTINGS.map(s => [s.flag, s]))

export const DEFAULT_PORT = 8766

/** The longest delay a Node timer honours, in whole seconds (2^31-1 ms). */
export const MAX_TIMER_SEC = Math.floor(2_147_483_647 / 1000)

/** A DNS host name (labels of letters, digits and hyphens). */
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost|\[::1\])$/i

export function isLoopback (host: string): boolean {
  return LOOPBACK.test(host)
}

// Backend health policy (protocol.md §9.7), validated strictly.
const Disposition = z.enum(['ignore', 'warn', 'suspend_and_claim'])
const BackendHealthPolicySchema = z.strictObject({
  enabled: z.boolean(),
  check_source: z.string().optional(),
  check_interval_sec: z.number().positive().optional(),
  on_degraded: Disposition.optional(),
  on_down: Disposition.optional(),
  auto_switch: z.enum(['allowed', 'notify_first', 'forbidden']).optional(),
  allowed_providers: z.array(z.string()).optional()
})

class Invalid extends Error {
  constructor (readonly setting: string, message: string) { super(message) }
}

function fail (setting: string, message: string): never {
  throw new Invalid(setting, message)
}

/** Reads raw values: `--flag value`, `--flag=value`, booleans as bare `--flag` (or `--flag=false`). */
function parseArgv (argv: readonly string[]): Map<string, string> {
  const out = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (!arg.startsWith('--')) fail('argument', `unexpected argument ${JSON.stringify(arg)} (see --help)`)
    const eq = arg.indexOf('=')
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq)
    const spec = SPEC_BY_FLAG.get(name)
    if (spec === undefined) fail('argument', `unknown flag --${name} (see --help)`)
    if (eq !== -1) {
      out.set(name, arg.slice(eq + 1))
    } else if (spec.kind === 'bool') {
      out.set(name, 'true')
    } else {
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith('--') && next.length > 2)) fail(name, `--${name} needs a value`)
      out.set(name, next)
      i++
    }
  }
  return out
}

/** Decides if a flag and where its value comes from: the flag, else the env twin (empty = unset). */
function reader (flags: Map<string, string>, env: Readonly<Record<string, string | undefined>>) {
  const raw = (flag: string): string | undefined => {
    if (flags.has(flag)) return flags.get(flag)
    const spec = SPEC_BY_FLAG.get(flag)
    const value = spec === undefined ? undefined : env[spec.env]
    return value === undefined || value === '' ? undefined : value
  }
  const name = (flag: string): string => flags.has(flag) ? `--${flag}` : (SPEC_BY_FLAG.get(flag)?.env ?? flag)
  const bool = (flag: string): boolean => {
    const value = raw(flag)
    if (value === undefined) return false
    const v = value.toLowerCase()
    if (['1', 'true', 'yes', 'on'].includes(v)) return true
    if (['0', 'false', 'no', 'off'].includes(v)) return false
    return fail(name(flag), `expected true or false, got ${JSON.stringify(value)}`)
  }
  const oneOf = <T extends string>(flag: string, allowed: readonly T[], fallback: T): T => {
    const value = raw(flag)
    if (value === undefined) return fallback
    if (!(allowed as readonly string[]).includes(value)) fail(name(flag), `expected ${allowed.join(' or ')}, got ${JSON.stringify(value)}`)
    return value as T
  }
  /**
   * A number of seconds; fractions allowed. `timer` settings drive a
   * setTimeout, whose delay Node caps at 2^31-1 ms (about 24.8 days; a longer
   * one fires after 1 ms), so they are refused above it.
   */
  const seconds = (flag: string, fallback: number, opts: { allowZero?: boolean, timer?: boolean } = {}): number => {
    const value = raw(flag)
    if (value === undefined) return fallback
    const n = Number(value)
    if (value.trim() === '' || !Number.isFinite(n)) fail(name(flag), `expected a number of seconds, got ${JSON.stringify(value)}`)
    if (n < 0 || (n === 0 && opts.allowZero !== true)) fail(name(flag), `must be ${opts.allowZero === true ? 'zero or positive' : 'positive'}, got ${value}`)
    if (opts.timer === true && n > MAX_TIMER_SEC) fail(name(flag), `must be at most ${MAX_TIMER_SEC} seconds (about 24 days), got ${value}`)
    return n
  }
  const integer = (flag: string, fallback: number, min = 1): number => {
    const value = raw(flag)
    if (value === undefined) return fallback
    if (!/^\d+$/.test(value.trim())) fail(name(flag), `expected a whole number, got ${JSON.stringify(value)}`)
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n < min) fail(name(flag), `must be at least ${min}, got ${value}`)
    return n
  }
  return { raw, name, bool, oneOf, seconds, integer }
}

/** One entry of --trust-proxy as Fastify (proxy-addr) accepts it: a keyword, an IP, IP/prefix or IP/netmask. */
function isProxyAddress (value: string): boolean {
  if (['loopback', 'linklocal', 'uniquelocal'].includes(value)) return true
  const slash = value.indexOf('/')
  if (slash === -1) return isIP(value) !== 0
  const ip = value.slice(0, slash)
  const range = value.slice(slash + 1)
  const family = isIP(ip)
  if (family === 0) return false
  if (/^\d{1,3}$/.test(range)) return Number(range) <= (family === 4 ? 32 : 128)
  return family === 4 && isIP(range) === 4
}

/** The base of the default data directories (`server` and `local` are inside it). */
export function defaultDataDir (env: Readonly<Record<string, string | undefined>>): string {
  const xdg = env.XDG_STATE_HOME
  if (xdg !== undefined && xdg !== '' && isAbsolute(xdg)) return join(xdg, 'mpac-mcp')
  return join(env.HOME !== undefined && env.HOME !== '' ? env.HOME : homedir(), '.local', 'state', 'mpac-mcp')
}

function readTextFile (setting: string, path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    return fail(setting, `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
}

export function loadServerConfig (
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>
): Result<ServerConfig, ConfigError> {
  try {
    return { ok: true, value: build(argv, env) }
  } catch (err) {
    if (err instanceof Invalid) return { ok: false, error: { setting: err.setting, message: err.message } }
    throw err
  }
}

function build (argv: readonly string[], env: Readonly<Record<string, string | undefined>>): ServerConfig {
  const flags = parseArgv(argv)
  const r = reader(flags, env)

  // Mode: multi-session unless a workspace or a session id asks for one session.
  const workspaceRaw = r.raw('workspace')
  const sessionIdRaw = r.raw('session-id')
  const multiFlag = r.bool('multi-session')
  if (multiFlag && sessionIdRaw !== undefined) fail(r.name('session-id'), 'cannot be combined with --multi-session (sessions come from the URL /session/:id)')
  if (multiFlag && workspaceRaw !== undefined) fail(r.name('workspace'), 'cannot be combined with --multi-session (a workspace directory belongs to one session)')
  const mode = workspaceRaw !== undefined || sessionIdRaw !== undefined ? 'single' : 'multi'
  const workspaceDir = workspaceRaw === undefined ? undefined : resolve(workspaceRaw)
  if (workspaceDir !== undefined) {
    let isDir: boolean
    try {
      isDir = statSync(workspaceDir).isDirectory()
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      return fail(r.name('workspace'), code === 'ENOENT' ? `no such directory: ${workspaceDir}` : `cannot use ${workspaceDir}: ${code ?? (err as Error).message}`)
    }
    if (!isDir) fail(r.name('workspace'), `not a directory: ${workspaceDir}`)
  }
  if (sessionIdRaw !== undefined && !/^[A-Za-z0-9._:-]{1,128}$/.test(sessionIdRaw)) {
    fail(r.name('session-id'), 'must be 1-128 characters of A-Z a-z 0-9 . _ : -')
  }
  const sessionId = mode === 'single' ? (sessionIdRaw ?? deriveSessionId(workspaceDir as string)) : undefined

  const host = r.raw('host') ?? '127.0.0.1'
  if (isIP(host.replace(/^\[(.*)\]$/, '$1')) === 0 && !HOST_NAME.test(host)) {
    fail(r.name('host'), `expected an IP address or a host name, got ${JSON.stringify(host)}`)
  }
  const port = r.integer('port', DEFAULT_PORT, 0)
  if (port > 65535) fail(r.name('port'), `must be 0-65535, got ${port}`)

  // Token table: MPAC_TOKEN_TABLE (the JSON) or a file (flag or env).
  const tokenTableFile = r.raw('token-table-file')
  const tokenTableJson = env.MPAC_TOKEN_TABLE === '' ? undefined : env.MPAC_TOKEN_TABLE
  if (tokenTableFile !== undefined && tokenTableJson !== undefined) {
    fail('MPAC_TOKEN_TABLE', 'set either MPAC_TOKEN_TABLE or MPAC_TOKEN_TABLE_FILE, not both')
  }
  let tokenTable: TokenTable | undefined
  if (tokenTableJson !== undefined) {
    const parsed = TokenTable.parse(tokenTableJson)
    if (!parsed.ok) fail('MPAC_TOKEN_TABLE', parsed.message)
    tokenTable = parsed.table
  } else if (tokenTableFile !== undefined) {
    const parsed = TokenTable.parse(readTextFile(r.name('token-table-file'), tokenTableFile))
    if (!parsed.ok) fail(r.name('token-table-file'), parsed.message)
    tokenTable = parsed.table
  }

  const profileRaw = r.raw('security-profile')
  if (profileRaw === 'verified') {
    fail(r.name('security-profile'), 'verified is not supported (it needs signed messages and certificate identities); use authenticated with a token table')
  }
  const securityProfile = r.oneOf('security-profile', ['open', 'authenticated'] as const, tokenTable === undefined ? 'open' : 'authenticated')
  if (securityProfile === 'authenticated' && tokenTable === undefined) {
    fail(r.name('security-profile'), 'authenticated needs a token table: set MPAC_TOKEN_TABLE (JSON) or MPAC_TOKEN_TABLE_FILE')
  }
  if (securityProfile === 'open' && tokenTable !== undefined) {
    fail(r.name('security-profile'), 'open ignores the token table; remove MPAC_TOKEN_TABLE/MPAC_TOKEN_TABLE_FILE or use authenticated')
  }

  const allowOpen = r.bool('allow-open')
  if (!isLoopback(host) && tokenTable === undefined && !allowOpen) {
    fail(r.name('host'), `${host} is reachable from other machines and no token table is set: set MPAC_TOKEN_TABLE or MPAC_TOKEN_TABLE_FILE, or pass --allow-open to run without authentication`)
  }

  // TLS: Node serves it with cert+key; --tls alone must say how.
  const tlsFlag = r.bool('tls')
  const certFile = r.raw('tls-cert')
  const keyFile = r.raw('tls-key')
  const trustProxyRaw = r.raw('trust-proxy')
  if ((certFile === undefined) !== (keyFile === undefined)) {
    fail(certFile === undefined ? r.name('tls-cert') : r.name('tls-key'), '--tls-cert and --tls-key go together')
  }
  let tls: ServerConfig['tls']
  if (certFile !== undefined && keyFile !== undefined) {
    const cert = readTextFile(r.name('tls-cert'), certFile)
    const key = readTextFile(r.name('tls-key'), keyFile)
    try {
      createSecureContext({ cert })
    } catch (err) {
      fail(r.name('tls-cert'), `${certFile} is not a PEM certificate (${(err as Error).message})`)
    }
    try {
      createSecureContext({ cert, key })
    } catch (err) {
      fail(r.name('tls-key'), `${keyFile} is not the PEM private key of that certificate (${(err as Error).message})`)
    }
    tls = { certFile: resolve(certFile), keyFile: resolve(keyFile) }
  }
  const tlsByProxy = tlsFlag && tls === undefined && trustProxyRaw !== undefined && trustProxyRaw !== 'false'
  if (tlsFlag && tls === undefined && !tlsByProxy) {
    fail(r.name('tls'), 'there are two ways to get TLS: pass --tls-cert FILE --tls-key FILE and the sidecar serves wss:// itself, or put a proxy such as Caddy in front that terminates TLS (then pass --trust-proxy <proxy address> with --tls)')
  }
  let trustProxy: boolean | string | number = false
  if (trustProxyRaw !== undefined) {
    // A whole number is a hop count: trust that many proxies in front (fly.io's
    // edge has no fixed address, so `1` is the safe setting there; `true`
    // would believe any client-supplied X-Forwarded-For).
    trustProxy = trustProxyRaw === 'true' ? true : trustProxyRaw === 'false' ? false : /^[1-9][0-9]?$/.test(trustProxyRaw) ? Number(trustProxyRaw) : trustProxyRaw
    if (typeof trustProxy === 'string') {
      const bad = trustProxy.split(',').map(v => v.trim()).find(v => !isProxyAddress(v))
      if (bad !== undefined) fail(r.name('trust-proxy'), `expected true, false, a hop count (1-99) or comma-separated IP addresses, CIDR ranges or loopback/linklocal/uniquelocal, got ${JSON.stringify(bad)}`)
    }
  }

  // Origin/Host guard of WebSocket upgrades (upgrade-guard.ts).
  const list = (flag: string): string[] => [...new Set((r.raw(flag) ?? '').split(',').map(v => v.trim()).filter(v => v !== ''))]
  const allowedOrigins = list('allowed-origin').map(entry => normalizeOrigin(entry) ?? fail(r.name('allowed-origin'), `expected origins such as https://app.example.com or http://localhost:3000 (scheme://host[:port], no path), got ${JSON.stringify(entry)}`))
  const allowedHosts = list('allowed-host')
  for (const entry of allowedHosts) {
    if (entry === '*') continue
    const parsed = splitHost(entry)
    if (parsed === undefined || (isIP(parsed.host) === 0 && !HOST_NAME.test(parsed.host))) {
      fail(r.name('allowed-host'), `expected host names such as mpac.example.com or mpac.example.com:8443 (or *), got ${JSON.stringify(entry)}`)
    }
  }

  const localSecretFile = r.raw('local-secret-file')
  let localSecret: string | undefined
  if (localSecretFile !== undefined) {
    try {
      localSecret = readLocalSecret(resolve(localSecretFile))
    } catch (err) {
      if (!(err instanceof LocalSecretError)) throw err
      fail(r.name('local-secret-file'), err.message)
    }
  }
  const allowWithoutSecret = r.bool('allow-without-secret')
  if (allowWithoutSecret && localSecret === undefined) fail(r.name('allow-without-secret'), 'only applies with --local-secret-file (without it, no secret is asked for)')

  // The dashboard (docs/dashboard.md): on unless turned off, but never without a login on a reachable bind.
  const dashboardAsked = r.raw('dashboard') === undefined ? undefined : r.bool('dashboard')
  const dashboardUnsafe = !isLoopback(host) && tokenTable === undefined
  if (dashboardAsked === true && dashboardUnsafe) {
    fail(r.name('dashboard'), `${host} is reachable from other machines and there is no token table to sign in with: set MPAC_TOKEN_TABLE or MPAC_TOKEN_TABLE_FILE, or bind a loopback address`)
  }
  const dashboard = dashboardAsked ?? !dashboardUnsafe

  const store = r.oneOf('store', ['sqlite', 'memory', 'postgres'] as const, 'sqlite')
  const fleet = fleetConfig(r, env, { store, mode, host, port })
  const storeSync = r.oneOf('store-sync', ['full', 'normal'] as const, 'full')
  const dataDirRaw = r.raw('data-dir')
  // Separate default directories: local single-session sidecars never see a multi-session server's sessions.
  const dataDir = dataDirRaw === undefined ? join(defaultDataDir(env), mode === 'single' ? 'local' : 'server') : resolve(dataDirRaw)

  const complianceProfile = r.oneOf('compliance-profile', ['core', 'governance'] as const, CORE.complianceProfile)
  const executionModel = r.oneOf('execution-model', ['post_commit', 'pre_commit'] as const, CORE.executionModel)
  if (executionModel === 'pre_commit' && complianceProfile !== 'governance') {
    fail(r.name('execution-model'), 'pre_commit requires --compliance-profile governance')
  }

  let backendHealthPolicy: BackendHealthPolicy | undefined
  const bhp = r.raw('backend-health-policy')
  if (bhp !== undefined) {
    const text = bhp.startsWith('@') ? readTextFile(r.name('backend-health-policy'), bhp.slice(1)) : bhp
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch (err) {
      fail(r.name('backend-health-policy'), `not valid JSON (${(err as Error).message})`)
    }
    const parsed = BackendHealthPolicySchema.safeParse(json)
    if (!parsed.success) fail(r.name('backend-health-policy'), z.prettifyError(parsed.error).replaceAll('\n', '; '))
    backendHealthPolicy = parsed.data
  }

  const logLevel = r.oneOf('log-level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info')
  const idleExitRaw = r.raw('idle-exit')

  const metricsToken = env.MPAC_METRICS_TOKEN === '' ? undefined : env.MPAC_METRICS_TOKEN
  const metricsPortRaw = r.raw('metrics-port')
  const metricsPort = metricsPortRaw === undefined ? undefined : r.integer('metrics-port', 0, 0)
  if (metricsPort !== undefined && metricsPort > 65535) fail(r.name('metrics-port'), `expected a TCP port (0-65535), got ${metricsPortRaw}`)
  const metricsPublic = r.bool('metrics-public')
  if (metricsPublic && metricsToken !== undefined) fail(r.name('metrics-public'), 'MPAC_METRICS_TOKEN is set: /metrics needs it; drop --metrics-public or the token')

  const headersTimeoutSec = r.seconds('headers-timeout', 10, { timer: true })
  const requestTimeoutSec = r.seconds('request-timeout', 30, { timer: true })
  if (headersTimeoutSec > requestTimeoutSec) fail(r.name('headers-timeout'), `must not exceed the request timeout (${requestTimeoutSec} s), got ${headersTimeoutSec}`)

  const routing: FleetRouting = Object.freeze({
    router: r.oneOf('router', ['fly', 'hash', 'none'] as const, env.FLY_MACHINE_ID !== undefined && env.FLY_MACHINE_ID !== '' ? 'fly' : 'hash'),
    claimWaitSec: r.seconds('claim-wait', 5, { timer: true }),
    replayTimeoutSec: r.seconds('replay-timeout', 2, { timer: true })
  })

  const config: ServerConfig = {
    host,
    port,
    mode,
    sessionId,
    workspaceDir,
    securityProfile,
    tokenTable,
    tokenTableFile: tokenTableFile === undefined ? undefined : resolve(tokenTableFile),
    metricsToken,
    metricsPort,
    metricsPublic,
    tls,
    tlsByProxy,
    allowOpen,
    store,
    fleet,
    storeSync,
    dataDir,
    trustProxy,
    allowedOrigins: Object.freeze(allowedOrigins),
    allowedHosts: Object.freeze(allowedHosts),
    localSecret,
    allowWithoutSecret,
    idleExitSec: idleExitRaw === undefined ? undefined : r.seconds('idle-exit', 0, { timer: true }),
    complianceProfile,
    executionModel,
    unavailabilityTimeoutSec: r.seconds('unavailability-timeout', CORE.unavailabilityTimeoutSec),
    resolutionTimeoutSec: r.seconds('resolution-timeout', CORE.resolutionTimeoutSec, { allowZero: true }),
    claimGraceSec: r.seconds('claim-grace', CORE.intentClaimGraceSec, { allowZero: true }),
    frozenScopePhases: r.bool('frozen-scope-phases'),
    heartbeatIntervalSec: r.seconds('heartbeat-interval', CORE.heartbeatIntervalSec, { timer: true }),
    backendHealthPolicy,
    restartGraceSec: r.seconds('restart-grace', 30, { allowZero: true }),
    sessionIdleUnloadSec: r.seconds('session-idle-unload', 600),
    closedRetentionSec: r.seconds('closed-retention', 86400, { allowZero: true }),
    idleRetentionSec: r.seconds('session-idle-retention', 30 * 86400, { allowZero: true }),
    limits: Object.freeze({
      maxFrameBytes: r.integer('max-frame-bytes', 1024 * 1024, 1024),
      prehelloTimeoutSec: r.seconds('prehello-timeout', 10, { timer: true }),
      prehelloMaxFrames: r.integer('prehello-max-frames', 16),
      maxMsgsPerSec: r.integer('max-msgs-per-sec', 200),
      maxSessions: r.integer('max-sessions', 1000),
      maxSessionsPerToken: r.integer('max-sessions-per-token', 50),
      maxParticipants: r.integer('max-participants', CORE.maxParticipants),
      maxWorkspaceBytes: r.integer('max-workspace-bytes', CORE.maxWorkspaceBytes),
      maxBufferedBytes: r.integer('max-buffered-bytes', 4 * 1024 * 1024, 1024),
      headersTimeoutSec,
      requestTimeoutSec,
      maxPrehelloConnections: r.integer('max-prehello-connections', 512),
      maxPrehelloPerAddress: r.integer('max-prehello-per-address', 64),
      maxIntentsPerParticipant: r.integer('max-intents-per-participant', CORE.maxIntentsPerParticipant),
      maxIntentsPerSession: r.integer('max-intents-per-session', CORE.maxIntentsPerSession),
      maxScopeFiles: r.integer('max-scope-files', CORE.maxScopeFiles),
      maxOpenConflicts: r.integer('max-open-conflicts', CORE.maxOpenConflicts),
      maxConnectionsPerToken: r.integer('max-connections-per-token', 512),
      maxConnectionsPerAddress: r.integer('max-connections-per-address', 512),
      maxSessionsPerAddress: r.integer('max-sessions-per-address', 100),
      maxMsgsPerSecPerToken: r.integer('max-msgs-per-sec-per-token', 500),
      maxJournalBytesPerMin: r.integer('max-journal-bytes-per-min', 32 * 1024 * 1024, 1024),
      maxDashboardStreams: r.integer('dashboard-max-streams', 500),
      maxDashboardStreamsPerToken: r.integer('dashboard-max-streams-per-token', 20)
    }),
    logLevel,
    dashboard,
    dashboardOffReason: dashboardAsked === undefined && dashboardUnsafe ? 'the dashboard is off: the bind address is reachable from other machines and there is no token table to sign in with' : undefined,
    routing
  }
  return Object.freeze(config)
}

const FLEET_FLAGS = ['database-url', 'database-listen-url', 'node-id', 'node-addr', 'lease-ttl', 'lease-renew', 'lease-margin', 'store-lanes'] as const

/** The fleet settings, validated; undefined unless `--store postgres` (and then none of them may be set). */
function fleetConfig (r: ReturnType<typeof reader>, env: Readonly<Record<string, string | undefined>>,
  ctx: { store: ServerConfig['store'], mode: ServerConfig['mode'], host: string, port: number }): FleetConfig | undefined {
  if (ctx.store !== 'postgres') {
    const stray = FLEET_FLAGS.find(f => r.raw(f) !== undefined)
    if (stray !== undefined) fail(r.name(stray), 'only applies with --store postgres (fleet mode)')
    return undefined
  }
  if (ctx.mode === 'single') fail(r.name('store'), 'postgres (fleet mode) serves many sessions; it cannot be combined with --workspace or --session-id')
  const fromEnv = env.DATABASE_URL === undefined || env.DATABASE_URL === '' ? undefined : env.DATABASE_URL
  const databaseUrl = r.raw('database-url') ?? fromEnv
  const urlSetting = r.raw('database-url') !== undefined ? r.name('database-url') : fromEnv !== undefined ? 'DATABASE_URL' : '--database-url'
  if (databaseUrl === undefined) fail(urlSetting, '--store postgres needs a database: --database-url postgres://user@host:port/db, MPAC_DATABASE_URL or DATABASE_URL')
  checkPostgresUrl(urlSetting, databaseUrl)
  const listenRaw = r.raw('database-listen-url')
  if (listenRaw !== undefined) checkPostgresUrl(r.name('database-listen-url'), listenRaw)
  const fly = env.FLY_MACHINE_ID === undefined || env.FLY_MACHINE_ID === '' ? undefined : env.FLY_MACHINE_ID
  const nodeId = r.raw('node-id') ?? fly ?? `${hostname()}:${ctx.port}`
  if (!/^[\x21-\x7e]{1,128}$/.test(nodeId)) fail(r.name('node-id'), `expected 1-128 printable characters without spaces, got ${JSON.stringify(nodeId)}`)
  const nodeAddr = r.raw('node-addr') ?? `${ctx.host}:${ctx.port}`
  const ttlMs = r.seconds('lease-ttl', DEFAULT_LEASE.ttlMs / 1000, { timer: true }) * 1000
  const renewMs = r.seconds('lease-renew', DEFAULT_LEASE.renewMs / 1000, { timer: true }) * 1000
  const marginMs = r.seconds('lease-margin', DEFAULT_LEASE.marginMs / 1000, { timer: true }) * 1000
  const problem = leaseTimingsProblem({ ttlMs, renewMs, marginMs })
  if (problem !== undefined) {
    const culprit = r.raw('lease-margin') !== undefined && problem.includes('margin') ? 'lease-margin' : r.raw('lease-ttl') !== undefined ? 'lease-ttl' : 'lease-renew'
    fail(r.name(culprit), problem)
  }
  const storeLanes = r.integer('store-lanes', DEFAULT_STORE_LANES)
  if (storeLanes > 64) fail(r.name('store-lanes'), `must be at most 64, got ${storeLanes}`)
  return Object.freeze({
    databaseUrl,
    databaseListenUrl: listenRaw ?? databaseUrl,
    nodeId,
    nodeAddr,
    leaseTtlMs: ttlMs,
    leaseRenewMs: renewMs,
    leaseMarginMs: marginMs,
    storeLanes
  })
}

/** A PostgreSQL connection URL (the message never repeats the URL: it may hold a password). */
function checkPostgresUrl (setting: string, value: string): void {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(setting, 'expected a URL such as postgres://user@host:5432/db (it is not a URL)')
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    fail(setting, `expected a postgres:// or postgresql:// URL, got a ${url.protocol}// URL`)
  }
  if (url.hostname === '' && !url.searchParams.has('host')) fail(setting, 'the URL names no host')
}

/** `--help` text, generated from SETTINGS so it cannot drift. */
export function helpText (): string {
  const lines = [
    'Usage: mpac-mcp-sidecar [flags]            serve MPAC sessions over WebSocket',
    '       mpac-mcp-sidecar token <command>    manage the token table (see `mpac-mcp-sidecar token --help`)',
    '       mpac-mcp-sidecar backup --to FILE   online, verified copy of the data directory (see `backup --help`)',
    '       mpac-mcp-sidecar restore --from FILE  put a backup in place (the coordinator must be stopped)',
    '',
    'With no flags: many sessions at ws://127.0.0.1:8766/session/<id>, open profile (loopback only).',
    'With --workspace DIR (and/or --session-id ID): one session, at ws://HOST:PORT/ (and /session/<ID>).',
    '',
    'In multi-session mode the policies and limits below apply to every session the server hosts',
    '(--compliance-profile, --execution-model, the timeouts, --heartbeat-interval, --backend-health-policy).',
    '',
    'Flags (each also an environment variable; flags win; empty variables count as unset):'
  ]
  for (const s of SETTINGS) {
    const left = `  --${s.flag}${s.kind === 'bool' ? '' : ' V'}`
    lines.push(`${left.padEnd(34)}${s.env.padEnd(30)}${s.help}`)
  }
  lines.push(`  ${''.padEnd(32)}${'MPAC_TOKEN_TABLE'.padEnd(30)}the token table as JSON (enables the authenticated profile)`)
  lines.push(`  ${''.padEnd(32)}${'MPAC_METRICS_TOKEN'.padEnd(30)}bearer token that GET /metrics on the main listener requires`)
  lines.push(`${'  --help'.padEnd(34)}${''.padEnd(30)}this text`)
  lines.push(`${'  --version'.padEnd(34)}${''.padEnd(30)}print the version`)
  return lines.join('\n') + '\n'
}
