import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { SqliteStore } from '../../src/store/index.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isType, joined, type Frame, type TestClient } from '../helpers/ws.js'

// Wire compatibility with Python MPAC clients (issue 12 items 11 and 12), over
// real sockets: the frame order each of three participants receives
// (protocol.md §11.4, docs/architecture.md "Frame order"), and unknown keys
// accepted, journaled as received, and never relayed.

const payload = (f: Frame): Frame => f.payload as Frame

/** Short names of the frames a client received since `mark`, without status heartbeats and summary replies. */
function seen (c: TestClient, mark: number): string[] {
  return c.received.slice(mark)
    .filter(f => f.message_type !== 'COORDINATOR_STATUS' && f.type !== 'SESSION_SUMMARY_RESPONSE')
    .map(f => String(f.message_type ?? f.type))
}

/** Waits until every client has received everything sent before: a sideband reply follows all earlier outputs. */
async function fence (...clients: TestClient[]): Promise<void> {
  for (const c of clients) {
    c.send({ type: 'SESSION_SUMMARY' })
    await c.next(isType('SESSION_SUMMARY_RESPONSE'))
  }
}

t.test('frame order: each of three participants gets the relay and what it caused in the order of protocol.md §11.4', async t => {
  const srv = await startServer(t)
  const url = `${srv.url}/session/order`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  const { client: c } = await joined(url, 'agent:c')
  t.teardown(() => { a.close(); b.close(); c.close() })
  const all = [a, b, c]
  const marks = (): number[] => all.map(x => x.received.length)

  await t.test('INTENT_ANNOUNCE before the CONFLICT_REPORT about it; the announcer gets the report, then its terminal relay', async t => {
    await a.request(envelope('INTENT_ANNOUNCE', 'agent:a', { intent_id: 'i-a', objective: 'e1', scope: { kind: 'entity_set', entities: ['e1'] } }, 'order'))
    await fence(...all)
    const m = marks()
    const ann = envelope('INTENT_ANNOUNCE', 'agent:b', { intent_id: 'i-b', objective: 'e1 too', scope: { kind: 'entity_set', entities: ['e1'] } }, 'order')
    const term = await b.request(ann)
    t.equal(term.message_id, ann.message_id, 'the announcer\'s terminal frame is its relay')
    await fence(...all)
    t.same(seen(b, m[1]!), ['CONFLICT_REPORT', 'INTENT_ANNOUNCE'], 'announcer (agent:b): the report, then the terminal relay')
    t.same(seen(a, m[0]!), ['INTENT_ANNOUNCE', 'CONFLICT_REPORT'], 'the other party (agent:a): the relay, then the report')
    t.same(seen(c, m[2]!), ['INTENT_ANNOUNCE'], 'a bystander (agent:c): the relay only')
  })

  await t.test('INTENT_WITHDRAW before the OP_REJECT it caused', async t => {
    await a.request(announce('agent:a', 'i-w', ['w.py'], 'order'))
    const prop = await a.request(envelope('OP_PROPOSE', 'agent:a', { op_id: 'op-w', intent_id: 'i-w', target: 'w.py', op_kind: 'replace' }, 'order'))
    t.equal(prop.message_type, 'OP_PROPOSE')
    await fence(...all)
    const m = marks()
    const w = envelope('INTENT_WITHDRAW', 'agent:a', { intent_id: 'i-w' }, 'order')
    t.equal((await a.request(w)).message_id, w.message_id)
    await fence(...all)
    t.same(seen(a, m[0]!), ['OP_REJECT', 'INTENT_WITHDRAW'], 'withdrawer: the OP_REJECT, then its terminal relay')
    t.same(seen(b, m[1]!), ['INTENT_WITHDRAW', 'OP_REJECT'], 'agent:b: the relay, then the OP_REJECT')
    t.same(seen(c, m[2]!), ['INTENT_WITHDRAW', 'OP_REJECT'], 'agent:c: the relay, then the OP_REJECT')
    const reject = c.received.slice(m[2]).find(f => f.message_type === 'OP_REJECT')
    t.match(payload(reject ?? {}), { op_id: 'op-w', reason: 'intent_terminated' })
  })

  await t.test('the committer gets its OP_COMMIT echo before FILE_UPDATED; so does everyone else', async t => {
    await a.request(announce('agent:a', 'i-f', ['f.py'], 'order'))
    await fence(...all)
    const m = marks()
    const content = 'print(1)\n'
    const commit = envelope('OP_COMMIT', 'agent:a', {
      op_id: 'op-f', intent_id: 'i-f', target: 'f.py', op_kind: 'create',
      state_ref_before: stateRef(''), state_ref_after: stateRef(content),
      file_changes: { 'f.py': { content, state_ref_before: stateRef('') } }
    }, 'order')
    const term = await a.request(commit)
    t.equal(term.message_id, commit.message_id)
    t.notOk('file_changes' in payload(term), 'no file contents in the echo')
    await fence(...all)
    for (const [name, x, i] of [['committer', a, 0], ['agent:b', b, 1], ['agent:c', c, 2]] as const) {
      t.same(seen(x, m[i]!), ['OP_COMMIT', 'FILE_UPDATED'], `${name}: the relay, then FILE_UPDATED`)
    }
    t.match(a.received.slice(m[0]).find(f => f.type === 'FILE_UPDATED'), { path: 'f.py', state_ref: stateRef(content), updated_by: 'agent:a' })
  })
})

