/**
 * The session view on its own (src/mcp/hooks/view.ts): the relays that are
 * hard to provoke with real agents (a claim on my intent while I am still
 * connected, its approval, an escalation to me as arbiter), the cursors,
 * and a re-base that learns of a freeze.
 */
import t from 'tap'
import type { Envelope } from '../../src/mcp/client/types.js'
import { SessionView } from '../../src/mcp/hooks/view.js'

const ME = 'agent:me@1'
const OTHER = 'agent:other@2'
let clock = 1_000_000
const now = (): number => clock

function env (type: string, sender: string, payload: Record<string, unknown>): Envelope {
  return { protocol: 'MPAC', version: '0.1.13', message_type: type, message_id: `m-${Math.random()}`, session_id: 's', sender: { principal_id: sender, principal_type: 'agent', sender_instance_id: `${sender}:1` }, ts: new Date(clock).toISOString(), payload }
}

function fresh (): SessionView {
  const view = new SessionView(ME, now)
  view.rebase({
    participants: [{ principal_id: ME, display_name: 'Me', is_available: true }, { principal_id: OTHER, display_name: 'Other\nName', is_available: true }],
    active_intents: [
      { intent_id: 'i-me', principal_id: ME, objective: 'mine', state: 'ACTIVE', scope: { kind: 'file_set', resources: ['./src/a.py'] } },
      { intent_id: 'i-other', principal_id: OTHER, objective: 'theirs', state: 'ACTIVE', scope: { kind: 'file_set', resources: ['src/b.py'] } }
    ],
    open_conflicts: []
  })
  return view
}

t.test('rebase: paths normalised, names sanitised, age from the clock', async t => {
  const view = fresh()
  t.same(view.intents.get('i-me')?.files, ['src/a.py'])
  t.equal(view.nameOf(OTHER), 'Other Name')
  t.equal(view.age(), 0)
  clock += 1234
  t.equal(view.age(), 1234)
  t.equal(view.apply(env('HEARTBEAT', OTHER, {})), false)
  t.equal(view.age(), 0, 'any envelope confirms the view')
})

t.test('a claim on my intent, its approval, my suspension, an escalation to me: one event each', async t => {
  const view = fresh()
  t.same(view.eventsFor('c'), [])
  view.apply(env('INTENT_CLAIM', OTHER, { claim_id: 'k1', original_intent_id: 'i-me', original_principal_id: ME, new_intent_id: 'i-new', objective: 'take it', scope: { kind: 'file_set', resources: ['src/a.py'] } }))
  t.equal(view.apply(env('INTENT_CLAIM_STATUS', 'coordinator', { claim_id: 'k1', original_intent_id: 'i-me', new_intent_id: 'i-new', decision: 'approved' })), true, 'a claim decision asks for a re-base')
  t.equal(view.apply(env('PROTOCOL_ERROR', 'coordinator', { error_code: 'PARTICIPANT_UNAVAILABLE', principal_id: ME })), true)
  t.equal(view.intents.get('i-me')?.state, 'SUSPENDED')
  view.apply(env('CONFLICT_REPORT', 'coordinator', { conflict_id: 'c1', category: 'scope_overlap', principal_a: OTHER, principal_b: 'agent:third@3', intent_a: 'i-other', intent_b: 'i-third' }))
  view.apply(env('CONFLICT_ESCALATE', 'coordinator', { conflict_id: 'c1', escalate_to: ME, reason: 'resolution_timeout' }))
  const events = view.eventsFor('c')
  t.same(events.map(e => e.kind), ['claim', 'taken_over', 'suspended', 'escalation'])
  t.match(events[0], { intent_id: 'i-me', principal_id: OTHER, text: /"?Other Name"? \(agent:other@2\) claims your SUSPENDED intent i-me/ })
  t.match(events[3]?.text, /escalated to you as arbiter/)
  t.same(view.eventsFor('c'), [], 'delivered once')
  t.equal(view.eventsFor('d').length, 4, 'another consumer has its own cursor')
})

t.test('what does not concern me makes no event', async t => {
  const view = fresh()
  view.apply(env('INTENT_ANNOUNCE', OTHER, { intent_id: 'i-2', objective: 'x', scope: { kind: 'file_set', resources: ['src/z.py'] } }))
  view.apply(env('CONFLICT_REPORT', 'coordinator', { conflict_id: 'c2', category: 'scope_overlap', principal_a: OTHER, principal_b: 'agent:third@3', intent_a: 'i-other', intent_b: 'i-third' }))
  view.apply(env('RESOLUTION', OTHER, { conflict_id: 'c2', decision: 'dismissed' }))
  t.same(view.eventsFor('c'), [])
  t.equal(view.conflicts.has('c2'), false, 'a resolution closes the conflict')
  // Same-principal auto-supersede: Other's new intent on b.py ends its older one.
  view.apply(env('INTENT_ANNOUNCE', OTHER, { intent_id: 'i-3', objective: 'y', scope: { kind: 'file_set', resources: ['src/b.py'] } }))
  t.equal(view.intents.has('i-other'), false)
  t.equal(view.apply(env('INTENT_ANNOUNCE', 'agent:newcomer@9', { intent_id: 'i-4', objective: 'z', scope: { kind: 'file_set', resources: ['src/q.py'] } })), true, 'an unknown sender asks for a re-base (its name)')
})

t.test('catchUp skips what the digest already told; a re-base learns of a freeze on my file', async t => {
  const view = fresh()
  view.apply(env('CONFLICT_REPORT', 'coordinator', { conflict_id: 'c3', category: 'dependency_breakage', principal_a: ME, principal_b: OTHER, intent_a: 'i-me', intent_b: 'i-other' }))
  view.catchUp('c')
  t.same(view.eventsFor('c'), [])
  view.rebase({
    participants: [{ principal_id: ME, display_name: 'Me' }, { principal_id: OTHER, display_name: 'Other' }],
    active_intents: [
      { intent_id: 'i-me', principal_id: ME, objective: 'mine', state: 'ACTIVE', scope: { kind: 'file_set', resources: ['src/a.py'] } },
      { intent_id: 'i-other', principal_id: OTHER, objective: 'theirs', state: 'ACTIVE', scope: { kind: 'file_set', resources: ['src/b.py'] } }
    ],
    open_conflicts: [{ conflict_id: 'c3', category: 'dependency_breakage', state: 'OPEN', principal_a: ME, principal_b: OTHER, intent_a: 'i-me', intent_b: 'i-other', scope_frozen: true }]
  })
  t.same(view.frozenFiles(view.conflicts.get('c3') as never).sort(), ['src/a.py', 'src/b.py'])
  t.match(view.eventsFor('c'), [{ kind: 'frozen', conflict_id: 'c3' }])
})
