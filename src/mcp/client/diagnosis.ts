/**
 * Why a connection to the coordinator failed, and what the user can do about
 * it: the handshake that never opened, the HELLO the coordinator refused, the
 * close code it ended a connection with.
 *
 * Contract:
 * - Owns: turning failures into `MpacError`s (code, message, hint, whether it
 *   is worth retrying; src/errors.ts) — every connection-failure message of
 *   the shim.
 * - Promises: every function here is pure except `diagnoseHandshake` (and
 *   `handshakeFailure`, which uses it): one HTTP request to the same URL,
 *   2 s at most, and no other I/O. The `retryable` flag is the client's retry policy: false means the
 *   failure cannot heal by itself.
 * - Never: holds state, logs, retries, or touches a WebSocket.
 */
import { fetch } from 'undici'
import { CLOSE, PEER_CLOSE } from '../../protocol/close-codes.js'
import { AuthRejected, ConfigInvalid, RemoteClosed, RemoteSessionMismatch, RemoteUnavailable, Replaced, TlsUntrusted, type MpacError } from '../../errors.js'
import type { ErrorPayload } from './types.js'

/** What the user can do about a rejected HELLO. */
export function helloHint (code: string, hasToken: boolean): string {
  switch (code) {
    case 'CREDENTIAL_REJECTED':
      return hasToken
        ? 'the coordinator refused MPAC_COORDINATOR_TOKEN: check the token and that its allowed_sessions include this session id'
        : 'this coordinator requires a token: set MPAC_COORDINATOR_TOKEN'
    case 'AUTHORIZATION_FAILED':
      return 'no role could be granted: check MPAC_AGENT_ROLES and the roles of your token'
    case 'SESSION_CLOSED':
      return 'the session is closed: use another session id'
    case 'REPLAY_DETECTED':
      return 'the coordinator refused the message time: check that this machine\'s clock is correct'
    default:
      return 'check the coordinator URL, session id and token'
  }
}

/** The error for a HELLO the coordinator answered with a PROTOCOL_ERROR (`err`). */
export function helloRefusal (err: ErrorPayload | undefined, ctx: { url: string, sessionId: string, hasToken: boolean }): MpacError {
  const code = err?.error_code ?? 'UNKNOWN'
  if (code === 'INVALID_REFERENCE') {
    return new RemoteSessionMismatch(`the coordinator at ${ctx.url} refused session ${JSON.stringify(ctx.sessionId)} (${err?.description ?? 'invalid reference'})`, {
      hint: 'MPAC_SESSION_ID must match the /session/<id> of MPAC_COORDINATOR_URL (or leave MPAC_SESSION_ID unset)',
      detail: err !== undefined ? { ...err } : {}
    })
  }
  return new AuthRejected(`the coordinator refused to admit this agent (${code}: ${err?.description ?? 'no description'})`, {
    retryable: false,
    hint: helloHint(code, ctx.hasToken),
    detail: err !== undefined ? { ...err } : {}
  })
}

/** The error for a SESSION_INFO naming another session than the one pinned by the URL. */
export function otherSessionServed (url: string, served: string, wanted: string): MpacError {
  return new RemoteSessionMismatch(`the coordinator at ${url} serves session ${JSON.stringify(served)}, not ${JSON.stringify(wanted)}`, {
    hint: 'check MPAC_COORDINATOR_URL (/session/<id>) and MPAC_SESSION_ID; in local mode another workspace\'s sidecar may hold the port: set MPAC_SIDECAR_PORT'
  })
}

/**
 * What a close of an admitted connection means (close codes of
 * src/protocol/close-codes.ts): `failWith` for every call in flight,
 * `rejection` when no later call may reconnect (reported instead), and
 * whether to reconnect in the background.
 *
 * Permanent: 4004 (wrong path or session id), 4401/4403 (token), 4409
 * (replaced). 1009 fails the call for good but the connection is re-made.
 * Temporary, reconnect with backoff: 1000/1001/1006, 1011, 1012 (restart),
 * 4408 (no HELLO in time), 4429 (rate and session limits, slow consumer),
 * 4503 (session unavailable).
 */
