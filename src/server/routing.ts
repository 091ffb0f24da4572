import { performance } from 'node:perf_hooks'
import type { FleetStore, NodeIdentity, SessionOwnership } from '../store/index.js'
import type { FleetMetrics } from './metrics.js'

/**
 * Fleet mode's routing decision for a WebSocket upgrade to `/session/<id>`
 * (docs/fleet.md; scale-out design §3.2, §5.6), made in the route's
 * `onRequest` hook, before anything is upgraded:
 *
 * - **serve**: this node owns the session (it is loaded here, or this call
 *   claimed and loaded it): go on with the upgrade.
 * - **replay** (`--router fly`): another node with a live lease owns it and
 *   the request is not itself a replay: answer 503 with
 *   `fly-replay: instance=<owner>;timeout=<t>;fallback=prefer_self;state=<sid>.<epoch>`
 *   and Fly Proxy re-sends the request to the owner. 503 rather than a
 *   redirect, so that a client reached without Fly Proxy backs off.
 * - **handover, then claim** (`--router hash`, i.e. HAProxy's consistent
 *   hash, which decides where connections land; and on fly.io a request that
 *   already was a replay, or whose replay failed, so it is never replayed
 *   twice): ask the owner to release the session, wait at most
 *   `--claim-wait` for the release (or for the owner's lease to expire),
 *   then claim and serve.
 * - **unavailable**: ownership could not be obtained in time (or the session
 *   is quarantined): 503 with `Retry-After`; the client backs off.
 *
 * With `--router none` (one node on PostgreSQL) a live other owner is only
 * waited for (its lease expires), never asked.
 *
 * The decision reads ownership from the store; the claim itself (claim →
 * load → `recovered` when the previous owner did not release cleanly) is the
 * registry's `acquire`. Nothing here holds state between requests.
 */

export type RouterMode = 'fly' | 'hash' | 'none'

export type RouteDecision =
  | { readonly kind: 'serve' }
  | { readonly kind: 'replay', readonly header: string }
  | { readonly kind: 'unavailable', readonly reason: string, readonly retryAfterSec: number }
  /** A per-node or per-token session limit (HTTP 429). */
  | { readonly kind: 'refused', readonly reason: string }

/** The registry's claim-and-load: `ok` when the session is now served here. */
export type AcquireResult =
  | { readonly ok: true }
  | { readonly ok: false, readonly owner: SessionOwnership | undefined, readonly reason?: string, readonly limit?: boolean }

export interface RouterOptions {
  readonly mode: RouterMode
  readonly node: () => NodeIdentity
  readonly store: Pick<FleetStore, 'resolve' | 'requestHandover'>
  /** Loaded and owned by this node. */
  readonly isServedHere: (sessionId: string) => boolean
  readonly acquire: (sessionId: string, tokenDigest: string | undefined) => Promise<AcquireResult>
  /**
   * Resolves when the session may have become claimable (a `mpac_released`
   * hint), or after `ms` at the latest (notifications are hints: poll).
   */
  readonly waitForRelease: (sessionId: string, ms: number) => Promise<void>
  /** `--claim-wait` in milliseconds. */
  readonly claimWaitMs: number
  /** `--replay-timeout` in milliseconds (the `timeout=` of fly-replay). */
  readonly replayTimeoutMs: number
  readonly metrics?: FleetMetrics
  /** Monotonic milliseconds (injected by tests). */
  readonly now?: () => number
}

/** Poll interval while waiting for a release or an expiry (the hint usually comes first). */
const POLL_MS = 250

/** The headers Fly Proxy sets on a replayed request, and on one whose replay failed (fallback=prefer_self). */
export const FLY_REPLAY_SRC = 'fly-replay-src'
export const FLY_REPLAY_FAILED = 'fly-replay-failed'

export class Router {
  readonly #opts: RouterOptions
  readonly #now: () => number

  constructor (opts: RouterOptions) {
    this.#opts = opts
    this.#now = opts.now ?? (() => performance.now())
  }

