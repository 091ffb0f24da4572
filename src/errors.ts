/**
 * Every `MPAC_ERR_*` code of both programs, in one registry, with a
 * constructor per code in the style of Fastify's `createError`:
 *
 *   export const RemoteTimeout = defineError('MPAC_ERR_REMOTE_TIMEOUT', 'no reply … to %s within %d ms', { retryable: true, kind: 'shim' })
 *   throw new RemoteTimeout('OP_COMMIT', 5000)
 *   throw new RemoteUnavailable(`cannot reach …`, { hint, cause })
 *
 * Contract:
 * - Owns: the codes, each with its default retryability and its message
 *   template (`node:util` format: the arguments fill `%s`/`%d`, an options
 *   object may come last: `retryable` overrides the default for this
 *   instance, `hint` says what the user can do, `detail` carries wire
 *   details, `cause` the underlying error).
 * - Promises: a code is defined once (a second definition throws at load);
 *   `instanceof` works per code (`err instanceof RemoteClosed`) and for the
 *   base class (`err instanceof MpacError`); `MPAC_ERRORS` lists every code
 *   with its kind, which says where it is documented: `shim` codes in
 *   docs/agents.md (Tools), `http` codes in docs/coordinator.md (HTTP
 *   refusals, with their status in src/server/http-errors.ts), `store` codes
 *   in docs/data.md (Store errors); test/docs-registries.test.ts checks both
 *   directions.
 * - Never: imports anything but node builtins, so every folder may use it.
 */
import { format } from 'node:util'

/** Where a code surfaces, hence which docs table documents it. */
export type MpacErrorKind = 'shim' | 'http' | 'store'

export type MpacErrorCode = `MPAC_ERR_${string}`

export interface MpacErrorOptions {
  /** Overrides the code's default for this instance (e.g. a timeout worth retrying). */
  readonly retryable?: boolean
  /** What the user or agent can do about it. */
  readonly hint?: string
  /** Wire details, e.g. the PROTOCOL_ERROR payload of a rejected HELLO. */
  readonly detail?: Record<string, unknown>
  readonly cause?: unknown
}

/** The template's arguments, then optionally the options. */
export type MpacErrorArgs = Array<string | number> | [...Array<string | number>, MpacErrorOptions]

export interface MpacErrorSpec {
  readonly code: MpacErrorCode
  /** Whether retrying the same call later can succeed, unless an instance says otherwise. */
  readonly retryable: boolean
  /** The message template (`%s`, `%d`). */
  readonly template: string
  readonly kind: MpacErrorKind
}

export class MpacError extends Error {
  readonly code: MpacErrorCode
  readonly retryable: boolean
  readonly hint: string | undefined
  readonly detail: Readonly<Record<string, unknown>> | undefined

