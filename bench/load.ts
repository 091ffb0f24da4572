/**
 * Load benchmark of mpac-mcp-sidecar.
 *
 *   npx tsx bench/load.ts [--sessions 20] [--agents 5] [--seconds 10] [--store memory|sqlite] [--sync full|normal] [--files 10] [--rate R]
 *   npx tsx bench/load.ts --idle 2000
 *   (add --dist to measure the built server, after `npm run build`)
 *   (add --prof DIR to write the server's V8 CPU profile into DIR with `node --cpu-prof`
 *   and print its top self-time functions)
 *
 * Starts the server as a child process (the real CLI), then S sessions × A
 * agents (undici WebSocket) each loop announce → commit → withdraw on a small
 * shared pool of files per session (so race-lock rejections happen); every
 * request awaits its terminal frame. Prints requests/s, p50/p99 round trip,
 * errors and the server's RSS. Without `--rate` the agents send back to back
 * (closed loop: the saturation throughput); `--rate R` paces them to offer R
 * requests/s in total (latency at a given load). `--idle N` instead opens N admitted idle
 * connections and reports the server's memory.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'
import { Agent, arg, percentile, type Frame } from './agent.js'
import { benchDataDir, startServer as startBenchServer, stopServer, type BenchServer } from './server.js'


/** Starts the server (the real CLI) as a child process with the load driver's limits lifted, plus `extra` flags; resolves with its port. */
export function startServer (store: string, extra: string[], env: NodeJS.ProcessEnv = {}): Promise<BenchServer> {
  const nodeFlags = (process.env.MPAC_BENCH_NODE_FLAGS ?? '').split(' ').filter(f => f !== '')
  const profDir = arg('prof', '')
  if (profDir !== '') nodeFlags.push('--cpu-prof', '--cpu-prof-dir', profDir)
  return startBenchServer(['--store', store, '--data-dir', benchDataDir('mpac-bench-'), '--max-msgs-per-sec', '100000', '--max-sessions', '100000', '--metrics-public', '--max-prehello-per-address', '100000', '--max-prehello-connections', '100000', ...extra], { env, nodeFlags })
}

async function serverMemory (port: number): Promise<{ rss: number, heap: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()
  const rss = /^process_resident_memory_bytes (\d+)$/m.exec(text)
  const heap = /^nodejs_heap_used_bytes (\d+)$/m.exec(text)
  return { rss: rss === null ? NaN : Number(rss[1]) / (1024 * 1024), heap: heap === null ? NaN : Number(heap[1]) / (1024 * 1024) }
}

async function serverRss (port: number): Promise<number> {
  return (await serverMemory(port)).rss
}

export interface LoadOptions {
  readonly sessions: number
  readonly agents: number
  readonly seconds: number
  /** Files in each session's pool (race-lock rejections happen on it). */
  readonly files: number
  /** Offered requests/s in total; 0 = closed loop (back to back). */
  readonly rate: number
  /** Bearer token of every agent's HELLO (an authenticated server). */
  readonly token?: string
  /** Called once every agent joined, before the loops start. */
  readonly beforeRun?: () => Promise<void>
  /** Called when the loops stopped, before the agents disconnect (to measure the server with them connected). */
  readonly beforeClose?: () => Promise<void>
}

export interface LoadResult {
  readonly seconds: number
  readonly requests: number
  readonly requestsPerSec: number
  readonly rejectedByProtocol: number
  readonly errors: number
  readonly p50ms: number
  readonly p99ms: number
}

/**
 * Joins `sessions` × `agents` agents (sessions `bench-<s>`) to the server on
 * `port`, runs the announce → commit → withdraw loops for `seconds`, closes
 * the agents and resolves with the figures.
 */
