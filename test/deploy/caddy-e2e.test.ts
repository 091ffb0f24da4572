/**
 * End to end through the TLS edge, as deployed on a VM: the sidecar from
 * source (hosted multi-session, token table file made by `token new`,
 * MPAC_TLS + MPAC_TRUST_PROXY as behind Caddy), Debian's caddy running
 * deploy/Caddyfile.local with its internal CA, then a raw WebSocket and the
 * real `mpac-mcp` shim connecting over wss:// through Caddy.
 */
import { readFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import t from 'tap'
import { Agent, fetch, WebSocket } from 'undici'
import { runTokenCommand } from '../../src/server/token-command.js'
import { hello, type Frame } from '../helpers/ws.js'
import { cleanEnv, freePort, SHIM_CLI, TS_LOADER, startCaddy, startSidecar, tempDir } from './helpers.js'

const SESSION = 'e2e-proj'
const dir = tempDir(t, 'mpac-deploy-e2e-')
const tableFile = join(dir, 'tokens.json')

async function mint (args: string[]): Promise<string> {
  const stdout = new PassThrough()
  let out = ''
  stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  const code = await runTokenCommand(['new', ...args, '--table', tableFile], { stdout, stderr: new PassThrough() })
  if (code !== 0) throw new Error(`token new exited ${code}`)
  return out.trimEnd().split('\n')[1] as string
}
const token = await mint(['--session', SESSION, '--role', 'contributor'])
const otherToken = await mint(['--session', 'another-project'])

// The VM recipe (deploy/vm/mpac-mcp-sidecar.service), on port 0. Caddy passes
// the Host header through: the edge's name is the allowed Host, as
// MPAC_ALLOWED_HOSTS=$MPAC_DOMAIN in the unit.
const caddyPort = await freePort()
const sidecar = await startSidecar(t, ['--multi-session'], cleanEnv({
  MPAC_SIDECAR_HOST: '127.0.0.1',
  MPAC_SIDECAR_PORT: '0',
  MPAC_DATA_DIR: join(dir, 'data'),
  MPAC_TOKEN_TABLE_FILE: tableFile,
  MPAC_TLS: 'true',
  MPAC_TRUST_PROXY: '127.0.0.1',
  MPAC_METRICS_PORT: '0',
  MPAC_ALLOWED_HOSTS: `127.0.0.1:${caddyPort}`,
  LOG_LEVEL: 'warn'
}))
const caddy = await startCaddy(t, `127.0.0.1:${sidecar.port}`, caddyPort)
const edge = `127.0.0.1:${caddy.port}`

// Caddy has loaded its config; its certificate may still be in the making: wait for the first good TLS answer.
const ca = await waitForFile(caddy.rootCert, 20_000)
const dispatcher = new Agent({ connect: { ca } })
t.teardown(() => dispatcher.close())
await waitForHttps(`https://${edge}/healthz`, 20_000)

async function waitForFile (path: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
}

async function waitForHttps (url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url, { dispatcher })
      await res.body?.cancel()
      if (res.ok) return
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${url} not reachable through caddy: ${(err as Error).message}\n${caddy.output()}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

/** A WebSocket through Caddy: frames queued, `next` waits for a match with a deadline. */
class WssClient {
  readonly queue: Frame[] = []
  #waiters: Array<{ match: (f: Frame) => boolean, resolve: (f: Frame) => void }> = []
  readonly closed: Promise<{ code: number, reason: string }>

  private constructor (readonly ws: WebSocket) {
    this.closed = new Promise(resolve => ws.addEventListener('close', ev => resolve({ code: ev.code, reason: ev.reason })))
    ws.addEventListener('message', ev => {
      if (typeof ev.data !== 'string') return
      const frame = JSON.parse(ev.data) as Frame
      const i = this.#waiters.findIndex(w => w.match(frame))
      if (i >= 0) this.#waiters.splice(i, 1)[0]?.resolve(frame)
      else this.queue.push(frame)
    })
  }

  static open (url: string, headers: Record<string, string> = {}): Promise<WssClient> {
    const ws = new WebSocket(url, { dispatcher, headers })
    const client = new WssClient(ws)
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(client), { once: true })
      ws.addEventListener('error', () => reject(new Error(`cannot open ${url}`)), { once: true })
    })
  }

  next (match: (f: Frame) => boolean, timeoutMs = 5000): Promise<Frame> {
    const i = this.queue.findIndex(match)
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0] as Frame)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms`)), timeoutMs)
      this.#waiters.push({ match, resolve: f => { clearTimeout(timer); resolve(f) } })
    })
  }
}

/** Status of an upgrade request over TLS (401/403 are answered before any upgrade). */
function upgradeStatus (path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1',
      port: caddy.port,
      path,
      ca,
      agent: false,
      headers: { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', ...headers }
    })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0) })
    req.on('response', res => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
}

t.test('the sidecar says wss:// behind the proxy; Caddy serves health and keeps metrics off the edge', async t => {
  t.match(sidecar.output(), /clients connect:\s+wss:\/\//, 'MPAC_TLS with MPAC_TRUST_PROXY: the banner shows wss://')
  t.match(sidecar.output(), /security profile: authenticated \(2 tokens/)
  const health = await fetch(`https://${edge}/healthz`, { dispatcher })
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })
  const ready = await fetch(`https://${edge}/readyz`, { dispatcher })
  t.equal(ready.status, 200)
  await ready.body?.cancel()
  const metrics = await fetch(`https://${edge}/metrics`, { dispatcher })
  t.equal(metrics.status, 404, 'metrics are not served at the edge')
  await metrics.body?.cancel()
  const direct = await fetch(`http://127.0.0.1:${sidecar.port}/metrics`)
  t.equal(direct.status, 403, 'nor on the main port without a token')
  await direct.body?.cancel()
  const metricsPort = /metrics:\s+http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(sidecar.output())?.[1]
  t.ok(metricsPort !== undefined, 'the banner names the loopback metrics listener')
  const loopback = await fetch(`http://127.0.0.1:${metricsPort}/metrics`)
  t.equal(loopback.status, 200, 'but on the loopback metrics listener (MPAC_METRICS_PORT)')
  t.match(await loopback.text(), /mpac_connections/)
})

