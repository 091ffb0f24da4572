/**
 * Latency of the shim's mutating tools through the real MCP SDK client and
 * the real `mpac-mcp` process (stdio) against an auto-started local sidecar.
 * Goals: p50 < 5 ms, p99 < 20 ms.
 *
 *   node --import tsx bench/shim.ts [--calls 200] [--breakdown]
 *
 * --breakdown also measures the layers separately, to see where a slow p99
 * comes from: the MCP stdio round trip alone (a call the SDK refuses before
 * any tool code runs), the coordinator round trip alone (an in-process
 * CoordinatorClient, no MCP, no stdio) against the SQLite store with
 * --store-sync full and normal and against the in-memory store, the whole
 * path against the in-memory store, and a bare write+fsync on this disk.
 */
import type { ChildProcess } from 'node:child_process'
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { pino } from 'pino'
import { readLocalSecret } from '../src/local-secret.js'
import { CoordinatorClient } from '../src/mcp/client.js'
import { stateDirFor } from '../src/mcp/config.js'
import { sidecarPaths } from '../src/mcp/sidecar.js'
import { stateRef } from '../src/protocol/state-ref.js'
import { startServer, type BenchServer } from './server.js'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '200' }, warmup: { type: 'string', default: '20' }, breakdown: { type: 'boolean', default: false } } })
const CALLS = Number(values.calls)
const WARMUP = Number(values.warmup)
const ROOT = fileURLToPath(new URL('..', import.meta.url))

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]!
}

function report (name: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b)
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length
  process.stdout.write(`${name.padEnd(48)} n=${samples.length} p50=${percentile(sorted, 50).toFixed(2)} ms p99=${percentile(sorted, 99).toFixed(2)} ms mean=${mean.toFixed(2)} ms max=${sorted[sorted.length - 1]!.toFixed(2)} ms\n`)
}

const workspace = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-ws-')))
const state = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-state-')))
writeFileSync(join(workspace, 'bench.txt'), 'v0\n')
const env: Record<string, string> = {}
for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MPAC_')) env[k] = v
Object.assign(env, { MPAC_WORKSPACE_DIR: workspace, XDG_STATE_HOME: state, MPAC_AGENT_NAME: 'bench', MPAC_LOG_LEVEL: 'warn' })

type R = Record<string, unknown>

/**
 * Call starts at least PACE_MS apart (~140/s): the coordinator allows 200
 * frames per second per connection and a tight loop would exceed it (an
 * agent never comes close). Only the call itself is timed.
 */
const PACE_MS = 7
async function paced (lastStart: number): Promise<number> {
  const wait = lastStart + PACE_MS - performance.now()
  if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
  return performance.now()
}

type Call = (name: string, args: R) => Promise<R>

async function startShim (shimEnv: Record<string, string>): Promise<{ call: Call, raw: Client, close: () => Promise<void> }> {
  const transport = new StdioClientTransport({ command: process.execPath, args: ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'mcp', 'cli.ts')], env: shimEnv, stderr: 'inherit' })
  const client = new Client({ name: 'mpac-bench', version: '1' })
  await client.connect(transport)
  return {
    raw: client,
    async call (name, args) {
      const res = await client.callTool({ name, arguments: args })
      const s = (res.structuredContent ?? {}) as R
      if (res.isError === true) throw new Error(`${name} failed: ${JSON.stringify(s)}`)
      return s
    },
    close: () => client.close()
  }
}

/** begin_task then submit_change, CALLS each after WARMUP, on `file` of `dir`. */
async function toolLoop (call: Call, dir: string, file: string): Promise<{ begin: number[], commit: number[] }> {
  let last = 0
  const begin: number[] = []
  let intentId = ''
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const t0 = last = await paced(last)
    const r = await call('begin_task', { objective: `bench ${i}`, files: [file] })
    const dt = performance.now() - t0
    if (r['status'] !== 'ok') throw new Error(JSON.stringify(r))
    intentId = r['intent_id'] as string
    if (i >= WARMUP) begin.push(dt)
  }
  const commit: number[] = []
  let content = readFileSync(join(dir, file), 'utf8')
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const next = `v${i + 1}\n`
    const t0 = last = await paced(last)
    const r = await call('submit_change', { intent_id: intentId, target: file, content: next, state_ref_before: stateRef(content) })
    const dt = performance.now() - t0
    if (r['status'] !== 'success') throw new Error(JSON.stringify(r))
    content = next
    if (i >= WARMUP) commit.push(dt)
  }
  if (readFileSync(join(dir, file), 'utf8') !== content) throw new Error('the file on disk does not hold the last commit')
  return { begin, commit }
}

