/**
 * Round trip of the shim's hook socket (agent-hooks §7.5: ≤ 15 ms p99 for
 * a check_edit through the socket alone): two real `mpac-mcp` processes in
 * local mode (auto-started sidecar); Alice holds a file, and the bench asks
 * Bob's socket, as a hook process would, for
 * - check_edit of Alice's file (deny), on a fresh connection per request
 *   (what each hook process does) and on one kept connection;
 * - check_edit of a file Bob's auto intent already covers (none);
 * - check_edit of a new file each time (the auto-announce: one coordinator
 *   round trip, INTENT_UPDATE of the auto intent);
 * - ping.
 *
 *   node --import tsx bench/hooks/socket.ts [--calls 500]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import type { HookRegistryEntry, HookReply } from '../../src/hooks/protocol.js'
import { HookConnection, askHook } from '../../test/helpers/hook-socket.js'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '500' }, warmup: { type: 'string', default: '30' } } })
const CALLS = Number(values.calls)
const WARMUP = Number(values.warmup)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)] as number
}

function report (name: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b)
  process.stdout.write(`${name.padEnd(58)} n=${samples.length} p50=${percentile(sorted, 50).toFixed(2)} ms p99=${percentile(sorted, 99).toFixed(2)} ms max=${(sorted[sorted.length - 1] as number).toFixed(2)} ms\n`)
}

const workspace = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-hbench-ws-')))
const state = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-hbench-state-')))
const runtime = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-hbench-run-')))
mkdirSync(join(workspace, 'src'))
writeFileSync(join(workspace, 'src', 'held.py'), 'held\n')
const base: Record<string, string> = {}
for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MPAC_')) base[k] = v
Object.assign(base, { MPAC_WORKSPACE_DIR: workspace, XDG_STATE_HOME: state, XDG_RUNTIME_DIR: runtime, MPAC_LOG_LEVEL: 'warn' })

async function startShim (name: string): Promise<Client> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'mcp', 'cli.ts')],
    env: { ...base, MPAC_AGENT_NAME: name, CLAUDE_CODE_SESSION_ID: `${name}-bench-session` },
    stderr: 'inherit'
  })
  const client = new Client({ name: 'mpac-hook-bench', version: '1' })
  await client.connect(transport)
  return client
}

async function registryEntry (clientSessionId: string): Promise<HookRegistryEntry> {
  const dir = join(state, 'mpac-mcp', 'hooks')
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      for (const f of readdirSync(dir)) {
        const e = JSON.parse(readFileSync(join(dir, f), 'utf8')) as HookRegistryEntry
        if (e.client_session_id === clientSessionId) return e
      }
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`no registry entry for ${clientSessionId}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

async function loop (n: number, fn: (i: number) => Promise<HookReply>, expect: HookReply['decision'], paceMs = 0): Promise<number[]> {
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    if (paceMs > 0) await new Promise(resolve => setTimeout(resolve, paceMs))
    const start = performance.now()
    const r = await fn(i)
    out.push(performance.now() - start)
    if (r.decision !== expect || r.error != null) throw new Error(`expected ${expect}, got ${JSON.stringify(r)}`)
  }
  return out
}

const alice = await startShim('alice')
const bob = await startShim('bob')
try {
  const begin = await alice.callTool({ name: 'begin_task', arguments: { objective: 'hold a file for the bench', files: ['src/held.py'] } })
  if (begin.isError === true) throw new Error(JSON.stringify(begin.structuredContent))
  const entry = await registryEntry('bob-bench-session')
  const sock = entry.socket
  const req = (extra: Record<string, unknown>): Record<string, unknown> => ({ client: 'claude', client_session_id: 'bob-bench-session', tool: 'Write', ...extra })
  // Wait until Bob's view has Alice's intent.
  for (let i = 0; ; i++) {
    const r = await askHook(sock, req({ op: 'check_edit', paths: ['src/held.py'] }))
    if (r.decision === 'deny') break
    if (i > 200) throw new Error('Bob never saw Alice\'s intent')
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  process.stdout.write(`hook socket round trip (JSON lines over a Unix socket to a real mpac-mcp), ${CALLS} calls after ${WARMUP} warm-up, node ${process.version}\n`)

  const fresh = (r: Record<string, unknown>) => () => askHook(sock, req(r))
  await loop(WARMUP, fresh({ op: 'check_edit', paths: ['src/held.py'] }), 'deny')
  report('check_edit → deny, new connection per request (a hook)', await loop(CALLS, fresh({ op: 'check_edit', paths: [join(workspace, 'src', 'held.py')] }), 'deny'))

  const conn = await HookConnection.open(sock)
  try {
    await loop(WARMUP, () => conn.ask(req({ op: 'check_edit', paths: ['src/held.py'] })), 'deny')
    report('check_edit → deny, one kept connection', await loop(CALLS, () => conn.ask(req({ op: 'check_edit', paths: ['src/held.py'] })), 'deny'))
    await conn.ask(req({ op: 'check_edit', paths: ['src/mine.py'] }))
    report('check_edit → none (my auto intent covers it), new connection', await loop(CALLS, fresh({ op: 'check_edit', paths: ['src/mine.py'] }), 'none'))
    // A new file per call: the auto intent is widened through the coordinator (paced under its frame rate limit).
    const announces = Math.min(CALLS, 200)
    report(`check_edit → announced (a new file: INTENT_UPDATE), n=${announces}`, await loop(announces, i => askHook(sock, req({ op: 'check_edit', paths: [`src/new/f${i}.py`] })), 'announced', 6))
    report('ping, new connection', await loop(CALLS, fresh({ op: 'ping' }), 'none'))
  } finally {
    conn.close()
  }
} finally {
  await bob.close()
  await alice.close()
  const dir = join(state, 'mpac-mcp', 'sidecars')
  for (const f of readdirSync(dir).filter(f => f.endsWith('.pid'))) {
    try { process.kill(Number(readFileSync(join(dir, f), 'utf8').trim()), 'SIGTERM') } catch { /* gone */ }
  }
  rmSync(workspace, { recursive: true, force: true })
  rmSync(state, { recursive: true, force: true })
  rmSync(runtime, { recursive: true, force: true })
}
