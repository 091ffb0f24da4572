/**
 * Every HTTP refusal of `mpac-mcp-sidecar` (before an upgrade, or on a plain
 * HTTP route): one registry of code → status, the codes themselves defined
 * with the other MPAC_ERR_* codes in src/errors.ts (kind `http`), so a code
 * is written once and documented once
 * (docs/coordinator.md, HTTP refusals; test/docs-registries.test.ts checks
 * both directions). The body is always `{ code, message }`.
 */
import type { FastifyReply } from 'fastify'
import { AuthSessionForbidden, AuthTokenInvalid, DashboardLoginRequired, DashboardRateLimited, DashboardTooManyStreams, HostForbidden, MetricsDisabled, NotFound, OriginForbidden, SessionElsewhere, SessionUnavailable, TooManyConnections, TooManySessions, UpgradeRequired, type MpacErrorCode } from '../errors.js'

export interface HttpErrorSpec { readonly code: MpacErrorCode, readonly status: number }

function define<const T extends Record<string, HttpErrorSpec>> (specs: T): T {
  return Object.freeze(specs)
}

export const HTTP_ERRORS = define({
  AUTH_TOKEN_INVALID: { code: AuthTokenInvalid.code, status: 401 },
  AUTH_SESSION_FORBIDDEN: { code: AuthSessionForbidden.code, status: 403 },
  ORIGIN_FORBIDDEN: { code: OriginForbidden.code, status: 403 },
  HOST_FORBIDDEN: { code: HostForbidden.code, status: 403 },
  METRICS_DISABLED: { code: MetricsDisabled.code, status: 403 },
  NOT_FOUND: { code: NotFound.code, status: 404 },
  UPGRADE_REQUIRED: { code: UpgradeRequired.code, status: 426 },
  /** 429 per address or per token; 503 when the server-wide pre-HELLO cap is reached. */
  TOO_MANY_CONNECTIONS: { code: TooManyConnections.code, status: 429 },
  /** Dashboard API or live stream without a valid sign-in (pages redirect to /dashboard/login instead). */
  DASHBOARD_LOGIN_REQUIRED: { code: DashboardLoginRequired.code, status: 401 },
  /** More than 10 dashboard sign-in attempts per minute from one client address. */
  DASHBOARD_RATE_LIMITED: { code: DashboardRateLimited.code, status: 429 },
  /** 429 past the per-token cap of live streams; 503 past the server-wide one. */
  DASHBOARD_TOO_MANY_STREAMS: { code: DashboardTooManyStreams.code, status: 429 },
  /** Fleet mode, --router fly: another node owns the session; the `fly-replay` header sends Fly Proxy there. */
  SESSION_ELSEWHERE: { code: SessionElsewhere.code, status: 503 },
  /** Fleet mode: ownership of the session could not be obtained in time (or it is quarantined). */
  SESSION_UNAVAILABLE: { code: SessionUnavailable.code, status: 503 },
  /** Fleet mode: a session this upgrade would claim is beyond --max-sessions (this node) or --max-sessions-per-token (the fleet). */
  TOO_MANY_SESSIONS: { code: TooManySessions.code, status: 429 }
})

export function httpErrorBody (spec: HttpErrorSpec, message: string): { code: string, message: string } {
  return { code: spec.code, message }
}

/** Sends the refusal (`status` overrides the spec's, e.g. 401 vs 403 from a token check). */
export async function sendHttpError (reply: FastifyReply, spec: HttpErrorSpec, message: string, status = spec.status): Promise<FastifyReply> {
  return reply.code(status).send(httpErrorBody(spec, message))
}
