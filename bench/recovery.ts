// Recovery and append benchmarks for the SQLite store (`npx tsx bench/recovery.ts`).
//
// 1. Builds one session with 100,000 journal entries (HELLOs, then cycles of
//    INTENT_ANNOUNCE / OP_COMMIT with file_changes / INTENT_WITHDRAW), no
//    snapshot, reopens the database and times `load` and `recoverSession`
//    (goal: recovery under 2 s).
// 2. Times `append` with one input per transaction and with batches of 32,
//    under synchronous=FULL (the default) and NORMAL.
//
// Recovery is timed in a fresh child process (cold JIT and SQLite cache, as
// after a restart; the OS file cache is warm) and again in this process.
// Wall-clock and CPU times are both printed: on a busy machine the CPU time is
// the steadier figure.
//
// Options: --entries N (default 100000), --append N (entries per append run,
// default 4000), --dir DIR (default: a fresh directory under the OS temp dir,
// removed afterwards).
import { execFileSync } from 'node:child_process'
import { cpSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Coordinator } from '../src/coordinator/index.js'
import type { CoordinatorConfig, CoreInput } from '../src/coordinator/types.js'
import { recoverSession, replaySession, SqliteStore } from '../src/store/index.js'
import { Workload } from '../test/store/fixtures/workload.js'

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '100000' },
    append: { type: 'string', default: '4000' },
    dir: { type: 'string' },
    'recover-only': { type: 'string' }
  }
})
const ENTRIES = Number(values.entries)
const APPEND_ENTRIES = Number(values.append)
const root = values.dir ?? (values['recover-only'] === undefined ? mkdtempSync(join(tmpdir(), 'mpac-bench-')) : '')
const SESSION = 'bench-session'
const config: CoordinatorConfig = { sessionId: SESSION }

function ms (start: number): number {
  return Math.round((performance.now() - start) * 10) / 10
}

/** Runs `fn`, returning its result with wall-clock and CPU (user + system) milliseconds. */
function timed<T> (fn: () => T): { value: T, wall: number, cpu: number } {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const value = fn()
  const wall = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  return { value, wall: Math.round(wall), cpu: Math.round((cpu.user + cpu.system) / 1000) }
}

/**
 * Child mode: recover the session stored in `dir` once and print the timings
 * as JSON. A second copy (`dir` + '-phases') is recovered again phase by
 * phase: replaySession, then the snapshot the new epoch ends with.
 */
function recoverOnly (dir: string): void {
  const now = Date.UTC(2026, 5, 1)
  let store = new SqliteStore({ dir })
  const r = timed(() => recoverSession(store, SESSION, config, now, 30))
  store.close()
  store = new SqliteStore({ dir: `${dir}-phases` })
  const replay = timed(() => replaySession(store, SESSION, config))
  const coordinator = replay.value
  if (coordinator === undefined) throw new Error('nothing stored')
  const snapshot = timed(() => {
    coordinator.apply({ kind: 'recovered', now, graceSec: 30 })
    return coordinator.snapshot(now)
  })
  const save = timed(() => store.saveSnapshot(SESSION, snapshot.value))
  store.close()
  console.log(JSON.stringify({
    wall: r.wall,
    cpu: r.cpu,
    epoch: r.value?.coordinator.epoch,
    files: r.value?.coordinator.listFiles().length,
    replay,
    snapshot: { wall: snapshot.wall, cpu: snapshot.cpu, bytes: Buffer.byteLength(JSON.stringify(snapshot.value)) },
    save: { wall: save.wall, cpu: save.cpu }
  }))
}

function buildSession (dir: string): { inputs: CoreInput[], accepted: number, original: Coordinator } {
  const inputs = new Workload({ sessionId: SESSION }).take(ENTRIES).slice(0, ENTRIES)
  const original = new Coordinator(config)
  let accepted = 0
  for (const input of inputs) {
    if (original.apply(input).accepted) accepted++
  }
  const store = new SqliteStore({ dir })
  for (let i = 0; i < inputs.length; i += 1000) store.append(SESSION, inputs.slice(i, i + 1000))
  store.close()
  return { inputs, accepted, original }
}

