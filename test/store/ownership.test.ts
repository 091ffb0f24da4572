/**
 * NodeLease and HandoverWatcher (src/store/ownership.ts) on a real
 * PostgreSQL store, with an injected monotonic clock and timers, so lapses
 * and renewals happen exactly when the test moves time.
 */
import { once } from 'node:events'
import t from 'tap'
import { HandoverWatcher, leaseTimingsProblem, NodeLease, type LeaseClock } from '../../src/store/ownership.js'
import { PostgresStore } from '../../src/store/postgres.js'
import { PG_SKIP, startPostgres } from '../helpers/postgres.js'
import { captureLogs } from './fixtures/logs.js'

interface TestLike { teardown (fn: () => unknown): void }

/** A manual clock: timers fire only inside `advance`, in time order. */
class FakeClock implements LeaseClock {
  #now = 1000
  #next = 0
  readonly #timers = new Map<number, { at: number, fn: () => void }>()
  now (): number { return this.#now }
  setTimeout (fn: () => void, ms: number): unknown {
    const id = ++this.#next
    this.#timers.set(id, { at: this.#now + ms, fn })
    return id
  }

  clearTimeout (handle: unknown): void { this.#timers.delete(handle as number) }
  /** Moves time forward by `ms`, firing due timers (also the ones they schedule). */
  advance (ms: number): void {
    const end = this.#now + ms
    for (;;) {
      let first: [number, { at: number, fn: () => void }] | undefined
      for (const e of this.#timers) if (e[1].at <= end && (first === undefined || e[1].at < first[1].at)) first = e
      if (first === undefined) break
      this.#timers.delete(first[0])
      this.#now = Math.max(this.#now, first[1].at)
      first[1].fn()
    }
    this.#now = end
  }

  /** Moves time without firing anything (a paused process). */
  jump (ms: number): void { this.#now += ms }
  get pending (): number { return this.#timers.size }
}

const TIMINGS = { ttlMs: 10_000, renewMs: 2_000, marginMs: 2_000 }

t.test('lease timings are validated: ttl ≥ 3 × renew, 0 < margin < ttl − renew', async t => {
  t.equal(leaseTimingsProblem(TIMINGS), undefined)
  t.equal(leaseTimingsProblem({ ttlMs: 3000, renewMs: 500, marginMs: 500 }), undefined)
  t.match(leaseTimingsProblem({ ttlMs: 5000, renewMs: 2000, marginMs: 1000 }), /at least 3 × the renew interval/)
  t.match(leaseTimingsProblem({ ttlMs: 10_000, renewMs: 2000, marginMs: 8000 }), /below TTL − renew \(8 s\)/)
  t.match(leaseTimingsProblem({ ttlMs: 10_000, renewMs: 2000, marginMs: 0 }), /above 0/)
  t.match(leaseTimingsProblem({ ttlMs: 10_000, renewMs: 0, marginMs: 1 }), /positive/)
  t.throws(() => new NodeLease({ store: {} as never, nodeId: 'x', addr: 'x', ttlMs: 1000, renewMs: 1000, marginMs: 100 }), RangeError)
})

if (PG_SKIP !== false) {
  t.comment(`skipped: ${PG_SKIP}`)
  t.pass('skipped (no PostgreSQL)')
} else {
  const cluster = await startPostgres(t)
  const open = async (tt: TestLike, extra: { listenUrl?: string } = {}) => {
    const store = await PostgresStore.open({ url: cluster.url, ambiguousRetryMs: 300, connectTimeoutMs: 500, ...extra })
    tt.teardown(async () => { await store.close() })
    return store
  }
  const lease = (tt: TestLike, store: PostgresStore, clock: FakeClock, nodeId: string) => {
    const logs = captureLogs()
    const l = new NodeLease({ store, nodeId, addr: `${nodeId}:1`, ...TIMINGS, clock, logger: logs })
    tt.teardown(() => { l.stop() })
    return { lease: l, logs }
  }

  t.test('the deadline is renew-sent time + ttl − margin; a renewal moves it; stop lapses at once', async t => {
    const store = await open(t)
    const clock = new FakeClock()
    const { lease: l, logs } = lease(t, store, clock, 'n-deadline')
    const lapses: string[] = []
    l.on('lapsed', r => { lapses.push(r) })
    t.equal(l.valid(), false, 'not valid before start')
    const id = await l.start()
    t.equal(id.nodeId, 'n-deadline')
    t.equal(l.deadline, 1000 + 10_000 - 2_000)
    t.equal(l.valid(), true)
    t.equal(l.term, 0)

    // The renew timer fires at +2 s; the renewal was sent then, so the deadline becomes 3000 + 8000.
    const renewed = once(l, 'renewed')
    clock.advance(2000)
    t.same(await renewed, [11_000])
    t.equal(l.deadline, 11_000)

    l.stop()
    t.same(lapses, ['stopped'], 'stop lapses the lease locally at once')
    t.equal(l.valid(), false)
    t.equal(clock.pending, 0, 'no timer is left behind')
    t.ok(logs.lines.some(x => x.level === 'error' && x.msg.startsWith('lease lapsed')))
  })

  t.test('PostgreSQL down: renewals fail, the lease lapses at its deadline; back up: valid again under a new term', async t => {
    const own = await startPostgres(t)
    const store = await PostgresStore.open({ url: own.url, ambiguousRetryMs: 200, connectTimeoutMs: 300, queryTimeoutMs: 1000 })
    t.teardown(async () => { await store.close() })
    const clock = new FakeClock()
    const { lease: l } = lease(t, store, clock, 'n-outage')
    await l.start()
    const term = l.term
    await own.stop('fast')
    const lapses: string[] = []
    l.on('lapsed', r => { lapses.push(r) })
    t.equal(await l.renew(), false, 'the renewal fails')
    t.equal(l.valid(), true, 'still before the deadline')
    clock.advance(8000)
    t.same(lapses, ['the lease deadline passed without a successful renewal'])
    t.equal(l.valid(), false)
    t.equal(l.term, term + 1)
    await own.start()
    t.equal(await l.renew(), true)
    t.equal(l.valid(), true, 'a later renewal makes the lease valid again')
    t.equal(l.valid(term), false, '… but not for work begun under the old term')
    t.equal(l.valid(l.term), true)
    t.same(lapses.length, 1, 'one lapse reported')
  })

  t.test('a paused process: time jumps past the deadline without any timer; valid() reports the lapse at once', async t => {
    const store = await open(t)
    const clock = new FakeClock()
    const { lease: l } = lease(t, store, clock, 'n-paused')
    await l.start()
    const lapses: string[] = []
    l.on('lapsed', r => { lapses.push(r) })
    clock.jump(8000)
    t.equal(l.valid(), false)
    t.equal(lapses.length, 1)
    t.equal(l.valid(), false)
    t.equal(lapses.length, 1, 'reported once')
  })

  t.test('superseded: another process registers the same node id; our next renewal says so', async t => {
    const store = await open(t)
    const clock = new FakeClock()
    const { lease: first } = lease(t, store, clock, 'n-twin')
    const idA = await first.start()
    const { lease: second } = lease(t, store, clock, 'n-twin')
    const idB = await second.start()
    t.equal(idB.incarnation, idA.incarnation + 1)
    const superseded = once(first, 'superseded')
    t.equal(await first.renew(), false)
    await superseded
    t.equal(first.valid(), false)
    t.equal(second.valid(), true)
  })

  t.test('retire ends the lease in the database: a peer may claim at once', async t => {
    const store = await open(t)
    const clock = new FakeClock()
    const { lease: l } = lease(t, store, clock, 'n-retire')
    const id = await l.start()
    await store.claim('retire-s', id)
    const peer = await store.registerNode({ nodeId: 'peer-retire', addr: 'p', ttlMs: 10_000 })
    t.match(await store.claim('retire-s', peer), { ok: false })
    await l.retire()
    t.equal(l.valid(), false)
    t.match(await store.claim('retire-s', peer), { ok: true, reason: 'expired' })
  })

  t.test('HandoverWatcher: a request arrives by notification; a release wakes a waiter', async t => {
    const store = await open(t)
    const clock = new FakeClock()
    const owner = await store.registerNode({ nodeId: 'hw-owner', addr: 'o', ttlMs: 60_000 })
    const asker = await store.registerNode({ nodeId: 'hw-asker', addr: 'a', ttlMs: 60_000 })
    await store.claim('hw-s', owner)
    const watcher = new HandoverWatcher({ store, node: () => owner, clock })
    t.teardown(async () => { await watcher.stop() })
    await watcher.start()
    const asked = once(watcher, 'handover')
    t.equal(await store.requestHandover('hw-s', asker, 1), true)
    t.same(await asked, [{ sessionId: 'hw-s', epoch: 1, to: 'hw-asker' }], 'no clock moved: the notification did it')

    const askerWatch = new HandoverWatcher({ store, node: () => asker, clock })
    t.teardown(async () => { await askerWatch.stop() })
    await askerWatch.start()
    await store.appendBatch([{ sessionId: 'hw-s', epoch: 1, fromSeq: 0, inputs: [{ kind: 'tick', now: 1 }], persist: true }])
    const waiting = askerWatch.waitForRelease('hw-s', 5000)
    await store.release('hw-s', 1, { clean: true })
    t.equal(await waiting, true)
    t.match(await store.claim('hw-s', asker), { ok: true, reason: 'released' })
    t.equal(await askerWatch.waitForRelease('hw-none', 5000), true, 'an unknown session needs no wait')
  })

  t.test('HandoverWatcher without LISTEN: polling finds requests; a wait for a live owner times out', async t => {
    // The listen URL points nowhere: notifications are unavailable, polling must do.
    const store = await open(t, { listenUrl: 'postgres://postgres@127.0.0.1:1/postgres' })
    const clock = new FakeClock()
    const owner = await store.registerNode({ nodeId: 'poll-owner', addr: 'o', ttlMs: 60_000 })
    const asker = await store.registerNode({ nodeId: 'poll-asker', addr: 'a', ttlMs: 60_000 })
    await store.claim('poll-s', owner)
    const logs = captureLogs()
    const watcher = new HandoverWatcher({ store, node: () => owner, clock, pollMs: 500, logger: logs })
    t.teardown(async () => { await watcher.stop() })
    await watcher.start()
    t.ok(logs.lines.some(l => l.msg.includes('polling only')))
    const seen: string[] = []
    watcher.on('handover', r => { seen.push(r.to) })
    await store.requestHandover('poll-s', asker, 1)
    const asked = once(watcher, 'handover')
    clock.advance(500)
    await asked
    await watcher.poll()
    t.same(seen, ['poll-asker'], 'reported once')

    const waiting = watcher.waitForRelease('poll-s', 3000)
    clock.advance(3000)
    t.equal(await waiting, false, 'the owner is live and did not release')
  })
}
