/**
 * wss:// with a private CA: the shim trusts it through NODE_EXTRA_CA_CERTS
 * (documented in README.md), and without it reports an untrusted
 * certificate as such, with what to do, instead of "unreachable, retry".
 * A TLS front (private CA made with openssl) in front of a real coordinator
 * child process; real `mpac-mcp` processes.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { join } from 'node:path'
import { createServer as createTlsServer } from 'node:tls'
import t from 'tap'
import { cleanEnv, startCoordinator, startShim, stateHome, tempDir } from './harness.js'

const dir = tempDir(t, 'mpac-tls-')
const ssl = (...args: string[]): void => { execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' }) }
ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=mpac test CA')
ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost')
writeFileSync(join(dir, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'san.ext')

const state = stateHome(t)
const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data')])
const front = createTlsServer({ key: readFileSync(join(dir, 'server.key')), cert: readFileSync(join(dir, 'server.pem')) }, socket => {
  const upstream = netConnect(coordinator.port, '127.0.0.1')
  socket.pipe(upstream).pipe(socket)
  socket.on('error', () => upstream.destroy())
  upstream.on('error', () => socket.destroy())
})
await new Promise<void>(resolve => front.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise<void>(resolve => front.close(() => resolve())))
const url = `wss://localhost:${(front.address() as { port: number }).port}/session/tls-room`
const ws = tempDir(t, 'mpac-tls-ws-')

t.test('NODE_EXTRA_CA_CERTS makes a private CA trusted', async t => {
  const shim = await startShim(t, cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: ws, XDG_STATE_HOME: state, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') }))
  t.match(await shim.call('who_is_working'), { status: 'ok', session_id: 'tls-room' })
})

t.test('without it, the untrusted certificate is reported as such', async t => {
  const shim = await startShim(t, cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: ws, XDG_STATE_HOME: state }))
  const res = await shim.raw('who_is_working')
  t.equal(res.isError, true)
  t.match(res.structuredContent, { code: 'MPAC_ERR_TLS_UNTRUSTED', retryable: false, message: /certificate/, hint: /NODE_EXTRA_CA_CERTS/ })
})
