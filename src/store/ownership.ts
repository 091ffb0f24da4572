import { EventEmitter } from 'node:events'
import { performance } from 'node:perf_hooks'
import type { FleetStore, HandoverRequest, NodeIdentity } from './fleet-types.js'
import { silentLogger, type StoreLogger } from './managed.js'

/**
 * A node's lease and the session handover signals of fleet mode
 * (docs/fleet.md; scale-out design §5.3, §5.6).
 *
 * `NodeLease` registers the node (a new incarnation, so whatever its previous
 * life owned is claimable at once), renews the lease row every `renewMs` on
 * the PostgreSQL clock, and keeps a local deadline on the monotonic clock:
 * `deadline = time the successful renewal was sent + ttl − margin`. PG sets
 * `lease_until` from its own `now()`, which is at or after our send time, so
 * the local deadline passes at least `margin` before any other node can see
 * the lease expired (as long as the two clocks' rates differ by less than
 * margin/ttl). `valid()` is what gates every reply: past the deadline the
 * node must deliver nothing. The transition to invalid is the `lapsed` event
 * (emitted once per lapse, also when a paused process wakes up past its
 * deadline); the owner of the lease then closes every connection and drops
 * every runtime. A later successful renewal makes `valid()` true again but
 * raises `term`: a runtime made under an older term must not serve (its
 * sessions may have been claimed meanwhile; claim them again).
 *
 * Events: `lapsed` (reason: string), `renewed` (deadline: number),
 * `superseded` (another process registered our node id: stop serving).
 *
 * `HandoverWatcher` turns `mpac_handover` / `mpac_released` notifications
 * into events and, since notifications are only hints (lost while
 * disconnected), polls the same facts every `pollMs`.
 */

/** The clock and timers the lease runs on (injected by tests). `now` is monotonic milliseconds. */
export interface LeaseClock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const systemClock: LeaseClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => { const h = setTimeout(fn, ms); h.unref(); return h },
  clearTimeout: h => { clearTimeout(h as NodeJS.Timeout) }
}

export interface LeaseTimings {
  /** `--lease-ttl`: how long a renewal keeps the lease alive on the PG clock. */
  readonly ttlMs: number
  /** `--lease-renew`: interval between renewals. */
  readonly renewMs: number
  /** `--lease-margin`: the local deadline ends this long before the PG lease would. */
  readonly marginMs: number
}

export const DEFAULT_LEASE: LeaseTimings = { ttlMs: 10_000, renewMs: 2_000, marginMs: 2_000 }

/** Why the timings are unsafe, or undefined: ttl ≥ 3 × renew (two renewals may fail), 0 < margin < ttl − renew. */
export function leaseTimingsProblem (t: LeaseTimings): string | undefined {
  if (!(t.renewMs > 0) || !(t.ttlMs > 0)) return 'the lease TTL and renew interval must be positive'
  if (t.ttlMs < 3 * t.renewMs) return `the lease TTL (${t.ttlMs / 1000} s) must be at least 3 × the renew interval (${t.renewMs / 1000} s)`
  if (!(t.marginMs > 0) || t.marginMs >= t.ttlMs - t.renewMs) {
    return `the lease margin (${t.marginMs / 1000} s) must be above 0 and below TTL − renew (${(t.ttlMs - t.renewMs) / 1000} s)`
  }
  return undefined
}

export interface NodeLeaseOptions extends LeaseTimings {
  readonly store: Pick<FleetStore, 'registerNode' | 'renewNode' | 'retireNode'>
  readonly nodeId: string
  readonly addr: string
  readonly clock?: LeaseClock
  readonly logger?: StoreLogger
}

export class NodeLease extends EventEmitter<{ lapsed: [reason: string], renewed: [deadline: number], superseded: [] }> {
  readonly #opts: NodeLeaseOptions
  readonly #clock: LeaseClock
  readonly #log: StoreLogger
  #identity: NodeIdentity | undefined
  #deadline = -Infinity
  #term = 0
  /** Whether the last state we reported was valid (a lapse is reported once). */
  #wasValid = false
  #stopped = false
  #superseded = false
  #renewTimer: unknown
  #lapseTimer: unknown
  #inFlight: Promise<boolean> | undefined

  constructor (options: NodeLeaseOptions) {
    super()
    const problem = leaseTimingsProblem(options)
    if (problem !== undefined) throw new RangeError(problem)
    this.#opts = options
    this.#clock = options.clock ?? systemClock
    this.#log = options.logger ?? silentLogger
  }

