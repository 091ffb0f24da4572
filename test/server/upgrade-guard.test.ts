/**
 * The Origin/Host guard of WebSocket upgrades (src/server/upgrade-guard.ts),
 * through the real `mpac-mcp-sidecar` program in every mode: a browser
 * Origin or a foreign Host (DNS rebinding) gets 403 before the upgrade and
 * changes nothing; --allowed-origin / --allowed-host admit what they name.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cleanEnv, startCoordinator, tempDir, type Coordinator } from '../mcp/harness.js'
import { isType, joined, upgradeStatus, type Frame } from '../helpers/ws.js'

const env = (extra: Record<string, string> = {}): Record<string, string> => cleanEnv({ LOG_LEVEL: 'info', ...extra })

/** Sessions and connections the coordinator holds, from its metrics (started with --metrics-public). */
async function counts (c: Coordinator): Promise<{ sessions: number, connections: number }> {
  const text = await (await fetch(`http://127.0.0.1:${c.port}/metrics`)).text()
  const gauge = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN)
  return { sessions: gauge('mpac_sessions'), connections: gauge('mpac_connections') }
}

/** The refusal log lines written so far with this message prefix. */
const refusals = (c: Coordinator, what: string): string[] => c.output().split('\n').filter(l => l.includes(`upgrade refused: ${what}`))

