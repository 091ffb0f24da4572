/**
 * The dashboard's HTTP routes on the sidecar's own app and origin
 * (agent-hooks-and-dashboard.md §9; docs/dashboard.md): pages, the view
 * JSON, the SSE stream, sign-in and sign-out, and the two static assets.
 *
 * Every dashboard request passes the WebSocket route's Host check (DNS
 * rebinding) and, when it carries an Origin, must come from this origin (or
 * an --allowed-origin); a POST with `Origin: null` (our no-referrer pages
 * make browsers send that) or none must be same-origin by Sec-Fetch-Site. With a token table, every request
 * needs a sign-in (pages redirect to the login form, the API and the stream
 * answer 401), re-checked against the current table. Without one (a
 * loopback coordinator: config.ts refuses the dashboard on other binds)
 * there is no sign-in. Responses are never cached and send no Referer; the
 * CSP allows only this origin's script and style files.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { AuthState } from '../connection.js'
import type { ServerConfig } from '../config.js'
import { HTTP_ERRORS, httpErrorBody, type HttpErrorSpec } from '../http-errors.js'
import type { SessionRegistry } from '../registry.js'
import { hostRefusal } from '../upgrade-guard.js'
import { VERSION } from '../../version.js'
import { CSS_ASSET, JS_ASSET } from './assets.js'
import { canView, cookieValue, DashboardAuth, viewerKey, viewOnly, type Viewer } from './auth.js'
import { conflictPage, errorPage, idlePage, indexPage, loginPage, sessionPage, type IndexRow, type PageViewer } from './html.js'
import { DashboardHub } from './hub.js'

export const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

const SECURITY_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-security-policy': CSP,
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY'
})

const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/
/** Sessions listed on the index at most. */
const INDEX_CAP = 200
const SHOWN = 100

export interface DashboardDeps {
  readonly config: ServerConfig
  readonly registry: SessionRegistry
  readonly auth: AuthState
  readonly logger: Logger
  readonly now: () => number
  /** Keep-alive period of the live streams (tests shorten it). */
  readonly keepAliveMs?: number
}

export interface DashboardHandle {
  readonly hub: DashboardHub
  readonly signIns: DashboardAuth
}

const shown = (v: string): string => v.length > SHOWN ? `${v.slice(0, SHOWN)}…` : v