  /** Our node id and incarnation; throws before `start`. */
  get identity (): NodeIdentity {
    if (this.#identity === undefined) throw new Error('NodeLease: not started')
    return this.#identity
  }

  /** Local monotonic deadline (ms on `clock.now()`); -Infinity before the first registration. */
  get deadline (): number { return this.#deadline }

  /** +1 at every lapse: work begun under an older term must not be served. */
  get term (): number { return this.#term }

  /**
   * True while the deadline holds (and, with `term`, no lapse happened since
   * that term). Also reports a lapse noticed late (a process that was paused).
   */
  valid (term?: number): boolean {
    this.#check()
    if (!this.#wasValid) return false
    return term === undefined || term === this.#term
  }

  /** Registers the node and starts the renew loop. */
  async start (): Promise<NodeIdentity> {
    const sent = this.#clock.now()
    const reg = await this.#opts.store.registerNode({ nodeId: this.#opts.nodeId, addr: this.#opts.addr, ttlMs: this.#opts.ttlMs })
    this.#identity = { nodeId: reg.nodeId, incarnation: reg.incarnation }
    this.#extend(sent)
    this.#scheduleRenew()
    return this.#identity
  }

  /**
   * One renewal now (the loop calls it; tests may too). Resolves true when the
   * lease was extended. A renewal in flight is joined, not doubled.
   */
  async renew (): Promise<boolean> {
    if (this.#inFlight !== undefined) return await this.#inFlight
    const run = async (): Promise<boolean> => {
      const identity = this.identity
      const sent = this.#clock.now()
      try {
        const ok = await this.#opts.store.renewNode(identity, this.#opts.ttlMs)
        if (this.#stopped) return false
        if (!ok) {
          this.#supersede()
          return false
        }
        this.#extend(sent)
        return true
      } catch (err) {
        this.#log.warn({ err }, 'lease: renewal failed; retrying at the next interval')
        this.#check()
        return false
      }
    }
    this.#inFlight = run().finally(() => { this.#inFlight = undefined })
    return await this.#inFlight
  }

  /** Stops renewing and ends the lease in the database now (SIGTERM, after releasing the sessions). */
  async retire (): Promise<void> {
    const identity = this.#identity
    this.stop()
    if (identity !== undefined) await this.#opts.store.retireNode(identity)
  }

  /** Stops the renew loop; the lease then lapses (locally: at once). */
  stop (): void {
    if (this.#stopped) return
    this.#stopped = true
    this.#clock.clearTimeout(this.#renewTimer)
    this.#clock.clearTimeout(this.#lapseTimer)
    this.#deadline = -Infinity
    this.#check('stopped')
  }

  #extend (sent: number): void {
    if (this.#stopped || this.#superseded) return
    const deadline = sent + this.#opts.ttlMs - this.#opts.marginMs
    this.#check()
    if (deadline <= this.#clock.now()) return
    if (deadline > this.#deadline || !this.#wasValid) this.#deadline = deadline
    this.#wasValid = true
    this.#clock.clearTimeout(this.#lapseTimer)
    this.#lapseTimer = this.#clock.setTimeout(() => { this.#check() }, Math.max(0, this.#deadline - this.#clock.now()))
    this.emit('renewed', this.#deadline)
  }

  /** Reports a lapse once when the deadline has passed. */
  #check (reason?: string): void {
    if (!this.#wasValid) return
    if (reason === undefined && this.#clock.now() < this.#deadline) return
    this.#wasValid = false
    this.#term++
    const why = reason ?? 'the lease deadline passed without a successful renewal'
    this.#log.error({ nodeId: this.#opts.nodeId, reason: why }, 'lease lapsed: delivering nothing and dropping every session')
    this.emit('lapsed', why)
  }

  #supersede (): void {
    if (this.#superseded) return
    this.#superseded = true
    this.#log.error({ nodeId: this.#opts.nodeId }, 'lease: another process registered this node id; this one must stop serving')
    this.stop()
    this.emit('superseded')
  }

  #scheduleRenew (): void {
    if (this.#stopped) return
    this.#renewTimer = this.#clock.setTimeout(() => {
      void this.renew().finally(() => { this.#scheduleRenew() })
    }, this.#opts.renewMs)
  }
}

export interface HandoverWatcherOptions {
  readonly store: Pick<FleetStore, 'watch' | 'handoverRequests' | 'resolve'>
  /** Our node (handover requests are polled for its sessions). */
  readonly node: () => NodeIdentity
  /** Polling interval, the fallback for lost notifications (default 2000 ms, the renew interval). */
  readonly pollMs?: number
  readonly clock?: LeaseClock
  readonly logger?: StoreLogger
}

/**
 * Handover requests for our sessions (`handover`) and releases of any
 * session (`released`), from notifications and from polling. A request is
 * reported once per (session, requester, epoch) until `forget(sessionId)`.
 */
export class HandoverWatcher extends EventEmitter<{ handover: [request: HandoverRequest], released: [sessionId: string] }> {
  readonly #opts: HandoverWatcherOptions
  readonly #clock: LeaseClock
  readonly #log: StoreLogger
  readonly #seen = new Map<string, string>()
  readonly #waiters = new Map<string, Set<() => void>>()
  #unwatch: (() => Promise<void>) | undefined
  #timer: unknown
  #stopped = false

  constructor (options: HandoverWatcherOptions) {
    super()
    this.#opts = options
    this.#clock = options.clock ?? systemClock
    this.#log = options.logger ?? silentLogger
  }

  async start (): Promise<void> {
    try {
      this.#unwatch = await this.#opts.store.watch({
        handover: () => { void this.poll() },
        released: sessionId => { this.#released(sessionId) },
        error: err => { this.#log.warn({ err }, 'handover: the notification connection failed; polling until it is back') }
      })
    } catch (err) {
      // Polling alone still works, only slower.
      this.#log.warn({ err }, 'handover: LISTEN is unavailable; polling only')
    }
    this.#schedule()
  }

  /** Checks the database for handover requests now (the poll; also run on every notification). */
  async poll (): Promise<void> {
    let requests: HandoverRequest[]
    try {
      requests = await this.#opts.store.handoverRequests(this.#opts.node())
    } catch (err) {
      this.#log.warn({ err }, 'handover: polling failed')
      return
    }
    for (const r of requests) {
      const key = `${r.to}\u0000${r.epoch}`
      if (this.#seen.get(r.sessionId) === key) continue
      this.#seen.set(r.sessionId, key)
      this.emit('handover', r)
    }
  }

  /** Forget what was reported for a session (after releasing it, or refusing the request). */
  forget (sessionId: string): void { this.#seen.delete(sessionId) }

  /**
   * Resolves true as soon as the session is released (notification) or
   * found unowned or owned by a dead lease (polled every `pollMs`); false
   * after `timeoutMs`.
   */
  async waitForRelease (sessionId: string, timeoutMs: number): Promise<boolean> {
    return await new Promise<boolean>(resolve => {
      let done = false
      let pollTimer: unknown
      const finish = (v: boolean): void => {
        if (done) return
        done = true
        this.#clock.clearTimeout(pollTimer)
        this.#clock.clearTimeout(timer)
        set.delete(onRelease)
        if (set.size === 0) this.#waiters.delete(sessionId)
        resolve(v)
      }
      const onRelease = (): void => { finish(true) }
      const set = this.#waiters.get(sessionId) ?? new Set()
      set.add(onRelease)
      this.#waiters.set(sessionId, set)
      const timer = this.#clock.setTimeout(() => { finish(false) }, timeoutMs)
      const check = (): void => {
        this.#opts.store.resolve(sessionId).then(s => {
          if (s === undefined || s.owner === undefined || !s.ownerLive) finish(true)
          else if (!done) pollTimer = this.#clock.setTimeout(check, this.#opts.pollMs ?? 2000)
        }, () => {
          if (!done) pollTimer = this.#clock.setTimeout(check, this.#opts.pollMs ?? 2000)
        })
      }
      check()
    })
  }

  async stop (): Promise<void> {
    this.#stopped = true
    this.#clock.clearTimeout(this.#timer)
    await this.#unwatch?.()
  }

  #released (sessionId: string): void {
    this.#seen.delete(sessionId)
    for (const fn of [...(this.#waiters.get(sessionId) ?? [])]) fn()
    this.emit('released', sessionId)
  }

  #schedule (): void {
    if (this.#stopped) return
    this.#timer = this.#clock.setTimeout(() => {
      void this.poll().finally(() => { this.#schedule() })
    }, this.#opts.pollMs ?? 2000)
  }
}