t.test('a raw WebSocket through Caddy: bearer checked before the upgrade, HELLO → SESSION_INFO', async t => {
  const path = `/session/${SESSION}`
  t.equal(await upgradeStatus(path, { authorization: 'Bearer not-a-token' }), 401, 'unknown token: 401 through the proxy')
  t.equal(await upgradeStatus(path, { authorization: `Bearer ${otherToken}` }), 403, 'token for another session: 403')
  t.equal(await upgradeStatus(path, { authorization: `Bearer ${token}`, origin: 'https://evil.example' }), 403, 'a browser Origin: 403 through the proxy')

  const client = await WssClient.open(`wss://${edge}${path}`, { authorization: `Bearer ${token}` })
  t.teardown(() => client.ws.close())
  const h = hello('agent:e2e-raw', { token, sessionId: SESSION })
  client.ws.send(JSON.stringify(h))
  const info = await client.next(f => f.message_type === 'SESSION_INFO' || (f.payload as Frame | undefined)?.refers_to === h.message_id)
  t.equal(info.message_type, 'SESSION_INFO', JSON.stringify(info.payload))
  t.equal((info.payload as Frame).session_id, SESSION)
  client.ws.close()
  await client.closed
})

t.test('the mpac-mcp shim over wss through Caddy: begin_task → get_file_state → submit_change → yield_task', async t => {
  const workspace = tempDir(t, 'mpac-deploy-ws-')
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', TS_LOADER, SHIM_CLI],
    cwd: workspace,
    stderr: 'pipe',
    env: cleanEnv({
      MPAC_COORDINATOR_URL: `wss://${edge}/session/${SESSION}`,
      MPAC_COORDINATOR_TOKEN: token,
      NODE_EXTRA_CA_CERTS: caddy.rootCert,
      MPAC_WORKSPACE_DIR: workspace,
      MPAC_AGENT_NAME: 'Deployer',
      XDG_STATE_HOME: join(workspace, '.state'),
      MPAC_LOG_LEVEL: 'warn'
    })
  })
  let stderr = ''
  transport.stderr?.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  const client = new Client({ name: 'mpac-deploy-test', version: '0.0.0' })
  await client.connect(transport).catch((err: unknown) => { throw new Error(`mpac-mcp did not start: ${(err as Error).message}\n${stderr}`) })
  t.teardown(() => client.close())
  const call = async (name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> => {
    const res = await client.callTool({ name, arguments: args })
    return (res.structuredContent ?? {}) as Record<string, unknown>
  }

  const begin = await call('begin_task', { objective: 'write the deploy notes', files: ['notes/deploy.md'] })
  t.equal(begin.status, 'ok', `begin_task: ${JSON.stringify(begin)}\n${stderr}`)
  const intentId = begin.intent_id as string
  const before = await call('get_file_state', { path: 'notes/deploy.md' })
  t.equal(before.status, 'missing', 'a new file in the hosted session')
  const emptyRef = 'sha256:e3b0c44298fc1c14'
  const commit = await call('submit_change', { intent_id: intentId, target: 'notes/deploy.md', content: 'through caddy\n', state_ref_before: emptyRef })
  t.equal(commit.status, 'success', JSON.stringify(commit))
  const after = await call('get_file_state', { path: 'notes/deploy.md' })
  t.match(after, { status: 'ok', content: 'through caddy\n', state_ref: commit.state_ref_after })
  const done = await call('yield_task', { intent_id: intentId, reason: 'done' })
  t.equal(done.status, 'ok', JSON.stringify(done))
})

t.test('SIGTERM on the sidecar: a client behind Caddy is closed with 1012 (reconnect later) and the process exits 0', async t => {
  const client = await WssClient.open(`wss://${edge}/session/${SESSION}`, { authorization: `Bearer ${token}` })
  const h = hello('agent:e2e-stop', { token, sessionId: SESSION })
  client.ws.send(JSON.stringify(h))
  await client.next(f => f.message_type === 'SESSION_INFO')
  const exit = sidecar.stop('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    client.closed,
    new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('not closed within 10 s')), 10_000) })
  ]).finally(() => clearTimeout(timer))
  t.equal(closed.code, 1012, 'service restart, passed through Caddy')
  t.equal(await exit, 0)
})
