/**
 * The dashboard's small pure parts: the one escapeHtml, the view diff the
 * deltas carry, the event ring and the frame → event mapping; and the
 * runtime subscription they are fed by (read-only, broadcast frames only,
 * after delivery, `stopped` at unload).
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import { diffViews } from '../../src/server/dashboard/hub.js'
import { escapeHtml } from '../../src/server/dashboard/html.js'
import { EventRing, eventOf, RING_SIZE } from '../../src/server/dashboard/events.js'
import type { RuntimeNotice } from '../../src/server/session-runtime.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, joined } from '../helpers/ws.js'

t.test('escapeHtml escapes the five characters that matter in text and quoted attributes', async t => {
  t.equal(escapeHtml('<script>alert("x")</script>'), '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;')
  t.equal(escapeHtml(`a & b ' c`), 'a &amp; b &#39; c')
  t.equal(escapeHtml('&amp;'), '&amp;amp;', 'already-escaped text is escaped again (it is text)')
  t.equal(escapeHtml('<img src=x onerror=alert(1)>'), '&lt;img src=x onerror=alert(1)&gt;')
  t.equal(escapeHtml(42), '42')
  t.equal(escapeHtml('plain ünïcode ✓'), 'plain ünïcode ✓')
})

t.test('diffViews: upserts and removals in order, replace when the order changes, set for objects', async t => {
  const c = new Coordinator({ sessionId: 's' })
  const now = Date.UTC(2026, 0, 1)
  let seq = 0
  const send = (type: string, pid: string, payload: Record<string, unknown>): void => {
    c.handle({ protocol: 'MPAC', version: '0.1.13', message_type: type, message_id: `m${++seq}`, session_id: 's', sender: { principal_id: pid, principal_type: 'agent', sender_instance_id: `${pid}:1` }, ts: new Date(now).toISOString(), payload }, now)
  }
  send('HELLO', 'A', { display_name: 'A', roles: ['contributor'], capabilities: [] })
  const v0 = c.dashboardView(now)
  const full = diffViews(undefined, v0)
  t.same(full.filter(p => p.op === 'replace').map(p => p.section), ['participants', 'intents', 'conflicts', 'commits', 'files', 'attention'])
  t.same(full.filter(p => p.op === 'set').map(p => p.section), ['health', 'policies', 'totals'])
  t.same(diffViews(v0, c.dashboardView(now)), [], 'nothing changed, nothing sent')

  send('INTENT_ANNOUNCE', 'A', { intent_id: 'i1', objective: 'one', scope: { kind: 'file_set', resources: ['a.ts'] } })
  const v1 = c.dashboardView(now)
  const d1 = diffViews(v0, v1)
  t.match(d1, [
    { section: 'participants', op: 'upsert', key: 'A' },
    { section: 'intents', op: 'upsert', key: 'i1', item: { objective: 'one' } },
    { section: 'files', op: 'upsert', key: 'a.ts' },
    { section: 'totals', op: 'set', item: { intents: 1, files: 1 } }
  ])
  send('INTENT_ANNOUNCE', 'A', { intent_id: 'i2', objective: 'two', scope: { kind: 'file_set', resources: ['0.ts'] } })
  const v2 = c.dashboardView(now)
  t.match(diffViews(v1, v2).find(p => p.section === 'files'), { op: 'replace', items: [{ path: '0.ts' }, { path: 'a.ts' }] }, 'a new first row: the list whole')
  send('INTENT_WITHDRAW', 'A', { intent_id: 'i1' })
  const d3 = diffViews(v2, c.dashboardView(now))
  t.match(d3.filter(p => p.section === 'intents'), [{ op: 'remove', key: 'i1' }])
})

t.test('the event ring keeps the last 1,000 with increasing seq, resumes only inside itself', async t => {
  const ring = new EventRing()
  const other = new EventRing()
  t.not(ring.id, other.id, 'each ring has its own id')
  t.equal(ring.firstSeq, 1)
  t.ok(ring.canResume(0), 'an empty ring resumes from 0')
  for (let i = 0; i < RING_SIZE + 5; i++) ring.push({ at: 'x', type: 'T', principal_id: null, summary: `e${i}`, refs: {} })
  t.equal(ring.lastSeq, RING_SIZE + 5)
  t.equal(ring.firstSeq, 6)
  t.equal(ring.after(0).length, RING_SIZE)
  t.same(ring.after(RING_SIZE + 3).map(e => e.seq), [RING_SIZE + 4, RING_SIZE + 5])
  t.ok(ring.canResume(5), 'the event just before the oldest held')
  t.notOk(ring.canResume(4), 'older than the ring')
  t.notOk(ring.canResume(RING_SIZE + 6), 'from the future')
  t.notOk(ring.canResume(Number.NaN))
  t.same(ring.newest(2).map(e => e.seq), [RING_SIZE + 5, RING_SIZE + 4])
})

t.test('frames become short events; heartbeats and sideband pushes do not', async t => {
  const f = (type: string, payload: Record<string, unknown>, pid = 'alice'): Record<string, unknown> =>
    ({ message_type: type, sender: { principal_id: pid }, ts: '2026-01-01T00:00:00Z', payload })
  t.match(eventOf(f('INTENT_ANNOUNCE', { intent_id: 'i1', objective: 'fix it', scope: { kind: 'file_set', resources: ['a', 'b', 'c', 'd'] } })),
    { type: 'INTENT_ANNOUNCE', principal_id: 'alice', summary: 'alice announced i1 on a, b, c and 1 more: fix it', refs: { intent_id: 'i1', files: ['a', 'b', 'c', 'd'] } })
  t.match(eventOf(f('CONFLICT_ESCALATE', { conflict_id: 'c1', escalate_to: 'bob' })), { summary: 'alice escalated conflict c1 to bob', refs: { conflict_id: 'c1' } })
  t.match(eventOf(f('RESOLUTION', { conflict_id: 'c1', decision: 'approved', rationale: 'ok' })), { summary: 'conflict c1 resolved: approved (ok)' })
  t.match(eventOf(f('PROTOCOL_ERROR', { error_code: 'PARTICIPANT_UNAVAILABLE', principal_id: 'bob' }, 'service:coordinator-s')), { principal_id: 'bob', summary: /bob became unavailable/ })
  t.match(eventOf(f('OP_COMMIT', { op_id: 'o', target: 'x.ts', intent_id: 'i1' })), { summary: 'alice committed x.ts', refs: { files: ['x.ts'] } })
  t.equal(eventOf(f('HEARTBEAT', {})), undefined)
  t.equal(eventOf(f('COORDINATOR_STATUS', { event: 'heartbeat' })), undefined)
  t.match(eventOf(f('COORDINATOR_STATUS', { event: 'recovered' })), { summary: 'coordinator: recovered' })
  t.equal(eventOf({ type: 'FILE_UPDATED', path: 'x' }), undefined)
  t.equal(eventOf(f('INTENT_ANNOUNCE', { intent_id: 'i', objective: 'y'.repeat(1000), scope: {} }))?.summary.length, 300, 'summaries are cut')
})

t.test('SessionRuntime.subscribe: broadcast frames after delivery, joins, unsubscribe, stopped at unload', async t => {
  let now = Date.now()
  const srv = await startServer(t, { argv: ['--session-idle-unload', '60'], now: () => now })
  const { client: a } = await joined(`${srv.url}/session/sub`, 'alice')
  const runtime = srv.app.mpac.registry.peek('sub')
  if (runtime === undefined) throw new Error('no runtime')
  const notices: RuntimeNotice[] = []
  const off = runtime.subscribe(n => notices.push(n))
  const { client: b } = await joined(`${srv.url}/session/sub`, 'bob')
  await a.request(announce('alice', 'i1', ['a.ts'], 'sub'))
  // Refused: a sender-only PROTOCOL_ERROR, not broadcast.
  await a.request(envelope('INTENT_WITHDRAW', 'alice', { intent_id: 'nope' }, 'sub'))
  const frames = notices.flatMap(n => n.kind === 'frames' ? n.frames.map(f => f.message_type) : [])
  t.same(frames, ['INTENT_ANNOUNCE'], 'the announce once (not its two copies), no sender-only error')
  t.match(notices[0], { kind: 'frames', joined: { principal_id: 'bob', display_name: 'bob' }, frames: [] }, 'the join')
  off()
  await a.request(announce('alice', 'i2', ['b.ts'], 'sub'))
  t.equal(notices.length, 2, 'nothing after unsubscribing')

  const stops: RuntimeNotice[] = []
  runtime.subscribe(n => stops.push(n))
  a.close()
  b.close()
  await a.waitForClose()
  await b.waitForClose()
  for (let i = 0; i < 1000 && runtime.peerCount !== 0; i++) await new Promise(resolve => setImmediate(resolve))
  now += 61_000
  srv.app.mpac.registry.sweep()
  t.same(stops.filter(n => n.kind === 'stopped'), [{ kind: 'stopped' }], 'told once when unloaded')
  const late: RuntimeNotice[] = []
  runtime.subscribe(n => late.push(n))
  t.same(late, [{ kind: 'stopped' }], 'a subscriber of a stopped runtime hears so at once')
})