export function closeVerdict (code: number, reason: string, ctx: { url: string, principalId: string, hasToken: boolean }): { failWith: MpacError, rejection: MpacError | undefined, reconnect: boolean } {
  if (code === CLOSE.NOT_FOUND.code) {
    const notFound = notFoundError(ctx.url, reason)
    return { failWith: notFound, rejection: notFound, reconnect: false }
  }
  if (code === CLOSE.TOO_BIG.code) {
    return {
      failWith: new RemoteClosed(`the coordinator closed the connection (1009 ${reason}): the message was larger than it accepts`, {
        retryable: false,
        hint: 'the same call will fail again: send a smaller change (split the file or the change)'
      }),
      rejection: undefined,
      reconnect: true
    }
  }
  if (code === CLOSE.REPLACED.code) {
    // Another connection of the same principal took over; fighting back would loop forever.
    const replaced = new Replaced(ctx.principalId, {
      retryable: false,
      hint: 'two agents use the same principal id (the same MPAC_PRINCIPAL_ID, or the same MPAC_AGENT_NAME and workspace path on two machines): give each its own, then restart this one'
    })
    return { failWith: replaced, rejection: replaced, reconnect: false }
  }
  const dropped = new RemoteClosed(`the connection to the coordinator dropped (${code}) while the call was in flight; it may or may not have taken effect`, {
    retryable: true,
    hint: 'check the session state with who_is_working, then retry'
  })
  if (code === CLOSE.UNAUTHORIZED.code || code === PEER_CLOSE.FORBIDDEN.code) {
    // Token revoked or not allowed any more: reconnecting in the background cannot help.
    // The calls in flight still learn that the connection dropped under them.
    return {
      failWith: dropped,
      rejection: new AuthRejected(`the coordinator closed the connection (${code} ${reason})`, { hint: helloHint('CREDENTIAL_REJECTED', ctx.hasToken) }),
      reconnect: false
    }
  }
  return { failWith: dropped, rejection: undefined, reconnect: true }
}

/**
 * The error for a WebSocket handshake that failed with `handshake`: the
 * diagnosis of `diagnoseHandshake` when it learnt something, else
 * `unreachableError`.
 */
export function handshakeFailure (url: string, token: string | undefined, handshake: Error): Promise<MpacError> {
  return diagnoseHandshake(url, token).then(error => error, (why: unknown) => unreachableError(url, handshake, why))
}

/**
 * After a failed WebSocket handshake, asks the same URL over HTTP with the
 * same Authorization header: the coordinator answers 401/403 for a bad token
 * or a session the token may not use, which the WebSocket API hides.
 * Resolves with the error to report; rejects when nothing useful was learnt.
 */
export async function diagnoseHandshake (url: string, token: string | undefined): Promise<MpacError> {
  const httpUrl = url.replace(/^ws/i, 'http')
  const headers: Record<string, string> = {}
  if (token !== undefined) headers['authorization'] = `Bearer ${token}`
  let res: Awaited<ReturnType<typeof fetch>>
  try {
    res = await fetch(httpUrl, { headers, signal: AbortSignal.timeout(2000) })
  } catch (err) {
    const tls = tlsErrorCode(err)
    if (tls === undefined) throw err
    return new TlsUntrusted(tls, url, {
      hint: tls === 'ERR_TLS_CERT_ALTNAME_INVALID'
        ? 'the certificate does not name this host: check the host in MPAC_COORDINATOR_URL'
        : 'for a coordinator whose certificate comes from a private CA, set NODE_EXTRA_CA_CERTS=/path/to/ca.pem in the environment of mpac-mcp',
      detail: { tls_error: tls }
    })
  }
  let message = ''
  try {
    const body = await res.json() as { message?: unknown }
    if (typeof body.message === 'string') message = body.message
  } catch {
    // not JSON
  }
  if (res.status === 401 || res.status === 403) {
    return new AuthRejected(`the coordinator refused the connection (HTTP ${res.status}${message !== '' ? ': ' + message : ''})`, {
      hint: res.status === 401
        ? (token === undefined ? 'this coordinator requires a token: set MPAC_COORDINATOR_TOKEN' : 'MPAC_COORDINATOR_TOKEN is not valid for this coordinator')
        : 'MPAC_COORDINATOR_TOKEN may not use this session: check the session id in MPAC_COORDINATOR_URL and the token\'s allowed_sessions',
      detail: { http_status: res.status }
    })
  }
  if (res.status === 404) return notFoundError(url, 'HTTP 404')
  throw new Error(`HTTP ${res.status}`)
}

