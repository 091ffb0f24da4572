/**
 * The dashboard's live side (agent-hooks-and-dashboard.md §9.4): one watch
 * per viewed session (its event ring, its runtime subscription, its SSE
 * streams) and the streams themselves, hand-rolled over the raw response.
 *
 * Costs stay off the coordinator's path: a session nobody viewed has no
 * subscription, so its runtime computes nothing for the dashboard; a watched
 * one turns each broadcast into a short event (the ring), and only when a
 * stream is open is a view computed, at most once per COALESCE_MS per
 * session, diffed against the previous one, serialised once and written to
 * every stream of the session (so a stream gets at most 4 messages per
 * second). A stream whose unsent bytes exceed the bound is dropped.
 *
 * Stream format (docs/dashboard.md): `retry: 2000`, then `event: snapshot`
 * (the full view) with `id: <ring>.<seq>`, then `event: delta` messages
 * `{captured_at, event, events[], patch[]}`, `: keep-alive` comments,
 * `event: idle` (the session was unloaded), `event: revoked` and
 * `event: session_closed` (then the stream ends).
 */
import type { ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import type { DashboardView } from '../../coordinator/dashboard-view.js'
import type { SessionRegistry } from '../registry.js'
import type { RuntimeNotice, SessionRuntime } from '../session-runtime.js'
import { EventRing, type DashEvent } from './events.js'
import { formatTs } from '../../protocol/time.js'

export const COALESCE_MS = 250
export const KEEP_ALIVE_MS = 15_000
export const RETRY_MS = 2000
/** Events a snapshot carries (newest first). */
export const SNAPSHOT_EVENTS = 50

/** Keyed sections of the view and the field each is keyed by. */
export const KEYED_SECTIONS = Object.freeze({
  participants: 'principal_id',
  intents: 'intent_id',
  conflicts: 'conflict_id',
  commits: 'op_id',
  files: 'path',
  attention: 'id'
} as const)
/** Object sections, patched whole (`set`). */
export const SET_SECTIONS = Object.freeze(['health', 'policies', 'totals'] as const)

export type PatchOp =
  | { readonly section: string, readonly op: 'upsert', readonly key: string, readonly item: unknown }
  | { readonly section: string, readonly op: 'remove', readonly key: string }
  | { readonly section: string, readonly op: 'replace', readonly items: readonly unknown[] }
  | { readonly section: string, readonly op: 'set', readonly item: unknown }

/** What a diff needs of the previous view: each section's keys in order and each item's JSON (computed once per view). */
export interface ViewDigest {
  readonly keys: ReadonlyMap<string, readonly string[]>
  readonly json: ReadonlyMap<string, ReadonlyMap<string, string>>
  readonly sets: ReadonlyMap<string, string>
}

export function digestOf (view: DashboardView): ViewDigest {
  const keys = new Map<string, string[]>()
  const json = new Map<string, Map<string, string>>()
  for (const [section, keyField] of Object.entries(KEYED_SECTIONS)) {
    const items = view[section as keyof typeof KEYED_SECTIONS] as unknown as ReadonlyArray<Record<string, unknown>>
    const ks: string[] = []
    const js = new Map<string, string>()
    for (const it of items) {
      const k = String(it[keyField])
      ks.push(k)
      js.set(k, JSON.stringify(it))
    }
    keys.set(section, ks)
    json.set(section, js)
  }
  const sets = new Map<string, string>()
  for (const section of SET_SECTIONS) sets.set(section, JSON.stringify(view[section]))
  return { keys, json, sets }
}

/**
 * The patch from the view `prev` digests to `next`: per keyed section,
 * upserts of changed items and removals when the kept keys keep their
 * order and new ones come last, else the whole list (`replace`); `set` for
 * a changed object section. Everything when `prev` is undefined. Returns
 * `next`'s digest too (the base of the following diff).
 */
export function diffDigest (prev: ViewDigest | undefined, next: DashboardView): { readonly patch: PatchOp[], readonly digest: ViewDigest } {
  const digest = digestOf(next)
  const out: PatchOp[] = []
  for (const section of Object.keys(KEYED_SECTIONS)) {
    const items = next[section as keyof typeof KEYED_SECTIONS] as unknown as readonly unknown[]
    const beforeKeys = prev?.keys.get(section)
    const beforeJson = prev?.json.get(section)
    if (beforeKeys === undefined || beforeJson === undefined) {
      out.push({ section, op: 'replace', items })
      continue
    }
    const afterKeys = digest.keys.get(section) as readonly string[]
    const afterJson = digest.json.get(section) as ReadonlyMap<string, string>
    const kept = beforeKeys.filter(k => afterJson.has(k))
    // New items at the end of an unchanged order can be upserted; anything else is sent whole.
    const inOrder = kept.every((k, i) => afterKeys[i] === k) && afterKeys.slice(kept.length).every(k => !beforeJson.has(k))
    if (!inOrder) {
      out.push({ section, op: 'replace', items })
      continue
    }
    for (const k of beforeKeys) if (!afterJson.has(k)) out.push({ section, op: 'remove', key: k })
    afterKeys.forEach((k, i) => {
      if (beforeJson.get(k) !== afterJson.get(k)) out.push({ section, op: 'upsert', key: k, item: items[i] })
    })
  }
  for (const section of SET_SECTIONS) {
    if (prev?.sets.get(section) !== digest.sets.get(section)) out.push({ section, op: 'set', item: next[section] })
  }
  return { patch: out, digest }
}

/** The patch from `prev` to `next` (diffDigest on prev's digest). */
export function diffViews (prev: DashboardView | undefined, next: DashboardView): PatchOp[] {
  return diffDigest(prev === undefined ? undefined : digestOf(prev), next).patch
}

/** Every section whole (a resumed stream: the timeline continues, the state is replaced). */
function fullPatch (view: DashboardView): PatchOp[] {
  return diffDigest(undefined, view).patch
}

export interface Stream {
  readonly res: ServerResponse
  readonly sessionId: string
  /** Per-token count key. */
  readonly key: string
  /** Still allowed to watch (the current token table, the session)? */
  readonly valid: () => boolean
  lastSeq: number
  closed: boolean
  /** Fires when the sign-in ends (the token's expiry), so the view ends then, not at the next keep-alive. */
  expiry: NodeJS.Timeout | undefined
}

interface Watch {
  readonly sessionId: string
  readonly ring: EventRing
  runtime: SessionRuntime | undefined
  unsubscribe: (() => void) | undefined
  readonly streams: Set<Stream>
  pending: DashEvent[]
  /** The last view sent to the session's streams, digested (the base of the next delta). */
  lastDigest: ViewDigest | undefined
  timer: NodeJS.Timeout | undefined
  lastFlushAt: number
  closedSeen: boolean
}

export interface HubOptions {
  readonly registry: SessionRegistry
  readonly logger: Logger
  /** The sessions' clock (views). */
  readonly now: () => number
  readonly maxStreams: number
  readonly maxStreamsPerToken: number
  readonly maxBufferedBytes: number
  readonly keepAliveMs?: number
  readonly coalesceMs?: number
}

export type OpenRefusal = { readonly reason: 'total' | 'token', readonly limit: number }

export class DashboardHub {
  readonly #opts: HubOptions
  readonly #watches = new Map<string, Watch>()
  readonly #perKey = new Map<string, number>()
  #streamCount = 0
  readonly #keepAlive: NodeJS.Timeout
  readonly #coalesceMs: number

  constructor (opts: HubOptions) {
    this.#opts = opts
    this.#coalesceMs = opts.coalesceMs ?? COALESCE_MS
    const previous = opts.registry.onRuntime
    opts.registry.onRuntime = (rt) => {
      previous?.(rt)
      this.#onRuntime(rt)
    }
    this.#keepAlive = setInterval(() => this.keepAlive(), opts.keepAliveMs ?? KEEP_ALIVE_MS)
    this.#keepAlive.unref()
  }

  get streamCount (): number { return this.#streamCount }

  /** The watch of a loaded session (created and subscribed on first use); undefined when not loaded. */
  #watch (sessionId: string): Watch | undefined {
    let w = this.#watches.get(sessionId)
    const runtime = this.#opts.registry.peek(sessionId)
    if (w === undefined) {
      if (runtime === undefined) return undefined
      w = { sessionId, ring: new EventRing(), runtime: undefined, unsubscribe: undefined, streams: new Set(), pending: [], lastDigest: undefined, timer: undefined, lastFlushAt: 0, closedSeen: false }
      this.#watches.set(sessionId, w)
      if (runtime.recoveredAt !== undefined) {
        w.ring.push({ at: formatTs(runtime.recoveredAt), type: 'RECOVERED', principal_id: null, summary: 'coordinator restarted; session recovered from its journal', refs: {} })
      }
    }
    if (runtime !== undefined && w.runtime !== runtime) this.#attach(w, runtime)
    return w
  }

  #attach (w: Watch, runtime: SessionRuntime): void {
    w.unsubscribe?.()
    w.runtime = runtime
    w.lastDigest = undefined
    w.unsubscribe = runtime.subscribe(n => this.#onNotice(w, runtime, n))
  }

  #onRuntime (runtime: SessionRuntime): void {
    const w = this.#watches.get(runtime.sessionId)
    if (w === undefined) return
    this.#attach(w, runtime)
    w.ring.push({ at: formatTs(this.#opts.now()), type: 'LOADED', principal_id: null, summary: 'session loaded again', refs: {} })
    for (const s of w.streams) this.#sendSnapshot(w, s)
  }

  #onNotice (w: Watch, runtime: SessionRuntime, n: RuntimeNotice): void {
    if (w.runtime !== runtime) return
    if (n.kind === 'stopped') {
      w.runtime = undefined
      w.unsubscribe = undefined
      w.lastDigest = undefined
      if (w.timer !== undefined) clearTimeout(w.timer)
      w.timer = undefined
      w.pending = []
      for (const s of w.streams) this.#write(s, 'event: idle\ndata: {}\n\n')
      if (w.streams.size === 0) this.#watches.delete(w.sessionId)
      return
    }
    const events = w.ring.pushNotice(n)
    if (n.frames.some(f => f.message_type === 'SESSION_CLOSE')) w.closedSeen = true
    if (w.streams.size === 0 || events.length === 0) return
    w.pending.push(...events)
    this.#schedule(w)
  }

  #schedule (w: Watch): void {
    if (w.timer !== undefined) return
    const delay = Math.max(0, w.lastFlushAt + this.#coalesceMs - Date.now())
    w.timer = setTimeout(() => this.#flush(w), delay)
    w.timer.unref()
  }

  #flush (w: Watch): void {
    w.timer = undefined
    w.lastFlushAt = Date.now()
    const events = w.pending
    w.pending = []
    const runtime = w.runtime
    if (runtime === undefined || w.streams.size === 0) return
    const view = runtime.core.dashboardView(this.#opts.now())
    const { patch, digest } = diffDigest(w.lastDigest, view)
    w.lastDigest = digest
    const texts = new Map<number, string>()
    for (const s of [...w.streams]) {
      const evs = events.filter(e => e.seq > s.lastSeq)
      if (evs.length === 0 && patch.length === 0) continue
      const from = evs[0]?.seq ?? -1
      let text = texts.get(from)
      if (text === undefined) {
        const last = evs[evs.length - 1]
        texts.set(from, text = `id: ${w.ring.id}.${w.ring.lastSeq}\nevent: delta\ndata: ${JSON.stringify({ captured_at: view.captured_at, event: last ?? null, events: evs, patch })}\n\n`)
      }
      s.lastSeq = w.ring.lastSeq
      this.#write(s, text)
    }
    if (w.closedSeen) {
      for (const s of [...w.streams]) this.#end(s, 'event: session_closed\ndata: {}\n\n')
    }
  }

  /** The view JSON of a loaded session (view + newest events), or undefined when it is not loaded. */
  view (sessionId: string, events = 200): (DashboardView & { events: DashEvent[], ring: string }) | undefined {
    const w = this.#watch(sessionId)
    if (w?.runtime === undefined) return undefined
    return { ...w.runtime.core.dashboardView(this.#opts.now()), events: w.ring.newest(events), ring: w.ring.id }
  }

  /** The newest events of a watched session matching `keep`, newest first. */
  events (sessionId: string, keep: (e: DashEvent) => boolean, n = 200): DashEvent[] {
    const w = this.#watch(sessionId)
    if (w === undefined) return []
    return w.ring.after(0).filter(keep).slice(-n).reverse()
  }

  /** Why another stream for `key` is refused now, or undefined. */
  refusal (key: string): OpenRefusal | undefined {
    if (this.#streamCount >= this.#opts.maxStreams) return { reason: 'total', limit: this.#opts.maxStreams }
    if ((this.#perKey.get(key) ?? 0) >= this.#opts.maxStreamsPerToken) return { reason: 'token', limit: this.#opts.maxStreamsPerToken }
    return undefined
  }

  /**
   * Starts a stream on a response whose headers were not sent (the route
   * hijacked the reply and checked `refusal`). `lastEventId` resumes from
   * the ring when it names one of its events.
   */
  open (res: ServerResponse, sessionId: string, key: string, valid: () => boolean, lastEventId: string | undefined, headers: Record<string, string>, expiresAt = Infinity): void {
    const stream: Stream = { res, sessionId, key, valid, lastSeq: 0, closed: false, expiry: undefined }
    if (Number.isFinite(expiresAt)) {
      // Node caps delays at 2^31-1 ms; a later end is caught by the keep-alives.
      stream.expiry = setTimeout(() => { if (!stream.valid()) this.#end(stream, 'event: revoked\ndata: {}\n\n') }, Math.min(Math.max(0, expiresAt - this.#opts.now()), 2_147_483_647))
      stream.expiry.unref()
    }
    this.#streamCount++
    this.#perKey.set(key, (this.#perKey.get(key) ?? 0) + 1)
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no', connection: 'keep-alive', ...headers })
    res.on('close', () => this.#closed(stream))
    res.on('error', () => this.#closed(stream))
    this.#write(stream, `retry: ${RETRY_MS}\n\n`)
    let w = this.#watch(sessionId)
    if (w === undefined) {
      w = { sessionId, ring: new EventRing(), runtime: undefined, unsubscribe: undefined, streams: new Set(), pending: [], lastDigest: undefined, timer: undefined, lastFlushAt: 0, closedSeen: false }
      this.#watches.set(sessionId, w)
    }
    w.streams.add(stream)
    if (w.runtime === undefined) {
      this.#write(stream, 'event: idle\ndata: {}\n\n')
      return
    }
    const m = lastEventId === undefined ? null : /^([A-Za-z0-9_-]+)\.(\d+)$/.exec(lastEventId.trim())
    const seq = m === null ? NaN : Number(m[2])
    if (m !== null && m[1] === w.ring.id && w.ring.canResume(seq)) {
      const view = w.runtime.core.dashboardView(this.#opts.now())
      w.lastDigest ??= digestOf(view)
      const evs = w.ring.after(seq)
      stream.lastSeq = w.ring.lastSeq
      this.#write(stream, `id: ${w.ring.id}.${w.ring.lastSeq}\nevent: delta\ndata: ${JSON.stringify({ captured_at: view.captured_at, event: evs[evs.length - 1] ?? null, events: evs, patch: fullPatch(view), resumed: true })}\n\n`)
      return
    }
    this.#sendSnapshot(w, stream)
  }

  #sendSnapshot (w: Watch, s: Stream): void {
    if (w.runtime === undefined) return
    const view = w.runtime.core.dashboardView(this.#opts.now())
    w.lastDigest ??= digestOf(view)
    s.lastSeq = w.ring.lastSeq
    this.#write(s, `id: ${w.ring.id}.${w.ring.lastSeq}\nevent: snapshot\ndata: ${JSON.stringify({ ...view, events: w.ring.newest(SNAPSHOT_EVENTS), ring: w.ring.id })}\n\n`)
  }

  /**
   * Writes to a stream, first dropping it when what earlier writes left
   * unsent is above the bound (a reader that stopped reading; one large
   * snapshot to a reader that reads is not that).
   */
  #write (s: Stream, text: string): void {
    if (s.closed) return
    const res = s.res
    const buffered = res.writableLength + (res.socket?.writableLength ?? 0)
    if (buffered <= this.#opts.maxBufferedBytes) {
      res.write(text)
    } else {
      this.#opts.logger.info({ sessionId: s.sessionId, buffered, limit: this.#opts.maxBufferedBytes }, 'dashboard stream dropped: the reader is too slow')
      s.closed = true
      res.destroy()
      this.#closed(s)
    }
  }

  #end (s: Stream, text: string): void {
    if (s.closed) return
    this.#write(s, text)
    if (s.closed) return
    s.closed = true
    s.res.end()
    this.#closed(s)
  }

  #closed (s: Stream): void {
    if (s.expiry !== undefined) clearTimeout(s.expiry)
    s.expiry = undefined
    const w = this.#watches.get(s.sessionId)
    if (w === undefined || !w.streams.delete(s)) return
    s.closed = true
    this.#streamCount--
    const n = (this.#perKey.get(s.key) ?? 1) - 1
    if (n <= 0) this.#perKey.delete(s.key)
    else this.#perKey.set(s.key, n)
    if (w.streams.size === 0) {
      w.lastDigest = undefined
      if (w.runtime === undefined) this.#watches.delete(w.sessionId)
    }
  }

  /** Ends every stream whose viewer is no longer valid (`event: revoked`); returns how many. */
  revalidate (): number {
    let n = 0
    for (const w of this.#watches.values()) {
      for (const s of [...w.streams]) {
        if (s.valid()) continue
        this.#end(s, 'event: revoked\ndata: {}\n\n')
        n++
      }
    }
    return n
  }

  /** Every KEEP_ALIVE_MS: re-check each stream's viewer, then a comment to the others. */
  keepAlive (): void {
    this.revalidate()
    for (const w of this.#watches.values()) for (const s of [...w.streams]) this.#write(s, ': keep-alive\n\n')
  }

  /** Shutdown: ends every stream. */
  close (): void {
    clearInterval(this.#keepAlive)
    for (const w of this.#watches.values()) {
      if (w.timer !== undefined) clearTimeout(w.timer)
      for (const s of [...w.streams]) this.#end(s, '')
      w.unsubscribe?.()
    }
    this.#watches.clear()
  }
}
