/**
 * The hot path (INTENT_ANNOUNCE, OP_COMMIT, INTENT_WITHDRAW, and the
 * runtime's nextDeadline() after each input) does not scan every open
 * conflict or every deferral: its cost barely changes when the session holds
 * tens of thousands of them. Ratios of the same loop with and without the
 * load, best of three, so machine speed cancels out.
 */
import t from 'tap'
import { Harness, assertRelayed } from '../helpers/mpac.js'

const LOAD = 20_000
const ROUNDS = 300

function session (conflicts: number, deferrals: number, frozen = false): Harness {
  const h = new Harness({ unavailabilityTimeoutSec: 1e7, heartbeatIntervalSec: 1e7, resolutionTimeoutSec: 1e6, maxOpenConflicts: 1e6, maxIntentsPerSession: 1e6, maxIntentsPerParticipant: 1e6 })
  h.join(['O', ['owner']], 'A', 'B', 'C')
  h.announce('A', 'hold', ['hold.py'])
  h.announce('C', 'hold-c', ['hold-c.py'])
  if (frozen) {
    // One frozen conflict among the open ones (resolution timeout, no arbiter).
    h.report('O', { conflict_id: 'fz', category: 'scope_overlap', severity: 'low', related_intents: ['hold', 'hold-c'] })
    h.tick(1e6 + 1)
  }
  for (let k = 0; k < conflicts; k++) h.report('O', { conflict_id: `c${k}`, category: 'scope_overlap', severity: 'low', related_intents: ['hold'] })
  for (let k = 0; k < deferrals; k++) h.defer('B', { deferral_id: `d${k}`, observed_intent_ids: ['hold'], ttl_sec: 1e6 })
  return h
}

let seq = 0
function loop (h: Harness): number {
  const start = process.hrtime.bigint()
  for (let k = 0; k < ROUNDS; k++) {
    const n = seq++
    h.announce('A', `i${n}`, [`f${n}.py`])
    h.c.nextDeadline()
    h.commit('A', `o${n}`, `f${n}.py`, 'r0', 'r1', `i${n}`, { file_changes: { [`f${n}.py`]: { content: `v${n}` } } })
    h.c.nextDeadline()
    h.withdraw('A', `i${n}`)
    h.c.nextDeadline()
  }
  return Number(process.hrtime.bigint() - start) / 1e6
}

function best (h: Harness): number {
  loop(h)
  return Math.min(loop(h), loop(h), loop(h))
}

const baseline = best(session(0, 0))

t.test(`${LOAD} open conflicts (one of them frozen) do not slow the hot path`, async t => {
  const h = session(LOAD, 0, true)
  t.equal(h.conflictState('fz'), 'OPEN')
  t.equal(h.conflict('fz')?.scope_frozen, true)
  const ms = best(h)
  t.ok(ms < baseline * 4, `${ms.toFixed(0)} ms vs ${baseline.toFixed(0)} ms without the load`)
  // The freeze still works and the conflicts still dismiss.
  t.equal(h.commit('B', 'blocked', 'hold.py', 'r0', 'r1').accepted, false)
  const w = h.withdraw('A', 'hold')
  assertRelayed(t, w)
  t.equal(w.outputs.filter(o => o.frame.message_type === 'RESOLUTION').length, LOAD, 'every conflict on the intent is dismissed')
})

t.test(`${LOAD} deferrals do not slow the hot path`, async t => {
  const h = session(0, LOAD)
  const ms = best(h)
  t.ok(ms < baseline * 4, `${ms.toFixed(0)} ms vs ${baseline.toFixed(0)} ms without the load`)
  const w = h.withdraw('A', 'hold')
  t.equal(w.outputs.filter(o => o.frame.message_type === 'INTENT_DEFERRED').length, LOAD, 'every deferral observing the intent resolves')
})

t.test(`operations on an intent with ${LOAD} resolved conflicts do not walk them`, async t => {
  const run = (h: Harness): number => {
    const start = process.hrtime.bigint()
    for (let k = 0; k < ROUNDS; k++) {
      const n = seq++
      h.propose('A', `p${n}`, 'hold.py', 'hold')
      h.commit('A', `q${n}`, 'hold.py', null as never, `r${n}`, 'hold')
    }
    return Number(process.hrtime.bigint() - start) / 1e6
  }
  const bestOf = (h: Harness): number => { run(h); return Math.min(run(h), run(h), run(h)) }
  const base = bestOf(session(0, 0))
  const h = session(LOAD, 0)
  for (let k = 0; k < LOAD; k++) h.resolve('O', `c${k}`, 'approved')
  t.equal(h.conflictState(`c${LOAD - 1}`), 'CLOSED')
  const ms = bestOf(h)
  t.ok(ms < base * 4, `${ms.toFixed(0)} ms vs ${base.toFixed(0)} ms without the load`)
  // A conflict opened now still collects the intent's new operations.
  h.report('O', { conflict_id: 'late', category: 'scope_overlap', severity: 'low', related_intents: ['hold'] })
  h.propose('A', 'after', 'hold.py', 'hold')
  t.same(h.conflict('late')?.related_ops, ['after'])
})
