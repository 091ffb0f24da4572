// The PostgreSQL fleet store's group commit (`npm run bench:fleet:store`).
//
// One node, `--sessions` sessions claimed on one PostgreSQL, `--lanes` lanes.
// A request is one journaled input (an INTENT_ANNOUNCE input of ~600 bytes);
// it is acknowledged when the fenced statement that carries it committed.
// Each lane runs the group commit the fleet runtime uses: take everything
// pending for the lane's sessions (one batch per session), one
// `appendBatch`, acknowledge, repeat; one statement in flight per lane, so
// the batch grows by itself under load.
//
// 1. closed loop: every session has one request outstanding and sends the
//    next as soon as the previous is acknowledged (goal: >= 5,000 journaled
//    requests/s on the 2-core development VM);
// 2. open loop at `--rate` requests/s offered (default 2,500), spread over
//    the sessions: request latency p50/p99 (goal p99 <= 50 ms);
// 3. one lane, one entry per commit: the latency floor of one fenced commit.
//
// PostgreSQL: `--database-url URL`, else a throwaway cluster started from
// /usr/lib/postgresql/<ver>/bin (test/helpers/postgres.ts), fsync on.
// Options: --seconds N per phase (default 5), --sessions N (default 200),
// --lanes N (default 4), --rate N (default 2500).
import { parseArgs } from 'node:util'
import type { CoreInput } from '../../src/coordinator/types.js'
import type { AppendBatch, NodeIdentity } from '../../src/store/fleet-types.js'
import { PostgresStore } from '../../src/store/postgres.js'
import { startPostgres } from '../../test/helpers/postgres.js'

const { values } = parseArgs({
  options: {
    'database-url': { type: 'string' },
    seconds: { type: 'string', default: '5' },
    sessions: { type: 'string', default: '200' },
    lanes: { type: 'string', default: '4' },
    rate: { type: 'string', default: '2500' }
  }
})
const SECONDS = Number(values.seconds)
const SESSIONS = Number(values.sessions)
const LANES = Number(values.lanes)
const RATE = Number(values.rate)

const teardowns: Array<() => unknown> = []
let url = values['database-url']
if (url === undefined) {
  const cluster = await startPostgres({ teardown: fn => { teardowns.push(fn) } })
  url = cluster.url
}

function input (session: number, n: number): CoreInput {
  return {
    kind: 'message',
    now: Date.now(),
    envelope: {
      protocol: 'MPAC',
      version: '0.1.13',
      message_type: 'INTENT_ANNOUNCE',
      message_id: `m-${session}-${n}`,
      session_id: `bench-${session}`,
      sender: { principal_id: `agent-${session % 5}`, principal_type: 'agent', sender_instance_id: `agent-${session % 5}:1` },
      ts: new Date().toISOString(),
      payload: {
        intent_id: `i-${session}-${n}`,
        objective: 'refactor the storage layer so that the journal can be replayed on another node',
        scope: { kind: 'file_set', resources: ['src/store/postgres.ts', 'src/store/ownership.ts', 'src/server/registry.ts'] },
        ttl_sec: 600
      }
    },
    verdict: { accepted: true }
  }
}

function quantile (sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number
}
const fmt = (ms: number): string => `${ms.toFixed(1)} ms`

interface Pending { readonly input: CoreInput, readonly sent: number, readonly ack: () => void }

/** The group commit of one node: per lane, everything pending goes in one statement. */
class Committer {
  readonly #store: PostgresStore
  readonly #tail = new Map<string, number>()
  readonly #epoch = new Map<string, number>()
  readonly #pending: Array<Map<string, Pending[]>>
  readonly #busy: boolean[]
  readonly commitMs: number[] = []
  readonly batchEntries: number[] = []
  lost = 0

  constructor (store: PostgresStore) {
    this.#store = store
    this.#pending = Array.from({ length: store.lanes }, () => new Map<string, Pending[]>())
    this.#busy = Array.from({ length: store.lanes }, () => false)
  }

  add (sessionId: string, epoch: number, lastSeq: number): void {
    this.#epoch.set(sessionId, epoch)
    this.#tail.set(sessionId, lastSeq)
  }

