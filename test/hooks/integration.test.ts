/**
 * The real `mpac-mcp hook` command against two real shims on a real
 * coordinator: B's pre-edit hook denies B's edit of A's file naming A, and
 * after A yields the edit goes through (announced for B, then silent); each
 * agent's hook reaches its own shim by its Claude Code session id, although
 * both shims share a parent process (this test).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cleanEnv, eventually, startCoordinator, startShim, tempDir } from '../mcp/harness.js'
import { hookEnv, runHook, type HookRun } from './fake-shim.js'
import { liveEntries } from '../../src/hooks/rendezvous.js'

const workspace = tempDir(t, 'mpac-hookint-ws-')
mkdirSync(join(workspace, 'src'))
for (const f of ['db.py', 'api.ts']) writeFileSync(join(workspace, 'src', f), `${f}\n`)
const state = tempDir(t, 'mpac-hookint-state-')
const runtime = tempDir(t, 'mpac-hookint-run-')
const coordinator = await startCoordinator(t, ['--port', '0', '--workspace', workspace, '--session-id', 'hook-int', '--data-dir', join(state, 'data')])
const url = `ws://127.0.0.1:${coordinator.port}/session/hook-int`
const SESSION = { Alice: '0a11ce00-0000-4000-8000-000000000001', Bob: '0b0b0000-0000-4000-8000-000000000002' }
const shimEnv = (name: 'Alice' | 'Bob'): Record<string, string> => cleanEnv({
  MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: workspace, MPAC_AGENT_NAME: name,
  XDG_STATE_HOME: state, XDG_RUNTIME_DIR: runtime, CLAUDE_CODE_SESSION_ID: SESSION[name]
})
const alice = await startShim(t, shimEnv('Alice'))
const bob = await startShim(t, shimEnv('Bob'))
const registry = join(state, 'mpac-mcp', 'hooks')
await eventually(async () => liveEntries(registry).length === 2 ? true : undefined, 10_000, 'both registry entries')
const env = hookEnv(state, { XDG_RUNTIME_DIR: runtime })

function preEdit (who: 'Alice' | 'Bob', file: string): Promise<HookRun> {
  return runHook(['pre-edit'], JSON.stringify({
    session_id: SESSION[who], transcript_path: '/dev/null', cwd: workspace, permission_mode: 'acceptEdits',
    hook_event_name: 'PreToolUse', tool_name: 'Write', tool_input: { file_path: join(workspace, file), content: 'x\n' }, tool_use_id: `toolu_${who}`
  }), env)
}

t.test('B is denied A\'s file, told who and why; after A yields B\'s edit is announced for B, then silent', async t => {
  const begin = await alice.call('begin_task', { objective: 'rename the users table', files: ['src/db.py'] })
  t.equal(begin['status'], 'ok')
  const denied = await eventually(async () => {
    const r = await preEdit('Bob', 'src/db.py')
    return r.stdout !== '' && JSON.parse(r.stdout).hookSpecificOutput?.permissionDecision === 'deny' ? r : undefined
  }, 10_000, 'B\'s deny')
  t.equal(denied.code, 0)
  const out = JSON.parse(denied.stdout)
  t.same(Object.keys(out), ['hookSpecificOutput'])
  t.equal(out.hookSpecificOutput.hookEventName, 'PreToolUse')
  const reason = out.hookSpecificOutput.permissionDecisionReason as string
  t.match(reason, /^mpac: src\/db\.py is being edited by "Alice"/)
  t.match(reason, /rename the users table/)
  t.match(reason, new RegExp(String(begin['intent_id'])))
  t.match(reason, /This edit was not made/)

  const own = await preEdit('Alice', 'src/db.py')
  t.same([own.code, own.stdout], [0, ''], 'A\'s hook reaches A\'s shim: A\'s own file, no output')

  t.equal((await alice.call('yield_task', { intent_id: begin['intent_id'] }))['status'], 'ok')
  const announced = await eventually(async () => {
    const r = await preEdit('Bob', 'src/db.py')
    return r.stdout !== '' && JSON.parse(r.stdout).hookSpecificOutput?.permissionDecision === undefined ? r : undefined
  }, 10_000, 'no deny after A yielded')
  t.match(JSON.parse(announced.stdout).hookSpecificOutput.additionalContext, /^mpac announced src\/db\.py for you \(intent .*-auto\)/)
  const again = await preEdit('Bob', 'src/db.py')
  t.same([again.code, again.stdout], [0, ''], 'covered by B\'s intent now: no output')
  const late = await alice.call('begin_task', { objective: 'one more change', files: ['src/db.py'] })
  t.equal(late['error_code'], 'STALE_INTENT', 'the race lock now protects B\'s edit')
  const denyA = await eventually(async () => {
    const r = await preEdit('Alice', 'src/db.py')
    return r.stdout !== '' ? r : undefined
  }, 10_000, 'A\'s deny')
  t.match(JSON.parse(denyA.stdout).hookSpecificOutput.permissionDecisionReason, /src\/db\.py is being edited by "Bob"/)
})

t.test('session-start gives each agent the digest of its own shim', async t => {
  const start = (who: 'Alice' | 'Bob'): Promise<HookRun> => runHook(['session-start'], JSON.stringify({ session_id: SESSION[who], transcript_path: '/dev/null', cwd: workspace, hook_event_name: 'SessionStart', source: 'startup' }), env)
  const [a, b] = await Promise.all([start('Alice'), start('Bob')])
  const ctxA = JSON.parse(a.stdout).hookSpecificOutput.additionalContext as string
  const ctxB = JSON.parse(b.stdout).hookSpecificOutput.additionalContext as string
  t.match(ctxA, /you are agent:Alice@/)
  t.match(ctxB, /you are agent:Bob@/)
  t.ok(ctxA.length <= 1500 && ctxB.length <= 1500)
})

t.test('hook doctor names the shim of the session it runs in', async t => {
  const r = await runHook(['doctor'], '', { ...env, CLAUDE_CODE_SESSION_ID: SESSION.Bob })
  t.equal(r.code, 0, r.stdout)
  t.match(r.stdout, new RegExp(`a hook here reaches pid ${bob.transport.pid} \\(matched by client_session_id\\)`))
  t.match(r.stdout, /coordinator ok, view age \d+ ms; principal agent:Bob@/)
})
