import t from 'tap'
import {
  CONFLICT_STATES, CONFLICT_TRANSITIONS, INTENT_STATES, INTENT_TRANSITIONS, OPERATION_STATES, OPERATION_TRANSITIONS,
  canTransition, isTerminalConflict, isTerminalIntent, isTerminalOperation
} from '../../src/protocol/state-machines.js'

function edges (table: Readonly<Record<string, readonly string[]>>): string[] {
  return Object.entries(table).flatMap(([from, tos]) => tos.map(to => `${from}->${to}`)).sort()
}

t.test('intent table: SPEC §15.6.1 plus SUSPENDED->WITHDRAWN', async t => {
  t.strictSame(edges(INTENT_TRANSITIONS), [
    'ACTIVE->EXPIRED', 'ACTIVE->SUPERSEDED', 'ACTIVE->SUSPENDED', 'ACTIVE->WITHDRAWN',
    'SUSPENDED->ACTIVE', 'SUSPENDED->EXPIRED', 'SUSPENDED->TRANSFERRED', 'SUSPENDED->WITHDRAWN'
  ].sort())
  t.strictSame(Object.keys(INTENT_TRANSITIONS).sort(), [...INTENT_STATES].sort())
  t.equal(canTransition('intent', 'SUSPENDED', 'WITHDRAWN'), true)
  t.equal(canTransition('intent', 'ACTIVE', 'TRANSFERRED'), false, 'PY-only unused edge is refused')
  t.equal(canTransition('intent', 'WITHDRAWN', 'ACTIVE'), false)
  t.equal(canTransition('intent', 'ACTIVE', 'ACTIVE'), false, 'no self-loops')
})

t.test('operation table: SPEC §16.6.1 plus FROZEN->ABANDONED', async t => {
  t.strictSame(edges(OPERATION_TRANSITIONS), [
    'PROPOSED->COMMITTED', 'PROPOSED->REJECTED', 'PROPOSED->FROZEN', 'PROPOSED->ABANDONED',
    'FROZEN->PROPOSED', 'FROZEN->REJECTED', 'FROZEN->ABANDONED', 'COMMITTED->SUPERSEDED'
  ].sort())
  t.strictSame(Object.keys(OPERATION_TRANSITIONS).sort(), [...OPERATION_STATES].sort())
  t.equal(canTransition('operation', 'COMMITTED', 'FROZEN'), false, 'PY-only unused edge is refused')
  t.equal(canTransition('operation', 'FROZEN', 'COMMITTED'), false)
  t.equal(canTransition('operation', 'COMMITTED', 'SUPERSEDED'), true)
})

t.test('conflict table: SPEC §17.8.1 with the direct edges', async t => {
  t.strictSame(edges(CONFLICT_TRANSITIONS), [
    'OPEN->ACKED', 'OPEN->ESCALATED', 'OPEN->RESOLVED', 'OPEN->DISMISSED', 'OPEN->CLOSED',
    'ACKED->ESCALATED', 'ACKED->RESOLVED', 'ACKED->DISMISSED',
    'ESCALATED->RESOLVED', 'ESCALATED->DISMISSED', 'RESOLVED->CLOSED'
  ].sort())
  t.strictSame(Object.keys(CONFLICT_TRANSITIONS).sort(), [...CONFLICT_STATES].sort())
  t.equal(canTransition('conflict', 'ACKED', 'CLOSED'), false)
  t.equal(canTransition('conflict', 'ESCALATED', 'ACKED'), false)
  t.equal(canTransition('conflict', 'DISMISSED', 'OPEN'), false)
})

t.test('terminal states have no way out; the others do', async t => {
  for (const s of INTENT_STATES) t.equal(isTerminalIntent(s), INTENT_TRANSITIONS[s].length === 0, s)
  for (const s of OPERATION_STATES) t.equal(isTerminalOperation(s), OPERATION_TRANSITIONS[s].length === 0, s)
  for (const s of CONFLICT_STATES) t.equal(isTerminalConflict(s), CONFLICT_TRANSITIONS[s].length === 0, s)
  t.equal(isTerminalOperation('COMMITTED'), false, 'COMMITTED is not terminal')
  t.equal(isTerminalConflict('RESOLVED'), false)
  t.equal(isTerminalIntent('SUSPENDED'), false)
})

t.test('unknown names are never allowed', async t => {
  t.equal(canTransition('intent', 'ANNOUNCED', 'ACTIVE'), false)
  t.equal(canTransition('intent', 'ACTIVE', 'DRAFT'), false)
  t.equal(canTransition('intent', '__proto__', 'ACTIVE'), false)
  t.equal(canTransition('intent', 'constructor', 'ACTIVE'), false)
  t.equal(canTransition('intent', 'toString', 'ACTIVE'), false)
  t.equal(canTransition('session' as 'intent', 'ACTIVE', 'WITHDRAWN'), false)
  t.equal(canTransition('toString' as 'intent', 'ACTIVE', 'WITHDRAWN'), false)
  t.equal(isTerminalIntent('CLOSED'), false)
  t.equal(isTerminalOperation('DISMISSED'), false)
  t.equal(isTerminalConflict('REJECTED'), false)
})

t.test('tables are frozen', async t => {
  t.ok(Object.isFrozen(INTENT_TRANSITIONS) && Object.isFrozen(INTENT_TRANSITIONS.ACTIVE))
  t.ok(Object.isFrozen(OPERATION_TRANSITIONS) && Object.isFrozen(OPERATION_TRANSITIONS.PROPOSED))
  t.ok(Object.isFrozen(CONFLICT_TRANSITIONS) && Object.isFrozen(CONFLICT_TRANSITIONS.OPEN))
})
