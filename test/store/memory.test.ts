import t from 'tap'
import type { CoreInput } from '../../src/coordinator/types.js'
import { MemoryStore } from '../../src/store/index.js'

const tick = (now: number): CoreInput => ({ kind: 'tick', now })

t.test('an unknown session loads as undefined', async t => {
  const store = new MemoryStore()
  t.equal(store.load('nope'), undefined)
  t.same(store.listSessions(), [])
  t.equal(store.sessionBytes('nope'), 0)
})

t.test('append then load returns copies of the inputs in order', async t => {
  const store = new MemoryStore()
  const inputs = [tick(1), tick(2), { kind: 'close', now: 3, reason: 'manual' } as const]
  const stats = store.append('s1', inputs)
  t.equal(stats.entriesSinceSnapshot, 3)
  t.equal(stats.bytesSinceSnapshot, inputs.reduce((n, i) => n + Buffer.byteLength(JSON.stringify(i)), 0))
  const loaded = store.load('s1')
  t.same(loaded, { snapshot: undefined, journal: inputs })
  t.not(loaded?.journal[0], inputs[0], 'a copy, not the same object')
  t.same(store.listSessions(), ['s1'])
})

t.test('saveSnapshot drops the journal it covers', async t => {
  const store = new MemoryStore()
  store.append('s1', [tick(1), tick(2)])
  store.saveSnapshot('s1', { lamport_clock: 7 })
  t.same(store.load('s1'), { snapshot: { lamport_clock: 7 }, journal: [] })
  const stats = store.append('s1', [tick(3)])
  t.equal(stats.entriesSinceSnapshot, 1)
  t.same(store.load('s1'), { snapshot: { lamport_clock: 7 }, journal: [tick(3)] })
  t.equal(store.sessionBytes('s1'), Buffer.byteLength('{"lamport_clock":7}') + Buffer.byteLength(JSON.stringify(tick(3))))
})

t.test('retention purges only sessions closed before the cutoff', async t => {
  const store = new MemoryStore()
  store.append('old', [tick(1)])
  store.append('recent', [tick(1)])
  store.append('open', [tick(1)])
  store.markClosed('old', 1000)
  store.markClosed('recent', 5000)
  t.same(store.purgeClosed(2000, 'other'), [], 'limited to one session')
  t.same(store.purgeClosed(2000), ['old'])
  t.same(store.listSessions().sort(), ['open', 'recent'])
  store.delete('recent')
  t.same(store.listSessions(), ['open'])
  t.same(store.listQuarantined(), [])
})

t.test('a closed store refuses to work', async t => {
  const store = new MemoryStore()
  store.close()
  t.throws(() => store.listSessions(), /closed/)
})

t.test('replay hands over the snapshot and the journal in order', async t => {
  const store = new MemoryStore()
  t.equal(store.replay('nope', () => () => t.fail('never called')), undefined)
  store.append('s1', [tick(1)])
  store.saveSnapshot('s1', { n: 1 })
  store.append('s1', [tick(2), tick(3)])
  const seen: unknown[] = []
  t.equal(store.replay('s1', snapshot => {
    seen.push(snapshot)
    return input => { seen.push(input) }
  }), 2)
  t.same(seen, [{ n: 1 }, tick(2), tick(3)])
})
