/**
 * Local trust (src/local-secret.ts): the coordinator `mpac-mcp` auto-starts
 * admits only clients that present the user's secret (unless
 * MPAC_ALLOW_WITHOUT_SECRET), the secret lives in a 0700 directory in a 0600
 * file, and the shim refuses a port held by something that cannot prove it
 * knows the secret. Real `mpac-mcp` and `mpac-mcp-sidecar` processes.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fastifyWebsocket from '@fastify/websocket'
import Fastify from 'fastify'
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient } from '../../src/mcp/client.js'
import { loadShimConfig } from '../../src/mcp/config.js'
import { localSecretOf, sidecarPaths, verifyLocalConnection } from '../../src/mcp/sidecar.js'
import { deriveSessionId } from '../../src/protocol/workspace-id.js'
import { hello, isType, TestClient, type Frame } from '../helpers/ws.js'
import { cleanEnv, freePort, startCoordinator, startShim, stateHome, tempDir, type Teardown } from './harness.js'

/** A workspace, a state dir and a fixed port for a shim in local mode. */
async function local (t: Teardown, extra: Record<string, string> = {}): Promise<{ ws: string, state: string, port: number, sessionId: string, env: Record<string, string>, url: string }> {
  const ws = tempDir(t, 'mpac-trust-ws-')
  const state = stateHome(t)
  const port = await freePort()
  const sessionId = deriveSessionId(ws)
  const env = cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_SIDECAR_PORT: String(port), MPAC_AGENT_NAME: 'Trusty', ...extra })
  return { ws, state, port, sessionId, env, url: `ws://127.0.0.1:${port}/session/${sessionId}` }
}

const dirOf = (state: string, sessionId: string): string => sidecarPaths(join(state, 'mpac-mcp'), sessionId).dir
const mode = (path: string): number => statSync(path).mode & 0o777

t.test('the auto-started coordinator admits only clients with the secret; the secret is 0600 in a 0700 directory', async t => {
  const l = await local(t)
  // A directory left by an older version with a wider mode is tightened.
  mkdirSync(dirOf(l.state, l.sessionId), { recursive: true, mode: 0o755 })
  chmodSync(dirOf(l.state, l.sessionId), 0o755)
  const shim = await startShim(t, l.env)
  t.match(await shim.call('who_is_working'), { status: 'ok', session_id: l.sessionId }, shim.stderr())
  const dir = dirOf(l.state, l.sessionId)
  const secretFile = join(dir, 'local-secret')
  t.equal(mode(dir), 0o700, 'the directory is 0700')
  t.equal(mode(secretFile), 0o600, 'the secret file is 0600')
  const secret = readFileSync(secretFile, 'utf8').trim()
  t.match(secret, /^[0-9a-f]{64}$/)

  // No secret: HELLO refused (PROTOCOL_ERROR, then close 4401), nothing admitted.
  const anon = await TestClient.connect(l.url)
  const refused = await anon.request(hello('agent:stranger', { sessionId: l.sessionId }))
  t.match(refused, { message_type: 'PROTOCOL_ERROR', payload: { error_code: 'CREDENTIAL_REJECTED', description: /secret/ } })
  t.equal((await anon.waitForClose()).code, 4401)
  // A wrong secret: the same.
  const wrong = await TestClient.connect(l.url)
  t.match(await wrong.request(hello('agent:guess', { sessionId: l.sessionId, token: 'f'.repeat(64) })), { payload: { error_code: 'CREDENTIAL_REJECTED' } })
  t.equal((await wrong.waitForClose()).code, 4401)
  // A sideband query before such a HELLO: closed 4401, no summary leaks.
  const peek = await TestClient.connect(l.url)
  peek.send({ type: 'SESSION_SUMMARY' })
  t.equal((await peek.waitForClose()).code, 4401)
  t.notOk(peek.received.some(isType('SESSION_SUMMARY_RESPONSE')))

  // With the secret: admitted, and it sees only the shim.
  const friend = await TestClient.connect(l.url)
  t.teardown(() => friend.close())
  const info = await friend.request(hello('agent:friend', { sessionId: l.sessionId, token: secret }))
  t.equal(info.message_type, 'SESSION_INFO')
  friend.send({ type: 'SESSION_SUMMARY' })
  const summary = await friend.next(isType('SESSION_SUMMARY_RESPONSE'))
  const principals = ((summary.session as Frame).participants as Frame[]).map(p => p.principal_id)
  t.notOk(principals.includes('agent:stranger') || principals.includes('agent:guess'), 'the refused clients never joined')
})

t.test('MPAC_ALLOW_WITHOUT_SECRET: the auto-started coordinator also admits the Python bridge (no secret)', async t => {
  const l = await local(t, { MPAC_ALLOW_WITHOUT_SECRET: 'true' })
  const shim = await startShim(t, l.env)
  t.match(await shim.call('who_is_working'), { status: 'ok' }, shim.stderr())
  const bridge = await TestClient.connect(l.url)
  t.teardown(() => bridge.close())
  t.equal((await bridge.request(hello('agent:python-bridge', { sessionId: l.sessionId }))).message_type, 'SESSION_INFO')
  // The Origin/Host guard still applies.
  const { upgradeStatus } = await import('../helpers/ws.js')
  t.equal(await upgradeStatus(l.url, { origin: 'https://evil.example' }), 403)
})

