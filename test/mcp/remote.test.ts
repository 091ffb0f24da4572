/**
 * Remote mode against a multi-session coordinator with a token table:
 * accepted, rejected and wrong-session tokens; a coordinator restart on the
 * same port and data directory (the next tool call just works); tool calls
 * during the outage fail fast with a retryable error.
 */
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient } from '../../src/mcp/client.js'
import { loadShimConfig } from '../../src/mcp/config.js'
import { cleanEnv, startCoordinator, startShim, stateHome, tempDir } from './harness.js'

type R = Record<string, unknown>
const list = (v: unknown): R[] => (Array.isArray(v) ? v : []) as R[]

const TABLE = JSON.stringify({
  'tok-alice': { allowed_sessions: ['room'], roles: ['contributor'] },
  'tok-bob': { allowed_sessions: ['*'], roles: ['contributor'] }
})

t.test('tokens: accepted, unknown, and not allowed for the session', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-remote-ws-')
  const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data')], cleanEnv({ MPAC_TOKEN_TABLE: TABLE }))
  const base = `ws://127.0.0.1:${coordinator.port}/session`
  const env = (extra: Record<string, string>): Record<string, string> => cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, ...extra })

  // End to end through shim processes for the accepted and one rejected token; the other
  // cases through the same client class in-process (process start-up dominates the time).
  const [good, wrong] = await Promise.all([
    startShim(t, env({ MPAC_COORDINATOR_URL: `${base}/room`, MPAC_COORDINATOR_TOKEN: 'tok-alice', MPAC_AGENT_NAME: 'Alice' })),
    startShim(t, env({ MPAC_COORDINATOR_URL: `${base}/room`, MPAC_COORDINATOR_TOKEN: 'tok-nobody', MPAC_AGENT_NAME: 'Mallory' }))
  ])
  const who = await good.call('who_is_working')
  t.match(who, { status: 'ok', session_id: 'room', workspace_dir: ws })
  const begin = await good.call('begin_task', { objective: 'remote edit', files: ['a.txt'] })
  t.equal(begin['status'], 'ok')
  t.notOk(good.stderr().includes('tok-alice'), 'the token never appears in the logs')

  const refused = await wrong.raw('who_is_working')
  t.equal(refused.isError, true)
  t.match(refused.structuredContent, { status: 'error', code: 'MPAC_ERR_AUTH_REJECTED', retryable: false, hint: /MPAC_COORDINATOR_TOKEN/ })
  const refusedAgain = await wrong.call('begin_task', { objective: 'x', files: ['a.txt'] })
  t.match(refusedAgain, { code: 'MPAC_ERR_AUTH_REJECTED' }, 'every call reports the rejection')

  const client = (path: string, token: string | undefined, sessionId?: string): CoordinatorClient => {
    const config = loadShimConfig(env({
      MPAC_COORDINATOR_URL: `${base}/${path}`,
      MPAC_AGENT_NAME: 'InProcess',
      ...(token !== undefined ? { MPAC_COORDINATOR_TOKEN: token } : {}),
      ...(sessionId !== undefined ? { MPAC_SESSION_ID: sessionId } : {})
    }))
    const c = new CoordinatorClient({ url: config.url, sessionId: config.sessionId, sessionIdPinned: config.sessionIdPinned, identity: config.identity, token: config.token, logger: pino({ level: 'silent' }) })
    t.teardown(() => c.close())
    return c
  }
  await t.rejects(client('room', undefined).ensureConnected(), { code: 'MPAC_ERR_AUTH_REJECTED', hint: /set MPAC_COORDINATOR_TOKEN/ }, 'no token')
  await t.rejects(client('other', 'tok-alice').ensureConnected(), { code: 'MPAC_ERR_AUTH_REJECTED', hint: /allowed_sessions/ }, 'a token bound to one session is refused on another')
  await t.rejects(client('room', 'tok-bob', 'other').ensureConnected(), { code: 'MPAC_ERR_REMOTE_SESSION_MISMATCH', hint: /MPAC_SESSION_ID/ }, 'MPAC_SESSION_ID that disagrees with the URL')
  const wildcard = client('other', 'tok-bob')
  await wildcard.ensureConnected()
  const summary = await wildcard.query({ type: 'SESSION_SUMMARY' })
  t.match(summary, { session: { session_id: 'other', active_intent_count: 0 } }, 'a wildcard token works on another session, which is separate')
})

t.test('a coordinator restart on the same port and data dir: fail fast, then the next call just works', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-restart-ws-')
  const dataDir = join(state, 'data')
  const first = await startCoordinator(t, ['--port', '0', '--data-dir', dataDir])
  const port = first.port
  const url = `ws://127.0.0.1:${port}/session/restart-room`
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url, MPAC_AGENT_NAME: 'Survivor', MPAC_REQUEST_TIMEOUT_MS: '5000' }))
  const begin = await shim.call('begin_task', { objective: 'survive a restart', files: ['keep.txt'] })
  t.equal(begin['status'], 'ok')

  first.child.kill('SIGKILL')
  await new Promise(resolve => first.child.once('exit', resolve))
  const started = Date.now()
  const down = await shim.raw('who_is_working')
  t.equal(down.isError, true)
  t.match(down.structuredContent, { status: 'error', code: /^MPAC_ERR_REMOTE_(UNAVAILABLE|CLOSED)$/, retryable: true })
  t.ok(Date.now() - started < 3000, `fails fast during the outage (${Date.now() - started} ms)`)

  await startCoordinator(t, ['--port', String(port), '--data-dir', dataDir])
  const back = await shim.call('who_is_working')
  t.equal(back['status'], 'ok', JSON.stringify(back))
  t.match(list(back['active_intents']).find(i => i['intent_id'] === begin['intent_id']), { state: 'ACTIVE' }, 'the intent survived')
  t.equal(list(back['participants']).find(p => p['principal_id'] === back['principal_id'])?.['is_available'], true, 'the shim re-HELLOed')
  const y = await shim.call('yield_task', { intent_id: begin['intent_id'] })
  t.equal(y['status'], 'ok', 'ownership was rebuilt from the coordinator\'s summary')
})

t.test('the client sends HEARTBEAT at the interval SESSION_INFO advertises', async t => {
  const state = stateHome(t)
  const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data'), '--heartbeat-interval', '1'])
  const url = `ws://127.0.0.1:${coordinator.port}/session/beat`
  const make = (name: string): CoordinatorClient => {
    const c = new CoordinatorClient({ url, sessionId: 'beat', sessionIdPinned: true, identity: { principalId: `agent:${name}`, displayName: name, roles: ['contributor'], capabilities: [] }, logger: pino({ level: 'silent' }) })
    t.teardown(() => c.close())
    return c
  }
  const beater = make('beater')
  const observer = make('observer')
  await beater.ensureConnected()
  await observer.ensureConnected()
  t.equal((beater.sessionInfo?.['liveness_policy'])?.heartbeat_interval_sec, 1)
  const lastSeen = async (): Promise<unknown> => {
    const s = await observer.query({ type: 'SESSION_SUMMARY' })
    return list((s['session'] as R)['participants']).find(p => p['principal_id'] === 'agent:beater')?.['last_seen']
  }
  const initial = await lastSeen()
  const deadline = Date.now() + 5000
  let current = initial
  while (current === initial && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 100))
    current = await lastSeen()
  }
  t.not(current, initial, 'last_seen advanced without any request from the client: a HEARTBEAT arrived')
})