  constructor (spec: MpacErrorSpec, args: MpacErrorArgs) {
    const last = args[args.length - 1]
    const options: MpacErrorOptions = typeof last === 'object' ? last : {}
    const values = (typeof last === 'object' ? args.slice(0, -1) : args) as Array<string | number>
    super(format(spec.template, ...values), options.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = 'MpacError'
    this.code = spec.code
    this.retryable = options.retryable ?? spec.retryable
    this.hint = options.hint
    this.detail = options.detail
  }
}

/** A constructor of one code: `new X(...args, options?)`, with the code's spec as statics. */
export interface MpacErrorClass<C extends MpacErrorCode> extends MpacErrorSpec {
  new (...args: MpacErrorArgs): MpacError & { readonly code: C }
  readonly code: C
}

const specs = new Map<MpacErrorCode, MpacErrorSpec>()

/** Every code defined so far (all of them once this module has loaded), in definition order. */
export const MPAC_ERRORS: ReadonlyMap<MpacErrorCode, MpacErrorSpec> = specs

export function defineError<const C extends MpacErrorCode> (code: C, template: string, options: { readonly retryable?: boolean, readonly kind: MpacErrorKind }): MpacErrorClass<C> {
  if (specs.has(code)) throw new Error(`${code} is defined twice`)
  const spec: MpacErrorSpec = Object.freeze({ code, retryable: options.retryable ?? false, template, kind: options.kind })
  specs.set(code, spec)
  const defined = class extends MpacError {
    declare readonly code: C
    constructor (...args: MpacErrorArgs) {
      super(spec, args)
    }
  }
  // The spec as statics, not enumerable, and no static `message`: a class is
  // still matched as a class (`t.throws(fn, Class)` in tap), not as a pattern.
  // Named like its instances (`MpacError`, as Fastify's are `FastifyError`).
  const statics: PropertyDescriptorMap = { name: { value: 'MpacError' } }
  for (const key of ['code', 'retryable', 'template', 'kind'] as const) statics[key] = { value: spec[key], enumerable: false }
  return Object.defineProperties(defined, statics) as unknown as MpacErrorClass<C>
}

// ---- the shim (tool results: `structuredContent.code`; docs/agents.md, Tools)

/** The coordinator cannot be reached right now (down, restarting, network). Retry shortly. */
export const RemoteUnavailable = defineError('MPAC_ERR_REMOTE_UNAVAILABLE', '%s', { retryable: true, kind: 'shim' })
/** The connection dropped while the call was in flight: whether it took effect is unknown. */
export const RemoteClosed = defineError('MPAC_ERR_REMOTE_CLOSED', '%s', { retryable: true, kind: 'shim' })
/** No reply within the safety-net timeout. */
export const RemoteTimeout = defineError('MPAC_ERR_REMOTE_TIMEOUT', 'no reply from the coordinator to %s within %d ms', { retryable: true, kind: 'shim' })
/** The coordinator serves another session than the one configured. */
export const RemoteSessionMismatch = defineError('MPAC_ERR_REMOTE_SESSION_MISMATCH', '%s', { kind: 'shim' })
/** Another connection with the same principal id took this one's place (close 4409); this shim stays out of the way. */
export const Replaced = defineError('MPAC_ERR_REPLACED', 'another connection with principal id %s replaced this one (close 4409): this agent is no longer connected', { kind: 'shim' })
/** wss: the coordinator's certificate is not trusted (private CA without NODE_EXTRA_CA_CERTS, wrong host, expired). */
export const TlsUntrusted = defineError('MPAC_ERR_TLS_UNTRUSTED', 'the coordinator\'s TLS certificate is not trusted (%s) at %s', { kind: 'shim' })
/** The coordinator refused the HELLO (token, roles, session). */
export const AuthRejected = defineError('MPAC_ERR_AUTH_REJECTED', '%s', { kind: 'shim' })
/** The local sidecar could not be started or the port is used by something else. */
export const SidecarFailed = defineError('MPAC_ERR_SIDECAR_FAILED', '%s', { kind: 'shim' })
/** The configuration cannot be used (an environment variable, a `repo_path`, the URL path). */
export const ConfigInvalid = defineError('MPAC_ERR_CONFIG_INVALID', '%s', { kind: 'shim' })
/** A file argument names a path outside the repository (`../x`, `/etc/passwd`) or VCS metadata (`.git/…`): refused before anything is sent. */
export const PathOutsideRepo = defineError('MPAC_ERR_PATH_OUTSIDE_REPO', '%s %s', { kind: 'shim' })
/** A tool failed for a reason none of the codes above names (a bug): the message says what happened. */
export const ToolFailed = defineError('MPAC_ERR_TOOL_FAILED', '%s', { kind: 'shim' })

// ---- the coordinator's HTTP refusals (body `{ code, message }`; docs/coordinator.md, HTTP refusals)

export const AuthTokenInvalid = defineError('MPAC_ERR_AUTH_TOKEN_INVALID', '%s', { kind: 'http' })
export const AuthSessionForbidden = defineError('MPAC_ERR_AUTH_SESSION_FORBIDDEN', '%s', { kind: 'http' })
export const OriginForbidden = defineError('MPAC_ERR_ORIGIN_FORBIDDEN', '%s', { kind: 'http' })
export const HostForbidden = defineError('MPAC_ERR_HOST_FORBIDDEN', '%s', { kind: 'http' })
export const MetricsDisabled = defineError('MPAC_ERR_METRICS_DISABLED', '%s', { kind: 'http' })
export const NotFound = defineError('MPAC_ERR_NOT_FOUND', '%s', { kind: 'http' })
export const UpgradeRequired = defineError('MPAC_ERR_UPGRADE_REQUIRED', '%s', { kind: 'http' })
/** Sent with `Retry-After: 1`. */
export const TooManyConnections = defineError('MPAC_ERR_TOO_MANY_CONNECTIONS', '%s', { retryable: true, kind: 'http' })
/** Dashboard API or live stream without a valid sign-in (pages redirect to /dashboard/login instead). */
export const DashboardLoginRequired = defineError('MPAC_ERR_DASHBOARD_LOGIN_REQUIRED', '%s', { kind: 'http' })
/** More than 10 dashboard sign-in attempts per minute from one client address. */
export const DashboardRateLimited = defineError('MPAC_ERR_DASHBOARD_RATE_LIMITED', '%s', { retryable: true, kind: 'http' })
/** Past the per-token (429) or server-wide (503) cap of dashboard live streams. */
export const DashboardTooManyStreams = defineError('MPAC_ERR_DASHBOARD_TOO_MANY_STREAMS', '%s', { retryable: true, kind: 'http' })
/** Fleet mode, --router fly: another node owns the session (`fly-replay` sends Fly Proxy there). */
export const SessionElsewhere = defineError('MPAC_ERR_SESSION_ELSEWHERE', '%s', { retryable: true, kind: 'http' })
/** Fleet mode: ownership of the session could not be obtained in time (or it is quarantined). */
export const SessionUnavailable = defineError('MPAC_ERR_SESSION_UNAVAILABLE', '%s', { retryable: true, kind: 'http' })
/** Fleet mode: a session this upgrade would claim is beyond --max-sessions or --max-sessions-per-token. */
export const TooManySessions = defineError('MPAC_ERR_TOO_MANY_SESSIONS', '%s', { kind: 'http' })

// ---- the store (thrown inside the coordinator; docs/data.md, Store errors)

/** Another live process holds the data directory (or the session of a single-session coordinator). */
export const DataDirLocked = defineError('MPAC_ERR_DATA_DIR_LOCKED', '%s', { kind: 'store' })
/** A stored row failed its checksum or is missing: the session is quarantined. */
export const StoreDamaged = defineError('MPAC_ERR_STORE_DAMAGED', 'session %s: stored state is damaged (%s)', { kind: 'store' })
