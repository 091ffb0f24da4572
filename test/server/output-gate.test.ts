// T2 of the scale-out design (§9.3): the output gate of fleet mode, as a
// property test without PostgreSQL. Real session runtimes (real cores) commit
// through the real CommitLanes to a fake *asynchronous* FleetStore (a test
// double of the store contract only) that answers after random delays, and at
// random fails a call (StoreUnavailableError) or reports ownership lost (another
// node claimed the session: its epoch moved on). The delivery gate (the node
// lease) may also lapse at a random moment. Checked on every frame a
// connection receives, over many seeded runs:
//   - no output leaves before every journaled input up to it is committed;
//   - each connection gets its replies in the order it sent (output order =
//     input order), exactly one per message or sideband query;
//   - a lost batch discards itself and every later batch of that session
//     (nothing of them is delivered, the store holds none of them, and the
//     connections are closed with 1012 "session moved");
//   - a failed call delivers nothing of its batches (1011);
//   - after the lease lapses nothing is delivered at all;
//   - what the store holds is exactly a prefix of what was journaled.
import { pino } from 'pino'
import t from 'tap'
import { CommitLanes, type LaneStore } from '../../src/server/commit-lanes.js'
import { createCore } from '../../src/server/core.js'
import { Metrics, FleetMetrics } from '../../src/server/metrics.js'
import { SessionRuntime, type Peer } from '../../src/server/session-runtime.js'
import { SnapshotPolicy, StoreUnavailableError, type AppendBatch, type AppendResult, type JournalStats } from '../../src/store/index.js'
import type { CloseSpec } from '../../src/protocol/close-codes.js'
import { Envelopes, TestClock, entitySet, type Json } from '../helpers/mpac.js'
import { mulberry32 } from '../helpers/prng.js'

interface SessionModel {
  /** Message ids of journaled inputs, in the order they were applied. */
  readonly journaled: string[]
  /** What the fake store committed (message ids of message inputs, in order). */
  readonly committed: string[]
  /** Number of committed inputs of any kind (the store's last_seq). */
  lastSeq: number
  epoch: number
  /** Set when the store answered lost: the journal index of the first input of that batch. */
  lostFrom: number | undefined
  /** Set when a call with this session failed. */
  failedFrom: number | undefined
  runtime: SessionRuntime
  readonly peers: FakePeer[]
}

interface Outstanding {
  readonly id: string | undefined
  readonly kind: 'message' | 'sideband'
  /** Journaled inputs of the session (this one included when journaled) that must be committed before its reply. */
  readonly need: number
  readonly type: string
}

class FakePeer implements Peer {
  readonly connId: string
  principalId: string | undefined
  closed: CloseSpec | undefined
  readonly outstanding: Outstanding[] = []
  readonly received: Json[] = []
  readonly violations: string[]
  constructor (readonly pid: string, readonly model: () => SessionModel, readonly gate: { open: boolean, lapsedAt: number | undefined }, violations: string[]) {
    this.connId = `c-${pid}`
    this.violations = violations
  }

  get isOpen (): boolean { return this.closed === undefined }

  send (data: string): boolean {
    const frame = JSON.parse(data) as Json
    const m = this.model()
    this.received.push(frame)
    if (!this.gate.open) this.violations.push(`${this.pid}: ${String(frame.message_type ?? frame.type)} delivered after the lease lapsed`)
    const id = typeof frame.message_id === 'string' ? frame.message_id : undefined
    const refers = (frame.payload as Json | undefined)?.refers_to
    // Any frame naming a journaled message (relay, echo, error) needs that message committed.
    for (const ref of [id, typeof refers === 'string' ? refers : undefined]) {
      if (ref === undefined) continue
      const at = m.journaled.indexOf(ref)
      if (at >= 0 && !m.committed.includes(ref)) this.violations.push(`${this.pid}: frame for ${ref} delivered before it was committed`)
      if (at >= 0 && m.lostFrom !== undefined && at >= m.lostFrom) this.violations.push(`${this.pid}: frame for ${ref} delivered from a lost batch`)
      if (at >= 0 && m.failedFrom !== undefined && at >= m.failedFrom) this.violations.push(`${this.pid}: frame for ${ref} delivered from a failed commit`)
    }
    const head = this.outstanding[0]
    const isReply = head !== undefined && (
      (head.kind === 'sideband' && frame.type === 'SESSION_SUMMARY_RESPONSE') ||
      (head.kind === 'message' && (id === head.id || refers === head.id || (head.type === 'HELLO' && frame.message_type === 'SESSION_INFO')))
    )
    if (isReply) {
      this.outstanding.shift()
      if (m.committed.length < head.need) this.violations.push(`${this.pid}: reply to ${head.id ?? 'a sideband query'} delivered with ${m.committed.length} of ${head.need} earlier inputs committed`)
    } else if (frame.type === 'SESSION_SUMMARY_RESPONSE' || frame.message_type === 'SESSION_INFO' || this.outstanding.some(o => o.id !== undefined && (o.id === id || o.id === refers))) {
      this.violations.push(`${this.pid}: reply out of order (${String(frame.type ?? frame.message_type)} ${id ?? ''}, expected ${head?.id ?? head?.kind ?? 'nothing'})`)
    }
    return true
  }

