import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { helpText, loadServerConfig, SETTINGS } from '../../src/server/config.js'
import { derivePort, deriveSessionId } from '../../src/protocol/workspace-id.js'

const env = { HOME: '/home/u' }

function ok (argv: string[], e: Record<string, string> = {}) {
  const r = loadServerConfig(argv, { ...env, ...e })
  if (!r.ok) throw new Error(`${r.error.setting}: ${r.error.message}`)
  return r.value
}

function bad (argv: string[], e: Record<string, string> = {}) {
  const r = loadServerConfig(argv, { ...env, ...e })
  if (r.ok) throw new Error(`expected an error for ${argv.join(' ')}`)
  return r.error
}

t.test('no flags: multi-session on 127.0.0.1:8766, open, sqlite under ~/.local/state', async t => {
  const c = ok([])
  t.equal(c.mode, 'multi')
  t.equal(c.host, '127.0.0.1')
  t.equal(c.port, 8766)
  t.equal(c.securityProfile, 'open')
  t.equal(c.store, 'sqlite')
  t.equal(c.dataDir, '/home/u/.local/state/mpac-mcp/server')
  t.equal(c.complianceProfile, 'core')
  t.equal(c.executionModel, 'post_commit')
  t.equal(c.unavailabilityTimeoutSec, 90)
  t.equal(c.resolutionTimeoutSec, 300)
  t.equal(c.claimGraceSec, 0)
  t.equal(c.heartbeatIntervalSec, 30)
  t.same(c.limits, {
    maxFrameBytes: 1048576,
    prehelloTimeoutSec: 10,
    prehelloMaxFrames: 16,
    maxMsgsPerSec: 200,
    maxSessions: 1000,
    maxSessionsPerToken: 50,
    maxParticipants: 256,
    maxWorkspaceBytes: 64 * 1024 * 1024,
    maxBufferedBytes: 4 * 1024 * 1024,
    headersTimeoutSec: 10,
    requestTimeoutSec: 30,
    maxPrehelloConnections: 512,
    maxPrehelloPerAddress: 64,
    maxIntentsPerParticipant: 256,
    maxIntentsPerSession: 4096,
    maxScopeFiles: 1024,
    maxOpenConflicts: 1024,
    maxConnectionsPerToken: 512,
    maxConnectionsPerAddress: 512,
    maxSessionsPerAddress: 100,
    maxMsgsPerSecPerToken: 500,
    maxJournalBytesPerMin: 32 * 1024 * 1024,
    maxDashboardStreams: 500,
    maxDashboardStreamsPerToken: 20
  })
  t.equal(c.metricsPort, undefined)
  t.equal(c.metricsPublic, false)
  t.equal(c.idleRetentionSec, 30 * 86400)
  t.ok(Object.isFrozen(c))
})

t.test('--workspace selects single-session mode with the bridge-derived session id', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'example-workspace-'))
  const c = ok(['--workspace', dir, '--port', '38600'])
  t.equal(c.mode, 'single')
  t.equal(c.sessionId, deriveSessionId(dir))
  t.match(c.sessionId, /^mpac-local-example-workspace-/)
  t.equal(c.workspaceDir, dir)
  t.equal(c.dataDir, '/home/u/.local/state/mpac-mcp/local')
  t.equal(ok(['--session-id', 'room-1']).mode, 'single')
  t.equal(ok(['--workspace', dir, '--session-id', 'pinned']).sessionId, 'pinned')
})

t.test('workspace-derived ids match the bridge.md §2.3 test vectors', async t => {
  const vectors: Array<[string, string, number]> = [
    ['/srv/example-workspace', 'mpac-local-example-workspace-fb397488b0', 38600],
    ['/home/u/My Repo', 'mpac-local-my-repo-49ad09b3e5', 38979],
    ['/srv/mpac-rooms/room-alpha', 'mpac-local-room-alpha-add88ce338', 38211],
    ['/', 'mpac-local-workspace-42099b4af0', 39834]
  ]
  for (const [path, id, port] of vectors) {
    t.equal(deriveSessionId(path), id, path)
    t.equal(derivePort(path), port, path)
  }
})

