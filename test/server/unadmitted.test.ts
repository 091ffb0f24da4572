/**
 * Issue 11.2: input from a connection that was never admitted changes
 * nothing in a session (clock, epoch, participants, replay window, journal)
 * and its reply says nothing about the session: an existing and an unknown
 * session id get the same reply.
 */
import t from 'tap'
import { startServer, type StartedServer } from '../helpers/server.js'
import { announce, envelope, hello, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

const TABLE = {
  'tok-alpha': { allowed_sessions: ['alpha'], roles: ['owner'] },
  'tok-beta': { allowed_sessions: ['beta'], roles: ['contributor'] }
}
const env = { MPAC_TOKEN_TABLE: JSON.stringify(TABLE) }
const HUGE = 2 ** 52

/** What an attacker without a valid token for the session sends. */
function hostileFrames (sessionId: string, victim: string): Frame[] {
  const noToken = hello('agent:evil', { sessionId })
  noToken.watermark = { kind: 'lamport_clock', value: HUGE }
  const takeover = hello(victim, { sessionId, token: 'tok-beta' })
  takeover.watermark = { kind: 'lamport_clock', value: HUGE }
  const wrongToken = hello('agent:evil', { sessionId, token: 'tok-nope' })
  const beforeHello = announce(victim, 'i-evil', ['secret.ts'], sessionId)
  beforeHello.watermark = { kind: 'lamport_clock', value: HUGE }
  const heartbeat = envelope('HEARTBEAT', victim, { status: 'idle' }, sessionId)
  return [noToken, takeover, wrongToken, beforeHello, heartbeat]
}

/** A reply without the fields that differ between any two frames (ids, time). */
function shape (f: Frame): Frame {
  const copy: Frame = { ...f, payload: { ...(f.payload as Frame) } }
  delete copy.message_id
  delete copy.ts
  delete (copy.payload as Frame).refers_to
  return copy
}

async function replies (srv: StartedServer, sessionId: string, frames: Frame[]): Promise<Frame[]> {
  const c = await TestClient.connect(`${srv.url}/session/${sessionId}`)
  try {
    const out: Frame[] = []
    for (const f of frames) out.push(shape(await c.request(f)))
    return out
  } finally {
    c.close()
  }
}

function lamport (f: Frame): number {
  return (f.watermark as { value: number }).value
}

t.test('refused input from a never-admitted connection moves nothing and tells nothing', async t => {
  const srv = await startServer(t, { env })
  const { client: a, info } = await joined(`${srv.url}/session/alpha`, 'agent:a', { token: 'tok-alpha' })
  t.teardown(() => a.close())
  const first = await a.request(announce('agent:a', 'i-1', ['a.ts'], 'alpha'))
  t.equal(first.message_type, 'INTENT_ANNOUNCE', 'echo of the first announce')
  const before = lamport(info)
  const journalBefore = srv.store.load('alpha')?.journal.length

  const atAlpha = await replies(srv, 'alpha', hostileFrames('alpha', 'agent:a'))
  const atUnknown = await replies(srv, 'nowhere', hostileFrames('nowhere', 'agent:a'))
  t.same(atAlpha.map(r => (r.payload as Frame).error_code),
    ['CREDENTIAL_REJECTED', 'CREDENTIAL_REJECTED', 'CREDENTIAL_REJECTED', 'INVALID_REFERENCE', 'INVALID_REFERENCE'], 'each refused')
  // Equal once the id the client itself sent is blanked out (it is echoed in session_id, the sender and descriptions).
  const blank = (rs: Frame[], id: string): unknown => JSON.parse(JSON.stringify(rs).replaceAll(id, 'SID'))
  t.same(blank(atAlpha, 'alpha'), blank(atUnknown, 'nowhere'), 'the same replies for an existing and an unknown session')
  for (const r of atAlpha) {
    t.equal(r.watermark, undefined, 'no clock in the reply')
    t.equal(r.sender && (r.sender as Frame).principal_id, 'service:coordinator-alpha')
  }
  t.equal(srv.app.mpac.registry.sessionCount, 1, 'no session was created for the unknown id')
  t.equal(srv.store.load('nowhere'), undefined, 'nothing stored for the unknown id')
  t.equal(srv.store.load('alpha')?.journal.length, journalBefore, 'nothing journaled for the refused input')

  // The session's clock did not jump to the attacker's value, and the victim is still connected and bound.
  const second = await a.request(announce('agent:a', 'i-2', ['b.ts'], 'alpha'))
  t.equal(second.message_type, 'INTENT_ANNOUNCE', 'agent:a still speaks in its session')
  a.send({ type: 'SESSION_SUMMARY' })
  const summary = (await a.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.same((summary.participants as Frame[]).map(p => p.principal_id), ['agent:a'], 'no participant was added')
  const { client: b, info: later } = await joined(`${srv.url}/session/alpha`, 'agent:b', { token: 'tok-alpha' })
  b.close()
  t.ok(lamport(later) < before + 10, `the clock moved only by the session's own inputs (${before} → ${lamport(later)})`)
  t.equal(later.coordinator_epoch, info.coordinator_epoch, 'the epoch did not move')
})

t.test('a refused HELLO with a valid token does not enter the replay window', async t => {
  const srv = await startServer(t, { env })
  const { client: a } = await joined(`${srv.url}/session/alpha`, 'agent:a', { token: 'tok-alpha' })
  t.teardown(() => a.close())
  const stale = hello('agent:late', { sessionId: 'alpha', token: 'tok-alpha' })
  stale.ts = new Date(Date.now() - 3_600_000).toISOString()
  const c = await TestClient.connect(`${srv.url}/session/alpha`)
  t.teardown(() => c.close())
  const r = await c.request(stale)
  t.equal((r.payload as Frame).error_code, 'REPLAY_DETECTED', 'outside the replay window')
  // The same message id, now with a fresh ts, is not a replay: the refused one was never recorded.
  const fresh = { ...stale, ts: new Date().toISOString() }
  const ok = await c.request(fresh)
  t.equal(ok.message_type, 'SESSION_INFO', 'admitted: the refused input did not enter the replay window')
})

t.test('the HELLO-first refusal uses the Python coordinator\'s wording', async t => {
  const srv = await startServer(t)
  const c = await TestClient.connect(`${srv.url}/session/s1`)
  t.teardown(() => c.close())
  const r = await c.request(announce('agent:x', 'i-1', ['a.ts'], 's1'))
  t.equal((r.payload as Frame).error_code, 'INVALID_REFERENCE')
  t.equal((r.payload as Frame).description, 'Principal agent:x must send HELLO before any other message')
})