  close (spec: CloseSpec): void {
    this.closed ??= spec
  }
}

/** The test double of the FleetStore contract: only what the lanes call. */
class FakeFleetStore implements LaneStore {
  readonly lanes = 2
  calls = 0
  constructor (readonly rnd: () => number, readonly models: Map<string, SessionModel>, readonly odds: { lost: number, fail: number }) {}

  laneOf (sessionId: string): number {
    let h = 0
    for (const ch of sessionId) h = (h * 31 + ch.charCodeAt(0)) >>> 0
    return h % this.lanes
  }

  async appendBatch (batches: readonly AppendBatch[]): Promise<AppendResult> {
    this.calls++
    await new Promise(resolve => setTimeout(resolve, Math.floor(this.rnd() * 4)))
    const first = (m: SessionModel, b: AppendBatch): number => {
      const msg = b.inputs.find(i => i.kind === 'message')
      return msg === undefined ? m.journaled.length : m.journaled.indexOf(String((msg as { envelope: Json }).envelope.message_id))
    }
    if (this.rnd() < this.odds.fail) {
      for (const b of batches) {
        const m = this.models.get(b.sessionId) as SessionModel
        m.failedFrom ??= first(m, b)
      }
      throw new StoreUnavailableError('fake: the database went away')
    }
    const committed: string[] = []
    const lost: string[] = []
    const stats = new Map<string, JournalStats>()
    for (const b of batches) {
      const m = this.models.get(b.sessionId) as SessionModel
      // Another node claims the session now and then: its epoch moves on for good.
      if (this.rnd() < this.odds.lost) m.epoch++
      if (b.epoch !== m.epoch || b.fromSeq !== m.lastSeq) {
        lost.push(b.sessionId)
        m.lostFrom ??= first(m, b)
        continue
      }
      m.lastSeq += b.inputs.length
      for (const input of b.inputs) if (input.kind === 'message') m.committed.push(String((input as { envelope: Json }).envelope.message_id))
      committed.push(b.sessionId)
      stats.set(b.sessionId, { entriesSinceSnapshot: m.lastSeq, bytesSinceSnapshot: 0 })
    }
    return { committed, lost, stats, ambiguous: 0 }
  }

  async saveSnapshot (): Promise<boolean> { return true }
  async markClosed (): Promise<boolean> { return true }
}

const logger = pino({ level: 'silent' })

