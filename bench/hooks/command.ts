/**
 * Latency of a PreToolUse decision through the hook command, end to end:
 * `node dist/mcp/cli.js hook pre-edit` spawned per call (as Claude Code
 * does), a Claude Code PreToolUse JSON on stdin, answered by a real shim's
 * hook endpoint (the shim a real `mpac-mcp` process, its coordinator a real
 * `mpac-mcp-sidecar`); the file is held by another agent, so every call is
 * a deny. Goal p99 ≤ 50 ms; Node's own start-up is measured alongside
 * (`node -e ''`), and so are the import cost of the hook modules and the
 * socket round trip alone (goal ≤ 15 ms), to show where the time goes.
 *
 *   npm run build && npm run bench:hooks [-- --calls 100]
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { liveEntries } from '../../src/hooks/rendezvous.js'
import { socketRequest } from '../../src/hooks/socket-client.js'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '100' }, warmup: { type: 'string', default: '5' } } })
const CALLS = Number(values.calls)
const WARMUP = Number(values.warmup)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist', 'mcp', 'cli.js')
if (!existsSync(CLI)) {
  process.stderr.write('bench:hooks runs the built hook entry: run `npm run build` first\n')
  process.exit(2)
}

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)] as number
}

function report (name: string, samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  const f = (p: number): string => percentile(sorted, p).toFixed(1)
  process.stdout.write(`${name.padEnd(52)} n=${samples.length} p50=${f(50)} p95=${f(95)} p99=${f(99)} min=${(sorted[0] as number).toFixed(1)} max=${(sorted.at(-1) as number).toFixed(1)} ms\n`)
  return percentile(sorted, 99)
}

/** Spawns `args` with `stdin`; resolves with the wall time to exit and stdout. */
function timed (args: string[], stdin: string, env: Record<string, string>): Promise<{ ms: number, stdout: string }> {
  const started = performance.now()
  const child = spawn(process.execPath, args, { env, stdio: ['pipe', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
  child.stdin.end(stdin)
  return new Promise((resolve, reject) => child.once('close', code => code === 0 ? resolve({ ms: performance.now() - started, stdout }) : reject(new Error(`exit ${String(code)}`))))
}

async function series (n: number, run: () => Promise<number>): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await run()
  const out: number[] = []
  for (let i = 0; i < n; i++) out.push(await run())
  return out
}

const base = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-hooks-')))
const workspace = join(base, 'ws')
const state = join(base, 'state')
const runtime = join(base, 'run')
for (const d of [workspace, state, runtime]) mkdirSync(d, { recursive: true, mode: 0o700 })
mkdirSync(join(workspace, '.git'))
writeFileSync(join(workspace, 'held.txt'), 'v0\n')
const env: Record<string, string> = {}
for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MPAC_') && !k.startsWith('CLAUDE_CODE_') && k !== 'NODE_OPTIONS') env[k] = v
Object.assign(env, { XDG_STATE_HOME: state, XDG_RUNTIME_DIR: runtime, MPAC_LOG_LEVEL: 'warn' })

const coordinator = spawn(process.execPath, [join(ROOT, 'dist', 'server', 'cli.js'), '--host', '127.0.0.1', '--port', '0', '--workspace', workspace, '--session-id', 'bench-hooks', '--data-dir', join(state, 'data'), '--log-level', 'warn'], { env, stdio: ['ignore', 'pipe', 'pipe'] })
const port = await new Promise<number>((resolve, reject) => {
  let out = ''
  const on = (c: Buffer): void => {
    out += c.toString('utf8')
    const m = /listening:\s+\S+:(\d+)/.exec(out)
    if (m !== null) resolve(Number(m[1]))
  }
  coordinator.stdout.on('data', on)
  coordinator.stderr.on('data', on)
  coordinator.once('exit', code => reject(new Error(`coordinator exited ${String(code)}: ${out}`)))
})
const url = `ws://127.0.0.1:${port}/session/bench-hooks`

async function shim (name: string, session: string): Promise<Client> {
  const transport = new StdioClientTransport({ command: process.execPath, args: [CLI], env: { ...env, MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: workspace, MPAC_AGENT_NAME: name, CLAUDE_CODE_SESSION_ID: session }, stderr: 'ignore' })
  const client = new Client({ name: `bench-${name}`, version: '1' })
  await client.connect(transport)
  return client
}

const alice = await shim('Alice', 'alice-session')
const bob = await shim('Bob', 'bob-session')
try {
  const begin = await alice.callTool({ name: 'begin_task', arguments: { objective: 'hold the file', files: ['held.txt'] } })
  if ((begin.structuredContent as Record<string, unknown>)['status'] !== 'ok') throw new Error(`begin_task: ${JSON.stringify(begin)}`)
  const registry = join(state, 'mpac-mcp', 'hooks')
  const bobEntry = await (async () => {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await new Promise(resolve => setTimeout(resolve, 50))) {
      const e = liveEntries(registry).find(x => x.client_session_id === 'bob-session')
      if (e !== undefined) return e
    }
    throw new Error('no registry entry for Bob')
  })()
  const stdin = JSON.stringify({ session_id: 'bob-session', transcript_path: '/dev/null', cwd: workspace, permission_mode: 'acceptEdits', hook_event_name: 'PreToolUse', tool_name: 'Write', tool_input: { file_path: join(workspace, 'held.txt'), content: 'x\n' }, tool_use_id: 'toolu_bench' })
  // Wait until Bob's view has Alice's intent (the relay is asynchronous).
  for (const deadline = Date.now() + 10_000; ;) {
    const r = await socketRequest(bobEntry.socket, { v: 1, op: 'check_edit', client: 'claude', client_session_id: 'bob-session', paths: ['held.txt'], mode: 'remind' })
    if (r['decision'] === 'deny') break
    if (Date.now() > deadline) throw new Error(`Bob is never denied: ${JSON.stringify(r)}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }

  process.stdout.write(`node ${process.version}, ${CALLS} calls each (after ${WARMUP} warm-up)\n`)
  const socket = await series(CALLS * 5, async () => {
    const t0 = performance.now()
    const r = await socketRequest(bobEntry.socket, { v: 1, op: 'check_edit', client: 'claude', client_session_id: 'bob-session', tool: 'Write', paths: [join(workspace, 'held.txt')] })
    if (r['decision'] !== 'deny') throw new Error('expected a deny')
    return performance.now() - t0
  })
  const socketP99 = report('socket round trip alone (in-process client)', socket)
  // Interleaved (one of each per round), so that load from other processes affects all three alike.
  const importUrl = pathToFileURL(join(ROOT, 'dist', 'hooks', 'cli.js')).href
  const bare: number[] = []
  const imports: number[] = []
  const hook: number[] = []
  for (let i = -WARMUP; i < CALLS; i++) {
    const b = (await timed(['-e', ''], '', env)).ms
    const m = (await timed(['--input-type=module', '-e', `await import(${JSON.stringify(importUrl)})`], '', env)).ms
    const r = await timed([CLI, 'hook', 'pre-edit'], stdin, env)
    if (!r.stdout.includes('"permissionDecision":"deny"')) throw new Error(`expected a deny, got ${r.stdout}`)
    if (i < 0) continue
    bare.push(b)
    imports.push(m)
    hook.push(r.ms)
  }
  report('node -e \'\' (Node start-up alone)', bare)
  report('node: import dist/hooks/cli.js (start-up + hook modules)', imports)
  report('node dist/mcp/cli.js --version (the shim\'s imports)', await series(Math.min(CALLS, 20), async () => (await timed([CLI, '--version'], '', env)).ms))
  const hookP99 = report('hook pre-edit end to end (spawned node, deny)', hook)
  process.stdout.write(`goal: hook p99 ≤ 50 ms: ${hookP99 <= 50 ? 'met' : 'NOT met'} (${hookP99.toFixed(1)} ms); socket p99 ≤ 15 ms: ${socketP99 <= 15 ? 'met' : 'NOT met'} (${socketP99.toFixed(1)} ms)\n`)
} finally {
  await alice.close().catch(() => {})
  await bob.close().catch(() => {})
  coordinator.kill('SIGTERM')
  rmSync(base, { recursive: true, force: true })
}
