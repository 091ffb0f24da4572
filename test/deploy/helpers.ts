/**
 * Helpers for the deploy tests: real child processes (the sidecar from
 * source, Debian's caddy), free loopback ports, and small readers for the
 * deploy files (a TOML subset for fly.toml, the Dockerfile's instructions).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { cleanEnv, freePort, tempDir, type Env, type Teardown } from '../helpers/process.js'

export { cleanEnv, freePort, tempDir, type Env, type Teardown }

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const SERVER_CLI = join(ROOT, 'src', 'server', 'cli.ts')
export const SHIM_CLI = join(ROOT, 'src', 'mcp', 'cli.ts')
/** `node --import <this>` runs a .ts entry from any working directory (the project's TypeScript loader). */
export const TS_LOADER = pathToFileURL(join(ROOT, 'scripts', 'ts-register.mjs')).href

export interface Child {
  readonly child: ChildProcess
  output (): string
  /** Resolves when the accumulated stdout+stderr matches; rejects if the process exits or the deadline passes. */
  waitFor (pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>
  /** Sends the signal and resolves with the exit code once the process is gone (SIGKILL after 10 s). */
  stop (signal?: NodeJS.Signals): Promise<number | null>
}

export function startChild (t: Teardown, command: string, args: string[], options: SpawnOptions): Child {
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stderr?.on('data', (c: Buffer) => { out += c.toString('utf8') })
  const exited = new Promise<number | null>(resolve => child.once('exit', (code) => resolve(code)))
  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const code = await exited
      clearTimeout(timer)
      return code
    }
    return child.exitCode
  }
  t.teardown(() => stop('SIGKILL'))
  const waitFor = (pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> => new Promise((resolve, reject) => {
    const check = (): boolean => {
      const m = pattern.exec(out)
      if (m === null) return false
      cleanup()
      resolve(m)
      return true
    }
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${out}`)) }, timeoutMs)
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`exited with ${code} before ${pattern}; output:\n${out}`)) }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stdout?.off('data', check)
      child.stderr?.off('data', check)
      child.off('exit', onExit)
    }
    child.stdout?.on('data', check)
    child.stderr?.on('data', check)
    child.once('exit', onExit)
    check()
  })
  return { child, output: () => out, waitFor, stop }
}

/** `mpac-mcp-sidecar` from source; resolves with its port once the banner is printed. */
export async function startSidecar (t: Teardown, args: string[], env: Env): Promise<Child & { port: number }> {
  const c = startChild(t, process.execPath, ['--import', TS_LOADER, SERVER_CLI, ...args], { cwd: ROOT, env })
  const m = await c.waitFor(/listening:\s+\S+:(\d+)/)
  return { ...c, port: Number(m[1]) }
}

export interface Caddy extends Child {
  readonly port: number
  readonly storage: string
  /** Caddy's internal root CA certificate (PEM path), to trust its certificates. */
  readonly rootCert: string
}

/**
 * Debian's `caddy run` with deploy/Caddyfile.local on a free 127.0.0.1 port,
 * proxying to `upstream`. Every file Caddy writes goes to a temp dir.
 */
export async function startCaddy (t: Teardown, upstream: string, httpsPort?: number): Promise<Caddy> {
  const home = tempDir(t, 'mpac-caddy-')
  const storage = join(home, 'storage')
  const port = httpsPort ?? await freePort()
  const env = cleanEnv({
    HOME: home,
    XDG_CONFIG_HOME: join(home, 'config'),
    XDG_DATA_HOME: join(home, 'data'),
    CADDY_HTTPS_PORT: String(port),
    CADDY_STORAGE_DIR: storage,
    MPAC_UPSTREAM: upstream
  })
  const c = startChild(t, 'caddy', ['run', '--config', join(ROOT, 'deploy', 'Caddyfile.local'), '--adapter', 'caddyfile'], { cwd: home, env })
  await c.waitFor(/serving initial configuration/)
  return { ...c, port, storage, rootCert: join(storage, 'pki', 'authorities', 'local', 'root.crt') }
}

/** `caddy validate` on a Caddyfile with these environment variables. */
export function caddyValidate (file: string, env: Env): { status: number | null, output: string } {
  const home = mkdtempSync(join(tmpdir(), 'mpac-caddy-validate-'))
  try {
    const r = spawnSync('caddy', ['validate', '--config', file, '--adapter', 'caddyfile'], {
      cwd: home,
      env: cleanEnv({ HOME: home, XDG_CONFIG_HOME: join(home, 'config'), XDG_DATA_HOME: join(home, 'data'), ...env }),
      encoding: 'utf8'
    })
    return { status: r.status, output: `${r.stdout}${r.stderr}` }
  } finally {
    rmSync(home, { recursive: true, force: true })
  }
}

/** `caddy version` as [major, minor, patch]. */
export function caddyVersion (): [number, number, number] {
  const r = spawnSync('caddy', ['version'], { encoding: 'utf8' })
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(r.stdout)
  if (m === null) throw new Error(`cannot read caddy's version from ${JSON.stringify(r.stdout)} ${r.stderr}`)
  return [Number(m[1]), Number(m[2]), Number(m[3])]
}

// ---------------------------------------------------------------------------
// A TOML subset, enough for fly.toml: comments, [table], [[array of tables]],
// dotted table names, key = "string" | 'string' | integer | true | false |
// [strings]. Anything else throws, so an unreadable fly.toml fails the test.

export type TomlValue = string | number | boolean | string[] | TomlTable | TomlTable[]
export interface TomlTable { [key: string]: TomlValue }

function stripComment (line: string): string {
  let quote: string | undefined
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string
    if (quote !== undefined) {
      if (ch === quote) quote = undefined
    } else if (ch === '"' || ch === "'") {
      quote = ch
    } else if (ch === '#') {
      return line.slice(0, i)
    }
  }
  return line
}

function tomlScalar (raw: string, where: string): string | number | boolean | string[] {
  const v = raw.trim()
  if (/^"[^"\\]*"$/.test(v) || /^'[^']*'$/.test(v)) return v.slice(1, -1)
  if (/^-?\d+$/.test(v)) return Number(v)
  if (v === 'true' || v === 'false') return v === 'true'
  if (v.startsWith('[') && v.endsWith(']')) {
    const inner = v.slice(1, -1).trim()
    if (inner === '') return []
    return inner.split(',').map(s => s.trim()).filter(s => s !== '').map(s => {
      const item = tomlScalar(s, where)
      if (typeof item !== 'string') throw new Error(`${where}: only arrays of strings are supported`)
      return item
    })
  }
  throw new Error(`${where}: unsupported TOML value ${JSON.stringify(v)}`)
}

export function parseToml (text: string): TomlTable {
  const root: TomlTable = {}
  let current: TomlTable = root
  const descend = (path: string[], where: string): TomlTable => {
    let node: TomlTable = root
    for (const key of path) {
      const next = node[key]
      if (next === undefined) {
        const table: TomlTable = {}
        node[key] = table
        node = table
      } else if (Array.isArray(next) && next.length > 0 && typeof next[0] === 'object') {
        node = next[next.length - 1] as TomlTable
      } else if (typeof next === 'object' && !Array.isArray(next)) {
        node = next
      } else {
        throw new Error(`${where}: ${key} is not a table`)
      }
    }
    return node
  }
  text.split('\n').forEach((rawLine, i) => {
    const where = `line ${i + 1}`
    const line = stripComment(rawLine).trim()
    if (line === '') return
    let m = /^\[\[([A-Za-z0-9_.-]+)\]\]$/.exec(line)
    if (m !== null) {
      const path = (m[1] as string).split('.')
      const last = path.pop() as string
      const parent = descend(path, where)
      const list = (parent[last] ??= []) as TomlTable[]
      if (!Array.isArray(list)) throw new Error(`${where}: ${last} is not an array of tables`)
      const table: TomlTable = {}
      list.push(table)
      current = table
      return
    }
    m = /^\[([A-Za-z0-9_.-]+)\]$/.exec(line)
    if (m !== null) {
      current = descend((m[1] as string).split('.'), where)
      return
    }
    m = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line)
    if (m === null) throw new Error(`${where}: cannot read ${JSON.stringify(line)}`)
    current[m[1] as string] = tomlScalar(m[2] as string, where)
  })
  return root
}