async function run (seed: number): Promise<{ violations: string[], delivered: number, lost: number, failed: number, lapsed: boolean }> {
  const rnd = mulberry32(seed)
  const clock = new TestClock()
  const violations: string[] = []
  const models = new Map<string, SessionModel>()
  const odds = { lost: rnd() < 0.5 ? 0.04 : 0, fail: rnd() < 0.3 ? 0.03 : 0 }
  const store = new FakeFleetStore(rnd, models, odds)
  const metrics = new Metrics()
  metrics.fleet = new FleetMetrics()
  const lanes = new CommitLanes({ store, snapshotPolicy: new SnapshotPolicy(), logger, metrics, now: () => clock.now })
  const gate = { open: true, lapsedAt: undefined as number | undefined }
  const sessions = 1 + Math.floor(rnd() * 3)
  const envs = new Map<string, Envelopes>()
  for (let s = 0; s < sessions; s++) {
    const sid = `s${seed}-${s}`
    envs.set(sid, new Envelopes(sid, clock))
    const runtime: SessionRuntime = new SessionRuntime({
      sessionId: sid,
      core: createCore({ sessionId: sid }),
      snapshotPolicy: new SnapshotPolicy(),
      logger,
      metrics,
      heartbeatIntervalSec: 30,
      workspace: undefined,
      persisted: false,
      now: () => clock.now,
      lease: { valid: () => gate.open },
      scheduleFlush: rt => lanes.schedule(rt),
      onFenced: rt => lanes.disown(rt),
      onBroken: rt => lanes.disown(rt)
    })
    const model: SessionModel = { journaled: [], committed: [], lastSeq: 0, epoch: 1, lostFrom: undefined, failedFrom: undefined, runtime, peers: [] }
    models.set(sid, model)
    lanes.own(runtime, 1, 0, false)
    for (let p = 0; p < 3; p++) model.peers.push(new FakePeer(`${sid}/P${p}`, () => model, gate, violations))
  }
  const all = [...models.values()]
  const lapseAt = rnd() < 0.25 ? Math.floor(rnd() * 150) : Infinity
  const steps = 150 + Math.floor(rnd() * 100)
  const intentsOf = new Map<FakePeer, string[]>()
  for (let step = 0; step < steps; step++) {
    if (step === lapseAt) {
      gate.open = false
      gate.lapsedAt = step
    }
    const m = all[Math.floor(rnd() * all.length)] as SessionModel
    const peer = m.peers[Math.floor(rnd() * m.peers.length)] as FakePeer
    if (peer.closed !== undefined || m.runtime.broken) continue
    const env = envs.get(m.runtime.sessionId) as Envelopes
    clock.advance(0.01)
    const pid = peer.pid.replace(/[^A-Za-z0-9]/g, '')
    const r = rnd()
    if (peer.principalId === undefined && !peer.outstanding.some(o => o.type === 'HELLO')) {
      const hello = env.make('HELLO', pid, { display_name: pid, roles: ['contributor'], capabilities: [] })
      submit(m, peer, hello, 'HELLO')
    } else if (r < 0.15) {
      peer.outstanding.push({ id: undefined, kind: 'sideband', need: m.journaled.length, type: 'SESSION_SUMMARY' })
      m.runtime.handleSideband(peer, { type: 'SESSION_SUMMARY' }, 0)
    } else if (r < 0.3 && (intentsOf.get(peer)?.length ?? 0) > 0) {
      const intent = (intentsOf.get(peer) as string[]).shift() as string
      submit(m, peer, env.make('INTENT_WITHDRAW', pid, { intent_id: intent, reason: 'done' }), 'INTENT_WITHDRAW')
    } else if (r < 0.4) {
      submit(m, peer, env.make('HEARTBEAT', pid, { status: 'idle' }), 'HEARTBEAT')
    } else {
      const intent = `i-${pid}-${step}`
      let list = intentsOf.get(peer)
      if (list === undefined) intentsOf.set(peer, list = [])
      list.push(intent)
      submit(m, peer, env.make('INTENT_ANNOUNCE', pid, { intent_id: intent, objective: 'work', scope: entitySet(`e${Math.floor(rnd() * 4)}`) }), 'INTENT_ANNOUNCE')
    }
    // Let the lanes and the fake store's timers run now and then (random interleaving).
    if (rnd() < 0.3) await new Promise(resolve => setImmediate(resolve))
    if (rnd() < 0.05) await new Promise(resolve => setTimeout(resolve, 1))
  }
  const deadline = Date.now() + 10_000
  while (!(await Promise.race([lanes.idle().then(() => true), new Promise<false>(resolve => setTimeout(() => resolve(false), 100))]))) {
    if (Date.now() > deadline) {
      violations.push('the lanes did not become idle within 10 s')
      break
    }
  }
  let delivered = 0
  for (const m of all) {
    // What the store holds is a prefix of what was journaled, in order.
    const prefix = m.journaled.slice(0, m.committed.length)
    if (prefix.join() !== m.committed.join()) violations.push(`${m.runtime.sessionId}: the store holds ${m.committed.join()} but the journal order is ${m.journaled.join()}`)
    if (m.lostFrom !== undefined && m.committed.length > m.lostFrom) violations.push(`${m.runtime.sessionId}: inputs after the lost batch were committed`)
    for (const peer of m.peers) {
      delivered += peer.received.length
      if (m.lostFrom !== undefined && m.failedFrom === undefined && gate.open && peer.principalId !== undefined && peer.closed?.code !== 1012) {
        violations.push(`${peer.pid}: not closed with 1012 after its session's batch was lost (${JSON.stringify(peer.closed)})`)
      }
      if (m.lostFrom !== undefined && peer.closed?.code === 1012 && peer.closed.reason !== 'session moved') violations.push(`${peer.pid}: 1012 with reason ${peer.closed.reason}`)
      // Liveness: a session that was never lost, failed or gated answered everything.
      if (m.lostFrom === undefined && m.failedFrom === undefined && gate.open && peer.outstanding.length > 0) {
        violations.push(`${peer.pid}: ${peer.outstanding.length} requests never answered`)
      }
    }
  }
  return { violations, delivered, lost: all.filter(m => m.lostFrom !== undefined).length, failed: all.filter(m => m.failedFrom !== undefined).length, lapsed: !gate.open }

  function submit (m: SessionModel, peer: FakePeer, envelope: Json, type: string): void {
    const result = m.runtime.handleMessage(peer, envelope, undefined, 0)
    if (result === undefined) return
    if (result.changed) m.journaled.push(String(envelope.message_id))
    peer.outstanding.push({ id: String(envelope.message_id), kind: 'message', need: m.journaled.length, type })
    if (type === 'HELLO' && result.accepted) m.runtime.attach(peer)
  }
}


