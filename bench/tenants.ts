/**
 * Fairness benchmark: does one tenant flooding inside every limit degrade
 * another tenant's round trips?
 *
 *   npm run bench:tenants -- [--seconds 10] [--flood-sessions 20] [--flood-agents 5] [--flood-rate R]
 *                            [--store sqlite|memory] [--sync full|normal] [--dist] [--server-args "..."]
 *
 * Starts the real sidecar (child process, authenticated profile, two tokens,
 * default limits). Tenant B (the victim) has one agent in its own session
 * that sends INTENT_ANNOUNCE / INTENT_WITHDRAW request–reply at 50 requests/s
 * and records each round trip (send → its relay). Phase 1 measures B alone
 * (baseline). Phase 2 starts tenant A (the flooder) in a separate process so
 * that its client work does not share this process's event loop:
 * `--flood-sessions` sessions × `--flood-agents` connections with A's token,
 * each pipelining announce/withdraw pairs at `--flood-rate` frames/s (default:
 * 95% of the token's --max-msgs-per-sec-per-token share spread over its
 * connections, capped at 95% of --max-msgs-per-sec; so nothing is rate
 * limited), and measures B again. To see the server without the per-token
 * share: `--server-args "--max-msgs-per-sec-per-token 100000" --token-share 100000`.
 * Prints one JSON line per phase and the p99 ratio.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { Agent, arg, percentile, type Frame } from './agent.js'
import { benchDataDir, startServer, type BenchServer } from './server.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const TOKENS = { 'tok-flood': { allowed_sessions: ['*'] }, 'tok-victim': { allowed_sessions: ['*'] } }

function startTenantServer (): Promise<BenchServer> {
  const extra = arg('server-args', '').split(' ').filter(a => a !== '')
  return startServer(['--store', arg('store', 'sqlite'), '--store-sync', arg('sync', 'normal'), '--data-dir', benchDataDir('mpac-bench-tenants-'), ...extra],
    { env: { MPAC_TOKEN_TABLE: JSON.stringify(TOKENS) } })
}

/**
 * Frames/s per flooding connection: at the limits, i.e. 95% of the token's
 * share (--max-msgs-per-sec-per-token, default 500) spread over its
 * connections, and at most 95% of --max-msgs-per-sec (200) per connection.
 */