export function registerDashboard (app: FastifyInstance, deps: DashboardDeps): DashboardHandle {
  const { config, registry, auth, logger, now } = deps
  const https = config.tls !== undefined || config.tlsByProxy
  const cookieName = https ? '__Host-mpac_dash' : 'mpac_dash'
  const cookieAttrs = `HttpOnly; SameSite=Strict; Path=/${https ? '; Secure' : ''}`
  const local = config.tokenTable === undefined
  const origins = new Set(config.allowedOrigins.map(o => o.toLowerCase()))
  const signIns = new DashboardAuth()
  const hub = new DashboardHub({
    registry,
    logger,
    now,
    maxStreams: config.limits.maxDashboardStreams,
    maxStreamsPerToken: config.limits.maxDashboardStreamsPerToken,
    maxBufferedBytes: config.limits.maxBufferedBytes,
    ...(deps.keepAliveMs === undefined ? {} : { keepAliveMs: deps.keepAliveMs })
  })

  /**
   * Why a request must be refused as cross-origin, or undefined. A real
   * Origin must be this server's (or an --allowed-origin). Our pages send
   * no Referer, so a browser's form post carries `Origin: null`: then the
   * browser's Sec-Fetch-Site must say same-origin. A POST without Origin is
   * refused when the browser marks it as not same-origin; any other request
   * marked cross-site is refused unless it is a top-level navigation (a
   * link to the dashboard; SameSite=Strict keeps the cookie off it).
   */
  const originRefusal = (method: string, origin: string | undefined, site: string | string[] | undefined, mode: string | string[] | undefined, host: string | undefined): string | undefined => {
    const o = origin?.trim().toLowerCase()
    if (o !== undefined && o !== 'null') {
      const own = host === undefined ? undefined : `${https ? 'https' : 'http'}://${host}`.toLowerCase()
      return o === own || origins.has(o) ? undefined : `requests from another origin are refused (Origin ${JSON.stringify(shown(origin as string))})`
    }
    if (method === 'POST') {
      if (o === 'null' ? site !== 'same-origin' : site !== undefined && site !== 'same-origin') return 'form posts from another site are refused'
      return undefined
    }
    if (site === 'cross-site' && mode !== 'navigate') return 'requests from another site are refused'
    return undefined
  }

  const recordOf = (request: FastifyRequest): string | undefined => cookieValue(request.headers.cookie, cookieName)
  const viewerOf = (request: FastifyRequest): Viewer | undefined => local ? { kind: 'local' } : signIns.viewer(auth.table, recordOf(request), now())
  const pageViewer = (v: Viewer): PageViewer => v.kind === 'local'
    ? { signedIn: false, label: 'Local coordinator: no sign-in needed' }
    : { signedIn: true, label: `Signed in with token #${v.entry.position}${viewOnly(v) ? ' (view only)' : ''}` }

  const html = (reply: FastifyReply, status: number, body: string): FastifyReply =>
    reply.code(status).headers(SECURITY_HEADERS).type('text/html; charset=utf-8').send(body)
  const json = (reply: FastifyReply, status: number, body: unknown): FastifyReply =>
    reply.code(status).headers(SECURITY_HEADERS).type('application/json; charset=utf-8').send(JSON.stringify(body))
  const refuse = (request: FastifyRequest, reply: FastifyReply, spec: HttpErrorSpec, message: string, status = spec.status, viewer?: Viewer): FastifyReply => {
    request.log.info({ status, code: spec.code, url: shown(request.url.split('?')[0] as string) }, `dashboard request refused: ${message}`)
    const wantsJson = request.url.startsWith('/dashboard/api/') || request.url.includes('/events')
    return wantsJson
      ? json(reply, status, httpErrorBody(spec, message))
      : html(reply, status, errorPage(status, spec.code, message, viewer === undefined ? undefined : pageViewer(viewer)))
  }
  const toLogin = (reply: FastifyReply, clear: boolean): FastifyReply => {
    reply.code(303).headers(SECURITY_HEADERS).header('location', '/dashboard/login')
    if (clear) reply.header('set-cookie', `${cookieName}=; Max-Age=0; ${cookieAttrs}`)
    return reply.send()
  }

  /**
   * The viewer of a page request, or a reply already sent (login redirect;
   * 403 when the session is not theirs). `sessionId` undefined: the index.
   */
  const pageAccess = (request: FastifyRequest, reply: FastifyReply, sessionId: string | undefined): Viewer | FastifyReply => {
    const viewer = viewerOf(request)
    if (viewer === undefined) return toLogin(reply, recordOf(request) !== undefined)
    if (sessionId !== undefined && !canView(viewer, sessionId)) return refuse(request, reply, HTTP_ERRORS.AUTH_SESSION_FORBIDDEN, `this sign-in does not allow session ${shown(sessionId)}`, 403, viewer)
    return viewer
  }
  /** The same for the API and the stream: 401 instead of a redirect. */
  const apiAccess = (request: FastifyRequest, reply: FastifyReply, sessionId: string): Viewer | FastifyReply => {
    const viewer = viewerOf(request)
    if (viewer === undefined) return refuse(request, reply, HTTP_ERRORS.DASHBOARD_LOGIN_REQUIRED, 'sign in at /dashboard/login first')
    if (!canView(viewer, sessionId)) return refuse(request, reply, HTTP_ERRORS.AUTH_SESSION_FORBIDDEN, `this sign-in does not allow session ${shown(sessionId)}`)
    return viewer
  }
  const isReply = (v: Viewer | FastifyReply): v is FastifyReply => !('kind' in v)
  const sessionParam = (request: FastifyRequest): string | undefined => {
    const id = (request.params as Record<string, string | undefined>).id
    return id !== undefined && SESSION_ID.test(id) ? id : undefined
  }

  app.register(async (scope) => {
    scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 8192 }, (_request, body, done) => {
      done(null, new URLSearchParams(body as string))
    })

    // Host (DNS rebinding) and Origin (CSRF, cross-site reads) before anything else.
    scope.addHook('onRequest', async (request, reply) => {
      const host = request.headers.host
      if (host !== undefined) {
        const socket = request.raw.socket
        const why = hostRefusal(config, host, socket.localAddress, socket.localPort)
        if (why !== undefined) return refuse(request, reply, HTTP_ERRORS.HOST_FORBIDDEN, `${why} (Host ${JSON.stringify(shown(host))})`)
      }
      const why = originRefusal(request.method, request.headers.origin, request.headers['sec-fetch-site'], request.headers['sec-fetch-mode'], host)
      if (why !== undefined) return refuse(request, reply, HTTP_ERRORS.ORIGIN_FORBIDDEN, why)
      return undefined
    })

    for (const asset of [CSS_ASSET, JS_ASSET]) {
      const type = asset.url.endsWith('.css') ? 'text/css; charset=utf-8' : 'text/javascript; charset=utf-8'
      scope.get(asset.url, async (_request, reply) => reply
        .headers({ 'cache-control': 'public, max-age=31536000, immutable', 'x-content-type-options': 'nosniff' })
        .type(type).send(asset.body))
    }

    scope.get('/dashboard/login', async (request, reply) => {
      if (local || viewerOf(request) !== undefined) return reply.code(303).headers(SECURITY_HEADERS).header('location', '/dashboard').send()
      return html(reply, 200, loginPage(undefined))
    })

    scope.post('/dashboard/login', async (request, reply) => {
      if (local) return reply.code(303).headers(SECURITY_HEADERS).header('location', '/dashboard').send()
      const at = now()
      if (!signIns.attempt(request.ip, at)) {
        reply.header('retry-after', String(signIns.retryAfterSec(request.ip, at)))
        return refuse(request, reply, HTTP_ERRORS.DASHBOARD_RATE_LIMITED, 'too many sign-in attempts from this address; wait a minute')
      }
      const body = request.body
      const token = body instanceof URLSearchParams ? body.get('token') : null
      const table = auth.table
      const result = token === null || token === '' || table === undefined ? { ok: false as const, reason: 'no token' } : signIns.login(table, token, at)
      if (!result.ok) {
        request.log.info({ status: 401, address: request.ip, reason: result.reason }, 'dashboard sign-in refused')
        return html(reply, 401, loginPage('That token is not valid (unknown or expired).'))
      }
      request.log.info({ address: request.ip }, 'dashboard sign-in')
      return reply.code(303).headers(SECURITY_HEADERS)
        .header('set-cookie', `${cookieName}=${result.id}; Max-Age=${result.maxAgeSec}; ${cookieAttrs}`)
        .header('location', '/dashboard').send()
    })

    scope.post('/dashboard/logout', async (request, reply) => {
      signIns.logout(recordOf(request))
      reply.code(303).headers(SECURITY_HEADERS).header('set-cookie', `${cookieName}=; Max-Age=0; ${cookieAttrs}`)
      return reply.header('location', local ? '/dashboard' : '/dashboard/login').send()
    })

    scope.get('/dashboard', async (request, reply) => {
      const viewer = pageAccess(request, reply, undefined)
      if (isReply(viewer)) return viewer
      const visible = registry.sessionIds().filter(s => canView(viewer, s.sessionId))
      const t = now()
      const rows: IndexRow[] = visible.slice(0, INDEX_CAP).map(({ sessionId }) => {
        const rt = registry.peek(sessionId)
        if (rt === undefined) return { sessionId, idle: true, online: 0, participants: 0, intents: 0, conflicts: '', attention: 0, lastActivity: null }
        const v = rt.core.dashboardView(t)
        const bySeverity = new Map<string, number>()
        for (const c of v.conflicts) if (c.state === 'OPEN' || c.state === 'ACKED' || c.state === 'ESCALATED') bySeverity.set(c.severity, (bySeverity.get(c.severity) ?? 0) + 1)
        const last = v.participants.map(p => p.last_seen).sort().pop() ?? null
        return {
          sessionId,
          idle: false,
          online: v.participants.filter(p => p.is_available).length,
          participants: v.totals.participants,
          intents: v.totals.intents,
          conflicts: bySeverity.size === 0 ? 'none' : [...bySeverity].map(([s, n]) => `${n} ${s}`).join(', '),
          attention: v.totals.attention,
          lastActivity: last
        }
      })
      return html(reply, 200, indexPage(rows, visible.length, pageViewer(viewer), t))
    })

    scope.get('/dashboard/s/:id', async (request, reply) => {
      const id = sessionParam(request)
      if (id === undefined) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, 'no such session')
      const viewer = pageAccess(request, reply, id)
      if (isReply(viewer)) return viewer
      const view = hub.view(id)
      const q = request.query as Record<string, unknown>
      const param = (v: unknown): string => typeof v === 'string' ? v.trim().slice(0, 256) : ''
      if (view !== undefined) return html(reply, 200, sessionPage(view, view.events, pageViewer(viewer), now(), VERSION, { agent: param(q.agent), file: param(q.file) }))
      if (registry.isStored(id)) return html(reply, 200, idlePage(id, pageViewer(viewer)))
      return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, `no session ${shown(id)}`, 404, viewer)
    })

    scope.get('/dashboard/s/:id/conflicts/:cid', async (request, reply) => {
      const id = sessionParam(request)
      if (id === undefined) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, 'no such session')
      const viewer = pageAccess(request, reply, id)
      if (isReply(viewer)) return viewer
      const cid = (request.params as Record<string, string>).cid as string
      const conflict = registry.peek(id)?.core.dashboardConflict(cid)
      if (conflict === undefined) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, `no conflict ${shown(cid)} in session ${shown(id)} (or the session is idle)`, 404, viewer)
      const events = hub.events(id, e => e.refs.conflict_id === cid)
      return html(reply, 200, conflictPage(id, conflict, events, pageViewer(viewer), now()))
    })

    scope.get('/dashboard/api/s/:id/view', async (request, reply) => {
      const id = sessionParam(request)
      if (id === undefined) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, 'no such session')
      const viewer = apiAccess(request, reply, id)
      if (isReply(viewer)) return viewer
      const view = hub.view(id)
      const who = { kind: viewer.kind, view_only: viewOnly(viewer), roles: viewer.kind === 'local' ? null : [...viewer.entry.roles] }
      if (view !== undefined) return json(reply, 200, { ...view, viewer: who })
      if (registry.isStored(id)) return json(reply, 200, { session_id: id, idle: true, viewer: who })
      return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, `no session ${shown(id)}`)
    })

    scope.get('/dashboard/s/:id/events', async (request, reply) => {
      const id = sessionParam(request)
      if (id === undefined) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, 'no such session')
      const viewer = apiAccess(request, reply, id)
      if (isReply(viewer)) return viewer
      if (registry.peek(id) === undefined && !registry.isStored(id)) return refuse(request, reply, HTTP_ERRORS.NOT_FOUND, `no session ${shown(id)}`)
      const key = viewerKey(viewer)
      const refused = hub.refusal(key)
      if (refused !== undefined) {
        reply.header('retry-after', '5')
        return refuse(request, reply, HTTP_ERRORS.DASHBOARD_TOO_MANY_STREAMS, refused.reason === 'total'
          ? `too many live dashboard streams on this server (at most ${refused.limit}, --dashboard-max-streams)`
          : `too many live dashboard streams for this token (at most ${refused.limit}, --dashboard-max-streams-per-token)`, refused.reason === 'total' ? 503 : 429)
      }
      const valid = viewer.kind === 'local'
        ? () => true
        : () => {
          const v = signIns.viewer(auth.table, viewer.recordId, now())
          return v !== undefined && canView(v, id)
        }
      const last = request.headers['last-event-id']
      reply.hijack()
      hub.open(reply.raw, id, key, valid, typeof last === 'string' ? last : undefined, { ...SECURITY_HEADERS }, viewer.kind === 'token' ? viewer.expiresAt : Infinity)
      return reply
    })
  })

  if (local) logger.debug('dashboard: no token table, no sign-in (loopback only)')
  return { hub, signIns }
}