t.test('output gate: no output before its batch committed, in order, lost batches discarded (random runs)', async t => {
  let delivered = 0
  let lost = 0
  let failed = 0
  let lapsed = 0
  for (let seed = 1; seed <= 60; seed++) {
    const r = await run(seed)
    t.same(r.violations, [], `seed ${seed}: no violation`)
    delivered += r.delivered
    lost += r.lost
    failed += r.failed
    if (r.lapsed) lapsed++
  }
  // The runs must really have exercised each path (else the property test proves nothing).
  t.ok(delivered > 5000, `frames delivered: ${delivered}`)
  t.ok(lost >= 5, `sessions whose batch was lost: ${lost}`)
  t.ok(failed >= 3, `sessions whose commit failed: ${failed}`)
  t.ok(lapsed >= 5, `runs whose lease lapsed: ${lapsed}`)
})

t.test('output gate: a reply waits for the commit of the batch in flight before it, not only its own', async t => {
  // Deterministic: the store holds the first batch until the test releases it.
  let release: (() => void) | undefined
  const order: string[] = []
  const store: LaneStore = {
    lanes: 1,
    laneOf: () => 0,
    appendBatch: async (batches) => {
      order.push(`append ${batches.map(b => b.inputs.length).join()}`)
      await new Promise<void>(resolve => { release = resolve })
      order.push('committed')
      return { committed: batches.map(b => b.sessionId), lost: [], stats: new Map(), ambiguous: 0 }
    },
    saveSnapshot: async () => true,
    markClosed: async () => true
  }
  const clock = new TestClock()
  const metrics = new Metrics()
  const lanes = new CommitLanes({ store, snapshotPolicy: new SnapshotPolicy(), logger, metrics, now: () => clock.now })
  const runtime = new SessionRuntime({
    sessionId: 'x',
    core: createCore({ sessionId: 'x' }),
    snapshotPolicy: new SnapshotPolicy(),
    logger,
    metrics,
    heartbeatIntervalSec: 30,
    workspace: undefined,
    persisted: false,
    now: () => clock.now,
    scheduleFlush: rt => lanes.schedule(rt)
  })
  lanes.own(runtime, 1, 0, false)
  const got: string[] = []
  const peer: Peer = {
    connId: 'c',
    principalId: undefined,
    isOpen: true,
    send: (data) => { got.push(String((JSON.parse(data) as Json).message_type ?? (JSON.parse(data) as Json).type)); order.push('sent'); return true },
    close: () => {}
  }
  const env = new Envelopes('x', clock)
  const hello = env.make('HELLO', 'A', { display_name: 'A', roles: ['contributor'], capabilities: [] })
  t.ok(runtime.handleMessage(peer, hello, undefined, 0)?.accepted)
  runtime.attach(peer)
  await waitFor(() => release !== undefined)
  // The HELLO's batch is in flight: a sideband query now (journals nothing) must still wait for it.
  runtime.handleSideband(peer, { type: 'SESSION_SUMMARY' }, 0)
  await new Promise(resolve => setImmediate(resolve))
  await new Promise(resolve => setImmediate(resolve))
  t.same(got, [], 'nothing delivered while the batch is in flight')
  ;(release as () => void)()
  await lanes.idle()
  t.same(got, ['SESSION_INFO', 'SESSION_SUMMARY_RESPONSE'], 'SESSION_INFO first, then the summary')
  t.same(order, ['append 1', 'committed', 'sent', 'sent'])
})

async function waitFor (cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 5 s')
    await new Promise(resolve => setImmediate(resolve))
  }
}
