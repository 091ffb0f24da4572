/**
 * Why a connection failed reaches the agent, through real shim processes:
 * a wrong URL path (close 4004) is a non-retryable MPAC_ERR_CONFIG_INVALID
 * naming the URL to use, with no background reconnect loop; a refused port,
 * an unknown host and wss:// to a plain server each report their cause and a
 * hint that fits it.
 */
import t from 'tap'
import { cleanEnv, eventually, freePort, startCoordinator, startShim, stateHome, tempDir, type Shim } from './harness.js'

const count = (text: string, needle: string): number => text.split(needle).length - 1

t.test('a wrong URL path: MPAC_ERR_CONFIG_INVALID naming /session/<id>, no reconnect loop', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-path-ws-')
  const [multi, single] = await Promise.all([
    startCoordinator(t, ['--port', '0', '--store', 'memory']),
    startCoordinator(t, ['--port', '0', '--store', 'memory', '--session-id', 'room'])
  ])
  const shimFor = (url: string): Promise<Shim> => startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url, MPAC_LOG_LEVEL: 'debug' }), ws)
  const origin = `ws://127.0.0.1:${multi.port}`
  const [typo, bare, other] = await Promise.all([shimFor(`${origin}/sesion/x`), shimFor(`${origin}/`), shimFor(`ws://127.0.0.1:${single.port}/session/other`)])

  for (const [name, shim, message, hint] of [
    ['/sesion/x', typo, `has no endpoint at ${origin}/sesion/x (unknown path; use /session/<id>): connect to ${origin}/session/<session id>`, `MPAC_COORDINATOR_URL to ${origin}/session/<session id>`],
    ['/', bare, `connect to ${origin}/session/<session id>`, `${origin}/session/<session id>`],
    ['/session/other on a single-session coordinator', other, 'does not serve session "other"', 'banner']
  ] as const) {
    const first = await shim.raw('who_is_working')
    t.equal(first.isError, true, name)
    t.match(first.structuredContent, { code: 'MPAC_ERR_CONFIG_INVALID', retryable: false }, `${name}: permanent`)
    t.match((first.structuredContent as Record<string, unknown>)['message'], message, `${name}: names the URL to use`)
    t.match((first.structuredContent as Record<string, unknown>)['hint'], hint, `${name}: hint`)
    // A second call tries once more and gets the same answer; in between, nothing reconnected on its own.
    t.match(await shim.call('who_is_working'), { code: 'MPAC_ERR_CONFIG_INVALID' }, `${name}: every call reports it`)
    await eventually(async () => count(shim.stderr(), 'coordinator connection lost') >= 2 ? true : undefined, 5000, `${name}: the second attempt's log`)
    t.ok(count(shim.stderr(), 'coordinator connection lost') <= 3, `${name}: one connection per call (and one at start), no more`)
    t.notMatch(shim.stderr(), 'reconnect scheduled', `${name}: no background reconnect`)
  }
})

t.test('refused port, unknown host, wss:// to a plain server: the cause and a hint that fits', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-cause-ws-')
  const plain = await startCoordinator(t, ['--port', '0', '--store', 'memory'])
  const closed = await freePort()
  const shimFor = (url: string): Promise<Shim> => startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: url }), ws)
  const [refused, unknown, tls] = await Promise.all([
    shimFor(`ws://127.0.0.1:${closed}/session/x`),
    shimFor('ws://no-such-host.invalid:8766/session/x'),
    shimFor(`wss://127.0.0.1:${plain.port}/session/x`)
  ])
  const [r, u, s] = await Promise.all([refused.call('who_is_working'), unknown.call('who_is_working'), tls.call('who_is_working')])

  t.match(r, { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', retryable: true, message: /^cannot reach the coordinator at .*: .*ECONNREFUSED/, hint: `nothing listens at 127.0.0.1:${closed}` })
  t.match(u, { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', retryable: false, message: /ENOTFOUND/, hint: /typo/ })
  t.notMatch(u['hint'], /restarting/, 'a typo is not a restart')
  t.match(s, { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', retryable: false, message: /wrong version number|ERR_SSL/i, hint: /use ws:\/\/ instead of wss:\/\// })
  for (const res of [r, u, s]) t.notMatch(res['message'], /: $/, 'nothing is cut after the colon')
})
