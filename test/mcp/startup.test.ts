/**
 * The shim's first minute: every environment variable is checked when the
 * real `mpac-mcp` process starts (one line on stderr, MPAC_ERR_CONFIG_INVALID,
 * exit 2, nothing on stdout), variables of the other mode are a warning line,
 * a missing workspace fails at once (at start, or as repo_path of a tool
 * call), and a sidecar that cannot even be spawned is reported at once with
 * its cause instead of after the start timeout.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import pino from 'pino'
import t from 'tap'
import { loadShimConfig } from '../../src/mcp/config.js'
import { ensureLocalSidecar } from '../../src/mcp/sidecar.js'
import { ROOT, TSX, cleanEnv, eventually, startShim, stateHome, tempDir } from './harness.js'

const SHIM_CLI = join(ROOT, 'src', 'mcp', 'cli.ts')

/** Starts the shim with stdin open (as an MCP client would) and waits for it to exit by itself. */
function runShim (env: Record<string, string>, cwd: string): Promise<{ code: number | null, out: string, err: string, ms: number }> {
  const started = Date.now()
  const child = spawn(process.execPath, ['--import', TSX, SHIM_CLI], { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const kill = setTimeout(() => child.kill('SIGKILL'), 15_000)
  return new Promise(resolve => child.once('close', code => {
    clearTimeout(kill)
    resolve({ code, out, err, ms: Date.now() - started })
  }))
}

t.test('a bad variable: one line naming it, MPAC_ERR_CONFIG_INVALID, exit 2, nothing on stdout', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-startup-ws-')
  const remote = { MPAC_COORDINATOR_URL: 'ws://127.0.0.1:1/session/x' }
  const cases: Array<[Record<string, string>, string]> = [
    [{ MPAC_LOG_LEVEL: 'verbose' }, 'MPAC_LOG_LEVEL'],
    [{ MPAC_SESSION_ID: 'team' }, 'MPAC_SESSION_ID has no effect in local mode'],
    [{ ...remote, MPAC_SESSION_ID: 'bad id!' }, 'MPAC_SESSION_ID'],
    [{ MPAC_WORKSPACE_DIR: join(ws, 'missing') }, 'MPAC_WORKSPACE_DIR'],
    [{ MPAC_GOODBYE_DISPOSITION: 'vanish' }, 'MPAC_GOODBYE_DISPOSITION'],
    [{ MPAC_SIDECAR_PORT: 'abc' }, 'MPAC_SIDECAR_PORT'],
    [{ MPAC_SIDECAR_HOST: 'not a host' }, 'MPAC_SIDECAR_HOST'],
    [{ MPAC_SIDECAR_IDLE_EXIT: '-1' }, 'MPAC_SIDECAR_IDLE_EXIT'],
    [{ MPAC_REQUEST_TIMEOUT_MS: '5' }, 'MPAC_REQUEST_TIMEOUT_MS'],
    [{ MPAC_CLAIM_WAIT_MS: 'soon' }, 'MPAC_CLAIM_WAIT_MS'],
    [{ MPAC_AGENT_ROLES: 'owner,bad role' }, 'MPAC_AGENT_ROLES'],
    [{ MPAC_AGENT_CAPABILITIES: 'op.commit,x y' }, 'MPAC_AGENT_CAPABILITIES'],
    [{ MPAC_AGENT_NAME: 'n'.repeat(300) }, 'MPAC_AGENT_NAME'],
    [{ MPAC_PRINCIPAL_ID: 'p'.repeat(300) }, 'MPAC_PRINCIPAL_ID'],
    [{ MPAC_COORDINATOR_URL: 'http://127.0.0.1:1/session/x' }, 'MPAC_COORDINATOR_URL'],
    [{ ...remote, MPAC_COORDINATOR_TOKEN: 'tok with space' }, 'MPAC_COORDINATOR_TOKEN']
  ]
  // Four at a time: process start-up (node + tsx) dominates, and the machine is shared.
  const runs: Array<Awaited<ReturnType<typeof runShim>>> = []
  for (let i = 0; i < cases.length; i += 4) {
    runs.push(...await Promise.all(cases.slice(i, i + 4).map(([extra]) => runShim(cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, ...extra }), ws))))
  }
  runs.forEach((run, i) => {
    const [, name] = cases[i]!
    t.equal(run.code, 2, `${name}: exit 2`)
    t.equal(run.out, '', `${name}: nothing on stdout`)
    const lines = run.err.trim().split('\n')
    t.equal(lines.length, 1, `${name}: one line on stderr`)
    t.match(lines[0], `mpac-mcp: MPAC_ERR_CONFIG_INVALID: ${name}`, `${name}: names the variable`)
    t.notMatch(run.err, 'tok with space', 'the token is never shown')
  })
})