  get mode (): RouterMode { return this.#opts.mode }

  /** The decision for an upgrade to `sessionId` with these request headers (and the bearer token's digest, for quotas). */
  async route (sessionId: string, headers: Readonly<Record<string, string | string[] | undefined>>, tokenDigest?: string): Promise<RouteDecision> {
    const o = this.#opts
    if (o.isServedHere(sessionId)) return { kind: 'serve' }
    let owner = await o.store.resolve(sessionId)
    if (owner?.quarantined === true) return unavailable('the session is quarantined (its stored state is damaged)', 30)
    if (!liveElsewhere(owner, o.node())) {
      const got = await o.acquire(sessionId, tokenDigest)
      if (got.ok) return { kind: 'serve' }
      if (got.limit === true) return { kind: 'refused', reason: got.reason ?? 'a session limit was reached' }
      if (got.owner === undefined) return unavailable(got.reason ?? 'the session could not be claimed', 1)
      owner = got.owner
      if (!liveElsewhere(owner, o.node())) return unavailable(got.reason ?? 'the session could not be claimed', 1)
    }
    const live = owner
    const replayed = headers[FLY_REPLAY_SRC] !== undefined || headers[FLY_REPLAY_FAILED] !== undefined
    if (o.mode === 'fly' && !replayed) {
      if (o.metrics !== undefined) o.metrics.replays++
      return { kind: 'replay', header: replayHeader(live.owner.nodeId, o.replayTimeoutMs, sessionId, live.epoch) }
    }
    if (o.mode !== 'none') {
      const asked = await o.store.requestHandover(sessionId, o.node(), live.epoch)
      if (asked && o.metrics !== undefined) o.metrics.handoversRequested++
    }
    return await this.#waitAndClaim(sessionId, tokenDigest)
  }

  /** Waits for the owner's release (or lease expiry) up to --claim-wait, claiming whenever it may have become possible. */
  async #waitAndClaim (sessionId: string, tokenDigest: string | undefined): Promise<RouteDecision> {
    const o = this.#opts
    const deadline = this.#now() + o.claimWaitMs
    for (;;) {
      const left = deadline - this.#now()
      if (left <= 0) break
      await o.waitForRelease(sessionId, Math.min(POLL_MS, left))
      if (o.isServedHere(sessionId)) return { kind: 'serve' }
      const owner = await o.store.resolve(sessionId)
      if (owner?.quarantined === true) return unavailable('the session is quarantined (its stored state is damaged)', 30)
      if (liveElsewhere(owner, o.node())) continue
      const got = await o.acquire(sessionId, tokenDigest)
      if (got.ok) return { kind: 'serve' }
      if (got.limit === true) return { kind: 'refused', reason: got.reason ?? 'a session limit was reached' }
    }
    if (o.metrics !== undefined) o.metrics.routeUnavailable++
    return unavailable(`the session is owned by another node that did not release it within ${o.claimWaitMs / 1000} s (--claim-wait); retry shortly`, 1)
  }
}

/** Another node owns the session and its lease is live. */
function liveElsewhere (own: SessionOwnership | undefined, me: NodeIdentity): own is SessionOwnership & { owner: NodeIdentity } {
  if (own?.owner === undefined || !own.ownerLive) return false
  return !(own.owner.nodeId === me.nodeId && own.owner.incarnation === me.incarnation)
}

function unavailable (reason: string, retryAfterSec: number): RouteDecision {
  return { kind: 'unavailable', reason, retryAfterSec }
}

/**
 * The `fly-replay` value (fly.io "Dynamic Request Routing"): replay to the
 * owner Machine, try it for `timeout`, fall back to this Machine (with
 * `fly-replay-failed`) instead of a 5xx, and carry the session and epoch in
 * `state` (echoed in `fly-replay-src`, for the logs). Never cached.
 */
export function replayHeader (instance: string, timeoutMs: number, sessionId: string, epoch: number): string {
  const timeout = timeoutMs % 1000 === 0 ? `${timeoutMs / 1000}s` : `${timeoutMs}ms`
  return `instance=${instance};timeout=${timeout};fallback=prefer_self;state=${sessionId}.${epoch}`
}

/** Parses a `fly-replay` (or `fly-replay-src`) value into its fields. */
export function parseReplayFields (value: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const part of value.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim()
  }
  return out
}