function defaultFloodRate (): number {
  const connections = Number(arg('flood-sessions', '20')) * Number(arg('flood-agents', '5'))
  const share = Number(arg('token-share', '500'))
  return Math.max(1, Math.min(190, Math.floor((0.95 * share) / connections)))
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

let victimSeq = 0

/** Tenant B: request–reply at 50/s for `seconds`; round trips in ms. */
async function measure (victim: Agent, seconds: number): Promise<{ n: number, errors: number, p50: number, p99: number, max: number }> {
  const rtts: number[] = []
  let errors = 0
  const interval = 20
  const end = performance.now() + seconds * 1000
  let next = performance.now()
  while (performance.now() < end) {
    const wait = next - performance.now()
    if (wait > 0) await sleep(wait)
    next += interval
    const i = ++victimSeq
    const intentId = `${victim.pid}-i${i}`
    for (const [type, payload] of [
      ['INTENT_ANNOUNCE', { intent_id: intentId, objective: 'victim', scope: { kind: 'file_set', resources: [`victim/${i % 4}.ts`] } }],
      ['INTENT_WITHDRAW', { intent_id: intentId }]
    ] as const) {
      const t0 = performance.now()
      try {
        const f = await victim.request(type, payload)
        rtts.push(performance.now() - t0)
        if (f.message_type === 'PROTOCOL_ERROR') {
          if (errors === 0 && process.env.BENCH_DEBUG !== undefined) console.error(JSON.stringify(f.payload))
          errors++
        }
      } catch {
        errors++
      }
    }
  }
  rtts.sort((a, b) => a - b)
  return { n: rtts.length, errors, p50: Number(percentile(rtts, 0.5).toFixed(2)), p99: Number(percentile(rtts, 0.99).toFixed(2)), max: Number((rtts.at(-1) ?? NaN).toFixed(2)) }
}

/** Tenant A (run as a child process): floods until stdin closes, then prints its counts. */
async function flood (): Promise<void> {
  const port = Number(arg('port', '0'))
  const sessions = Number(arg('flood-sessions', '20'))
  const agents = Number(arg('flood-agents', '5'))
  const rate = Number(arg('flood-rate', String(defaultFloodRate())))
  const all: Agent[] = []
  for (let s = 0; s < sessions; s++) {
    for (let a = 0; a < agents; a++) all.push(await Agent.join(port, `flood-${s}`, `agent:f${s}-${a}`, 'tok-flood'))
  }
  let stop = false
  let sent = 0
  process.stdin.on('end', () => { stop = true })
  process.stdin.resume()
  process.stdout.write('ready\n')
  const started = performance.now()
  // Every 10 ms each agent sends its share of frames: announce/withdraw pairs on its own files.
  const perTick = rate / 100
  const counters = all.map(() => ({ i: 0, carry: 0 }))
  while (!stop) {
    all.forEach((agent, k) => {
      const c = counters[k] as { i: number, carry: number }
      c.carry += perTick
      while (c.carry >= 1) {
        c.carry -= 1
        if (c.i % 2 === 0) {
          agent.send('INTENT_ANNOUNCE', { intent_id: `${agent.pid}-i${c.i}`, objective: 'flood', scope: { kind: 'file_set', resources: [`${agent.pid}/${c.i % 16}.ts`, `${agent.pid}/shared.ts`] } })
        } else {
          agent.send('INTENT_WITHDRAW', { intent_id: `${agent.pid}-i${c.i - 1}` })
        }
        c.i++
        sent++
      }
    })
    await sleep(10)
  }
  const elapsed = (performance.now() - started) / 1000
  const replies = all.reduce((n, a) => n + a.replies, 0)
  const errors = all.reduce((n, a) => n + a.errors, 0)
  process.stdout.write(JSON.stringify({ connections: all.length, sentPerSec: Math.round(sent / elapsed), repliesPerSec: Math.round(replies / elapsed), errors }) + '\n')
  for (const a of all) a.close()
  await sleep(200)
  process.exit(0)
}

async function main (): Promise<void> {
  const seconds = Number(arg('seconds', '10'))
  const { child, port } = await startTenantServer()
  try {
    const victim = await Agent.join(port, 'victim', 'agent:victim', 'tok-victim')
    await measure(victim, 1) // warm-up
    const baseline = await measure(victim, seconds)
    console.log(JSON.stringify({ phase: 'baseline', ...baseline }))

    const flooder = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', 'flood', '--port', String(port),
      '--flood-sessions', arg('flood-sessions', '20'), '--flood-agents', arg('flood-agents', '5'), '--flood-rate', arg('flood-rate', String(defaultFloodRate()))],
    { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    await new Promise<void>((resolve, reject) => {
      flooder.stdout?.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('ready\n')) resolve() })
      flooder.on('exit', (code) => reject(new Error(`flooder exited with ${String(code)}: ${out}`)))
    })
    await sleep(2000) // let the flood reach its steady state
    const flooded = await measure(victim, seconds)
    const exited = new Promise(resolve => flooder.once('exit', resolve))
    flooder.stdin?.end()
    await exited
    const floodStats = JSON.parse(out.split('\n').filter(l => l.startsWith('{')).at(-1) ?? '{}') as Frame
    console.log(JSON.stringify({ phase: 'flooded', ...flooded, flood: floodStats }))
    console.log(JSON.stringify({ p50Ratio: Number((flooded.p50 / baseline.p50).toFixed(2)), p99Ratio: Number((flooded.p99 / baseline.p99).toFixed(2)), goal: 'p99Ratio <= 2' }))
    victim.close()
  } finally {
    child.kill('SIGTERM')
  }
}

if (arg('role', '') === 'flood') await flood()
else await main()