async function waitForLines (c: Coordinator, what: string, n: number): Promise<string[]> {
  const deadline = Date.now() + 5000
  for (;;) {
    const lines = refusals(c, what)
    if (lines.length >= n || Date.now() > deadline) return lines
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('multi-session: a browser Origin and a rebinding Host are refused with 403 and create nothing', async t => {
  const c = await startCoordinator(t, ['--port', '0', '--store', 'memory', '--metrics-public'], env())
  const url = `ws://127.0.0.1:${c.port}/session/fresh`
  t.equal(await upgradeStatus(url, { origin: 'https://evil.example' }), 403, 'browser Origin')
  t.equal(await upgradeStatus(url, { host: `evil.example:${c.port}` }), 403, 'DNS rebinding: Host evil.example:PORT')
  t.equal(await upgradeStatus(url, { host: `10.9.8.7:${c.port}` }), 403, 'an address that is not ours')
  t.equal(await upgradeStatus(url, { host: 'a:b:c' }), 403, 'malformed Host')
  t.same(await counts(c), { sessions: 0, connections: 0 }, 'no session and no connection came of them')
  const originLines = await waitForLines(c, 'Origin', 1)
  t.equal(originLines.length, 1, 'one log line for the refused Origin')
  t.match(originLines[0], /https:\/\/evil\.example/, 'it names the Origin')
  const hostLines = await waitForLines(c, 'Host', 3)
  t.equal(hostLines.length, 3, 'one log line per refused Host')
  t.match(hostLines[0], new RegExp(`evil\\.example:${c.port}`))

  const long = `https://${'a'.repeat(500)}.example`
  t.equal(await upgradeStatus(url, { origin: long }), 403)
  const lines = await waitForLines(c, 'Origin', 2)
  t.notOk((lines[1] ?? '').includes('a'.repeat(101)), 'the logged value is truncated')

  // What MPAC clients send: no Origin, Host = the address they dialled.
  t.equal(await upgradeStatus(url), 101, 'Host 127.0.0.1:PORT')
  t.equal(await upgradeStatus(url, { host: `localhost:${c.port}` }), 101, 'Host localhost:PORT')
  t.equal(await upgradeStatus(url, { host: `LOCALHOST.:${c.port}` }), 101, 'case and a trailing dot do not matter')
  t.equal(await upgradeStatus(url, { host: 'localhost:9000' }), 101, 'a loopback name at another port (an ssh tunnel, a TCP forwarder)')
  t.equal(await upgradeStatus(url, { host: '[::1]:9000' }), 101)
  const { client } = await joined(url, 'agent:plain')
  t.teardown(() => client.close())
  t.equal(c.child.exitCode, null, 'still running')
})

t.test('single-session: a refused upgrade leaves the session untouched; HTTP routes are not guarded', async t => {
  const c = await startCoordinator(t, ['--port', '0', '--store', 'memory', '--session-id', 'solo', '--metrics-public'], env())
  const url = `ws://127.0.0.1:${c.port}/session/solo`
  const { client } = await joined(url, 'agent:first')
  t.teardown(() => client.close())
  t.equal(await upgradeStatus(url, { origin: 'http://localhost:3000' }), 403, 'even a local web page')
  t.equal(await upgradeStatus(`ws://127.0.0.1:${c.port}/`, { host: `rebind.example:${c.port}` }), 403, 'the / route too')
  t.equal(await upgradeStatus(`ws://127.0.0.1:${c.port}/nowhere`, { origin: 'https://evil.example' }), 403, 'unknown paths too')
  client.send({ type: 'SESSION_SUMMARY' })
  const summary = await client.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.equal(((summary.session as Frame).participants as Frame[]).length, 1, 'still one participant')
  t.equal((await counts(c)).connections, 1)
  const health = await fetch(`http://127.0.0.1:${c.port}/healthz`, { headers: { origin: 'https://evil.example' } })
  t.equal(health.status, 200, 'plain HTTP requests are not affected')
})

t.test('workspace mode: --allowed-origin and --allowed-host admit what they name, nothing else', async t => {
  const ws = tempDir(t, 'mpac-guard-ws-')
  mkdirSync(join(ws, 'docs'))
  const c = await startCoordinator(t, ['--port', '0', '--store', 'memory', '--workspace', ws,
    '--allowed-origin', 'https://app.example.com, http://localhost:3000/', '--allowed-host', 'mpac.example.com,other.example:8443'], env())
  const url = `ws://127.0.0.1:${c.port}/`
  t.equal(await upgradeStatus(url, { origin: 'https://app.example.com' }), 101, 'allowed origin')
  t.equal(await upgradeStatus(url, { origin: 'http://localhost:3000' }), 101, 'allowed origin (a trailing slash in the setting is fine)')
  t.equal(await upgradeStatus(url, { origin: 'https://app.example.com:444' }), 403, 'same host, other port: another origin')
  t.equal(await upgradeStatus(url, { origin: 'http://app.example.com' }), 403, 'other scheme: another origin')
  t.equal(await upgradeStatus(url, { host: 'mpac.example.com' }), 101, 'allowed host name, any port')
  t.equal(await upgradeStatus(url, { host: 'mpac.example.com:443' }), 101)
  t.equal(await upgradeStatus(url, { host: 'other.example:8443' }), 101, 'allowed host:port')
  t.equal(await upgradeStatus(url, { host: 'other.example:8444' }), 403, 'the same name at another port')
  t.equal(await upgradeStatus(url, { host: 'evil.example' }), 403)
  const { client } = await joined(`ws://127.0.0.1:${c.port}/session/${/single-session \((.+)\)/.exec(c.output())![1]}`, 'agent:ws', { headers: { host: 'mpac.example.com' } })
  t.teardown(() => client.close())
})

t.test('hosted: a token table, a public bind address and a proxy in front; --allowed-host * disables the Host check', async t => {
  const table = JSON.stringify({ 'tok-a': { allowed_sessions: ['*'] } })
  const c = await startCoordinator(t, ['--port', '0', '--store', 'memory', '--host', '0.0.0.0', '--tls', '--trust-proxy', '1'],
    env({ MPAC_TOKEN_TABLE: table, MPAC_ALLOWED_HOSTS: 'coord.example.com' }))
  const url = `ws://127.0.0.1:${c.port}/session/p`
  const auth = { authorization: 'Bearer tok-a' }
  t.equal(await upgradeStatus(url, { ...auth, host: 'coord.example.com' }), 101, 'the public name (port 443 behind the proxy)')
  t.equal(await upgradeStatus(url, { ...auth, host: 'evil.example' }), 403)
  t.equal(await upgradeStatus(url, { ...auth, origin: 'https://coord.example.com' }), 403, 'a browser on the public name')
  t.equal(await upgradeStatus(url, { host: 'evil.example', authorization: 'Bearer nope' }), 403, 'the guard runs before the token check')
  t.equal(await upgradeStatus(url, auth), 101, 'direct to the address the connection arrived at')

  const any = await startCoordinator(t, ['--port', '0', '--store', 'memory', '--allowed-host', '*'], env())
  t.equal(await upgradeStatus(`ws://127.0.0.1:${any.port}/session/x`, { host: 'whatever.example:9' }), 101, '* allows any Host')
  t.equal(await upgradeStatus(`ws://127.0.0.1:${any.port}/session/x`, { origin: 'https://evil.example' }), 403, 'but not any Origin')
})

t.test('bad --allowed-origin / --allowed-host values stop the program with a clear error', async t => {
  for (const [args, pattern] of [
    [['--allowed-origin', 'https://app.example.com/path'], /invalid --allowed-origin: .*scheme:\/\/host\[:port\], no path/],
    [['--allowed-origin', 'app.example.com'], /invalid --allowed-origin/],
    [['--allowed-host', 'bad host!'], /invalid --allowed-host: expected host names/],
    [['--allowed-host', 'h:99999'], /invalid --allowed-host/]
  ] as Array<[string[], RegExp]>) {
    await t.rejects(startCoordinator(t, ['--port', '0', '--store', 'memory', ...args], env()), pattern, args.join(' '))
  }
  const fromEnv = startCoordinator(t, ['--port', '0', '--store', 'memory'], env({ MPAC_ALLOWED_ORIGINS: 'nope' }))
  await t.rejects(fromEnv, /invalid MPAC_ALLOWED_ORIGINS/)
})

t.test('a Host-less request (not a browser) passes', async t => {
  const c = await startCoordinator(t, ['--port', '0', '--store', 'memory'], env())
  const { connect } = await import('node:net')
  const socket = connect({ host: '127.0.0.1', port: c.port })
  t.teardown(() => socket.destroy())
  await new Promise<void>(resolve => socket.once('connect', () => resolve()))
  // HTTP/1.0 has no mandatory Host.
  socket.write('GET /session/x HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n' +
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n')
  const head = await new Promise<string>(resolve => socket.once('data', (d: Buffer) => resolve(d.toString('latin1'))))
  t.match(head, /^HTTP\/1\.1 101/)
})