t.test('an MCP client sees the failed start, not a hang', async t => {
  const ws = tempDir(t, 'mpac-startup-sdk-')
  const transport = new StdioClientTransport({ command: process.execPath, args: ['--import', TSX, SHIM_CLI], env: cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: join(ws, 'nope') }), cwd: ws, stderr: 'pipe' })
  let err = ''
  transport.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const client = new Client({ name: 'mpac-startup-test', version: '0' })
  const started = Date.now()
  await t.rejects(client.connect(transport))
  t.ok(Date.now() - started < 10_000, `at once, not after the 20 s sidecar start timeout (${Date.now() - started} ms)`)
  await eventually(async () => err.includes('\n') ? true : undefined, 5000, 'the stderr line')
  t.match(err, /MPAC_ERR_CONFIG_INVALID: MPAC_WORKSPACE_DIR ".*nope" is not an existing directory/)
})

t.test('a variable of the other mode is one warning line; the shim runs', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-startup-warn-')
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: 'ws://127.0.0.1:1/session/x', MPAC_SIDECAR_PORT: '40000' }), ws)
  await eventually(async () => shim.stderr().includes('warning') ? true : undefined, 5000, 'the warning')
  t.match(shim.stderr(), 'mpac-mcp: warning: MPAC_SIDECAR_PORT has no effect in remote mode (MPAC_COORDINATOR_URL is set); ignored\n')
  t.equal(shim.stderr().split('\n').filter(l => l.includes('warning:')).length, 1, 'one line')
  t.equal((await shim.client.listTools()).tools.length, 10, 'the server runs')
})

t.test('repo_path naming a missing directory: MPAC_ERR_CONFIG_INVALID at once, naming repo_path', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-startup-repo-')
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_COORDINATOR_URL: 'ws://127.0.0.1:1/session/x' }), ws)
  const started = Date.now()
  const res = await shim.raw('who_is_working', { repo_path: join(ws, 'no-such-repo') })
  t.equal(res.isError, true)
  t.match(res.structuredContent, { code: 'MPAC_ERR_CONFIG_INVALID', retryable: false, message: /^repo_path ".*no-such-repo" is not an existing directory/ })
  t.ok(Date.now() - started < 5000, 'at once')
})

t.test('a sidecar that cannot be spawned is reported at once with its cause', async t => {
  const state = stateHome(t)
  const ws = tempDir(t, 'mpac-startup-spawn-')
  // loadShimConfig does not look at the disk; the shim's own checks are bypassed to reach the spawn.
  const config = loadShimConfig({ HOME: state, USER: 'tester', XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: join(ws, 'gone'), MPAC_SIDECAR_PORT: '1' })
  const started = Date.now()
  await t.rejects(ensureLocalSidecar(config, pino({ level: 'silent' }), { startTimeoutMs: 20_000 }), {
    code: 'MPAC_ERR_SIDECAR_FAILED',
    message: /^cannot start the local coordinator: .*ENOENT/,
    hint: /workspace directory .*gone does not exist/
  })
  t.ok(Date.now() - started < 5000, `not after the 20 s start timeout (${Date.now() - started} ms)`)
})
