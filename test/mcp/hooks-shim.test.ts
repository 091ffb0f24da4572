/**
 * The hook endpoint of real `mpac-mcp` processes: two shims (children,
 * driven by the MCP SDK client) on one real coordinator; the test talks to
 * each shim's socket, found through its registry entry, as a hook would.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { HookRegistryEntry, HookReply } from '../../src/hooks/protocol.js'
import { askHook } from '../helpers/hook-socket.js'
import { cleanEnv, eventually, startCoordinator, startShim, tempDir } from './harness.js'

const workspace = tempDir(t, 'mpac-hookshim-ws-')
mkdirSync(join(workspace, 'src'))
for (const f of ['db.py', 'api.ts']) writeFileSync(join(workspace, 'src', f), `${f}\n`)
const state = tempDir(t, 'mpac-hookshim-state-')
const runtime = tempDir(t, 'mpac-hookshim-run-')
const coordinator = await startCoordinator(t, ['--port', '0', '--workspace', workspace, '--session-id', 'shim-hooks', '--data-dir', join(state, 'data')])
const url = `ws://127.0.0.1:${coordinator.port}/session/shim-hooks`
const env = (name: string, extra: Record<string, string> = {}): Record<string, string> => cleanEnv({
  MPAC_COORDINATOR_URL: url,
  MPAC_WORKSPACE_DIR: workspace,
  MPAC_AGENT_NAME: name,
  XDG_STATE_HOME: state,
  XDG_RUNTIME_DIR: runtime,
  CLAUDE_CODE_SESSION_ID: `${name.toLowerCase()}-0000-session`,
  ...extra
})
const registry = join(state, 'mpac-mcp', 'hooks')

function entryOf (clientSessionId: string): { file: string, entry: HookRegistryEntry } | undefined {
  if (!existsSync(registry)) return undefined
  for (const name of readdirSync(registry)) {
    if (!name.endsWith('.json')) continue
    try {
      const entry = JSON.parse(readFileSync(join(registry, name), 'utf8')) as HookRegistryEntry
      if (entry.client_session_id === clientSessionId) return { file: join(registry, name), entry }
    } catch {
      // being written
    }
  }
  return undefined
}

const alice = await startShim(t, env('Alice'))
const bob = await startShim(t, env('Bob'))
const a = await eventually(async () => entryOf('alice-0000-session'), 10_000, "Alice's registry entry")
const b = await eventually(async () => entryOf('bob-0000-session'), 10_000, "Bob's registry entry")
const askB = (req: Record<string, unknown>): Promise<HookReply> => askHook(b.entry.socket, { client: 'claude', client_session_id: 'bob-0000-session', ...req })

t.test('the registry entry and the socket: who, where, private', async t => {
  t.equal(a.entry.pid, alice.transport.pid)
  t.equal(a.entry.client_pid, process.pid, 'client_pid is the shim\'s parent (here the test; in real use the claude process)')
  t.match(a.entry, { v: 1, workspace_dir: workspace, session_id: 'shim-hooks', principal_id: /^agent:Alice@/ })
  t.equal(a.entry.socket, join(runtime, 'mpac-mcp', `${a.entry.pid}.sock`))
  t.equal(statSync(join(runtime, 'mpac-mcp')).mode & 0o777, 0o700)
  t.equal(statSync(a.entry.socket).mode & 0o777, 0o600)
  t.equal(statSync(a.file).mode & 0o777, 0o600)
  t.equal(statSync(registry).mode & 0o777, 0o700)
})

t.test('B is denied A\'s file, naming A and its objective; free again after A yields', async t => {
  const begin = await alice.call('begin_task', { objective: 'rename the users table', files: ['src/db.py'] })
  t.equal(begin['status'], 'ok')
  const denied = await eventually(async () => {
    const r = await askB({ op: 'check_edit', tool: 'Write', paths: [join(workspace, 'src', 'db.py')] })
    return r.decision === 'deny' ? r : undefined
  }, 5000, 'the deny')
  t.match(denied.holders, [{ principal_id: a.entry.principal_id, display_name: 'Alice', intent_id: begin['intent_id'], objective: 'rename the users table', state: 'ACTIVE', files: ['src/db.py'] }])
  t.match(denied.reason, /src\/db\.py is being edited by "Alice"/)
  await alice.call('yield_task', { intent_id: begin['intent_id'] })
  const free = await eventually(async () => {
    const r = await askB({ op: 'check_edit', mode: 'remind', paths: ['src/db.py'] })
    return r.decision === 'none' ? r : undefined
  }, 5000, 'no deny after the yield')
  t.same(free.holders, [])
})

t.test('B\'s unannounced edit is announced for B; A\'s begin_task on it is race-locked', async t => {
  const announced = await askB({ op: 'check_edit', tool: 'Edit', paths: ['src/api.ts'] })
  t.equal(announced.decision, 'announced')
  t.match(announced.announced, { intent_id: /-auto$/, files: ['src/api.ts'] })
  const begin = await alice.call('begin_task', { objective: 'also the api', files: ['src/api.ts'] })
  t.equal(begin['status'], 'error')
  t.equal(begin['error_code'], 'STALE_INTENT')
  const who = await alice.call('who_is_working')
  t.match(JSON.stringify(who), /auto: edits by Bob \(Claude Code session bob-0000\)/)
  // B's own tools see the auto intent as B's: yield_task withdraws it.
  const yielded = await bob.call('yield_task', { intent_id: announced.announced?.intent_id })
  t.equal(yielded['status'], 'ok')
})

t.test('on exit the socket and the registry entry are removed', async t => {
  await bob.close()
  t.notOk(existsSync(b.entry.socket), 'socket removed')
  t.notOk(existsSync(b.file), 'registry entry removed')
})

t.test('MPAC_HOOKS=off: no socket, no registry entry', async t => {
  const carol = await startShim(t, env('Carol', { MPAC_HOOKS: 'off' }))
  const who = await carol.call('who_is_working')
  t.equal(who['status'], 'ok')
  t.equal(entryOf('carol-0000-session'), undefined)
  t.notMatch(carol.stderr(), /hook endpoint/)
  t.match(alice.stderr(), /hook endpoint listening/, 'a shim with hooks on says where it listens')
})