t.test('a port held by an impostor that mimics a coordinator: MPAC_ERR_SIDECAR_FAILED naming the port and the holder', async t => {
  const l = await local(t)
  // A plain WebSocket server that answers every frame like our coordinator's SESSION_SUMMARY (the old probe would have trusted it).
  const impostor = Fastify()
  await impostor.register(fastifyWebsocket)
  impostor.get('/*', { websocket: true }, (raw: unknown) => {
    // The socket's type (ws) has no declarations here: only what this impostor uses.
    const socket = raw as { on (event: 'message', fn: () => void): void, send (data: string): void }
    socket.on('message', () => socket.send(JSON.stringify({ type: 'SESSION_SUMMARY_RESPONSE', session: { session_id: l.sessionId, participants: [] } })))
  })
  await impostor.listen({ host: '127.0.0.1', port: l.port })
  t.teardown(() => impostor.close())
  const shim = await startShim(t, l.env)
  const res = await shim.raw('who_is_working')
  t.equal(res.isError, true)
  t.match(res.structuredContent, {
    status: 'error',
    code: 'MPAC_ERR_SIDECAR_FAILED',
    message: new RegExp(`port ${l.port} .*held by pid ${process.pid} \\(.*uid ${process.getuid?.() ?? ''}\\).*cannot prove it knows your local secret`)
  })
})

t.test('a port held by a coordinator with another secret (another user\'s, say): refused, never used', async t => {
  const l = await local(t)
  const other = tempDir(t, 'mpac-other-secret-')
  const file = join(other, 'secret')
  writeFileSync(file, `${'a'.repeat(64)}\n`, { mode: 0o600 })
  const c = await startCoordinator(t, ['--port', String(l.port), '--store', 'memory', '--session-id', l.sessionId, '--local-secret-file', file])
  const shim = await startShim(t, l.env)
  const res = await shim.raw('who_is_working')
  t.match(res.structuredContent, { code: 'MPAC_ERR_SIDECAR_FAILED', message: new RegExp(`port ${l.port} .*held by pid ${c.child.pid ?? 0} .*wrong proof`) })
  t.notOk(existsSync(sidecarPaths(join(l.state, 'mpac-mcp'), l.sessionId).pidFile), 'no sidecar was started over it')
})

t.test('a secret file readable by others is refused by both programs', async t => {
  const l = await local(t)
  const dir = dirOf(l.state, l.sessionId)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const secretFile = join(dir, 'local-secret')
  writeFileSync(secretFile, `${'b'.repeat(64)}\n`, { mode: 0o644 })
  chmodSync(secretFile, 0o644)
  const shim = await startShim(t, l.env)
  t.match((await shim.raw('who_is_working')).structuredContent, { code: 'MPAC_ERR_SIDECAR_FAILED', message: /readable or writable by other users \(mode 644\)/ })
  await t.rejects(startCoordinator(t, ['--port', '0', '--store', 'memory', '--session-id', 's', '--local-secret-file', secretFile]), /invalid --local-secret-file: .*mode 644/)
  await t.rejects(startCoordinator(t, ['--port', '0', '--store', 'memory', '--allow-without-secret']), /invalid --allow-without-secret: only applies with --local-secret-file/)
})

t.test('the proof is also checked on the very connection the secret is sent on', async t => {
  const l = await local(t)
  const config = loadShimConfig(l.env)
  const { file: ours, secret } = localSecretOf(config)
  const otherDir = tempDir(t, 'mpac-other-secret-')
  const theirs = join(otherDir, 'secret')
  writeFileSync(theirs, `${'c'.repeat(64)}\n`, { mode: 0o600 })
  const logger = pino({ level: 'silent' })
  const client = (): CoordinatorClient => {
    const c = new CoordinatorClient({
      url: config.url,
      sessionId: config.sessionId,
      sessionIdPinned: true,
      identity: config.identity,
      logger,
      helloSecret: () => secret,
      verifyConnection: query => verifyLocalConnection(config, query)
    })
    t.teardown(() => c.close())
    return c
  }
  // No probe first (no beforeConnect): only the in-connection check stands between the secret and the impostor.
  const impostor = await startCoordinator(t, ['--port', String(l.port), '--store', 'memory', '--session-id', l.sessionId, '--local-secret-file', theirs, '--allow-without-secret'], cleanEnv({ LOG_LEVEL: 'debug' }))
  await t.rejects(client().ensureConnected(), { code: 'MPAC_ERR_SIDECAR_FAILED', message: new RegExp(`port ${l.port} .*cannot prove`) })
  t.notMatch(impostor.output(), /session created/, 'no HELLO (and so no secret) reached it: it would have created the session')
  await impostor.stop()

  await startCoordinator(t, ['--port', String(l.port), '--store', 'memory', '--session-id', l.sessionId, '--local-secret-file', ours])
  const good = client()
  await good.ensureConnected()
  t.equal(good.state, 'open', 'our own coordinator passes the check and admits the secret')
})