t.test('unknown payload keys: accepted, journaled as received, kept through a restart, never relayed', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-wire-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const store1 = new SqliteStore({ dir })
  const one = await startServer(t, { store: store1 })
  const url = `${one.url}/session/trip`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  const { client: c } = await joined(url, 'agent:c')
  t.teardown(() => { a.close(); b.close(); c.close() })

  // nested unknown keys in the scope, and at the top of the payload
  const annA = envelope('INTENT_ANNOUNCE', 'agent:a', {
    intent_id: 'i-a', objective: 'plan the coast', mood: 'keen',
    scope: { kind: 'entity_set', entities: ['day-2'], note: { why: 'beach' } }
  }, 'trip')
  const termA = await a.request(annA)
  t.equal(termA.message_type, 'INTENT_ANNOUNCE', 'accepted: the terminal frame is the relay')
  t.same(payload(termA), { intent_id: 'i-a', objective: 'plan the coast', scope: { kind: 'entity_set', entities: ['day-2'] } }, 'the sender\'s own echo carries only known fields')
  const atC = await c.next(f => f.message_id === annA.message_id)
  t.same(payload(atC), payload(termA), 'the relay to a peer carries only known fields')
  const report = b.next(isType('CONFLICT_REPORT'))
  await b.request(envelope('INTENT_ANNOUNCE', 'agent:b', { intent_id: 'i-b', objective: 'plan the hills', scope: { kind: 'entity_set', entities: ['day-2'] } }, 'trip'))
  const conflictId = String(payload(await report).conflict_id)

  // the family-trip demo's CONFLICT_ACK
  const ack = envelope('CONFLICT_ACK', 'agent:b', { conflict_id: conflictId, ack_type: 'accepted', position: 'I would rather go to the hills' }, 'trip')
  const termAck = await b.request(ack)
  t.equal(termAck.message_type, 'CONFLICT_ACK', 'CONFLICT_ACK with `position` is accepted')
  t.same(payload(termAck), { conflict_id: conflictId, ack_type: 'accepted' })
  const ackAtA = await a.next(f => f.message_id === ack.message_id)
  t.notOk('position' in payload(ackAtA), 'agent:a does not get `position` in the relay')
  t.same(payload(ackAtA), { conflict_id: conflictId, ack_type: 'accepted' })

  // a misspelt required field still fails as missing
  const typo = envelope('CONFLICT_ACK', 'agent:b', { confict_id: conflictId, ack_type: 'seen' }, 'trip')
  const refused = await b.request(typo)
  t.match(payload(refused), { error_code: 'MALFORMED_MESSAGE', refers_to: typo.message_id, description: 'payload.conflict_id: missing required field' })

  // the journal holds the messages as received
  const journal = store1.load('trip')?.journal ?? []
  const asReceived = (id: unknown): Frame | undefined => (journal.find(i => i.kind === 'message' && (i.envelope as Frame).message_id === id) as { envelope?: Frame } | undefined)?.envelope
  t.same(payload(asReceived(ack.message_id) ?? {}), ack.payload, 'the journal keeps the CONFLICT_ACK with `position`')
  t.same(payload(asReceived(annA.message_id) ?? {}), annA.payload, 'and the announce with its nested unknown keys')

  await one.close()
  store1.close()
  const store2 = new SqliteStore({ dir })
  t.teardown(() => store2.close())
  const two = await startServer(t, { store: store2 })
  const { client: probe } = await joined(`${two.url}/session/trip`, 'agent:c')
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const summary = (await probe.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  const conflicts = summary.open_conflicts as Frame[]
  t.match(conflicts.find(x => x.conflict_id === conflictId), { state: 'ACKED' }, 'after a restart the replayed ACK still counts')
  const intents = summary.active_intents as Frame[]
  t.same(intents.find(i => i.intent_id === 'i-a')?.scope, { kind: 'entity_set', entities: ['day-2'] }, 'and the recorded scope has only known fields')
})
