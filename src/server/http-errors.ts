/**
 * Every HTTP refusal of `mpac-mcp-sidecar` (before an upgrade, or on a plain
 * HTTP route): one registry of code → status, the codes themselves defined
 * with the other MPAC_ERR_* codes in src/errors.ts (kind `http`), so a code
 * is written once and documented once
 * (docs/coordinator.md, HTTP refusals; test/docs-registries.test.ts checks
 * both directions). The body is always `{ code, message }`.
 */
import type { FastifyReply } from 'fastify'
import { AuthSessionForbidden, AuthTokenInvalid, HostForbidden, MetricsDisabled, NotFound, OriginForbidden, TooManyConnections, UpgradeRequired, type MpacErrorCode } from '../errors.js'

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
  TOO_MANY_CONNECTIONS: { code: TooManyConnections.code, status: 429 }
})

export function httpErrorBody (spec: HttpErrorSpec, message: string): { code: string, message: string } {
  return { code: spec.code, message }
}

/** Sends the refusal (`status` overrides the spec's, e.g. 401 vs 403 from a token check). */
export async function sendHttpError (reply: FastifyReply, spec: HttpErrorSpec, message: string, status = spec.status): Promise<FastifyReply> {
  return reply.code(status).send(httpErrorBody(spec, message))
}
