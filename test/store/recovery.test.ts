import { join } from 'node:path'
import t from 'tap'
import type { CoordinatorConfig, CoreInput, Output } from '../../src/coordinator/index.js'
import { Coordinator } from '../../src/coordinator/index.js'
import type { ManagedSessionStore, SessionStore } from '../../src/store/index.js'
import { MemoryStore, recoverSession, replaySession, SqliteStore } from '../../src/store/index.js'
import { Workload } from './fixtures/workload.js'
import { tempDir } from './fixtures/temp-dir.js'

const SID = 'sess-recover'
const GRACE_SEC = 30

/** The runtime's loop, minus the sockets: apply, journal, keep the outputs. */
function feed (coordinator: Coordinator, store: ManagedSessionStore, inputs: readonly CoreInput[]): Output[][] {
  return inputs.map(input => {
    const result = coordinator.apply(input)
    store.append(SID, [input])
    return [...result.outputs]
  })
}

function terminal (outputs: readonly Output[]): Record<string, unknown> {
  const frame = outputs.find(o => o.terminal === true)?.frame
  if (frame === undefined) throw new Error('no terminal frame')
  return frame
}

function errorCode (frame: Record<string, unknown>): unknown {
  return frame.message_type === 'PROTOCOL_ERROR' ? (frame.payload as Record<string, unknown>).error_code : undefined
}

/** The summary without what recovery is meant to change (liveness slack, capture time). */
function stable (c: Coordinator, now: number): unknown {
  const s = c.summary(now) as { participants: Array<Record<string, unknown>> }
  return {
    ...s,
    participants: s.participants.map(p => {
      const copy = { ...p }
      delete copy.last_seen
      return copy
    })
  }
}

const stores: Array<[string, (dir: string) => ManagedSessionStore]> = [
  ['sqlite', dir => new SqliteStore({ dir })],
  ['memory', () => new MemoryStore()]
]

for (const [kind, makeStore] of stores) {
  for (const withSnapshot of [false, true]) {
    t.test(`${kind} store, ${withSnapshot ? 'snapshot plus journal tail' : 'journal only'}: a recovered session continues where it stopped`, async t => {
      const dir = join(tempDir(t), 'data')
      let store = makeStore(dir)
      const config: CoordinatorConfig = { sessionId: SID }
      const w = new Workload({ sessionId: SID, agents: 2 })
      const live = new Coordinator(config)

      const hellos = feed(live, store, w.hellos())
      t.ok(hellos.every(out => terminal(out).message_type === 'SESSION_INFO'), 'HELLOs admitted')
      if (withSnapshot) store.saveSnapshot(SID, live.snapshot(w.now))
      const work = feed(live, store, [...w.cycle(), ...w.cycle().slice(0, 2)])
      t.ok(work.every(out => errorCode(terminal(out)) === undefined), 'announces and commits accepted')
      t.equal(live.listFiles().length, 2, 'two files committed')
      t.equal(live.epoch, 1)

      let sqliteDir: string | undefined
      if (store instanceof SqliteStore) {
        store.close()
        sqliteDir = dir
        store = makeStore(dir)
      }
      t.teardown(() => store.close())
      const now = w.now + 5_000
      const recovered = recoverSession(store, SID, config, now, GRACE_SEC)
      if (recovered === undefined) throw new Error('nothing recovered')
      const { coordinator } = recovered

      t.same(stable(coordinator, now), stable(live, now), 'same summary (participants, active intents, conflicts)')
      t.same(coordinator.listFiles(), live.listFiles(), 'same files')
      for (const f of live.listFiles()) t.same(coordinator.readFile(f.path), live.readFile(f.path), `same content of ${f.path}`)
      t.equal(coordinator.epoch, live.epoch + 1, 'epoch + 1')
      t.ok(coordinator.lamport > live.lamport, 'the Lamport clock continues')

      t.equal(recovered.outputs.length, 1)
      t.match(recovered.outputs[0], {
        audience: { kind: 'all' },
        frame: { message_type: 'COORDINATOR_STATUS', coordinator_epoch: 2, payload: { event: 'recovered' } }
      })
      const snap = coordinator.snapshot(now)
      t.ok(snap.participants.every(p => p.last_seen >= now + GRACE_SEC * 1000), 'every participant gets the reconnect grace')

      const stored = store.load(SID)
      t.same(stored?.journal, [], 'the journal restarts with the new epoch')
      t.match(stored?.snapshot, { coordinator_epoch: 2, lamport_clock: coordinator.lamport })

      // The session goes on: a commit on a file recovered from the store is checked against its ref.
      const next = feed(coordinator, store, [...w.cycle().slice(0, 2)])
      t.ok(next.every(out => errorCode(terminal(out)) === undefined), 'work continues after recovery')
      t.equal(terminal(next[1] as Output[]).message_type, 'OP_COMMIT', 'the commit is relayed')
      const status = recovered.outputs[0]?.frame as { watermark: { value: number } }
      t.ok(coordinator.lamport > status.watermark.value, 'later frames carry larger Lamport values')

      if (sqliteDir !== undefined) {
        store.close()
        store = makeStore(sqliteDir)
      }
      const again = recoverSession(store, SID, config, now + 60_000, GRACE_SEC)
      t.equal(again?.coordinator.epoch, 3, 'a second restart is epoch 3')
      t.same(again?.coordinator.listFiles(), coordinator.listFiles())
    })
  }
}

