import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import fastifyWebsocket from '@fastify/websocket'
import Fastify, { LogController, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { ManagedSessionStore } from '../store/index.js'
import { CLOSE } from '../protocol/close-codes.js'
import type { ServerConfig } from './config.js'
import { Connection, type AuthState, type HeaderAuth, type WebSocketLike } from './connection.js'
import { Metrics } from './metrics.js'
import { SessionRegistry, type FleetOptions } from './registry.js'
import { Router } from './routing.js'
import type { TokenTable } from './token-table.js'
import { registerUpgradeGuard } from './upgrade-guard.js'
import { HTTP_ERRORS, sendHttpError } from './http-errors.js'
import { registerDashboard, type DashboardHandle } from './dashboard/routes.js'

export interface AppDeps {
  /** The synchronous store (SQLite, memory); unused in fleet mode. */
  readonly store: ManagedSessionStore
  readonly logger: Logger
  readonly now?: () => number
  /** The dashboard streams' keep-alive period (tests shorten it; default 15 s). */
  readonly dashboardKeepAliveMs?: number
  /** Fleet mode (--store postgres): the fleet store, the node lease and the handover watcher. */
  readonly fleet?: FleetOptions
}

/** What the app exposes to its owner (CLI, tests) beyond Fastify. */
export interface MpacHandle {
  readonly registry: SessionRegistry
  readonly metrics: Metrics
  readonly auth: AuthState
  /** Swaps the token table and closes connections whose token is no longer valid; returns how many. */
  setTokenTable (table: TokenTable | undefined): number
  readonly isReady: () => boolean
  /** The web dashboard (undefined when --dashboard is off). */
  readonly dashboard: DashboardHandle | undefined
}

declare module 'fastify' {
  interface FastifyInstance {
    mpac: MpacHandle
  }
}

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/
export const METRICS_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/**
 * Builds the sidecar's Fastify app (never listens): WebSocket `/session/:id`
 * (and `/` in single-session mode), `/healthz`, `/readyz`, `/metrics`.
 */
export function buildApp (config: ServerConfig, deps: AppDeps): FastifyInstance {
  const { logger } = deps
  const hops = config.trustProxy
  const { headersTimeoutSec, requestTimeoutSec } = config.limits
  // Slowloris: a client that trickles its headers (or a request) is cut by Node
  // itself, checked at least every second (Node's default check is every 30 s).
  const httpTimeouts = {
    headersTimeout: Math.round(headersTimeoutSec * 1000),
    requestTimeout: Math.round(requestTimeoutSec * 1000),
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.round(headersTimeoutSec * 500)))
  }
  const app = Fastify({
    loggerInstance: logger,
    // A hop count trusts the `hops` nearest proxies (Fastify's typings omit the number form).
    trustProxy: typeof hops === 'number' ? (_address: string, hop: number) => hop < hops : hops,
    logController: new LogController({ disableRequestLogging: true }),
    return503OnClosing: true,
    requestTimeout: httpTimeouts.requestTimeout,
    ...(config.tls === undefined
      ? { http: httpTimeouts }
      : { https: { cert: readFileSync(config.tls.certFile), key: readFileSync(config.tls.keyFile), ...httpTimeouts } })
  }) as unknown as FastifyInstance

  const metrics = new Metrics()
  const fleet = deps.fleet
  const registry = new SessionRegistry({ config, store: deps.store, logger, metrics, ...(deps.now === undefined ? {} : { now: deps.now }), ...(fleet === undefined ? {} : { fleet }) })
  const router = fleet === undefined
    ? undefined
    : new Router({
      mode: fleet.router,
      node: () => fleet.lease.identity,
      store: fleet.store,
      isServedHere: sid => registry.isServedHere(sid),
      acquire: async (sid, digest) => await registry.acquire(sid, digest),
      waitForRelease: async (sid, ms) => { await registry.waitForRelease(sid, ms) },
      claimWaitMs: config.routing.claimWaitSec * 1000,
      replayTimeoutMs: config.routing.replayTimeoutSec * 1000,
      ...(metrics.fleet === undefined ? {} : { metrics: metrics.fleet })
    })
  const auth: AuthState = { table: config.tokenTable }
  const headerAuth = new WeakMap<IncomingMessage, HeaderAuth>()
  let ready = false
  let closing = false
  const dashboard = config.dashboard
    ? registerDashboard(app, { config, registry, auth, logger, now: deps.now ?? Date.now, ...(deps.dashboardKeepAliveMs === undefined ? {} : { keepAliveMs: deps.dashboardKeepAliveMs }) })
    : undefined
  if (config.dashboardOffReason !== undefined) logger.warn(config.dashboardOffReason)

  const handle: MpacHandle = {
    registry,
    metrics,
    auth,
    setTokenTable (table) {
      auth.table = table
      const closed = registry.revalidate(table)
      // Dashboard streams of a removed or expired token end at once (event: revoked).
      dashboard?.hub.revalidate()
      return closed
    },
    // Fleet mode: also only while the node's lease holds (it is renewed on PostgreSQL, so PG answered within the TTL).
    isReady: () => ready && !closing && (fleet === undefined || fleet.lease.valid()),
    dashboard
  }
  app.decorate('mpac', handle)

  app.register(fastifyWebsocket, {
    options: { maxPayload: config.limits.maxFrameBytes, perMessageDeflate: false },
    errorHandler (error, socket) {
      logger.debug({ err: error }, 'websocket error')
      // ws has already started the close handshake for protocol errors (1009 …); cut only open sockets.
      const ws = socket as unknown as WebSocketLike
      if (ws.readyState === 1) ws.terminate()
    },
    preClose (done) {
      closing = true
      if (fleet === undefined) {
        registry.shutdown(CLOSE.RESTART)
        done()
        return
      }
      // Fleet mode: every session is released (flushed, snapshotted, 1012) so that peers claim it at once.
      registry.releaseAll().catch((err: unknown) => { logger.error({ err }, 'fleet: releasing sessions at shutdown failed') }).finally(() => {
        for (const conn of [...registry.connections()]) conn.close(CLOSE.RESTART)
        done()
      })
    }
  })

  /** The session a request addresses, or undefined (→ 4004). */
  const sessionOf = (request: FastifyRequest): string | undefined => {
    const id = (request.params as Record<string, string | undefined>).id
    if (id === undefined) return config.mode === 'single' ? config.sessionId : undefined
    if (!SESSION_ID.test(id)) return undefined
    if (config.mode === 'single' && id !== config.sessionId) return undefined
    return id
  }

  /**
   * Bearer auth before the upgrade (authenticated profile): an unknown token
   * → 401, a token not allowed for this session → 403; the socket is never
   * upgraded. No header is fine here: the HELLO credential decides.
   */
  const onRequest = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    await checkAccess(request, reply)
    if (reply.sent || router === undefined || !isUpgrade(request)) return
    const sessionId = sessionOf(request)
    if (sessionId === undefined || closing) return
    await routeUpgrade(router, sessionId, request, reply)
  }
  /**
   * Fleet mode, before the upgrade: serve here, send Fly Proxy to the owner
   * (fly-replay), or refuse for now (503 + Retry-After). Never upgrades a
   * request it replays (Fly's rule for WebSockets).
   */
  const routeUpgrade = async (r: Router, sessionId: string, request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    let decision
    try {
      decision = await r.route(sessionId, request.headers, headerAuth.get(request.raw)?.digest)
    } catch (err) {
      request.log.error({ err, sessionId }, 'fleet: routing the upgrade failed')
      decision = { kind: 'unavailable', reason: 'the store is unavailable', retryAfterSec: 1 } as const
    }
    switch (decision.kind) {
      case 'serve':
        return
      case 'replay':
        request.log.debug({ sessionId, replay: decision.header }, 'fleet: upgrade replayed to the owner')
        await sendHttpError(reply.header('fly-replay', decision.header).header('retry-after', '1'), HTTP_ERRORS.SESSION_ELSEWHERE, 'another node serves this session; retry (Fly Proxy replays this request to it)')
        return
      case 'refused':
        request.log.info({ sessionId, status: 429, reason: decision.reason }, 'upgrade refused')
        await sendHttpError(reply.header('retry-after', '1'), HTTP_ERRORS.TOO_MANY_SESSIONS, decision.reason)
        return
      case 'unavailable':
        request.log.info({ sessionId, status: 503, reason: decision.reason }, 'upgrade refused')
        await sendHttpError(reply.header('retry-after', String(decision.retryAfterSec)), HTTP_ERRORS.SESSION_UNAVAILABLE, decision.reason)
    }
  }
  const checkAccess = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    if (isUpgrade(request)) {
      const refused = registry.prehelloRefusal(request.ip)
      if (refused !== undefined) {
        request.log.info({ status: refused.status, address: request.ip }, `upgrade refused: ${refused.reason}`)
        await sendHttpError(reply.header('retry-after', '1'), HTTP_ERRORS.TOO_MANY_CONNECTIONS, refused.reason, refused.status)
        return
      }
    }
    if (registry.addressConnections(request.ip) >= config.limits.maxConnectionsPerAddress) {
      await tooMany(request, reply, 'address', config.limits.maxConnectionsPerAddress)
      return
    }
    const table = auth.table
    const header = request.headers.authorization
    if (table === undefined || header === undefined) return
    const sessionId = sessionOf(request)
    if (sessionId === undefined) return
    const m = /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header)
    if (m === null) {
      await sendHttpError(reply, HTTP_ERRORS.AUTH_TOKEN_INVALID, 'Authorization must be "Bearer <token>"')
      return
    }
    const checked = table.check(m[1] as string, sessionId)
    if (!checked.ok) {
      request.log.info({ status: checked.status, reason: checked.reason }, 'upgrade refused')
      await sendHttpError(reply, checked.status === 401 ? HTTP_ERRORS.AUTH_TOKEN_INVALID : HTTP_ERRORS.AUTH_SESSION_FORBIDDEN, checked.reason)
      return
    }
    if (registry.tokenConnections(checked.digest) >= config.limits.maxConnectionsPerToken) {
      await tooMany(request, reply, 'token', config.limits.maxConnectionsPerToken)
      return
    }
    headerAuth.set(request.raw, { digest: checked.digest, entry: checked.entry })
  }
  /** --max-connections-per-address / --max-connections-per-token before the upgrade: HTTP 429. */
  const tooMany = async (request: FastifyRequest, reply: FastifyReply, what: 'address' | 'token', limit: number): Promise<void> => {
    request.log.info({ status: 429, limit: `max_connections_per_${what}`, value: limit }, 'upgrade refused')
    await sendHttpError(reply.header('retry-after', '1'), HTTP_ERRORS.TOO_MANY_CONNECTIONS, `connection limit for this ${what} reached (at most ${limit} open connections, --max-connections-per-${what})`)
  }

  const wsHandler = (socket: unknown, request: FastifyRequest): void => {
    const ws = socket as WebSocketLike
    const sessionId = sessionOf(request)
    if (sessionId === undefined || closing) {
      ws.close(closing ? CLOSE.RESTART.code : CLOSE.NOT_FOUND.code, closing ? CLOSE.RESTART.reason : CLOSE.NOT_FOUND.reason)
      return
    }
    // Listeners are attached synchronously inside the constructor.
    const conn = new Connection(ws, sessionId, headerAuth.get(request.raw), { config, registry, auth, metrics, logger }, request.ip)
    // Concurrent upgrades may all have passed the check before the upgrade: count again now.
    const overAddress = registry.bindAddress(conn, request.ip)
    if (overAddress !== undefined) conn.close(overAddress)
    if (logger.isLevelEnabled('debug')) conn.log.debug('connection opened')
  }
  const upgradeRequired = async (_request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    await sendHttpError(reply.header('upgrade', 'websocket'), HTTP_ERRORS.UPGRADE_REQUIRED, 'connect with a WebSocket client')
  }

  app.register(async (scope) => {
    // After @fastify/websocket's own hooks (which close a refused upgrade's socket), before the routes' token checks.
    registerUpgradeGuard(scope, config)
    scope.route({ method: 'GET', url: '/session/:id', onRequest, handler: upgradeRequired, wsHandler: wsHandler as never })
    if (config.mode === 'single') {
      scope.route({ method: 'GET', url: '/', onRequest, handler: upgradeRequired, wsHandler: wsHandler as never })
    }
    // Any other path: WebSocket clients get close 4004 (as the Python server did), HTTP gets 404.
    scope.route({
      method: 'GET',
      url: '/*',
      handler: async (_request, reply) => { await sendHttpError(reply, HTTP_ERRORS.NOT_FOUND, 'not found') },
      wsHandler: ((socket: WebSocketLike) => { socket.close(CLOSE.NOT_FOUND.code, CLOSE.NOT_FOUND.reason) }) as never
    })

    // Health endpoints are unauthenticated, so they say nothing about tenants (no counts, no ids).
    scope.get('/healthz', async () => ({ status: 'ok' }))
    scope.get('/readyz', async (_request, reply) => {
      if (!handle.isReady()) return reply.code(503).send({ status: closing ? 'shutting down' : 'starting' })
      return { status: 'ready' }
    })
    // Metrics name every tenant's activity: on this listener only with MPAC_METRICS_TOKEN, or
    // when explicitly opened (--metrics-public); --metrics-port serves them on loopback instead.
    scope.get('/metrics', async (request, reply) => {
      if (config.metricsToken === undefined && !config.metricsPublic) {
        return sendHttpError(reply, HTTP_ERRORS.METRICS_DISABLED, 'metrics are not served on this listener without a token: set MPAC_METRICS_TOKEN, use --metrics-port (a loopback listener), or pass --metrics-public')
      }
      if (config.metricsToken !== undefined && !bearerMatches(request.headers.authorization, config.metricsToken)) {
        return sendHttpError(reply.header('www-authenticate', 'Bearer'), HTTP_ERRORS.AUTH_TOKEN_INVALID, 'metrics need the MPAC_METRICS_TOKEN bearer token')
      }
      return reply.type(METRICS_TYPE).send(metrics.render())
    })
  })

  app.addHook('onReady', async () => {
    registry.start()
    ready = true
  })
  app.addHook('onClose', async () => {
    closing = true
  })
  // Live dashboard streams never end by themselves: end them before the server waits for its connections.
  app.addHook('preClose', async () => {
    dashboard?.hub.close()
  })
  return app
}

function isUpgrade (request: FastifyRequest): boolean {
  const upgrade = request.headers.upgrade
  return typeof upgrade === 'string' && upgrade.toLowerCase() === 'websocket'
}

/** Constant-time comparison of a bearer header with the expected token (through SHA-256, equal lengths). */
function bearerMatches (header: string | undefined, expected: string): boolean {
  const m = header === undefined ? null : /^Bearer[ \t]+([^\s]+)[ \t]*$/i.exec(header)
  if (m === null) return false
  const a = createHash('sha256').update(m[1] as string).digest()
  const b = createHash('sha256').update(expected).digest()
  return timingSafeEqual(a, b)
}
