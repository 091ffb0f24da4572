/**
 * Errors of the shim. Each carries a stable `MPAC_ERR_*` code (style-anchors
 * §15.4) and whether retrying the same call later can succeed. Tools turn
 * them into `isError` results whose `structuredContent` holds the code.
 */

export const SHIM_ERROR_CODES = {
  /** The coordinator cannot be reached right now (down, restarting, network). Retry shortly. */
  REMOTE_UNAVAILABLE: 'MPAC_ERR_REMOTE_UNAVAILABLE',
  /** The connection dropped while the call was in flight: whether it took effect is unknown. */
  REMOTE_CLOSED: 'MPAC_ERR_REMOTE_CLOSED',
  /** No reply within the safety-net timeout. */
  REMOTE_TIMEOUT: 'MPAC_ERR_REMOTE_TIMEOUT',
  /** The coordinator serves another session than the one configured. */
  REMOTE_SESSION_MISMATCH: 'MPAC_ERR_REMOTE_SESSION_MISMATCH',
  /** Another connection with the same principal id took this one's place (close 4409); this shim stays out of the way. */
  REPLACED: 'MPAC_ERR_REPLACED',
  /** wss: the coordinator's certificate is not trusted (private CA without NODE_EXTRA_CA_CERTS, wrong host, expired). */
  TLS_UNTRUSTED: 'MPAC_ERR_TLS_UNTRUSTED',
  /** The coordinator refused the HELLO (token, roles, session). */
  AUTH_REJECTED: 'MPAC_ERR_AUTH_REJECTED',
  /** The local sidecar could not be started or the port is used by something else. */
  SIDECAR_FAILED: 'MPAC_ERR_SIDECAR_FAILED',
  /** The configuration cannot be used. */
  CONFIG_INVALID: 'MPAC_ERR_CONFIG_INVALID',
  /** A file argument names a path outside the repository (`../x`, `/etc/passwd`) or VCS metadata (`.git/…`): refused before anything is sent. */
  PATH_OUTSIDE_REPO: 'MPAC_ERR_PATH_OUTSIDE_REPO'
} as const

export type ShimErrorCode = typeof SHIM_ERROR_CODES[keyof typeof SHIM_ERROR_CODES]

export class ShimError extends Error {
  readonly code: ShimErrorCode
  readonly retryable: boolean
  /** What the user or agent can do about it. */
  readonly hint: string | undefined
  /** Wire details, e.g. the PROTOCOL_ERROR payload of a rejected HELLO. */
  readonly detail: Readonly<Record<string, unknown>> | undefined

  constructor (code: ShimErrorCode, message: string, options: { retryable?: boolean, hint?: string, detail?: Record<string, unknown>, cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined)
    this.name = 'ShimError'
    this.code = code
    this.retryable = options.retryable ?? false
    this.hint = options.hint
    this.detail = options.detail
  }
}

export function isShimError (value: unknown): value is ShimError {
  return value instanceof ShimError
}