function benchRecovery (): void {
  const dir = join(root, 'recovery')
  const t = performance.now()
  const { inputs, accepted, original } = buildSession(dir)
  const bytes = inputs.reduce((n, i) => n + Buffer.byteLength(JSON.stringify(i)), 0)
  console.log(`built ${inputs.length} journal entries (${(bytes / 1048576).toFixed(1)} MiB of JSON, ${accepted} accepted by the core) in ${ms(t)} ms`)

  // A copy of the database, so that the child and this process each recover an untouched session.
  const copy = join(root, 'recovery-copy')
  let store = new SqliteStore({ dir })
  store.close()
  cpSync(dir, copy, { recursive: true })

  cpSync(dir, `${copy}-phases`, { recursive: true })
  const child = JSON.parse(execFileSync(process.execPath, [...process.execArgv, process.argv[1] as string, '--recover-only', copy], { encoding: 'utf8' })) as {
    wall: number, cpu: number, epoch: number, files: number,
    replay: { wall: number, cpu: number }, snapshot: { wall: number, cpu: number, bytes: number }, save: { wall: number, cpu: number }
  }
  console.log(`  recoverSession in a fresh process: ${child.wall} ms wall, ${child.cpu} ms CPU ` +
    `(goal < 2000 ms wall: ${child.wall < 2000 ? 'met' : 'MISSED'}); epoch ${child.epoch}, ${child.files} files`)
  console.log(`    phases (second fresh copy): store.replay + core.apply ${child.replay.wall} ms wall / ${child.replay.cpu} ms CPU; ` +
    `recovered + core.snapshot() ${child.snapshot.wall} / ${child.snapshot.cpu}; ` +
    `saveSnapshot (${(child.snapshot.bytes / 1048576).toFixed(1)} MiB, deletes the journal) ${child.save.wall} / ${child.save.cpu}`)

  store = new SqliteStore({ dir })
  const load = timed(() => store.load(SESSION))
  store.close()
  const stored = load.value
  if (stored?.journal.length !== inputs.length) throw new Error('load returned the wrong journal')
  const replay = timed(() => {
    const c = new Coordinator(config)
    for (const input of stored.journal) c.apply(input)
    return c
  })
  store = new SqliteStore({ dir })
  const recovery = timed(() => recoverSession(store, SESSION, config, inputs.at(-1)!.now + 1000, 30))
  const recovered = recovery.value
  if (recovered === undefined) throw new Error('nothing recovered')
  const after = store.load(SESSION)
  store.close()

  const before = original.snapshot() as { lamport_clock: number, coordinator_epoch: number, files: object }
  const now = recovered.coordinator.snapshot() as { lamport_clock: number, coordinator_epoch: number, files: object }
  console.log('  in this process (warm JIT):')
  console.log(`    load (read + CRC-32 + JSON.parse of ${inputs.length} rows): ${load.wall} ms wall, ${load.cpu} ms CPU`)
  console.log(`    replay through the core alone:                     ${replay.wall} ms wall, ${replay.cpu} ms CPU`)
  console.log(`    recoverSession:                                    ${recovery.wall} ms wall, ${recovery.cpu} ms CPU`)
  console.log(`    epoch ${before.coordinator_epoch} → ${now.coordinator_epoch}, Lamport ${before.lamport_clock} → ${now.lamport_clock}, ` +
    `files ${Object.keys(before.files).length} = ${Object.keys(now.files).length}, journal after recovery: ${after?.journal.length} entries`)
}

function benchAppend (): void {
  const inputs = new Workload({ sessionId: SESSION }).take(APPEND_ENTRIES).slice(0, APPEND_ENTRIES)
  const bytes = inputs.reduce((n, i) => n + Buffer.byteLength(JSON.stringify(i)), 0)
  console.log(`append ${inputs.length} realistic inputs (mean ${Math.round(bytes / inputs.length)} B):`)
  for (const synchronous of ['FULL', 'NORMAL'] as const) {
    for (const batch of [1, 32]) {
      const dir = join(root, `append-${synchronous}-${batch}`)
      const store = new SqliteStore({ dir, synchronous })
      const latencies: number[] = []
      const t = performance.now()
      for (let i = 0; i < inputs.length; i += batch) {
        const s = performance.now()
        store.append(SESSION, inputs.slice(i, i + batch))
        latencies.push(performance.now() - s)
      }
      const total = performance.now() - t
      store.close()
      latencies.sort((a, b) => a - b)
      const pct = (p: number) => (latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? 0).toFixed(2)
      console.log(`  synchronous=${synchronous.padEnd(6)} batch ${String(batch).padStart(2)}: ` +
        `${Math.round(inputs.length / total * 1000).toString().padStart(7)} entries/s, ` +
        `${Math.round(latencies.length / total * 1000).toString().padStart(6)} commits/s, ` +
        `commit p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`)
    }
  }
}

if (values['recover-only'] !== undefined) {
  recoverOnly(values['recover-only'])
} else {
  try {
    console.log(`node ${process.version}, data in ${root}`)
    benchRecovery()
    benchAppend()
  } finally {
    if (values.dir === undefined) rmSync(root, { recursive: true, force: true })
  }
}
