/**
 * Every HTTP refusal of `mpac-mcp-sidecar` (before an upgrade, or on a plain
 * HTTP route): one registry of code → status, in the style of Fastify's
 * `createError`, so a code is written once and documented once
 * (docs/coordinator.md, HTTP refusals; test/docs-registries.test.ts checks
 * both directions). The body is always `{ code, message }`.
 */
import type { FastifyReply } from 'fastify'

export interface HttpErrorSpec { readonly code: `MPAC_ERR_${string}`, readonly status: number }

function define<const T extends Record<string, HttpErrorSpec>> (specs: T): T {
  return Object.freeze(specs)
}

export const HTTP_ERRORS = define({
  AUTH_TOKEN_INVALID: { code: 'MPAC_ERR_AUTH_TOKEN_INVALID', status: 401 },
  AUTH_SESSION_FORBIDDEN: { code: 'MPAC_ERR_AUTH_SESSION_FORBIDDEN', status: 403 },
  ORIGIN_FORBIDDEN: { code: 'MPAC_ERR_ORIGIN_FORBIDDEN', status: 403 },
  HOST_FORBIDDEN: { code: 'MPAC_ERR_HOST_FORBIDDEN', status: 403 },
  METRICS_DISABLED: { code: 'MPAC_ERR_METRICS_DISABLED', status: 403 },
  NOT_FOUND: { code: 'MPAC_ERR_NOT_FOUND', status: 404 },
  UPGRADE_REQUIRED: { code: 'MPAC_ERR_UPGRADE_REQUIRED', status: 426 },
  /** 429 per address or per token; 503 when the server-wide pre-HELLO cap is reached. */
  TOO_MANY_CONNECTIONS: { code: 'MPAC_ERR_TOO_MANY_CONNECTIONS', status: 429 },
  /** Dashboard API or live stream without a valid sign-in (pages redirect to /dashboard/login instead). */
  DASHBOARD_LOGIN_REQUIRED: { code: 'MPAC_ERR_DASHBOARD_LOGIN_REQUIRED', status: 401 },
  /** More than 10 dashboard sign-in attempts per minute from one client address. */
  DASHBOARD_RATE_LIMITED: { code: 'MPAC_ERR_DASHBOARD_RATE_LIMITED', status: 429 },
  /** 429 past the per-token cap of live streams; 503 past the server-wide one. */
  DASHBOARD_TOO_MANY_STREAMS: { code: 'MPAC_ERR_DASHBOARD_TOO_MANY_STREAMS', status: 429 },
  /** Fleet mode, --router fly: another node owns the session; the `fly-replay` header sends Fly Proxy there. */
  SESSION_ELSEWHERE: { code: 'MPAC_ERR_SESSION_ELSEWHERE', status: 503 },
  /** Fleet mode: ownership of the session could not be obtained in time (or it is quarantined). */
  SESSION_UNAVAILABLE: { code: 'MPAC_ERR_SESSION_UNAVAILABLE', status: 503 },
  /** Fleet mode: a session this upgrade would claim is beyond --max-sessions (this node) or --max-sessions-per-token (the fleet). */
  TOO_MANY_SESSIONS: { code: 'MPAC_ERR_TOO_MANY_SESSIONS', status: 429 }
})

export function httpErrorBody (spec: HttpErrorSpec, message: string): { code: string, message: string } {
  return { code: spec.code, message }
}

/** Sends the refusal (`status` overrides the spec's, e.g. 401 vs 403 from a token check). */
export async function sendHttpError (reply: FastifyReply, spec: HttpErrorSpec, message: string, status = spec.status): Promise<FastifyReply> {
  return reply.code(status).send(httpErrorBody(spec, message))
}