// ---------------------------------------------------------------------------
// Dockerfile instructions: continuation lines joined, comments dropped.

export interface Instruction { readonly stage: number, readonly keyword: string, readonly args: string }

export function parseDockerfile (text: string): Instruction[] {
  const out: Instruction[] = []
  let stage = -1
  let pending = ''
  for (const rawLine of text.split('\n')) {
    if (pending === '' && /^\s*#/.test(rawLine)) continue
    if (pending !== '' && /^\s*#/.test(rawLine)) continue
    const line = rawLine.replace(/\s+$/, '')
    if (line.endsWith('\\')) {
      pending += line.slice(0, -1) + ' '
      continue
    }
    const full = (pending + line).trim()
    pending = ''
    if (full === '') continue
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(full)
    if (m === null) throw new Error(`cannot read Dockerfile line ${JSON.stringify(full)}`)
    const keyword = (m[1] as string).toUpperCase()
    if (keyword === 'FROM') stage++
    out.push({ stage, keyword, args: (m[2] as string).trim() })
  }
  return out
}

/** ENV instructions (`K=V K2="V 2"` form) of one stage, in order. */
export function dockerEnv (instructions: readonly Instruction[], stage: number): Env {
  const env: Env = {}
  for (const ins of instructions) {
    if (ins.stage !== stage || ins.keyword !== 'ENV') continue
    const re = /([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g
    let m: RegExpExecArray | null
    let found = false
    while ((m = re.exec(ins.args)) !== null) {
      found = true
      env[m[1] as string] = m[3] ?? (m[2] as string)
    }
    if (!found) throw new Error(`ENV ${ins.args}: use the KEY=VALUE form`)
  }
  return env
}

export interface Stage { readonly index: number, readonly name: string | undefined, readonly from: string, readonly parent: number | undefined }

/** The build stages: `FROM <image|stage> [AS name]`, with the index of the stage each one builds on. */
export function dockerStages (instructions: readonly Instruction[]): Stage[] {
  const stages: Stage[] = []
  for (const ins of instructions) {
    if (ins.keyword !== 'FROM') continue
    const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args)
    if (m === null) throw new Error(`cannot read FROM ${ins.args}`)
    const from = m[1] as string
    const parent = stages.find(s => s.name === from)?.index
    stages.push({ index: ins.stage, name: m[2], from, parent })
  }
  return stages
}

/** ENV of a stage including what it inherits from the stages it builds on. */
export function stageEnv (instructions: readonly Instruction[], stage: number): Env {
  const stages = dockerStages(instructions)
  const chain: number[] = []
  for (let s: number | undefined = stage; s !== undefined; s = stages[s]?.parent) chain.unshift(s)
  return Object.assign({}, ...chain.map(s => dockerEnv(instructions, s))) as Env
}
