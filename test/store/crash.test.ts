import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { SqliteStore } from '../../src/store/index.js'
import { captureLogs } from './fixtures/logs.js'
import { tempDir } from './fixtures/temp-dir.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/append-loop.ts', import.meta.url))
const DEADLINE_MS = 60_000

interface Run { start: number; printed: number[] }

/**
 * Starts the append loop, waits until it has printed `lines` acknowledged
 * sequence numbers after its start line, then SIGKILLs it wherever it is.
 */
async function runAndKill (dir: string, lines: number): Promise<Run> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(child, 'exit')
  const run: Run = { start: -1, printed: [] }
  const deadline = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS)
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      if (line.startsWith('start ')) {
        run.start = Number(line.slice(6))
        continue
      }
      run.printed.push(Number(line))
      if (run.printed.length >= lines) {
        child.kill('SIGKILL')
        break
      }
    }
  } finally {
    clearTimeout(deadline)
  }
  const [code, signal] = await exited as [number | null, string | null]
  if (signal !== 'SIGKILL') throw new Error(`append loop exited on its own (code ${code}, signal ${signal})`)
  return run
}

t.test('a SIGKILLed writer loses no acknowledged entry and leaves nothing half-written', async t => {
  const dir = join(tempDir(t), 'data')
  let previous = 0
  for (let kill = 1; kill <= 3; kill++) {
    // A random moment: after a random number of acknowledged batches, while the loop keeps writing.
    const lines = 50 + Math.floor(Math.random() * 400)
    const run = await runAndKill(dir, lines)
    const acknowledged = run.printed.at(-1) ?? run.start
    t.equal(run.start, previous, `run ${kill} resumed from everything stored before`)
    t.equal(run.printed.length, lines, `run ${kill} acknowledged ${lines} batches`)

    const logs = captureLogs()
    const store = new SqliteStore({ dir, logger: logs })
    try {
      const stored = store.load('crash')
      t.ok(stored, 'the session is there')
      const upTo = (stored?.snapshot as { upTo: number } | undefined)?.upTo ?? 0
      const journal = stored?.journal ?? []
      const total = upTo + journal.length
      t.ok(total >= acknowledged, `run ${kill}: stored ${total} ≥ acknowledged ${acknowledged}`)
      const contiguous = journal.every((input, i) => input.now === upTo + i + 1 && input.kind === 'file_sync')
      t.ok(contiguous, 'the journal continues the snapshot without gaps')
      const last = journal.at(-1)
      if (last !== undefined && last.kind === 'file_sync') {
        t.match(last.path, new RegExp(`-${total}$`), 'the last stored batch is whole')
        t.equal(last.content, 'x'.repeat((total * 37) % 900), 'and its content intact')
      }
      t.same(store.listQuarantined(), [], 'nothing damaged')
      t.same(logs.lines.filter(l => l.level !== 'info'), [], 'no torn record either (SQLite rolled it back)')
      previous = total
    } finally {
      store.close()
    }
  }
})
