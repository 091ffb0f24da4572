/**
 * Both Caddyfiles go through the installed caddy: `caddy validate`, and
 * `caddy adapt` to check what they turn into (listen address, upstream,
 * timeouts, TLS). The top-level Caddyfile needs Caddy 2.7+ for
 * stream_close_delay; Debian 12 ships 2.6.2, so there the test checks that
 * this directive is the only thing 2.6 rejects, and validates the rest.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { DEFAULT_PORT } from '../../src/server/config.js'
import { caddyValidate, caddyVersion, cleanEnv, ROOT, type Env } from './helpers.js'

type Json = Record<string, unknown>

const MAIN = join(ROOT, 'Caddyfile')
const LOCAL = join(ROOT, 'deploy', 'Caddyfile.local')
const version = caddyVersion()
const hasStreamCloseDelay = version[0] > 2 || (version[0] === 2 && version[1] >= 7)

function adapt (file: string, env: Env): Json {
  const home = mkdtempSync(join(tmpdir(), 'mpac-caddy-adapt-'))
  try {
    const r = spawnSync('caddy', ['adapt', '--config', file, '--adapter', 'caddyfile'], {
      cwd: home,
      env: cleanEnv({ HOME: home, ...env }),
      encoding: 'utf8'
    })
    if (r.status !== 0) throw new Error(`caddy adapt ${file}: ${r.stderr}`)
    return JSON.parse(r.stdout) as Json
  } finally {
    rmSync(home, { recursive: true, force: true })
  }
}

/** Every handler object anywhere in the adapted config. */
function handlers (node: unknown, out: Json[] = []): Json[] {
  if (Array.isArray(node)) {
    for (const item of node) handlers(item, out)
  } else if (node !== null && typeof node === 'object') {
    const obj = node as Json
    if (typeof obj.handler === 'string') out.push(obj)
    for (const value of Object.values(obj)) handlers(value, out)
  }
  return out
}

const server = (config: Json): Json => {
  const servers = ((config.apps as Json).http as Json).servers as Record<string, Json>
  const list = Object.values(servers)
  if (list.length !== 1) throw new Error(`expected one server, got ${list.length}`)
  return list[0] as Json
}

/** The top-level Caddyfile as Caddy 2.6 can read it (stream_close_delay removed), or as is on 2.7+. */
function mainForThisCaddy (dir: string): string {
  if (hasStreamCloseDelay) return MAIN
  const copy = join(dir, 'Caddyfile')
  writeFileSync(copy, readFileSync(MAIN, 'utf8').split('\n').filter(l => !/^\s*stream_close_delay\s/.test(l)).join('\n'))
  return copy
}

t.test('deploy/Caddyfile.local: valid, loopback only, internal CA, no admin, state in the given dir', async t => {
  const env = { CADDY_HTTPS_PORT: '18443', MPAC_UPSTREAM: `127.0.0.1:${DEFAULT_PORT}`, CADDY_STORAGE_DIR: '/tmp/mpac-caddy-storage' }
  const v = caddyValidate(LOCAL, env)
  t.equal(v.status, 0, v.output)
  t.match(v.output, /Valid configuration/)

  const config = adapt(LOCAL, env)
  t.same(config.admin, { disabled: true }, 'admin off')
  t.match(config.storage, { module: 'file_system', root: '/tmp/mpac-caddy-storage' })
  const srv = server(config)
  t.same(srv.listen, ['127.0.0.1:18443'], 'listens on 127.0.0.1 only, on the port from the env')
  t.match(srv.automatic_https, { disable_redirects: true })
  t.equal(srv.read_timeout, undefined, 'no read timeout to cut idle WebSockets')
  t.equal(srv.write_timeout, undefined, 'no write timeout')
  const proxy = handlers(srv).find(h => h.handler === 'reverse_proxy')
  t.same(proxy?.upstreams, [{ dial: `127.0.0.1:${DEFAULT_PORT}` }])
  t.ok(handlers(srv).some(h => h.handler === 'static_response' && h.status_code === 404), '/metrics answered 404 at the edge')
  const apps = config.apps as Json
  t.match(apps.pki, { certificate_authorities: { local: { install_trust: false } } }, 'the root is not put into the system trust store')
  t.match(apps.tls, { automation: { policies: [{ subjects: ['127.0.0.1'], issuers: [{ module: 'internal' }] }] } })

  const missing = caddyValidate(LOCAL, { MPAC_UPSTREAM: '127.0.0.1:1', CADDY_STORAGE_DIR: '/tmp/x' })
  t.not(missing.status, 0, 'refused without CADDY_HTTPS_PORT')
})

t.test('Caddyfile: automatic HTTPS for $MPAC_DOMAIN, proxy to the default port, WebSocket-friendly timeouts', async t => {
  const source = readFileSync(MAIN, 'utf8')
  t.match(source, /reverse_proxy \{\$MPAC_UPSTREAM:127\.0\.0\.1:(\d+)\} \{[^}]*stream_close_delay 5m/, 'stream_close_delay inside reverse_proxy')
  t.notMatch(source, /^\s*stream_timeout\b/m, 'no stream_timeout: agent connections last for hours')

  const env = { MPAC_DOMAIN: 'mpac.example.com' }
  const asIs = caddyValidate(MAIN, env)
  if (hasStreamCloseDelay) {
    t.equal(asIs.status, 0, asIs.output)
  } else {
    t.not(asIs.status, 0, `caddy ${version.join('.')} lacks stream_close_delay`)
    t.match(asIs.output, /unrecognized subdirective stream_close_delay/, 'and that is the only directive it rejects:')
  }
  const dir = mkdtempSync(join(tmpdir(), 'mpac-caddyfile-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const file = mainForThisCaddy(dir)
  const v = caddyValidate(file, env)
  t.equal(v.status, 0, v.output)

  const config = adapt(file, env)
  t.equal(config.admin, undefined, 'admin API left at its loopback default')
  const srv = server(config)
  t.same(srv.listen, [':443'], 'HTTPS on 443 (Caddy adds the :80 redirect and ACME itself)')
  t.match(srv.routes, [{ match: [{ host: ['mpac.example.com'] }] }], 'the site is $MPAC_DOMAIN')
  t.equal(srv.automatic_https, undefined, 'automatic HTTPS untouched: certificates and http→https redirect')
  t.equal(srv.read_timeout, undefined, 'no read timeout to cut idle WebSockets')
  t.equal(srv.write_timeout, undefined, 'no write timeout')
  t.equal(srv.read_header_timeout, 10_000_000_000, 'a 10 s limit for request headers')
  const proxy = handlers(srv).find(h => h.handler === 'reverse_proxy')
  t.same(proxy?.upstreams, [{ dial: `127.0.0.1:${DEFAULT_PORT}` }], 'upstream defaults to the sidecar default port')
  if (hasStreamCloseDelay) t.equal(proxy?.stream_close_delay, 300_000_000_000, 'reload keeps WebSockets up to 5 min')
  t.equal(proxy?.stream_timeout, undefined)
  t.match(handlers(srv).find(h => h.handler === 'static_response'), { status_code: 404 }, '/metrics is not exposed')

  const other = adapt(file, { ...env, MPAC_UPSTREAM: '127.0.0.1:9000' })
  t.same(handlers(server(other)).find(h => h.handler === 'reverse_proxy')?.upstreams, [{ dial: '127.0.0.1:9000' }], 'MPAC_UPSTREAM overrides')
})
