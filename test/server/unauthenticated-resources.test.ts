/**
 * Issue 11.4: what a client without a token can hold is bounded: header
 * timeouts (slowloris), a cap on connections that have not sent an admitted
 * HELLO (per address and in total), /metrics behind a token, a loopback
 * listener or an explicit opt-in, and health endpoints that say nothing
 * about tenants.
 */
import { connect } from 'node:net'
import t from 'tap'
import { startServer } from '../helpers/server.js'
import { hello, joined, TestClient, upgradeStatus } from '../helpers/ws.js'

t.test('a client that trickles its headers is cut after --headers-timeout', async t => {
  const srv = await startServer(t, { argv: ['--headers-timeout', '1', '--request-timeout', '2'] })
  const socket = connect({ host: '127.0.0.1', port: srv.port })
  t.teardown(() => socket.destroy())
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const started = Date.now()
  socket.write(`GET /session/s HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUpgrade: websocket\r\n`)
  let answer = ''
  socket.on('data', (d: Buffer) => { answer += d.toString('latin1') })
  const ended = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the server kept the half-sent request open for 8 s')), 8000)
    socket.once('close', () => { clearTimeout(timer); resolve(Date.now() - started) })
  })
  t.ok(ended >= 900, `not before the timeout (${ended} ms)`)
  t.match(answer, /^HTTP\/1\.1 408/, 'answered 408 Request Timeout')
})

t.test('connections without an admitted HELLO are capped per address and in total', async t => {
  const srv = await startServer(t, { argv: ['--max-prehello-per-address', '2', '--max-prehello-connections', '3'] })
  const url = `${srv.url}/session/s`
  const a = await TestClient.connect(url)
  const b = await TestClient.connect(url)
  t.teardown(() => { a.close(); b.close() })
  t.equal(await upgradeStatus(url), 429, 'a third waiting connection from this address is refused before the upgrade')
  t.ok(srv.logs.some(l => l.includes('upgrade refused: too many connections from this address')), 'logged with the reason')

  // Admitting one frees its slot: only connections still waiting for their HELLO count.
  const r = await a.request(hello('agent:a', { sessionId: 's' }))
  t.equal(r.message_type, 'SESSION_INFO')
  const c = await TestClient.connect(url)
  t.teardown(() => c.close())
  t.equal(srv.app.mpac.registry.prehelloCount, 2, 'b and c wait')
  // Closing one frees its slot too.
  b.close()
  await b.waitForClose()
  const deadline = Date.now() + 3000
  while (srv.app.mpac.registry.prehelloCount !== 1 && Date.now() < deadline) await new Promise(resolve => setImmediate(resolve))
  t.equal(srv.app.mpac.registry.prehelloCount, 1, 'a closed connection no longer counts')

  const { client: d } = await joined(url, 'agent:d')
  t.teardown(() => d.close())
  const e = await TestClient.connect(url)
  t.teardown(() => e.close())
  t.equal(await upgradeStatus(url), 429, 'per-address cap again (c and e wait)')
})

t.test('the total cap answers 503', async t => {
  const srv = await startServer(t, { argv: ['--max-prehello-per-address', '10', '--max-prehello-connections', '2'] })
  const url = `${srv.url}/session/s`
  const a = await TestClient.connect(url)
  const b = await TestClient.connect(url)
  t.teardown(() => { a.close(); b.close() })
  t.equal(await upgradeStatus(url), 503)
  const answer = await rawUpgrade(srv.port, '/session/s')
  t.match(answer, /^HTTP\/1\.1 503/)
  t.match(answer, /\r\nretry-after: 1\r\n/i, 'with Retry-After')
  t.match(answer, /"code":"MPAC_ERR_TOO_MANY_CONNECTIONS"/)
})

/** Sends an upgrade request over raw TCP and returns everything the server answers before it closes or 2 s pass. */
async function rawUpgrade (port: number, path: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
    'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  let answer = ''
  return new Promise(resolve => {
    const done = (): void => { clearTimeout(timer); socket.destroy(); resolve(answer) }
    const timer = setTimeout(done, 2000)
    socket.on('data', (d: Buffer) => {
      answer += d.toString('utf8')
      if (/\r\n\r\n[\s\S]*\}/.test(answer)) done()
    })
    socket.once('close', done)
  })
}

t.test('/metrics needs a token, a loopback listener or an explicit opt-in; health says nothing', async t => {
  const closed = await startServer(t)
  const refused = await fetch(`${closed.httpUrl}/metrics`)
  t.equal(refused.status, 403, 'off by default')
  t.match(await refused.json(), { code: 'MPAC_ERR_METRICS_DISABLED', message: /MPAC_METRICS_TOKEN/ })

  const open = await startServer(t, { argv: ['--metrics-public'] })
  const res = await fetch(`${open.httpUrl}/metrics`)
  t.equal(res.status, 200, '--metrics-public opens it')
  t.match(await res.text(), /mpac_connections/)

  const { client } = await joined(`${closed.url}/session/tenant-secret-name`, 'agent:a')
  t.teardown(() => client.close())
  const ready = await fetch(`${closed.httpUrl}/readyz`)
  t.same(await ready.json(), { status: 'ready' }, 'readyz: no session or connection counts')
  t.same(await (await fetch(`${closed.httpUrl}/healthz`)).json(), { status: 'ok' })
})
