// Rendezvous: which shim a hook process belongs to, from real registry files
// and real process trees (an exec-form hook is the client's child, a
// shell-form one its grandchild).
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import type { HookRegistryEntry } from '../../src/hooks/protocol.js'
import { findShim, liveEntries, matchEntry, parentPid } from '../../src/hooks/rendezvous.js'
import { tempDir } from '../helpers/process.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const REGISTER = join(ROOT, 'scripts', 'ts-register.mjs')

function entry (pid: number, over: Partial<HookRegistryEntry> = {}): HookRegistryEntry {
  return { v: 1, pid, client_pid: 1, client_session_id: null, workspace_dir: '/nowhere', session_id: 's', principal_id: `agent:p${pid}`, socket: `/tmp/${pid}.sock`, started_at: '2026-12-04T00:00:00Z', ...over }
}

function write (dir: string, e: HookRegistryEntry): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, `${e.pid}.json`), JSON.stringify(e), { mode: 0o600 })
}

/** A pid that existed and is gone now. */
function deadPid (): number {
  const r = spawnSync(process.execPath, ['-e', ''])
  return r.pid
}

/** Live processes to stand in for shims (each registry entry needs a live pid). */
function liveProcess (t: { teardown (fn: () => void): void }): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  return child.pid as number
}

t.test('parentPid reads the real process tree', async t => {
  t.equal(parentPid(process.pid), process.ppid)
  t.equal(parentPid(deadPid()), undefined)
  t.equal(parentPid(1), undefined)
})

t.test('liveEntries removes stale entries and ignores foreign files', async t => {
  const dir = tempDir(t, 'mpac-reg-')
  const dead = deadPid()
  write(dir, entry(process.pid))
  write(dir, entry(dead))
  writeFileSync(join(dir, '123.json'), 'not json')
  writeFileSync(join(dir, 'notes.txt'), 'x')
  writeFileSync(join(dir, '777.json'), JSON.stringify(entry(process.pid))) // name and pid disagree
  t.same(liveEntries(dir).map(e => e.pid), [process.pid])
  t.notOk(existsSync(join(dir, `${dead}.json`)), 'the dead shim\'s entry is removed')
  t.ok(existsSync(join(dir, '123.json')), 'a file we cannot read is left alone')
  t.same(liveEntries(join(dir, 'missing')), [])
})

t.test('matchEntry: session id first, then parent or grandparent pid, then the only workspace', async t => {
  const a = entry(10, { client_session_id: 'sess-a', client_pid: 100, workspace_dir: '/repo' })
  const b = entry(11, { client_session_id: 'sess-b', client_pid: 101, workspace_dir: '/repo' })
  const c = entry(12, { client_pid: 102, workspace_dir: '/other/repo' })
  const all = [a, b, c]
  t.same(matchEntry(all, { sessionId: 'sess-b' }, [100]), { entry: b, rule: 'client_session_id' }, 'the session id beats the parent pid')
  t.same(matchEntry(all, { sessionId: 'after-clear' }, [999, 100]), { entry: a, rule: 'client_pid' }, 'grandparent')
  t.same(matchEntry(all, { sessionId: null, cwds: ['/other/repo/src'] }, [999]), { entry: c, rule: 'workspace' })
  t.equal(matchEntry(all, { cwds: ['/repo/src'] }, [999]), undefined, 'two shims serve /repo: ambiguous, so none')
  t.equal(matchEntry(all, { cwds: ['/other/repository'] }, [999]), undefined, 'a sibling directory with a common prefix is not inside')
  t.equal(matchEntry(all, {}, []), undefined)
})

t.test('findShim in a real hook process: exec form (parent) and shell form (grandparent)', async t => {
  const dir = tempDir(t, 'mpac-reg-')
  const shimPid = liveProcess(t)
  // This test process plays the client: the hook is its child, or its grandchild through sh.
  write(dir, entry(shimPid, { client_pid: process.pid, workspace_dir: '/elsewhere' }))
  const script = join(tempDir(t, 'mpac-hookproc-'), 'hook.mjs')
  writeFileSync(script, `const { findShim } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'src/hooks/rendezvous.ts')).href)})
const found = await findShim({ dir: process.argv[2], sessionId: 'unknown', cwds: ['/'] })
process.stdout.write(JSON.stringify(found ?? null))\n`)
  const direct = spawnSync(process.execPath, ['--import', REGISTER, script, dir], { encoding: 'utf8' })
  t.equal(direct.status, 0, direct.stderr)
  t.same(JSON.parse(direct.stdout), { entry: entry(shimPid, { client_pid: process.pid, workspace_dir: '/elsewhere' }), rule: 'client_pid' })
  // `; true` keeps sh from exec-ing node, so node's parent is sh and its grandparent this process.
  const shell = spawnSync('sh', ['-c', '"$0" "$@"; true', process.execPath, '--import', REGISTER, script, dir], { encoding: 'utf8' })
  t.equal(shell.status, 0, shell.stderr)
  t.same(JSON.parse(shell.stdout)?.rule, 'client_pid', 'found through the grandparent')
})

t.test('findShim waits for an entry written after it started, and gives up at the deadline', async t => {
  const dir = tempDir(t, 'mpac-reg-')
  const shimPid = liveProcess(t)
  const started = Date.now()
  const pending = findShim({ dir, sessionId: 'late', ppid: 999_999, waitMs: 1500 })
  setImmediate(() => write(dir, entry(shimPid, { client_session_id: 'late' })))
  const found = await pending
  t.equal(found?.entry.pid, shimPid)
  t.ok(Date.now() - started < 1500, 'found before the deadline')
  const t0 = Date.now()
  t.equal(await findShim({ dir, sessionId: 'nobody', ppid: 999_999, waitMs: 150 }), undefined)
  const took = Date.now() - t0
  t.ok(took >= 140 && took < 1000, `gave up after ${took} ms`)
})
