/**
 * The connection under the shim: a call in flight when the connection drops
 * (the coordinator is killed while the request is on the wire) gets a clear,
 * retryable error and the next call just works after the restart; a shim the
 * coordinator declared unavailable (missed heartbeats) comes back at once.
 * The shim in process (harness startInProcessShim) and real coordinator child processes; a TCP proxy
 * in between tells the test when the request has left the shim.
 */
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient, type Envelope } from '../../src/mcp/client.js'
import { cleanEnv, eventually, startCoordinator, startProxy, startInProcessShim, stateHome, tempDir } from './harness.js'

type R = Record<string, unknown>
const list = (v: unknown): R[] => (Array.isArray(v) ? v : []) as R[]

t.test('a call in flight when the connection drops gets a retryable error; after the restart the next call just works', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-drop-ws-')
  const dataDir = join(state, 'data')
  const first = await startCoordinator(t, ['--port', '0', '--data-dir', dataDir])
  const proxy = await startProxy(t, first.port)
  const url = `ws://127.0.0.1:${proxy.port}/session/drop-room`
  const shim = await startInProcessShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url, MPAC_AGENT_NAME: 'Dropper' }))
  const kept = await shim.call('begin_task', { objective: 'survive', files: ['kept.txt'] })
  t.equal(kept['status'], 'ok')

  // The next frame the shim sends is the announce below: hold it, then kill the coordinator.
  const sent = proxy.holdNextClientChunk()
  const inFlight = shim.raw('begin_task', { objective: 'lost on the wire', files: ['lost.txt'] })
  await sent
  first.child.kill('SIGKILL')
  const res = await inFlight
  t.equal(res.isError, true, 'the in-flight call fails')
  t.match(res.structuredContent, {
    status: 'error',
    code: 'MPAC_ERR_REMOTE_CLOSED',
    retryable: true,
    message: /dropped.*in flight/,
    hint: /who_is_working/
  }, 'with a clear, retryable error saying it may or may not have taken effect')

  const second = await startCoordinator(t, ['--port', '0', '--data-dir', dataDir])
  proxy.retarget(second.port)
  // A call during the reconnect backoff does not wait for it: it connects at once.
  const back = await shim.call('who_is_working')
  t.match(back, { status: 'ok' }, 'the next call reconnects and works')
  const intents = list(back['active_intents'])
  t.ok(intents.some(i => i['intent_id'] === kept['intent_id']), 'the acknowledged intent survived the restart')
  t.notOk(intents.some(i => i['objective'] === 'lost on the wire'), 'the held announce never reached the coordinator')
  const retried = await shim.call('begin_task', { objective: 'lost on the wire', files: ['lost.txt'] })
  t.equal(retried['status'], 'ok', 'retrying the failed call works')
  const y = await shim.call('yield_task', { intent_id: kept['intent_id'] })
  t.equal(y['status'], 'ok', 'ownership was rebuilt after the restart')
})

t.test('a connection that stops answering without closing (half-open) is dropped and replaced', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-halfopen-ws-')
  const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data')])
  const proxy = await startProxy(t, coordinator.port)
  const url = `ws://127.0.0.1:${proxy.port}/session/halfopen`
  const shim = await startInProcessShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url, MPAC_AGENT_NAME: 'Wanderer', MPAC_REQUEST_TIMEOUT_MS: '1000' }))
  const begin = await shim.call('begin_task', { objective: 'travel', files: ['bag.txt'] })
  t.equal(begin['status'], 'ok')

  proxy.blackhole()
  const lost = await shim.raw('who_is_working')
  t.match(lost.structuredContent, { status: 'error', code: 'MPAC_ERR_REMOTE_TIMEOUT', retryable: true }, 'the call in flight times out (retryable)')
  const started = Date.now()
  const next = await shim.call('who_is_working')
  t.match(next, { status: 'ok' }, 'the next call works on a new connection')
  t.ok(Date.now() - started < 1000, `without waiting for another timeout (${Date.now() - started} ms)`)
  t.ok(list(next['active_intents']).some(i => i['intent_id'] === begin['intent_id']))
  t.equal((await shim.call('yield_task', { intent_id: begin['intent_id'] }))['status'], 'ok', 'ownership rebuilt on the new connection')
})

t.test('a shim declared unavailable (missed heartbeats) is available again at once', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-unavail-ws-')
  // Participants are declared unavailable after 1 s of silence, while the advertised heartbeat is 30 s.
  const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data'), '--unavailability-timeout', '1', '--restart-grace', '0'])
  const url = `ws://127.0.0.1:${coordinator.port}/session/unavail`
  const unavailable: string[] = []
  const observer = new CoordinatorClient({
    url,
    sessionId: 'unavail',
    sessionIdPinned: true,
    identity: { principalId: 'agent:observer', displayName: 'Observer', roles: ['observer'], capabilities: [] },
    logger: pino({ level: 'silent' }),
    onEnvelope: (env: Envelope) => { if (env.message_type === 'PROTOCOL_ERROR' && env.payload['error_code'] === 'PARTICIPANT_UNAVAILABLE') unavailable.push(String(env.payload['principal_id'])) }
  })
  t.teardown(() => observer.close())
  await observer.ensureConnected()

  const shim = await startInProcessShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url, MPAC_AGENT_NAME: 'Sleeper' }))
  const begin = await shim.call('begin_task', { objective: 'doze', files: ['nap.txt'] })
  t.equal(begin['status'], 'ok')
  const me = begin['principal_id'] as string

  await eventually(async () => unavailable.includes(me) ? true : undefined, 10_000, 'the shim to be declared unavailable')
  const summary = async (): Promise<R> => (await observer.query({ type: 'SESSION_SUMMARY' }))['session'] as R
  const restored = await eventually(async () => {
    const s = await summary()
    const p = list(s['participants']).find(x => x['principal_id'] === me)
    const i = list(s['active_intents']).find(x => x['intent_id'] === begin['intent_id'])
    return p?.['is_available'] === true && i?.['state'] === 'ACTIVE' ? i : undefined
  }, 3000, 'the shim to answer PARTICIPANT_UNAVAILABLE with a HEARTBEAT')
  t.match(restored, { state: 'ACTIVE' }, 'its suspended intent is ACTIVE again without waiting for the next heartbeat tick')
})