/** The coordinator round trip alone: INTENT_ANNOUNCE and OP_COMMIT from an in-process client (no MCP, no stdio). */
async function wireLoop (url: string, sessionId: string, dir: string, file: string, secret?: string): Promise<{ begin: number[], commit: number[] }> {
  const c = new CoordinatorClient({ url, sessionId, sessionIdPinned: true, identity: { principalId: `agent:wire-${file}`, displayName: 'wire', roles: ['contributor'], capabilities: [] }, logger: pino({ level: 'silent' }), ...(secret !== undefined ? { helloSecret: () => secret } : {}) })
  try {
    await c.ensureConnected()
    let last = 0
    const begin: number[] = []
    for (let i = 0; i < WARMUP + CALLS; i++) {
      const t0 = last = await paced(last)
      const r = await c.request('INTENT_ANNOUNCE', { intent_id: `intent-wire-${i}`, objective: 'wire', scope: { kind: 'file_set', resources: [file] } })
      const dt = performance.now() - t0
      if (!r.accepted) throw new Error(JSON.stringify(r.error))
      if (i >= WARMUP) begin.push(dt)
    }
    const commit: number[] = []
    let content = readFileSync(join(dir, file), 'utf8')
    for (let i = 0; i < WARMUP + CALLS; i++) {
      const next = `w${i + 1}\n`
      const before = stateRef(content)
      const t0 = last = await paced(last)
      const r = await c.request('OP_COMMIT', { op_id: `op-wire-${i}`, intent_id: `intent-wire-${WARMUP + CALLS - 1}`, target: file, op_kind: 'replace', state_ref_before: before, state_ref_after: stateRef(next), file_changes: { [file]: { content: next, state_ref_before: before } } })
      const dt = performance.now() - t0
      if (!r.accepted) throw new Error(JSON.stringify(r.error))
      content = next
      if (i >= WARMUP) commit.push(dt)
    }
    return { begin, commit }
  } finally {
    await c.close()
  }
}

/** A single-session coordinator on a free port serving `dir`, with extra flags. */
function startSidecar (dir: string, sessionId: string, dataDir: string, flags: string[]): Promise<BenchServer> {
  return startServer(['--host', '127.0.0.1', '--workspace', dir, '--session-id', sessionId, '--data-dir', dataDir, '--log-level', 'warn', ...flags], { baseEnv: env })
}

function fsyncLoop (dir: string): number[] {
  const fd = openSync(join(dir, 'fsync.probe'), 'w')
  const samples: number[] = []
  try {
    for (let i = 0; i < WARMUP + CALLS; i++) {
      const t0 = performance.now()
      writeSync(fd, `record ${i} ${'x'.repeat(200)}\n`)
      fsyncSync(fd)
      if (i >= WARMUP) samples.push(performance.now() - t0)
    }
  } finally {
    closeSync(fd)
  }
  return samples
}

const children: ChildProcess[] = []
const shim = await startShim(env)
try {
  await shim.call('who_is_working', {}) // starts the sidecar
  const full = await toolLoop(shim.call, workspace, 'bench.txt')
  process.stdout.write(`mpac-mcp shim latency (stdio MCP → ws → local sidecar), ${CALLS} calls after ${WARMUP} warm-up, node ${process.version}\n`)
  report('begin_task', full.begin)
  report('submit_change', full.commit)

  if (values.breakdown) {
    process.stdout.write('\nbreakdown (same machine, same run):\n')
    const mcpOnly: number[] = []
    for (let i = 0; i < WARMUP + CALLS; i++) {
      const t0 = performance.now()
      const res = await shim.raw.callTool({ name: 'begin_task', arguments: { objective: 'x', files: [] } })
      const dt = performance.now() - t0
      if (res.isError !== true) throw new Error('expected a schema error')
      if (i >= WARMUP) mcpOnly.push(dt)
    }
    report('mcp+stdio only (refused by the SDK schema check)', mcpOnly)

    const who = await shim.call('who_is_working', {})
    writeFileSync(join(workspace, 'wire.txt'), 'w0\n')
    // The shim's own sidecar admits only clients presenting the user's local secret (src/local-secret.ts).
    const secret = readLocalSecret(join(sidecarPaths(stateDirFor(env), String(who['session_id'])).dir, 'local-secret'))
    const wireFull = await wireLoop(String(who['sidecar_uri']), String(who['session_id']), workspace, 'wire.txt', secret)
    report('ws only, sqlite sync=full: INTENT_ANNOUNCE', wireFull.begin)
    report('ws only, sqlite sync=full: OP_COMMIT', wireFull.commit)

    for (const [label, flags] of [['sqlite sync=normal', ['--store-sync', 'normal']], ['memory store', ['--store', 'memory']]] as const) {
      const dir = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-ws-')))
      writeFileSync(join(dir, 'wire.txt'), 'w0\n')
      writeFileSync(join(dir, 'bench.txt'), 'v0\n')
      const sidecar = await startSidecar(dir, 'bench-alt', join(state, `data-${label.replace(/\W+/g, '-')}`), [...flags])
      children.push(sidecar.child)
      const url = `ws://127.0.0.1:${sidecar.port}/session/bench-alt`
      const wire = await wireLoop(url, 'bench-alt', dir, 'wire.txt')
      report(`ws only, ${label}: INTENT_ANNOUNCE`, wire.begin)
      report(`ws only, ${label}: OP_COMMIT`, wire.commit)
      if (label === 'memory store') {
        const remote = await startShim({ ...env, MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: dir, MPAC_AGENT_NAME: 'bench-mem' })
        try {
          const viaShim = await toolLoop(remote.call, dir, 'bench.txt')
          report(`full path, ${label}: begin_task`, viaShim.begin)
          report(`full path, ${label}: submit_change`, viaShim.commit)
        } finally {
          await remote.close()
        }
      }
      rmSync(dir, { recursive: true, force: true })
    }
    report('bare write+fsync of a small record in the state dir', fsyncLoop(state))
  }
} finally {
  await shim.close()
  for (const child of children) child.kill('SIGTERM')
  const dir = join(state, 'mpac-mcp', 'sidecars')
  for (const f of readdirSync(dir).filter(f => f.endsWith('.pid'))) {
    try { process.kill(Number(readFileSync(join(dir, f), 'utf8').trim()), 'SIGTERM') } catch { /* gone */ }
  }
  rmSync(workspace, { recursive: true, force: true })
  rmSync(state, { recursive: true, force: true })
}