t.test('flags beat env; empty env counts as unset; XDG_STATE_HOME sets the data dir', async t => {
  t.equal(ok(['--port', '9000'], { MPAC_SIDECAR_PORT: '9100' }).port, 9000)
  t.equal(ok([], { MPAC_SIDECAR_PORT: '9100' }).port, 9100)
  t.equal(ok([], { MPAC_SIDECAR_PORT: '' }).port, 8766)
  t.equal(ok([], { XDG_STATE_HOME: '/state' }).dataDir, '/state/mpac-mcp/server')
  t.equal(ok(['--port=0']).port, 0)
  t.equal(ok([], { MPAC_COMPLIANCE_PROFILE: 'governance', MPAC_EXECUTION_MODEL: 'pre_commit' }).executionModel, 'pre_commit')
  t.equal(ok(['--unavailability-timeout', '0.5']).unavailabilityTimeoutSec, 0.5)
  t.equal(ok(['--resolution-timeout', '0']).resolutionTimeoutSec, 0)
})

t.test('every bad value names its setting', async t => {
  const cases: Array<[string[], Record<string, string>, string, RegExp]> = [
    [['--compliance-profile', 'semantic'], {}, '--compliance-profile', /core or governance/],
    [['--execution-model', 'pre_commit'], {}, '--execution-model', /requires --compliance-profile governance/],
    [['--unavailability-timeout', '-5'], {}, '--unavailability-timeout', /positive/],
    [['--heartbeat-interval', '0'], {}, '--heartbeat-interval', /positive/],
    [['--resolution-timeout', 'soon'], {}, '--resolution-timeout', /number of seconds/],
    [['--claim-grace', '-1'], {}, '--claim-grace', /zero or positive/],
    [['--backend-health-policy', '{not json'], {}, '--backend-health-policy', /not valid JSON/],
    [['--backend-health-policy', '{"enabled":true,"on_down":"panic"}'], {}, '--backend-health-policy', /on_down/],
    [['--security-profile', 'verified'], {}, '--security-profile', /not supported/],
    [['--security-profile', 'authenticated'], {}, '--security-profile', /needs a token table/],
    [['--tls'], {}, '--tls', /--tls-cert.*Caddy/],
    [['--port', '70000'], {}, '--port', /0-65535/],
    [['--port', 'abc'], {}, '--port', /whole number/],
    [['--store', 'mongo'], {}, '--store', /sqlite or memory or postgres/],
    [['--host', '0.0.0.0'], {}, '--host', /--allow-open/],
    [['--multi-session', '--session-id', 'x'], {}, '--session-id', /multi-session/],
    [['--session-id', 'bad id!'], {}, '--session-id', /A-Z/],
    [['--max-frame-bytes', '10'], {}, '--max-frame-bytes', /at least 1024/],
    [['--bogus'], {}, 'argument', /unknown flag --bogus/],
    [['--port'], {}, 'port', /needs a value/],
    [[], { MPAC_TOKEN_TABLE: '[]' }, 'MPAC_TOKEN_TABLE', /JSON object/],
    [[], { MPAC_TOKEN_TABLE: '{"tok":{"roles":["owner"]}}' }, 'MPAC_TOKEN_TABLE', /entry #1: allowed_sessions is required/],
    [[], { MPAC_ALLOW_OPEN: 'maybe', MPAC_SIDECAR_HOST: '0.0.0.0' }, 'MPAC_ALLOW_OPEN', /true or false/],
    [[], { MPAC_UNAVAILABILITY_TIMEOUT: '-1' }, 'MPAC_UNAVAILABILITY_TIMEOUT', /positive/]
  ]
  for (const [argv, e, setting, message] of cases) {
    const err = bad(argv, e)
    t.equal(err.setting, setting, argv.join(' ') || JSON.stringify(e))
    t.match(err.message, message, argv.join(' ') || JSON.stringify(e))
    t.notOk(err.message.includes('\n'), 'one line')
  }
})

t.test('a token table switches to the authenticated profile and allows a public bind', async t => {
  const c = ok(['--host', '0.0.0.0'], { MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-a': { allowed_sessions: ['p'] } }) })
  t.equal(c.securityProfile, 'authenticated')
  t.equal(c.tokenTable?.size, 1)
  t.equal(ok(['--host', '0.0.0.0', '--allow-open']).securityProfile, 'open')
  const dir = mkdtempSync(join(tmpdir(), 'mpac-cfg-'))
  const file = join(dir, 'tokens.json')
  writeFileSync(file, JSON.stringify({ 'tok-b': { allowed_sessions: ['*'], roles: ['owner'] } }))
  const f = ok([], { MPAC_TOKEN_TABLE_FILE: file })
  t.equal(f.tokenTableFile, file)
  t.equal(f.securityProfile, 'authenticated')
  t.equal(bad(['--token-table-file', join(dir, 'missing.json')]).setting, '--token-table-file')
})

t.test('--tls with a proxy, backend policy from @file', async t => {
  t.equal(ok(['--tls', '--trust-proxy', '127.0.0.1']).tlsByProxy, true)
  const dir = mkdtempSync(join(tmpdir(), 'mpac-cfg-'))
  const file = join(dir, 'bhp.json')
  writeFileSync(file, JSON.stringify({ enabled: true, on_down: 'suspend_and_claim' }))
  t.same(ok(['--backend-health-policy', `@${file}`]).backendHealthPolicy, { enabled: true, on_down: 'suspend_and_claim' })
})

t.test('help lists every setting with its environment twin', async t => {
  const help = helpText()
  for (const s of SETTINGS) {
    t.ok(help.includes(`--${s.flag}`), s.flag)
    t.ok(help.includes(s.env), s.env)
  }
})

t.test('values that only fail later are refused at start: workspace, TLS files, timer ranges', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-cfg-'))
  const file = join(dir, 'not-a-dir.txt')
  writeFileSync(file, 'x')
  writeFileSync(join(dir, 'cert.pem'), 'not a certificate')
  writeFileSync(join(dir, 'key.pem'), 'not a key')
  const cases: Array<[string[], string, RegExp]> = [
    [['--workspace', join(dir, 'missing')], '--workspace', /no such directory/],
    [['--workspace', file], '--workspace', /not a directory/],
    [['--tls-cert', join(dir, 'cert.pem'), '--tls-key', join(dir, 'key.pem')], '--tls-cert', /PEM/],
    [['--heartbeat-interval', '3000000'], '--heartbeat-interval', /at most 2147483/],
    [['--prehello-timeout', '3000000'], '--prehello-timeout', /at most 2147483/],
    [['--idle-exit', '3000000'], '--idle-exit', /at most 2147483/],
    [['--unavailability-timeout', 'Infinity'], '--unavailability-timeout', /number of seconds/],
    [['--host', 'not a host!'], '--host', /IP address or a host name/],
    [['--trust-proxy', 'not-an-ip'], '--trust-proxy', /not-an-ip/],
    [['--trust-proxy', '10.0.0.0/99'], '--trust-proxy', /10\.0\.0\.0\/99/]
  ]
  for (const [argv, setting, message] of cases) {
    const err = bad(argv)
    t.equal(err.setting, setting, argv.join(' '))
    t.match(err.message, message, argv.join(' '))
  }
  t.equal(ok(['--closed-retention', String(90 * 86400)]).closedRetentionSec, 90 * 86400, 'retention is not a timer: long values are fine')
  t.equal(ok(['--workspace', dir]).workspaceDir, dir)
  t.equal(ok(['--trust-proxy', '10.0.0.0/8, 127.0.0.1,loopback,::1/128']).trustProxy, '10.0.0.0/8, 127.0.0.1,loopback,::1/128')
  t.equal(ok(['--trust-proxy', 'true']).trustProxy, true)
  t.equal(ok([]).frozenScopePhases, false, 'progressive degradation is off by default')
  t.equal(ok(['--frozen-scope-phases']).frozenScopePhases, true)
  t.equal(ok(['--trust-proxy', '1']).trustProxy, 1, 'a whole number is a hop count')
})

t.test('help says that in multi-session mode the policies apply to every session', async t => {
  t.match(helpText(), /multi-session mode.*every session/i)
  for (const flag of ['compliance-profile', 'execution-model', 'unavailability-timeout', 'resolution-timeout', 'claim-grace', 'heartbeat-interval', 'backend-health-policy']) {
    t.ok(helpText().includes(`--${flag}`), flag)
  }
})

t.test('HTTP timeouts and metrics settings are validated', async t => {
  const bad = (argv: string[], env: Record<string, string> = {}): string => {
    const r = loadServerConfig(argv, env)
    if (r.ok) throw new Error(`accepted ${argv.join(' ')}`)
    return `${r.error.setting}: ${r.error.message}`
  }
  t.match(bad(['--headers-timeout', '40']), /--headers-timeout: must not exceed the request timeout \(30 s\)/)
  t.match(bad(['--metrics-port', '70000']), /--metrics-port: expected a TCP port/)
  t.match(bad(['--metrics-public'], { MPAC_METRICS_TOKEN: 'x' }), /--metrics-public: MPAC_METRICS_TOKEN is set/)
  t.match(bad(['--max-prehello-per-address', '0']), /--max-prehello-per-address: must be at least 1/)
})
