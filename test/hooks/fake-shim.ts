/**
 * A stand-in for a shim's hook endpoint: a real Unix socket speaking the hook
 * protocol (one JSON line in, one out) with canned replies, and its registry
 * entry, so the real `mpac-mcp hook` command finds it by rendezvous.
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { HookRegistryEntry, HookReply } from '../../src/hooks/protocol.js'
import { cleanEnv, tempDir, type Env, type Teardown } from '../helpers/process.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const REGISTER = join(ROOT, 'scripts', 'ts-register.mjs')
export const CLI = join(ROOT, 'src', 'mcp', 'cli.ts')

/** What the fake answers: a reply, a raw line, or nothing at all. */
export type Canned = Partial<HookReply> | { raw: string } | 'never' | ((request: Record<string, unknown>, n: number) => Partial<HookReply>)

export interface FakeShim {
  readonly socket: string
  readonly entry: HookRegistryEntry
  /** Requests received, parsed. */
  readonly requests: Array<Record<string, unknown>>
  /** Resolves with the time (performance.now()) the next request arrives. */
  nextRequest (): Promise<number>
  answer (canned: Canned): void
}

export function reply (over: Partial<HookReply> = {}): HookReply {
  return { v: 1, op: null, decision: 'none', coordinator: 'ok', view_age_ms: 40, holders: [], frozen: [], suspended: [], announced: null, events: [], ...over }
}

export async function startFakeShim (t: Teardown, registry: string, entry: Partial<HookRegistryEntry> = {}): Promise<FakeShim> {
  const dir = tempDir(t, 'mpac-fakeshim-')
  const socket = join(dir, 's.sock')
  let canned: Canned = {}
  const requests: Array<Record<string, unknown>> = []
  let waiters: Array<(at: number) => void> = []
  const open = new Set<Socket>()
  const server = createServer(conn => {
    open.add(conn)
    conn.on('close', () => open.delete(conn))
    conn.on('error', () => {})
    let buf = ''
    conn.on('data', c => {
      buf += c.toString('utf8')
      const nl = buf.indexOf('\n')
      if (nl === -1) return
      const at = performance.now()
      requests.push(JSON.parse(buf.slice(0, nl)) as Record<string, unknown>)
      for (const w of waiters) w(at)
      waiters = []
      if (canned === 'never') return
      const last = requests.at(-1) as Record<string, unknown>
      const answer = typeof canned === 'function' ? canned(last, requests.length) : canned
      if ('raw' in answer) conn.write(answer.raw)
      else conn.write(JSON.stringify(reply({ op: (last['op'] as HookReply['op']) ?? null, ...answer })) + '\n')
    })
  })
  await new Promise<void>(resolve => server.listen(socket, resolve))
  t.teardown(() => {
    for (const c of open) c.destroy()
    return new Promise<void>(resolve => server.close(() => resolve()))
  })
  const full: HookRegistryEntry = {
    v: 1, pid: process.pid, client_pid: 1, client_session_id: null, workspace_dir: '/tmp/cce2e/ws',
    session_id: 'proj-a', principal_id: 'agent:bob', socket, started_at: '2026-12-04T18:21:45Z', ...entry
  }
  writeEntry(registry, full)
  return {
    socket,
    entry: full,
    requests,
    nextRequest: () => new Promise(resolve => waiters.push(resolve)),
    answer (c) { canned = c }
  }
}

export function writeEntry (registry: string, entry: HookRegistryEntry): void {
  mkdirSync(registry, { recursive: true, mode: 0o700 })
  writeFileSync(join(registry, `${entry.pid}.json`), JSON.stringify(entry), { mode: 0o600 })
}

export interface HookRun { code: number | null, stdout: string, stderr: string, ms: number }

/** The environment of a hook: no MPAC_* or Claude Code variables of the developer, this state home. */
export function hookEnv (stateHome: string, extra: Env = {}): Env {
  const env = cleanEnv({ XDG_STATE_HOME: stateHome, ...extra })
  for (const k of Object.keys(env)) if (k.startsWith('CLAUDE_CODE_') && !(k in extra)) delete env[k]
  return env
}

/** Runs the real `mpac-mcp hook …` with `stdin`. */
export function runHook (args: string[], stdin: string, env: Env): Promise<HookRun> {
  const started = performance.now()
  const child = spawn(process.execPath, ['--import', REGISTER, CLI, 'hook', ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  child.stdin.on('error', () => {})
  child.stdin.end(stdin)
  return new Promise(resolve => child.once('close', code => resolve({ code, stdout, stderr, ms: performance.now() - started })))
}
