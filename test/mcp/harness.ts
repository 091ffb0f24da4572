/**
 * Test harness for the shim. A coordinator is `src/server/cli.ts` on
 * 127.0.0.1 port 0 (the port read from its banner), a child process; a shim
 * is either `src/mcp/cli.ts` driven by the MCP SDK `Client` over stdio
 * (`startShim`, for what the process itself does: stdio, environment checks,
 * exit) or the same MCP server in this process over the SDK's
 * `InMemoryTransport` (`startInProcessShim`: the real `createMcpServer`,
 * session pool and coordinator client, for tests that only call tools).
 * Teardown kills every child, including sidecars the shims auto-started
 * (found through their pid files).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { createServer as createNetServer, connect as netConnect, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import pino from 'pino'
import { createMcpServer } from '../../src/mcp/server.js'
import { SessionPool } from '../../src/mcp/session.js'
import { cleanEnv, freePort, tempDir, type Env, type Teardown } from '../helpers/process.js'

export { cleanEnv, freePort, tempDir, type Env, type Teardown }

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SERVER_CLI = join(ROOT, 'src', 'server', 'cli.ts')
const SHIM_CLI = join(ROOT, 'src', 'mcp', 'cli.ts')
/** `--import tsx` resolves from the cwd; the absolute URL works from any directory. */
export const TSX = import.meta.resolve('tsx')

/** Resolves when `predicate(output)` holds for the child's accumulated stdout+stderr; rejects on exit or deadline. */
function waitForOutput (child: ChildProcess, read: () => string, predicate: (out: string) => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`timed out; output:\n${read()}`)) }, timeoutMs)
    const onData = (): void => { if (predicate(read())) { cleanup(); resolve() } }
    const onExit = (code: number | null): void => { cleanup(); reject(new Error(`exited with ${code}; output:\n${read()}`)) }
    const cleanup = (): void => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.stderr?.off('data', onData)
      child.off('exit', onExit)
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    child.on('exit', onExit)
    onData()
  })
}

export interface Coordinator {
  readonly port: number
  readonly child: ChildProcess
  output (): string
  stop (): Promise<void>
}

export async function killChild (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** Starts `mpac-mcp-sidecar` with these arguments (add `--port 0`); resolves once it prints its port. */
export async function startCoordinator (t: Teardown, args: string[], env: Env = cleanEnv()): Promise<Coordinator> {
  const child = spawn(process.execPath, ['--import', TSX, SERVER_CLI, '--host', '127.0.0.1', ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { out += c.toString('utf8') })
  t.teardown(() => killChild(child, 'SIGKILL'))
  await waitForOutput(child, () => out, o => /listening:\s+\S+:\d+/.test(o), 20_000)
  const port = Number(/listening:\s+\S+:(\d+)/.exec(out)![1])
  return { port, child, output: () => out, stop: () => killChild(child) }
}

/** An MCP client connected to a shim, wherever the shim runs. */
export interface ToolClient {
  readonly client: Client
  call (tool: string, args?: Record<string, unknown>): Promise<Record<string, unknown>>
  raw (tool: string, args?: Record<string, unknown>): Promise<CallToolResult>
  close (): Promise<void>
}

export interface Shim extends ToolClient {
  readonly transport: StdioClientTransport
  stderr (): string
}

/**
 * The shim's MCP server in this process (what `mpac-mcp` runs, minus stdio):
 * `env` and `cwd` as the process would have them. Closed at teardown.
 */
export async function startInProcessShim (t: Teardown, env: Env, cwd: string = ROOT): Promise<ToolClient> {
  const pool = new SessionPool(env, cwd, { logger: pino({ level: 'silent' }), env })
  const server = createMcpServer(pool)
  const client = new Client({ name: 'mpac-mcp-test', version: '0.0.0' })
  const [serverSide, clientSide] = InMemoryTransport.createLinkedPair()
  await server.connect(serverSide)
  await client.connect(clientSide)
  let closed = false
  const shim: ToolClient = {
    client,
    async raw (tool, args = {}) {
      return await client.callTool({ name: tool, arguments: args }) as CallToolResult
    },
    async call (tool, args = {}) {
      const res = await shim.raw(tool, args)
      return (res.structuredContent ?? {})
    },
    async close () {
      if (closed) return
      closed = true
      // As the CLI on stdin's end: leave the session (GOODBYE), then stop serving.
      await pool.closeAll()
      await client.close()
      await server.close()
    }
  }
  t.teardown(() => shim.close())
  return shim
}

/** Runs the real `mpac-mcp` process and connects the SDK client to it. */
export async function startShim (t: Teardown, env: Env, cwd: string = ROOT): Promise<Shim> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ['--import', TSX, SHIM_CLI],
    env,
    cwd,
    stderr: 'pipe'
  })
  let err = ''
  transport.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const client = new Client({ name: 'mpac-mcp-test', version: '0.0.0' })
  await client.connect(transport)
  let closed = false
  const shim: Shim = {
    client,
    transport,
    stderr: () => err,
    async raw (tool, args = {}) {
      return await client.callTool({ name: tool, arguments: args }) as CallToolResult
    },
    async call (tool, args = {}) {
      const res = await shim.raw(tool, args)
      return (res.structuredContent ?? {})
    },
    async close () {
      if (closed) return
      closed = true
      const pid = transport.pid
      await client.close()
      if (pid !== null) await waitForExit(pid, 5000)
    }
  }
  t.teardown(() => shim.close())
  return shim
}

