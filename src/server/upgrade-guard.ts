import { isIP } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { HTTP_ERRORS, sendHttpError } from './http-errors.js'

/**
 * The Origin/Host guard of WebSocket upgrades, in every mode (docs/security.md,
 * "Local trust model"). WebSockets have no CORS: any web page the user
 * opens may connect to ws://127.0.0.1:<port>, and through DNS rebinding a
 * page of evil.example may reach it under its own name. Browsers always
 * send `Origin`; MPAC clients (the shim, Python, Node) do not. So, before
 * the upgrade (HTTP 403, the socket is never upgraded, no session state is
 * touched):
 *
 * - an `Origin` header is refused unless --allowed-origin names it;
 * - a `Host` is refused unless it is `localhost` or a loopback IP (any
 *   port: tunnels and forwarders), the bind address or the address the
 *   connection arrived at with the port it arrived at, or --allowed-host
 *   names it (a name alone
 *   allows any port, `name:port` that port, `*` any Host). A request
 *   without Host cannot come from a browser and passes.
 *
 * Each refusal is logged once (info) with the reason and the value, cut to
 * 100 characters. Plain HTTP requests (/healthz …) are not affected.
 */

/**
 * The settings the guard reads (a part of ServerConfig, declared here so
 * that config.ts, which parses --allowed-origin and --allowed-host with this
 * file's helpers, and this file do not import each other).
 */
export interface GuardConfig {
  readonly host: string
  readonly tls: object | undefined
  readonly tlsByProxy: boolean
  readonly allowedOrigins: readonly string[]
  readonly allowedHosts: readonly string[]
}

const SHOWN = 100

function shown (value: string): string {
  return value.length > SHOWN ? `${value.slice(0, SHOWN)}…` : value
}

/** `host[:port]` of a Host header (or an --allowed-host entry), lower case, brackets and a trailing dot removed; undefined when malformed. */
export function splitHost (value: string): { host: string, port: number | undefined } | undefined {
  const v = value.trim().toLowerCase()
  let host: string
  let portText: string | undefined
  if (v.startsWith('[')) {
    const end = v.indexOf(']')
    if (end === -1) return undefined
    host = v.slice(1, end)
    const rest = v.slice(end + 1)
    if (rest !== '' && !rest.startsWith(':')) return undefined
    portText = rest === '' ? undefined : rest.slice(1)
    if (isIP(host) !== 6) return undefined
  } else {
    const colon = v.indexOf(':')
    if (colon !== v.lastIndexOf(':')) return undefined // unbracketed IPv6
    host = colon === -1 ? v : v.slice(0, colon)
    portText = colon === -1 ? undefined : v.slice(colon + 1)
  }
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host === '') return undefined
  if (portText === undefined) return { host, port: undefined }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) return undefined
  return { host, port: Number(portText) }
}

/** The serialized origin of an --allowed-origin entry (`scheme://host[:port]`), or undefined when it is not one. */
export function normalizeOrigin (value: string): string | undefined {
  let url: URL
  try {
    url = new URL(value.trim())
  } catch {
    return undefined
  }
  if (url.origin === 'null' || url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return undefined
  if (url.pathname !== '/' && url.pathname !== '') return undefined
  if (value.trim().replace(/\/$/, '').toLowerCase() !== url.origin.toLowerCase()) return undefined
  return url.origin
}

const LOOPBACK = /^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$/

function stripMapped (address: string | undefined): string | undefined {
  return address?.startsWith('::ffff:') === true ? address.slice(7) : address
}

/** Why a Host header is refused, or undefined when it is allowed (also the dashboard's check, src/server/dashboard/routes.ts). */
export function hostRefusal (config: GuardConfig, header: string, localAddress: string | undefined, localPort: number | undefined): string | undefined {
  if (config.allowedHosts.includes('*')) return undefined
  const parsed = splitHost(header)
  if (parsed === undefined) return 'malformed Host header'
  const defaultPort = config.tls !== undefined || config.tlsByProxy ? 443 : 80
  const port = parsed.port ?? defaultPort
  for (const entry of config.allowedHosts) {
    const allowed = splitHost(entry)
    if (allowed !== undefined && allowed.host === parsed.host && (allowed.port === undefined || allowed.port === port)) return undefined
  }
  // A loopback name can only be what the client dialled on this machine, at
  // any port (an ssh tunnel or a TCP forwarder in front); DNS rebinding
  // always shows the attacker's name, and a page served from localhost
  // itself sends Origin, which is checked above.
  if (LOOPBACK.test(parsed.host)) return undefined
  const bind = splitHost(config.host)?.host
  if ((parsed.host === bind || parsed.host === stripMapped(localAddress)) && port === localPort) return undefined
  return 'Host is not this server\'s address (DNS rebinding?); allow it with --allowed-host / MPAC_ALLOWED_HOSTS'
}

/**
 * Registers the guard as an onRequest hook of the routes' scope. It must run
 * after @fastify/websocket's hook (which marks the request as an upgrade, so
 * that the socket is closed after the 403) and before the routes' own
 * onRequest (token checks).
 */
export function registerUpgradeGuard (app: FastifyInstance, config: GuardConfig): void {
  const origins = new Set(config.allowedOrigins.map(o => o.toLowerCase()))
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const upgrade = request.headers.upgrade
    if (upgrade === undefined || upgrade.toLowerCase() !== 'websocket') return
    const origin = request.headers.origin
    if (origin !== undefined && !origins.has(origin.trim().toLowerCase())) {
      request.log.info({ origin: shown(origin), url: shown(request.url) }, 'upgrade refused: Origin not allowed')
      await sendHttpError(reply, HTTP_ERRORS.ORIGIN_FORBIDDEN, `WebSocket upgrades from web pages are refused (Origin ${JSON.stringify(shown(origin))}); allow the origin with --allowed-origin / MPAC_ALLOWED_ORIGINS`)
      return reply
    }
    const host = request.headers.host
    if (host === undefined) return
    const socket = request.raw.socket
    const why = hostRefusal(config, host, socket.localAddress, socket.localPort)
    if (why !== undefined) {
      request.log.info({ host: shown(host), url: shown(request.url), reason: why }, 'upgrade refused: Host not allowed')
      await sendHttpError(reply, HTTP_ERRORS.HOST_FORBIDDEN, `${why} (Host ${JSON.stringify(shown(host))})`)
      return reply
    }
  })
}
