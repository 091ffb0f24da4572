/**
 * The lifecycle tables of src/protocol/state-machines.ts are enforced where
 * the core changes a state: an edge missing from a table throws (a handler
 * bug, answered as an internal error) before anything changes. The
 * property test checks that every reachable history follows the tables.
 */
import t from 'tap'
import type { Ctx } from '../../src/coordinator/envelopes.js'
import type { Conflict, Intent, Operation } from '../../src/coordinator/records.js'
import { resolveSettings } from '../../src/coordinator/settings.js'
import { CoreState } from '../../src/coordinator/state.js'

const ctx = (): Ctx => ({ dirty: false }) as unknown as Ctx

t.test('an edge missing from a table throws and changes nothing', async t => {
  const st = new CoreState(resolveSettings({ sessionId: 's' }), 's', '0.1.13')
  const intent = { intent_id: 'i1', state: 'WITHDRAWN' } as unknown as Intent
  t.throws(() => st.setIntentState(ctx(), intent, 'ACTIVE'), /illegal intent transition WITHDRAWN → ACTIVE \(i1\)/)
  t.equal(intent.state, 'WITHDRAWN', 'the intent kept its state')
  const op = { op_id: 'o1', state: 'REJECTED' } as unknown as Operation
  t.throws(() => st.setOpState(ctx(), op, 'COMMITTED'), /illegal operation transition REJECTED → COMMITTED \(o1\)/)
  const conflict = { conflict_id: 'c1', state: 'DISMISSED', related_intents: [], related_ops: [] } as unknown as Conflict
  t.throws(() => st.setConflictState(ctx(), conflict, 'ACKED'), /illegal conflict transition DISMISSED → ACKED \(c1\)/)
  t.equal(conflict.state, 'DISMISSED')
})

t.test('a resolution goes through RESOLVED to CLOSED, from every state that may be resolved', async t => {
  for (const from of ['OPEN', 'ACKED', 'ESCALATED'] as const) {
    const st = new CoreState(resolveSettings({ sessionId: 's' }), 's', '0.1.13')
    const conflict = { conflict_id: `c-${from}`, state: from, related_intents: [], related_ops: [] } as unknown as Conflict
    st.closeResolved(ctx(), conflict)
    t.equal(conflict.state, 'CLOSED', `${from} → RESOLVED → CLOSED`)
  }
})
