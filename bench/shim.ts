/**
 * Latency of the shim's mutating tools through the real MCP SDK client and
 * the real `mpac-mcp` process (stdio) against an auto-started local sidecar.
 * Goals: p50 < 5 ms, p99 < 20 ms.
 *
 *   node --import tsx bench/shim.ts [--calls 200]
 */
import { mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { stateRef } from '../src/protocol/state-ref.js'

const { values } = parseArgs({ options: { calls: { type: 'string', default: '200' }, warmup: { type: 'string', default: '20' } } })
const CALLS = Number(values.calls)
const WARMUP = Number(values.warmup)
const ROOT = fileURLToPath(new URL('..', import.meta.url))

function percentile (sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(p / 100 * sorted.length) - 1)]!
}

function report (name: string, samples: number[]): void {
  const sorted = [...samples].sort((a, b) => a - b)
  const mean = samples.reduce((a, b) => a + b, 0) / samples.length
  process.stdout.write(`${name.padEnd(14)} n=${samples.length} p50=${percentile(sorted, 50).toFixed(2)} ms p99=${percentile(sorted, 99).toFixed(2)} ms mean=${mean.toFixed(2)} ms max=${sorted[sorted.length - 1]!.toFixed(2)} ms\n`)
}

const workspace = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-ws-')))
const state = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-bench-state-')))
writeFileSync(join(workspace, 'bench.txt'), 'v0\n')
const env: Record<string, string> = {}
for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('MPAC_')) env[k] = v
Object.assign(env, { MPAC_WORKSPACE_DIR: workspace, XDG_STATE_HOME: state, MPAC_AGENT_NAME: 'bench', MPAC_LOG_LEVEL: 'warn' })

const transport = new StdioClientTransport({ command: process.execPath, args: ['--import', import.meta.resolve('tsx'), join(ROOT, 'src', 'mcp', 'cli.ts')], env, stderr: 'inherit' })
const client = new Client({ name: 'mpac-bench', version: '1' })
await client.connect(transport)

type R = Record<string, unknown>
async function call (name: string, args: R): Promise<R> {
  const res = await client.callTool({ name, arguments: args })
  const s = (res.structuredContent ?? {}) as R
  if (res.isError === true) throw new Error(`${name} failed: ${JSON.stringify(s)}`)
  return s
}

try {
  await call('who_is_working', {}) // starts the sidecar
  const begin: number[] = []
  let intentId = ''
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const t0 = performance.now()
    const r = await call('begin_task', { objective: `bench ${i}`, files: ['bench.txt'] })
    const dt = performance.now() - t0
    if (r['status'] !== 'ok') throw new Error(JSON.stringify(r))
    intentId = r['intent_id'] as string
    if (i >= WARMUP) begin.push(dt)
  }
  const commit: number[] = []
  let content = 'v0\n'
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const next = `v${i + 1}\n`
    const t0 = performance.now()
    const r = await call('submit_change', { intent_id: intentId, target: 'bench.txt', content: next, state_ref_before: stateRef(content) })
    const dt = performance.now() - t0
    if (r['status'] !== 'success') throw new Error(JSON.stringify(r))
    content = next
    if (i >= WARMUP) commit.push(dt)
  }
  process.stdout.write(`mpac-mcp shim latency (stdio MCP → ws → local sidecar), ${CALLS} calls after ${WARMUP} warm-up, node ${process.version}\n`)
  report('begin_task', begin)
  report('submit_change', commit)
  if (readFileSync(join(workspace, 'bench.txt'), 'utf8') !== content) throw new Error('the file on disk does not hold the last commit')
} finally {
  await client.close()
  const dir = join(state, 'mpac-mcp', 'sidecars')
  for (const f of readdirSync(dir).filter(f => f.endsWith('.pid'))) {
    try { process.kill(Number(readFileSync(join(dir, f), 'utf8').trim()), 'SIGTERM') } catch { /* gone */ }
  }
  rmSync(workspace, { recursive: true, force: true })
  rmSync(state, { recursive: true, force: true })
}