export async function runLoad (port: number, o: LoadOptions): Promise<LoadResult> {
  const { sessions, agents, seconds, files, rate } = o
  const all: Agent[] = []
  for (let s = 0; s < sessions; s++) {
    for (let a = 0; a < agents; a++) all.push(await Agent.join(port, `bench-${s}`, `agent:${s}-${a}`, o.token))
  }
  const rtts: number[] = []
  let requests = 0
  let rejected = 0
  let errors = 0
  let stop = false
  const timed = async (agent: Agent, type: string, payload: Frame): Promise<Frame | undefined> => {
    const t0 = performance.now()
    try {
      const f = await agent.request(type, payload, 5000)
      rtts.push(performance.now() - t0)
      requests++
      if (f.message_type === 'PROTOCOL_ERROR') rejected++
      return f
    } catch {
      errors++
      return undefined
    }
  }
  // --rate: each agent sends one request every `interval` ms on a fixed schedule.
  const interval = rate > 0 ? (all.length * 1000) / rate : 0
  const paced = async (agent: Agent, type: string, payload: Frame, slot: { next: number }): Promise<Frame | undefined> => {
    if (interval > 0) {
      const wait = slot.next - performance.now()
      if (wait > 0) await new Promise(resolve => setTimeout(resolve, wait))
      slot.next += interval
    }
    return await timed(agent, type, payload)
  }
  const loop = async (agent: Agent, n: number): Promise<void> => {
    let i = 0
    const slot = { next: performance.now() + Math.random() * interval }
    while (!stop) {
      i++
      const file = `src/f${(n + i) % files}.ts`
      const intentId = `${agent.pid}-i${i}`
      const ann = await paced(agent, 'INTENT_ANNOUNCE', { intent_id: intentId, objective: 'bench', scope: { kind: 'file_set', resources: [file] } }, slot)
      if (ann === undefined || ann.message_type === 'PROTOCOL_ERROR') continue
      await paced(agent, 'OP_COMMIT', {
        op_id: `${intentId}-op`, intent_id: intentId, target: file, op_kind: 'replace',
        state_ref_before: `sha256:${String(i).padStart(16, '0')}`, state_ref_after: `sha256:${String(i + 1).padStart(16, '0')}`
      }, slot)
      await paced(agent, 'INTENT_WITHDRAW', { intent_id: intentId }, slot)
    }
  }
  await o.beforeRun?.()
  const started = performance.now()
  const loops = all.map((agent, n) => loop(agent, n))
  await new Promise(resolve => setTimeout(resolve, seconds * 1000))
  stop = true
  await Promise.all(loops)
  const elapsed = (performance.now() - started) / 1000
  rtts.sort((x, y) => x - y)
  await o.beforeClose?.()
  for (const a of all) a.close()
  return {
    seconds: Number(elapsed.toFixed(1)),
    requests,
    requestsPerSec: Math.round(requests / elapsed),
    rejectedByProtocol: rejected,
    errors,
    p50ms: Number(percentile(rtts, 0.5).toFixed(2)),
    p99ms: Number(percentile(rtts, 0.99).toFixed(2))
  }
}

async function load (): Promise<void> {
  const agents = Number(arg('agents', '5'))
  const options: LoadOptions = {
    sessions: Number(arg('sessions', '20')),
    agents,
    seconds: Number(arg('seconds', '10')),
    files: Number(arg('files', String(agents * 2))),
    rate: Number(arg('rate', '0'))
  }
  const store = arg('store', 'memory')
  const { child, port } = await startServer(store, ['--store-sync', arg('sync', 'full')])
  let rss = NaN
  const result = await runLoad(port, { ...options, beforeClose: async () => { rss = await serverRss(port) } })
  console.log(JSON.stringify({
    mode: 'load',
    store,
    sync: arg('sync', 'full'),
    sessions: options.sessions,
    agents,
    offeredRate: options.rate > 0 ? options.rate : 'max',
    ...result,
    serverRssMiB: Math.round(rss)
  }))
  await stopServer(child)
  const profDir = arg('prof', '')
  if (profDir !== '') summariseProfiles(profDir)
}

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[] }

/** Prints the top self-time functions of every `.cpuprofile` in `dir` (as a JSON line each). */
export function summariseProfiles (dir: string): void {
  for (const name of readdirSync(dir).filter(f => f.endsWith('.cpuprofile'))) {
    const profile = JSON.parse(readFileSync(join(dir, name), 'utf8')) as Profile
    const byId = new Map(profile.nodes.map(n => [n.id, n]))
    const self = new Map<string, number>()
    let total = 0
    profile.samples.forEach((id, i) => {
      const dt = profile.timeDeltas[i] ?? 0
      const frame = byId.get(id)?.callFrame
      const where = frame === undefined ? '?' : `${frame.functionName || '(anonymous)'} ${frame.url.replace(/^.*\/(node_modules|dist|src)\//, '$1/')}:${frame.lineNumber + 1}`
      self.set(where, (self.get(where) ?? 0) + dt)
      total += dt
    })
    const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 30)
    console.log(JSON.stringify({ mode: 'profile', file: join(dir, name), totalMs: Math.round(total / 1000) }))
    for (const [where, us] of top) console.log(`${(100 * us / total).toFixed(1).padStart(5)}%  ${where}`)
  }
}

export { stopServer }

async function idle (count: number): Promise<void> {
  const { child, port } = await startServer(arg('store', 'memory'), [])
  const before = await serverMemory(port)
  const perSession = 10
  const all: Agent[] = []
  for (let i = 0; i < count; i += 50) {
    const batch = []
    for (let k = i; k < Math.min(count, i + 50); k++) {
      batch.push(Agent.join(port, `idle-${Math.floor(k / perSession)}`, `agent:${k}`))
    }
    all.push(...await Promise.all(batch))
  }
  // Let the server settle, then measure.
  await new Promise(resolve => setTimeout(resolve, 2000))
  const after = await serverMemory(port)
  console.log(JSON.stringify({
    mode: 'idle',
    connections: all.length,
    sessions: Math.ceil(count / perSession),
    serverRssBeforeMiB: Math.round(before.rss),
    serverRssAfterMiB: Math.round(after.rss),
    serverHeapBeforeMiB: Math.round(before.heap),
    serverHeapAfterMiB: Math.round(after.heap),
    perConnectionKiB: Math.round(((after.rss - before.rss) * 1024) / all.length)
  }))
  for (const a of all) a.close()
  child.kill('SIGTERM')
}

// Run only as a script: bench/dashboard.ts imports the functions above.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const idleCount = arg('idle', '')
  if (idleCount !== '') await idle(Number(idleCount))
  else await load()
}
