import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const CLI = ['--import', './scripts/ts-register.mjs', 'src/server/cli.ts']
const cleanEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: mkdtempSync(join(tmpdir(), 'mpac-home-')), LOG_LEVEL: 'warn' }
  return env
}

interface Run { readonly code: number | null, readonly stdout: string, readonly stderr: string }

function run (args: string[], env: NodeJS.ProcessEnv = cleanEnv()): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, ...args], { cwd: root, env })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

t.test('bad configuration values exit 2 with one line naming the setting', async t => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--compliance-profile', 'semantic'], {}, /^mpac-mcp-sidecar: invalid --compliance-profile: /],
    [['--unavailability-timeout', '-3'], {}, /^mpac-mcp-sidecar: invalid --unavailability-timeout: must be positive/],
    [['--backend-health-policy', '{oops'], {}, /^mpac-mcp-sidecar: invalid --backend-health-policy: not valid JSON/],
    [['--execution-model', 'pre_commit'], {}, /^mpac-mcp-sidecar: invalid --execution-model: pre_commit requires --compliance-profile governance/],
    [[], { MPAC_TOKEN_TABLE: '{"t": {"allowed_sessions": "all"}}' }, /^mpac-mcp-sidecar: invalid MPAC_TOKEN_TABLE: entry #1: allowed_sessions must be a list of strings/],
    [['--workspace', '/nonexistent/mpac-ws'], {}, /^mpac-mcp-sidecar: invalid --workspace: no such directory/],
    [['--port', '0', '--host', '192.0.2.1', '--allow-open'], {}, /^mpac-mcp-sidecar: invalid --host: cannot listen on 192\.0\.2\.1/],
    [['--port', '0'], { MPAC_DATA_DIR: '/dev/null/data' }, /^mpac-mcp-sidecar: invalid MPAC_DATA_DIR: cannot open the store/]
  ]
  const results = await Promise.all(cases.map(([args, env]) => run(args, { ...cleanEnv(), ...env })))
  results.forEach((r, i) => {
    const [args, , pattern] = cases[i] as [string[], Record<string, string>, RegExp]
    t.equal(r.code, 2, args.join(' '))
    t.match(r.stderr, pattern, args.join(' '))
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
    t.notOk(r.stderr.includes('"t"'), 'no token printed')
  })
})

t.test('--help, --version and the token subcommand', async t => {
  const [help, version, token] = await Promise.all([run(['--help']), run(['--version']), run(['token', '--help'])])
  t.equal(help.code, 0)
  t.match(help.stdout, /--unavailability-timeout/)
  t.equal(version.code, 0)
  t.match(version.stdout, /^\d+\.\d+\.\d+\n$/)
  t.equal(token.code, 0)
  t.match(token.stdout, /token new/)
})


t.test('a port already in use: one line saying how to pick another port, exit 1', async t => {
  const holder = createServer()
  await new Promise<void>(resolve => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => holder.close(() => resolve())))
  const port = (holder.address() as AddressInfo).port
  const r = await run(['--port', String(port), '--store', 'memory'])
  t.equal(r.code, 1)
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  t.match(r.stderr, `mpac-mcp-sidecar: port ${port} on 127.0.0.1 is already in use`)
  t.match(r.stderr, `--port ${port + 1} (npm start -- --port ${port + 1}) or MPAC_SIDECAR_PORT=${port + 1}`)
  t.equal(r.stdout, '', 'no banner')
})
