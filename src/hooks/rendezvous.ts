/**
 * Rendezvous (agent-hooks-and-dashboard.md §7.1): which running shim a hook
 * process belongs to. The shims' registry entries
 * (`<state dir>/hooks/<pid>.json`, `HookRegistryEntry`) are read; entries of
 * dead processes are stale: ignored and removed; unreadable or foreign files
 * are ignored. Among the live entries, in order:
 *   1. `client_session_id` equal to the client's session id (stdin `session_id`);
 *   2. `client_pid` equal to the hook's parent or grandparent pid (an exec-form
 *      hook is a child of the client, a shell-form hook a grandchild);
 *   3. the only entry whose `workspace_dir` contains one of the cwds.
 * Otherwise there is no shim (the agent is not coordinated): `undefined`.
 * `waitMs` keeps looking until an entry matches or the time is up (a
 * SessionStart hook may run before the client has started the shim).
 * Node built-ins only: runs in the hook process.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, unlinkSync } from 'node:fs'
import { join, resolve, sep } from 'node:path'
import { HOOK_PROTOCOL_VERSION, registryDir, type HookRegistryEntry } from './protocol.js'

export type MatchRule = 'client_session_id' | 'client_pid' | 'workspace'

export interface RendezvousQuery {
  /** The client's session id (stdin `session_id`), when it has one. */
  readonly sessionId?: string | null | undefined
  /** Directories the hook acts in (stdin `cwd`, Cursor's `workspace_roots`). */
  readonly cwds?: readonly string[]
  /** The registry directory (default `registryDir(env)`). */
  readonly dir?: string
  readonly env?: Readonly<Record<string, string | undefined>>
  /** The hook's parent pid (default `process.ppid`); the grandparent is looked up. */
  readonly ppid?: number
  /** Keep looking for a match this long (default 0: one look). */
  readonly waitMs?: number
  /** Poll interval while waiting (default 25 ms). */
  readonly pollMs?: number
}

export interface Rendezvous {
  readonly entry: HookRegistryEntry
  readonly rule: MatchRule
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function isEntry (value: unknown): value is HookRegistryEntry {
  if (value === null || typeof value !== 'object') return false
  const e = value as Record<string, unknown>
  return e['v'] === HOOK_PROTOCOL_VERSION && Number.isInteger(e['pid']) && (e['pid'] as number) > 0 &&
    Number.isInteger(e['client_pid']) && typeof e['workspace_dir'] === 'string' && typeof e['socket'] === 'string' &&
    (e['client_session_id'] === null || typeof e['client_session_id'] === 'string')
}

/** The live registry entries in `dir`; entries whose process is gone are removed. */
export function liveEntries (dir: string): HookRegistryEntry[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  const out: HookRegistryEntry[] = []
  for (const name of names) {
    if (!/^\d+\.json$/.test(name)) continue
    const file = join(dir, name)
    let parsed: unknown
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'))
    } catch {
      continue // being written, or not ours
    }
    if (!isEntry(parsed) || `${parsed.pid}.json` !== name) continue
    if (!isAlive(parsed.pid)) {
      try { unlinkSync(file) } catch { /* someone else removed it */ }
      continue
    }
    out.push(parsed)
  }
  return out.sort((a, b) => a.pid - b.pid)
}

/** The parent pid of `pid`: `/proc/<pid>/stat` on Linux, `ps -o ppid=` elsewhere; undefined when unknown. */
export function parentPid (pid: number): number | undefined {
  if (!Number.isInteger(pid) || pid <= 1) return undefined
  if (process.platform === 'linux') {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const ppid = Number(fields[1])
      return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined
    } catch {
      return undefined
    }
  }
  if (process.platform === 'win32') return undefined
  try {
    const out = execFileSync('ps', ['-o', 'ppid=', '-p', String(pid)], { encoding: 'utf8', timeout: 500, stdio: ['ignore', 'pipe', 'ignore'] })
    const ppid = Number(out.trim())
    return Number.isInteger(ppid) && ppid > 0 ? ppid : undefined
  } catch {
    return undefined
  }
}

function contains (dir: string, path: string): boolean {
  const d = resolve(dir)
  const p = resolve(path)
  return p === d || p.startsWith(d.endsWith(sep) ? d : d + sep)
}

/** Applies the three rules to `entries` (already live); `ancestors` are the parent and grandparent pids. */
export function matchEntry (entries: readonly HookRegistryEntry[], query: { sessionId?: string | null | undefined, cwds?: readonly string[] }, ancestors: readonly number[]): Rendezvous | undefined {
  const sessionId = query.sessionId ?? ''
  if (sessionId !== '') {
    const bySession = entries.filter(e => e.client_session_id === sessionId)
    if (bySession.length >= 1) return { entry: bySession[bySession.length - 1] as HookRegistryEntry, rule: 'client_session_id' }
  }
  for (const pid of ancestors) {
    const byPid = entries.filter(e => e.client_pid === pid)
    if (byPid.length >= 1) return { entry: byPid[byPid.length - 1] as HookRegistryEntry, rule: 'client_pid' }
  }
  const cwds = query.cwds ?? []
  if (cwds.length > 0) {
    const byWorkspace = entries.filter(e => cwds.some(cwd => contains(e.workspace_dir, cwd)))
    if (byWorkspace.length === 1) return { entry: byWorkspace[0] as HookRegistryEntry, rule: 'workspace' }
  }
  return undefined
}

/** Finds the shim this hook belongs to (see the module comment), or undefined. */
export async function findShim (query: RendezvousQuery = {}): Promise<Rendezvous | undefined> {
  const dir = query.dir ?? registryDir(query.env ?? process.env)
  const ppid = query.ppid ?? process.ppid
  const grand = parentPid(ppid)
  const ancestors = grand === undefined ? [ppid] : [ppid, grand]
  const deadline = Date.now() + (query.waitMs ?? 0)
  for (;;) {
    const found = matchEntry(liveEntries(dir), query, ancestors)
    if (found !== undefined || Date.now() >= deadline) return found
    await new Promise(resolve => setTimeout(resolve, Math.min(query.pollMs ?? 25, Math.max(1, deadline - Date.now()))))
  }
}
