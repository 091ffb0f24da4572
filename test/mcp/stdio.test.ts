/**
 * stdout carries only the MCP protocol: the real `mpac-mcp` process is driven
 * over raw pipes (no SDK in between to hide a stray byte) through failing
 * paths — coordinator unreachable, bad arguments,
 * unknown tool, a garbage line, a local sidecar spawned, stdin closed — with
 * debug logging on; every stdout line must be a JSON-RPC 2.0 message. (An
 * invalid configuration stops the shim before it writes anything to stdout:
 * startup.test.ts.)
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ROOT, TSX, cleanEnv, freePort, stateHome, tempDir } from './harness.js'

type R = Record<string, unknown>

interface Run { readonly code: number | null, readonly stdout: string, readonly stderr: string, readonly replies: Map<number, R> }

/** Sends `requests` (ids 1..n) one after the other, waits for each reply, then closes stdin and waits for the exit. */
async function drive (env: Record<string, string>, requests: Array<{ method: string, params?: R } | string>): Promise<Run> {
  const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'mcp', 'cli.ts')], { env, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  const replies = new Map<number, R>()
  let waiting: { id: number, resolve: () => void } | undefined
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString('utf8')
    for (const line of stdout.split('\n').slice(0, -1)) {
      try {
        const msg = JSON.parse(line) as R
        if (typeof msg['id'] === 'number') replies.set(msg['id'], msg)
      } catch { /* checked below */ }
    }
    if (waiting !== undefined && replies.has(waiting.id)) waiting.resolve()
  })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  const exited = new Promise<number | null>(resolve => child.once('close', code => resolve(code)))
  let id = 0
  for (const req of requests) {
    if (typeof req === 'string') {
      child.stdin.write(req + '\n')
      continue
    }
    const isNotification = req.method.startsWith('notifications/')
    const msg: R = { jsonrpc: '2.0', method: req.method, ...(req.params !== undefined ? { params: req.params } : {}) }
    if (!isNotification) msg['id'] = ++id
    const answered = isNotification ? Promise.resolve() : new Promise<void>(resolve => { waiting = { id, resolve } })
    child.stdin.write(JSON.stringify(msg) + '\n')
    await answered
  }
  child.stdin.end()
  const code = await exited
  return { code, stdout, stderr, replies }
}

const INIT = [
  { method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } },
  { method: 'notifications/initialized' }
]
const call = (name: string, args: R = {}): { method: string, params: R } => ({ method: 'tools/call', params: { name, arguments: args } })

function checkStdout (t: Test, run: Run): void {
  const lines = run.stdout.split('\n')
  t.equal(lines.pop(), '', 'stdout ends with a newline')
  for (const line of lines) {
    let msg: R | undefined
    try { msg = JSON.parse(line) as R } catch { msg = undefined }
    t.equal(msg?.['jsonrpc'], '2.0', `a JSON-RPC message: ${line.slice(0, 120)}`)
  }
  t.ok(run.stderr.length > 0, 'the logs went to stderr')
}

t.test('unreachable coordinator, bad arguments, unknown tool, garbage input: stdout is only JSON-RPC', async t => {
  const state = stateHome(t)
  const port = await freePort()
  const run = await drive(cleanEnv({ XDG_STATE_HOME: state, MPAC_COORDINATOR_URL: `ws://127.0.0.1:${port}/session/nobody`, MPAC_LOG_LEVEL: 'trace' }), [
    ...INIT,
    { method: 'tools/list' },
    call('who_is_working'),
    call('begin_task', { objective: 'x' }),
    call('no_such_tool'),
    'this is not json',
    call('submit_change', { intent_id: 'i', target: 'a', content: 'c', state_ref_before: 'sha256:0' })
  ])
  t.equal(run.code, 0, 'exits cleanly when stdin closes')
  t.match(run.replies.get(3), { result: { isError: true, structuredContent: { code: 'MPAC_ERR_REMOTE_UNAVAILABLE', retryable: true } } })
  t.match(run.replies.get(4), { result: { isError: true } }, 'schema errors are tool errors')
  t.ok(run.replies.get(5)?.['error'] !== undefined || (run.replies.get(5)?.['result'] as R | undefined)?.['isError'] === true, 'an unknown tool is an error')
  t.match(run.replies.get(6), { result: { isError: true } })
  checkStdout(t, run)
})

t.test('local mode, a sidecar spawned and used, GOODBYE on stdin close: stdout is only JSON-RPC', async t => {
  const ws = tempDir(t, 'mpac-stdio-ws-')
  const run = await drive(cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: ws, MPAC_SIDECAR_IDLE_EXIT: '1', MPAC_LOG_LEVEL: 'debug' }), [
    ...INIT,
    call('who_is_working'),
    call('begin_task', { objective: 'x', files: ['a.txt'] }),
    call('submit_change', { intent_id: 'intent-nobody-00000000', target: 'a.txt', content: 'x', state_ref_before: 'sha256:e3b0c44298fc1c14' })
  ])
  t.equal(run.code, 0)
  t.match(run.replies.get(2), { result: { structuredContent: { status: 'ok' } } })
  t.match(run.replies.get(3), { result: { structuredContent: { status: 'ok' } } })
  t.match(run.replies.get(4), { result: { structuredContent: { status: 'error' } } })
  checkStdout(t, run)
})