  async submit (sessionId: string, inp: CoreInput): Promise<number> {
    const sent = performance.now()
    await new Promise<void>(resolve => {
      const lane = this.#store.laneOf(sessionId)
      const map = this.#pending[lane] as Map<string, Pending[]>
      let list = map.get(sessionId)
      if (list === undefined) map.set(sessionId, list = [])
      list.push({ input: inp, sent, ack: resolve })
      if (!(this.#busy[lane] as boolean)) void this.#run(lane)
    })
    return performance.now() - sent
  }

  async #run (lane: number): Promise<void> {
    this.#busy[lane] = true
    const map = this.#pending[lane] as Map<string, Pending[]>
    while (map.size > 0) {
      const taken = [...map]
      map.clear()
      const batches: AppendBatch[] = taken.map(([sessionId, list]) => ({
        sessionId,
        epoch: this.#epoch.get(sessionId) as number,
        fromSeq: this.#tail.get(sessionId) as number,
        inputs: list.map(p => p.input),
        persist: true
      }))
      const t0 = performance.now()
      const r = await this.#store.appendBatch(batches)
      this.commitMs.push(performance.now() - t0)
      this.batchEntries.push(batches.reduce((n, b) => n + b.inputs.length, 0))
      this.lost += r.lost.length
      const ok = new Set(r.committed)
      for (const [sessionId, list] of taken) {
        if (!ok.has(sessionId)) continue
        this.#tail.set(sessionId, (this.#tail.get(sessionId) as number) + list.length)
        for (const p of list) p.ack()
      }
    }
    this.#busy[lane] = false
  }

  reset (): void {
    this.commitMs.length = 0
    this.batchEntries.length = 0
  }
}

async function setup (lanes: number, prefix: string): Promise<{ store: PostgresStore, committer: Committer, ids: string[] }> {
  const store = await PostgresStore.open({ url: url as string, lanes })
  const node: NodeIdentity = await store.registerNode({ nodeId: `bench-${prefix}`, addr: 'bench', ttlMs: 600_000 })
  const committer = new Committer(store)
  const ids = Array.from({ length: SESSIONS }, (_, i) => `${prefix}-${i}`)
  for (const id of ids) {
    const c = await store.claim(id, node)
    if (!c.ok) throw new Error(`could not claim ${id}`)
    committer.add(id, c.epoch, c.lastSeq)
  }
  return { store, committer, ids }
}

function report (label: string, requests: number, seconds: number, latencies: number[], committer: Committer): void {
  latencies.sort((a, b) => a - b)
  const commits = [...committer.commitMs].sort((a, b) => a - b)
  const entries = committer.batchEntries.reduce((a, b) => a + b, 0)
  console.log(`${label}:`)
  console.log(`  journaled requests/s  ${Math.round(requests / seconds)}`)
  console.log(`  request latency       p50 ${fmt(quantile(latencies, 0.5))}  p99 ${fmt(quantile(latencies, 0.99))}`)
  console.log(`  commits/s             ${Math.round(commits.length / seconds)} (${(commits.length / seconds / LANES).toFixed(0)} per lane), mean batch ${(entries / Math.max(1, commits.length)).toFixed(1)} entries`)
  console.log(`  commit latency        p50 ${fmt(quantile(commits, 0.5))}  p99 ${fmt(quantile(commits, 0.99))}`)
  if (committer.lost > 0) console.log(`  LOST batches          ${committer.lost}`)
}

async function closedLoop (): Promise<void> {
  const { store, committer, ids } = await setup(LANES, 'closed')
  let stop = false
  let done = 0
  const latencies: number[] = []
  const warmupEnd = performance.now() + 1000
  let counting = false
  const client = async (i: number): Promise<void> => {
    const id = ids[i] as string
    for (let n = 0; !stop; n++) {
      const ms = await committer.submit(id, input(i, n))
      if (counting) { done++; latencies.push(ms) }
    }
  }
  const clients = ids.map(async (_, i) => { await client(i) })
  await new Promise(resolve => setTimeout(resolve, Math.max(0, warmupEnd - performance.now())))
  committer.reset()
  counting = true
  const t0 = performance.now()
  await new Promise(resolve => setTimeout(resolve, SECONDS * 1000))
  counting = false
  const seconds = (performance.now() - t0) / 1000
  const snapshot = { commitMs: [...committer.commitMs], batchEntries: [...committer.batchEntries] }
  stop = true
  await Promise.all(clients)
  committer.commitMs.splice(0, Infinity, ...snapshot.commitMs)
  committer.batchEntries.splice(0, Infinity, ...snapshot.batchEntries)
  report(`closed loop, ${SESSIONS} sessions, ${LANES} lanes`, done, seconds, latencies, committer)
  await store.close()
}

async function openLoop (rate: number): Promise<void> {
  const { store, committer, ids } = await setup(LANES, `open${rate}`)
  const latencies: number[] = []
  const inflight: Array<Promise<void>> = []
  const t0 = performance.now()
  const end = t0 + SECONDS * 1000
  let sent = 0
  // Requests are due at t0 + k / rate; a timer every 2 ms sends those due (a late timer sends a burst).
  await new Promise<void>(resolve => {
    const timer = setInterval(() => {
      const now = performance.now()
      const due = Math.floor(((Math.min(now, end) - t0) / 1000) * rate)
      while (sent < due) {
        const k = sent++
        const i = k % ids.length
        inflight.push(committer.submit(ids[i] as string, input(i, k)).then(ms => { latencies.push(ms) }))
      }
      if (now >= end) {
        clearInterval(timer)
        resolve()
      }
    }, 2)
  })
  await Promise.all(inflight)
  const seconds = (performance.now() - t0) / 1000
  report(`open loop at ${rate} requests/s offered`, latencies.length, seconds, latencies, committer)
  await store.close()
}

async function singleEntry (): Promise<void> {
  const store = await PostgresStore.open({ url: url as string, lanes: 1 })
  const node = await store.registerNode({ nodeId: 'bench-single', addr: 'bench', ttlMs: 600_000 })
  const c = await store.claim('single', node)
  if (!c.ok) throw new Error('could not claim')
  let seq = c.lastSeq
  const lat: number[] = []
  const end = performance.now() + Math.min(SECONDS, 3) * 1000
  for (let n = 0; performance.now() < end; n++) {
    const t0 = performance.now()
    await store.appendBatch([{ sessionId: 'single', epoch: c.epoch, fromSeq: seq, inputs: [input(0, n)], persist: true }])
    lat.push(performance.now() - t0)
    seq++
  }
  lat.sort((a, b) => a - b)
  console.log('one lane, one entry per commit:')
  console.log(`  commits/s             ${Math.round(lat.length / Math.min(SECONDS, 3))}`)
  console.log(`  commit latency        p50 ${fmt(quantile(lat, 0.5))}  p99 ${fmt(quantile(lat, 0.99))}`)
  await store.close()
}

try {
  console.log(`PostgreSQL fleet store, node ${process.version}; ${SECONDS} s per phase`)
  await closedLoop()
  await openLoop(RATE)
  await singleEntry()
} finally {
  for (const fn of teardowns.reverse()) await fn()
}
