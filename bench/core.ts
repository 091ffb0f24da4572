/**
 * Micro-benchmark of the coordinator core (single thread, zod validation
 * included): sessions holding 100 and 10,000 active intents on distinct
 * files (several principals), then a timed loop of INTENT_ANNOUNCE (a new
 * file) + OP_COMMIT pairs, each followed by an INTENT_WITHDRAW of the oldest
 * intent so the active count stays steady. Prints pairs/s and memory per
 * intent.
 *
 *   npx tsx bench/core.ts            (add --expose-gc for the memory figure)
 */
import { Coordinator } from '../src/coordinator/index.js'

const PRINCIPALS = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi']
const SID = 'bench'

let msgSeq = 0
let lamport = 0

function env (pid: string, type: string, payload: Record<string, unknown>, now: number): Record<string, unknown> {
  return {
    protocol: 'MPAC',
    version: '0.1.13',
    message_type: type,
    message_id: `m-${++msgSeq}`,
    session_id: SID,
    sender: { principal_id: pid, principal_type: 'agent', sender_instance_id: `${pid}:1` },
    ts: new Date(now).toISOString(),
    payload,
    watermark: { kind: 'lamport_clock', value: ++lamport }
  }
}

function must (ok: boolean, what: string): void {
  if (!ok) throw new Error(`bench: ${what} was rejected`)
}

interface Setup { c: Coordinator, now: number, live: string[], next: number }

function setup (active: number): Setup {
  const c = new Coordinator({ sessionId: SID, unavailabilityTimeoutSec: 1e9 })
  let now = Date.UTC(2026, 0, 1)
  for (const pid of PRINCIPALS) must(c.handle(env(pid, 'HELLO', { display_name: pid, roles: ['contributor'], capabilities: [] }, now), now).accepted, 'HELLO')
  const live: string[] = []
  for (let k = 0; k < active; k++) {
    const pid = PRINCIPALS[k % PRINCIPALS.length] as string
    const id = `seed-${k}`
    must(c.handle(env(pid, 'INTENT_ANNOUNCE', { intent_id: id, objective: `edit f${k}`, scope: { kind: 'file_set', resources: [`src/seed/f${k}.py`] } }, now), now).accepted, 'seed announce')
    live.push(id)
  }
  now += 1
  return { c, now, live, next: 0 }
}

function loop (s: Setup, pairs: number, withFiles: boolean): number {
  const { c } = s
  const start = process.hrtime.bigint()
  for (let j = 0; j < pairs; j++) {
    const n = s.next++
    const pid = PRINCIPALS[n % PRINCIPALS.length] as string
    const id = `run-${n}`
    const path = `src/run/n${n}.py`
    const now = s.now
    must(c.handle(env(pid, 'INTENT_ANNOUNCE', { intent_id: id, objective: `edit n${n}`, scope: { kind: 'file_set', resources: [path] } }, now), now).accepted, 'announce')
    const payload: Record<string, unknown> = {
      op_id: `op-${n}`, intent_id: id, target: path, op_kind: 'replace', state_ref_before: null, state_ref_after: `sha256:${(n % 65536).toString(16).padStart(16, '0')}`
    }
    if (withFiles) payload.file_changes = { [path]: { content: `# n${n}\nprint(${n})\n`, state_ref_before: null } }
    must(c.handle(env(pid, 'OP_COMMIT', payload, now), now).accepted, 'commit')
    const oldest = s.live.shift() as string
    const owner = oldest.startsWith('seed-') ? PRINCIPALS[Number(oldest.slice(5)) % PRINCIPALS.length] : PRINCIPALS[Number(oldest.slice(4)) % PRINCIPALS.length]
    must(c.handle(env(owner as string, 'INTENT_WITHDRAW', { intent_id: oldest }, now), now).accepted, 'withdraw')
    s.live.push(id)
  }
  const ns = Number(process.hrtime.bigint() - start)
  return pairs / (ns / 1e9)
}

function memoryPerIntent (count: number): number | undefined {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) return undefined
  gc()
  const before = process.memoryUsage().heapUsed
  const s = setup(count)
  gc()
  const after = process.memoryUsage().heapUsed
  if (s.live.length !== count) throw new Error('unreachable')
  return (after - before) / count
}

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

function run (active: number, pairs: number, withFiles: boolean): void {
  const s = setup(active)
  loop(s, 2000, withFiles) // warm-up
  const rates: number[] = []
  for (let r = 0; r < ROUNDS; r++) rates.push(loop(s, pairs, withFiles))
  rates.sort((a, b) => a - b)
  const median = rates[Math.floor(rates.length / 2)] as number
  const label = `${String(active).padStart(6)} active intents${withFiles ? ' + file_changes' : '               '}`
  console.log(`${label}: median ${fmt(median)} pairs/s, best ${fmt(rates[rates.length - 1] as number)} pairs/s (${ROUNDS} rounds of ${fmt(pairs)} pairs)`)
}

console.log('INTENT_ANNOUNCE (new file) + OP_COMMIT pairs per second; each pair also withdraws the oldest intent (3 messages)')
run(100, 10_000, false)
run(10_000, 10_000, false)
run(100, 10_000, true)
run(10_000, 10_000, true)
const mem = memoryPerIntent(10_000)
console.log(mem === undefined
  ? 'memory per intent: run with `node --expose-gc --import tsx bench/core.ts` to measure'
  : `memory per active intent (10,000 intents): ${Math.round(mem).toLocaleString('en-US')} bytes`)