t.test('recoverSession returns undefined when nothing is stored', async t => {
  const store = new SqliteStore({ dir: tempDir(t) })
  t.teardown(() => store.close())
  t.equal(recoverSession(store, 'never-seen', { sessionId: 'never-seen' }, 0, GRACE_SEC), undefined)
  t.same(store.listSessions(), [], 'and stores nothing')
})

t.test('authenticated profile: message ids seen before the restart are still refused', async t => {
  for (const withSnapshot of [false, true]) {
    t.test(withSnapshot ? 'from the snapshot' : 'from the journal', async t => {
      const dir = join(tempDir(t), 'data')
      let store = new SqliteStore({ dir })
      const config: CoordinatorConfig = { sessionId: SID, securityProfile: 'authenticated', rolePolicy: { default_role: 'contributor' } }
      const w = new Workload({ sessionId: SID, agents: 2, authenticated: true })
      const live = new Coordinator(config)
      const hellos = feed(live, store, w.hellos())
      t.ok(hellos.every(out => terminal(out).message_type === 'SESSION_INFO'), 'HELLOs admitted')
      const beat = w.heartbeat(0)
      feed(live, store, [beat, ...w.cycle()])
      if (withSnapshot) store.saveSnapshot(SID, live.snapshot(w.now))
      store.close()

      store = new SqliteStore({ dir })
      t.teardown(() => store.close())
      const now = w.now + 1_000
      const recovered = recoverSession(store, SID, config, now, GRACE_SEC)
      if (recovered === undefined) throw new Error('nothing recovered')
      const { coordinator } = recovered
      if (beat.kind !== 'message') throw new Error('unexpected input')

      const replayed = coordinator.apply({ kind: 'message', now: now + 1, envelope: beat.envelope })
      t.equal(errorCode(terminal(replayed.outputs)), 'REPLAY_DETECTED', 'the old HEARTBEAT is a replay')
      const fresh = w.heartbeat(0)
      if (fresh.kind !== 'message') throw new Error('unexpected input')
      const ok = coordinator.apply({ kind: 'message', now: now + 2, envelope: fresh.envelope })
      t.equal(errorCode(terminal(ok.outputs)), undefined, 'a new HEARTBEAT is accepted')
    })
  }
})

t.test('a store with only the SessionStore methods recovers through load', async t => {
  const inner = new MemoryStore()
  const plain: SessionStore = {
    listSessions: () => inner.listSessions(),
    load: id => inner.load(id),
    append: (id, inputs) => inner.append(id, inputs),
    saveSnapshot: (id, snapshot) => inner.saveSnapshot(id, snapshot),
    delete: id => inner.delete(id),
    close: () => inner.close()
  }
  const config: CoordinatorConfig = { sessionId: SID }
  t.equal(recoverSession(plain, SID, config, 0, GRACE_SEC), undefined)
  const w = new Workload({ sessionId: SID, agents: 1 })
  const live = new Coordinator(config)
  feed(live, inner, [...w.hellos(), ...w.cycle()])
  const recovered = recoverSession(plain, SID, config, w.now + 1000, GRACE_SEC)
  t.equal(recovered?.coordinator.epoch, 2)
  t.same(recovered?.coordinator.listFiles(), live.listFiles())
  t.same(inner.load(SID)?.journal, [])
})

t.test('replaySession rebuilds the state without a new epoch', async t => {
  const store = new SqliteStore({ dir: tempDir(t) })
  t.teardown(() => store.close())
  const config: CoordinatorConfig = { sessionId: SID }
  t.equal(replaySession(store, SID, config), undefined)
  const w = new Workload({ sessionId: SID, agents: 2 })
  const live = new Coordinator(config)
  feed(live, store, [...w.hellos(), ...w.cycle()])
  store.saveSnapshot(SID, live.snapshot(w.now))
  t.equal(replaySession(store, SID, config)?.epoch, 1, 'from the snapshot alone')
  feed(live, store, w.cycle())
  const again = replaySession(store, SID, config)
  t.equal(again?.epoch, 1)
  t.equal(again?.lamport, live.lamport)
  t.same(again?.listFiles(), live.listFiles())
  t.equal(store.load(SID)?.journal.length, 3, 'and writes nothing')
})