/** The URL to use instead of one the coordinator answered 4004 (or HTTP 404) for. */
function notFoundError (url: string, reason: string): MpacError {
  let origin = url
  let session: string | undefined
  try {
    const parsed = new URL(url)
    origin = `${parsed.protocol}//${parsed.host}`
    const segments = parsed.pathname.split('/').filter(x => x !== '')
    if (segments[0] === 'session' && segments[1] !== undefined) session = decodeURIComponent(segments[1])
  } catch { /* validated at start */ }
  const message = session === undefined
    ? `the coordinator at ${origin} has no endpoint at ${url} (${reason}): connect to ${origin}/session/<session id>`
    : `the coordinator at ${origin} does not serve session ${JSON.stringify(session)} (${reason}): a single-session coordinator serves only its own id`
  return new ConfigInvalid(message, {
    retryable: false,
    hint: session === undefined
      ? `set MPAC_COORDINATOR_URL to ${origin}/session/<session id> (the id is any name your team agrees on)`
      : `use the session id the coordinator prints in its banner (${origin}/session/<id>), or ${origin}/ for a single-session coordinator`,
    detail: { close_reason: reason }
  })
}

/** The innermost error of an undici failure that names a cause (`cause` chain). */
function rootCause (err: unknown): { code: string | undefined, message: string } | undefined {
  let found: { code: string | undefined, message: string } | undefined
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 6; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    const raw = (e as { message?: unknown }).message
    const message = (typeof raw === 'string' ? raw : '').trim().split('\n')[0] ?? ''
    if (typeof code === 'string' || (message !== '' && message !== 'fetch failed')) found = { code: typeof code === 'string' ? code : undefined, message }
  }
  return found
}

/**
 * A WebSocket that never opened: undici's error event carries no cause, so
 * the cause comes from the HTTP probe of the same URL (diagnoseHandshake),
 * with a hint that fits it.
 */
export function unreachableError (url: string, handshake: Error, probe: unknown): MpacError {
  const cause = rootCause(probe)
  let host = url
  try { host = new URL(url).host } catch { /* validated at start */ }
  const why = cause !== undefined ? (cause.code !== undefined && !cause.message.includes(cause.code) ? `${cause.code}: ${cause.message}` : cause.message) : (handshake.message !== '' ? handshake.message : 'connection failed')
  const message = `cannot reach the coordinator at ${url}: ${why}`
  const code = cause?.code
  const options = ((): { retryable: boolean, hint: string } => {
    switch (code) {
      case 'ECONNREFUSED':
        return { retryable: true, hint: `nothing listens at ${host}: check the host and port in the URL, and that the coordinator runs (if it is restarting, retry in a few seconds)` }
      case 'ENOTFOUND':
        return { retryable: false, hint: `the host name in ${url} does not resolve: check MPAC_COORDINATOR_URL for a typo, and this machine's network` }
      case 'EAI_AGAIN':
        return { retryable: true, hint: 'name resolution failed for now (offline, DNS down): retry when the network is back' }
      case 'ERR_SSL_WRONG_VERSION_NUMBER':
      case 'ERR_SSL_PACKET_LENGTH_TOO_LONG':
      case 'EPROTO':
        return { retryable: false, hint: `the server at ${host} does not speak TLS: use ws:// instead of wss:// (or the port of the TLS endpoint)` }
      case 'ETIMEDOUT':
      case 'UND_ERR_CONNECT_TIMEOUT':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ECONNRESET':
        return { retryable: true, hint: `the network path to ${host} failed: check the host, a firewall or VPN, then retry` }
      default:
        return { retryable: true, hint: 'the coordinator may be restarting; retry in a few seconds' }
    }
  })()
  return new RemoteUnavailable(message, { ...options, cause: probe, ...(code !== undefined ? { detail: { errno: code } } : {}) })
}

const TLS_ERRORS = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID'
])

/** The certificate verification code of a failed fetch (undici puts it on `cause`), if that is why it failed. */
function tlsErrorCode (err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== null && typeof e === 'object' && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && TLS_ERRORS.has(code)) return code
  }
  return undefined
}
