/**
 * deploy/vm/mpac-mcp-sidecar.service: systemd accepts it, and its
 * environment is a configuration the server loads, matching the Caddyfile's
 * upstream.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { DEFAULT_PORT, loadServerConfig } from '../../src/server/config.js'
import { cleanEnv, ROOT, tempDir, type Env } from './helpers.js'

const unitText = readFileSync(join(ROOT, 'deploy', 'vm', 'mpac-mcp-sidecar.service'), 'utf8')
const lines = unitText.split('\n').map(l => l.trim()).filter(l => l !== '' && !l.startsWith('#'))
const values = (key: string): string[] => lines.filter(l => l.startsWith(`${key}=`)).map(l => l.slice(key.length + 1))
const one = (key: string): string => {
  const v = values(key)
  if (v.length !== 1) throw new Error(`expected one ${key}=, found ${v.length}`)
  return v[0] as string
}

t.test('systemd-analyze verify accepts the unit', async t => {
  const dir = tempDir(t, 'mpac-unit-')
  // verify checks that ExecStart's binary exists: point it at this node for the check.
  const [, ...args] = one('ExecStart').split(/\s+/)
  const copy = join(dir, 'mpac-mcp-sidecar.service')
  writeFileSync(copy, unitText.replace(/^ExecStart=\S+/m, `ExecStart=${process.execPath}`))
  const r = spawnSync('systemd-analyze', ['verify', copy], { env: cleanEnv({ SYSTEMD_LOG_LEVEL: 'notice' }), encoding: 'utf8' })
  t.equal(r.status, 0, `${r.stdout}${r.stderr}`)
  t.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings')
  t.same(args, ['--multi-session'], 'the hosted multi-session command, as in the image')
})

t.test('the unit environment is a configuration the server accepts, behind Caddy', async t => {
  const env: Env = {}
  for (const v of values('Environment')) {
    const m = /^([A-Z_]+)=(.*)$/.exec(v)
    if (m === null) throw new Error(`cannot read Environment=${v}`)
    env[m[1] as string] = (m[2] as string).replace('%S', '/var/lib')
  }
  const dir = tempDir(t, 'mpac-unit-env-')
  const table = join(dir, 'tokens.json')
  writeFileSync(table, JSON.stringify({ 'tok-unit': { allowed_sessions: ['*'] } }))
  t.equal(env.MPAC_TOKEN_TABLE_FILE, '/etc/mpac-mcp/tokens.json')
  const loaded = loadServerConfig(['--multi-session'], { ...env, MPAC_TOKEN_TABLE_FILE: table })
  if (!loaded.ok) throw new Error(`${loaded.error.setting}: ${loaded.error.message}`)
  t.match(loaded.value, {
    mode: 'multi',
    host: '127.0.0.1',
    port: DEFAULT_PORT,
    dataDir: '/var/lib/mpac-mcp',
    securityProfile: 'authenticated',
    tlsByProxy: true,
    trustProxy: '127.0.0.1',
    metricsPort: 9466,
    metricsPublic: false,
    allowedHosts: ['mpac.example.com']
  })
  t.equal(one('StateDirectory'), 'mpac-mcp', 'systemd creates the data dir')
  t.equal(one('KillSignal'), 'SIGTERM')
  t.match(one('ExecReload'), /kill -HUP \$MAINPID/, 'reload = SIGHUP = re-read the token table')
  const caddyUpstream = /reverse_proxy \{\$MPAC_UPSTREAM:([^}]+)\}/.exec(readFileSync(join(ROOT, 'Caddyfile'), 'utf8'))?.[1]
  t.equal(caddyUpstream, `${env.MPAC_SIDECAR_HOST}:${env.MPAC_SIDECAR_PORT}`, 'Caddy proxies to where the unit listens')
})
