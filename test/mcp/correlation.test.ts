/**
 * The correlation rules of the coordinator client (src/mcp/client/correlation.ts)
 * that a live coordinator rarely exercises: a timed-out sideband query still
 * consumes its late reply, a refused query is the oldest unanswered one across
 * kinds, and a call with no open connection stamps no envelope. Driven through
 * the Correlator's own surface with an in-memory link and an injected clock.
 */
import pino from 'pino'
import t from 'tap'
import { Correlator, type Link } from '../../src/mcp/client/correlation.js'
import type { Envelope, Frame, Timers } from '../../src/mcp/client/types.js'
import { RemoteClosed } from '../../src/errors.js'

/** A clock that moves only when told to. */
function manualTimers (): Timers & { advance (ms: number): void } {
  let now = 0
  let next = 1
  const due = new Map<number, { at: number, fn: () => void }>()
  return {
    setTimeout: (fn, ms) => { const id = next++; due.set(id, { at: now + ms, fn }); return id },
    clearTimeout: h => { due.delete(h as number) },
    setInterval: () => { throw new Error('no intervals here') },
    clearInterval: () => {},
    random: () => 0.5,
    advance (ms) {
      now += ms
      for (const [id, d] of [...due].sort((a, b) => a[1].at - b[1].at)) {
        if (d.at <= now) { due.delete(id); d.fn() }
      }
    }
  }
}

function setup (open = true): { correlator: Correlator, link: Link & { sent: Frame[] }, timers: ReturnType<typeof manualTimers>, unresponsive: Array<{ link: Link, why: string }> } {
  const timers = manualTimers()
  const link = { isOpen: open, sent: [] as Frame[], send (frame: object) { this.sent.push(frame as Frame) } }
  const unresponsive: Array<{ link: Link, why: string }> = []
  const correlator = new Correlator({
    timers,
    logger: pino({ level: 'silent' }),
    link: () => link,
    fenceTimeoutMs: 1000,
    onUnresponsive: (l, why) => { unresponsive.push({ link: l, why }) }
  })
  return { correlator, link, timers, unresponsive }
}

let seq = 0
function envelope (type: string, payload: Frame = {}, id = `m-${++seq}`): Envelope {
  return { protocol: 'MPAC', version: '0.1.13', message_type: type, message_id: id, session_id: 's', sender: { principal_id: 'agent:a', principal_type: 'agent', sender_instance_id: 'agent:a:1' }, ts: new Date(0).toISOString(), payload }
}

t.test('a timed-out query still consumes its late reply, so the next one gets its own', async t => {
  const { correlator, link, timers, unresponsive } = setup()
  const first = correlator.query({ type: 'FILE_READ', path: 'a.txt' }, 100)
  timers.advance(100)
  await t.rejects(first, { code: 'MPAC_ERR_REMOTE_TIMEOUT', message: 'no reply from the coordinator to FILE_READ within 100 ms' })
  t.equal(unresponsive.length, 1, 'the quiet connection is reported once')
  t.equal(unresponsive[0]?.link, link, 'the link the query went out on')
  t.equal(unresponsive[0]?.why, 'no reply to FILE_READ within 100 ms')
  const second = correlator.query({ type: 'FILE_READ', path: 'b.txt' }, 100)
  t.equal(correlator.onSideband({ type: 'FILE_CONTENT', path: 'a.txt' }), true, 'the late reply is taken as a reply')
  t.equal(correlator.onSideband({ type: 'FILE_CONTENT', path: 'b.txt' }), true)
  t.same(await second, { type: 'FILE_CONTENT', path: 'b.txt' }, 'not the late reply of the first')
  t.equal(correlator.onSideband({ type: 'FILE_UPDATED', path: 'b.txt' }), false, 'a push is no reply')
})

t.test('a PROTOCOL_ERROR without refers_to refuses the oldest unanswered query of any kind', async t => {
  const { correlator } = setup()
  const summary = correlator.query({ type: 'SESSION_SUMMARY' }, 1000)
  const list = correlator.query({ type: 'FILE_LIST' }, 1000)
  t.equal(correlator.onEnvelope(envelope('PROTOCOL_ERROR', { error_code: 'RATE_LIMITED', description: 'slow down' })), true)
  await t.rejects(summary, { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', message: 'the coordinator refused the query (RATE_LIMITED: slow down)' })
  correlator.onSideband({ type: 'FILE_LIST_RESPONSE', files: [] })
  t.same(await list, { type: 'FILE_LIST_RESPONSE', files: [] })
  t.equal(correlator.onEnvelope(envelope('PROTOCOL_ERROR', { error_code: 'PARTICIPANT_UNAVAILABLE', principal_id: 'agent:a' })), false, 'an unavailability notice answers nothing of ours')
})

t.test('a request settles on its echo or on the PROTOCOL_ERROR that refers to it, with what came between', async t => {
  const { correlator, link } = setup()
  const ok = correlator.request(() => envelope('INTENT_ANNOUNCE', {}, 'mine-1'), 1000)
  const bad = correlator.request(() => envelope('OP_COMMIT', {}, 'mine-2'), 1000)
  t.same(link.sent.map(f => f['message_id']), ['mine-1', 'mine-2'], 'both sent as built')
  const between = envelope('CONFLICT_REPORT')
  correlator.onEnvelope(between)
  correlator.onEnvelope(envelope('INTENT_ANNOUNCE', {}, 'mine-1'))
  const refusal = envelope('PROTOCOL_ERROR', { error_code: 'STALE_STATE_REF', refers_to: 'mine-2' })
  t.equal(correlator.onEnvelope(refusal), true)
  const accepted = await ok
  t.equal(accepted.accepted, true)
  t.same(accepted.seen, [between], 'the envelopes received before its echo')
  const rejected = await bad
  t.same({ accepted: rejected.accepted, code: rejected.error?.error_code, terminal: rejected.terminal }, { accepted: false, code: 'STALE_STATE_REF', terminal: refusal })
})

t.test('with no open connection a call fails at once and stamps no envelope; rejectAll fails the calls in flight', async t => {
  const closed = setup(false)
  let built = 0
  await t.rejects(closed.correlator.request(() => { built++; return envelope('HEARTBEAT') }, 1000), { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', message: 'not connected to the coordinator' })
  await t.rejects(closed.correlator.query({ type: 'FILE_LIST' }, 1000), { code: 'MPAC_ERR_REMOTE_UNAVAILABLE' })
  t.equal(built, 0, 'no message id or clock tick spent')

  const { correlator } = setup()
  const request = correlator.request(() => envelope('HEARTBEAT'), 1000)
  const query = correlator.query({ type: 'SESSION_SUMMARY' }, 1000)
  const gone = new RemoteClosed('gone')
  correlator.rejectAll(gone)
  await t.rejects(request, gone)
  await t.rejects(query, gone)
})