/** Resolves when the process is gone (polls kill(pid, 0)), or after the deadline. */
export async function waitForExit (pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0)
    } catch {
      return true
    }
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  return false
}

/** Kills every sidecar whose pid file lies under this XDG_STATE_HOME. */
export function killSidecars (stateHome: string): number[] {
  const dir = join(stateHome, 'mpac-mcp', 'sidecars')
  const pids: number[] = []
  if (!existsSync(dir)) return pids
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.pid')) continue
    const pid = Number(readFileSync(join(dir, f), 'utf8').trim())
    if (!Number.isInteger(pid) || pid <= 0) continue
    pids.push(pid)
    try { process.kill(pid, 'SIGKILL') } catch { /* gone */ }
  }
  return pids
}

/** Per-user state dir for auto-started sidecars, whose sidecars are killed at teardown. */
export function stateHome (t: Teardown): string {
  const dir = tempDir(t, 'mpac-state-')
  t.teardown(() => { killSidecars(dir) })
  return dir
}

export interface Proxy {
  readonly port: number
  /** Forward new connections to this port from now on. */
  retarget (port: number): void
  /**
   * Resolves when the next frame from the client (the shim) arrives; that
   * chunk is held, never forwarded, so the coordinator never sees it.
   */
  holdNextClientChunk (): Promise<void>
  /** Connections currently open through the proxy. */
  connections (): number
  /** The connections open now go silent both ways without closing (a half-open connection); new ones work. */
  blackhole (): void
}

/**
 * A TCP proxy on 127.0.0.1 port 0 in front of a coordinator: lets a test know
 * that the shim has sent a request before the connection is cut. When either
 * side closes, the other side is closed too, as a real restart would.
 */
export async function startProxy (t: Teardown, targetPort: number): Promise<Proxy> {
  let target = targetPort
  let holder: (() => void) | undefined
  const pairs = new Set<[Socket, Socket]>()
  const silent = new WeakSet<Socket>()
  const server = createNetServer(client => {
    const upstream = netConnect(target, '127.0.0.1')
    const pair: [Socket, Socket] = [client, upstream]
    pairs.add(pair)
    const end = (): void => {
      pairs.delete(pair)
      client.destroy()
      upstream.destroy()
    }
    client.on('data', chunk => {
      if (silent.has(client)) return
      if (holder !== undefined) {
        const h = holder
        holder = undefined
        h()
        return
      }
      upstream.write(chunk)
    })
    upstream.on('data', chunk => { if (!silent.has(client)) client.write(chunk) })
    client.on('close', end)
    upstream.on('close', end)
    client.on('error', end)
    upstream.on('error', end)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const [a, b] of pairs) { a.destroy(); b.destroy() }
    return new Promise<void>(resolve => server.close(() => resolve()))
  })
  return {
    port: (server.address() as AddressInfo).port,
    retarget (port) { target = port },
    holdNextClientChunk () { return new Promise(resolve => { holder = resolve }) },
    connections () { return pairs.size },
    blackhole () { for (const [client] of pairs) silent.add(client) }
  }
}

/** Polls `probe` until it returns a defined value; rejects after the deadline. */
export async function eventually<T> (probe: () => Promise<T | undefined>, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}
