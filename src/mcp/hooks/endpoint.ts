/**
 * The shim's local hook endpoint (agent-hooks §7.1, §7.7): a Unix socket
 * (named pipe on Windows) answering src/hooks/protocol.ts requests with a
 * HookService, and the registry entry a hook finds it by.
 *
 * Contract:
 * - `startHookEndpoint` makes the private socket directory (0700) and the
 *   registry directory (0700), removes stale sockets and registry entries
 *   of dead pids, listens on `<socketDir>/<pid>.sock` (0600), then writes
 *   `<stateDir>/hooks/<pid>.json` (0600, atomically) with `client_pid` = the
 *   shim's parent and `client_session_id` = CLAUDE_CODE_SESSION_ID.
 * - One JSON line per request, one reply line per request, in order; a line
 *   over MAX_REQUEST_BYTES gets a TOO_LARGE reply and the connection is
 *   closed; unparsable JSON gets BAD_REQUEST; over MAX_CONNECTIONS
 *   connections are closed at once; an idle connection is closed after
 *   IDLE_MS. Bad input is logged once per request and never stops the
 *   endpoint.
 * - `close()` (and process exit) removes the socket and the registry file.
 */
import { readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, chmodSync } from 'node:fs'
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import type { Logger } from 'pino'
import {
  HOOK_PROTOCOL_VERSION, MAX_CONNECTIONS, MAX_REQUEST_BYTES, emptyReply, ensurePrivateDir, registryFile, socketPath,
  type HookRegistryEntry, type HookReply
} from '../../hooks/protocol.js'
import { isProcessAlive } from '../../process-alive.js'
import { HookService } from './decisions.js'
import type { ShimSession } from '../session.js'

const IDLE_MS = 30_000

export interface HookEndpointOptions {
  readonly session: ShimSession
  readonly logger: Logger
  /** Where the socket goes (socketDir(env)). */
  readonly socketDir: string
  /** Where the registry entry goes (registryDir(env)). */
  readonly registryDir: string
  /** CLAUDE_CODE_SESSION_ID of the shim's environment, if any. */
  readonly clientSessionId?: string | null
  readonly pid?: number
  readonly clientPid?: number
  readonly now?: () => number
}

export interface HookEndpoint {
  readonly socket: string
  readonly registryFile: string
  readonly service: HookService
  close (): Promise<void>
}

/** Removes `<pid>.sock` and `<pid>.json` files of processes that are gone. */
function sweepStale (dir: string, ext: '.sock' | '.json', self: number): void {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return
  }
  for (const name of names) {
    if (!name.endsWith(ext)) continue
    const pid = Number(name.slice(0, -ext.length))
    if (!Number.isInteger(pid) || pid <= 0) continue
    if (pid !== self && isProcessAlive(pid)) continue
    if (pid === self && ext === '.json') continue
    try {
      unlinkSync(join(dir, name))
    } catch {
      // removed meanwhile
    }
  }
}

export async function startHookEndpoint (options: HookEndpointOptions): Promise<HookEndpoint> {
  const pid = options.pid ?? process.pid
  const log = options.logger.child({ component: 'hooks' })
  const windows = process.platform === 'win32'
  if (!windows) ensurePrivateDir(options.socketDir)
  ensurePrivateDir(options.registryDir)
  const socket = socketPath(options.socketDir, pid)
  if (!windows) {
    sweepStale(options.socketDir, '.sock', pid) // includes a socket left by an earlier process with our pid
    rmSync(socket, { force: true })
  }
  sweepStale(options.registryDir, '.json', pid)

  const file = registryFile(options.registryDir, pid)
  let entry: HookRegistryEntry | undefined
  const writeEntry = (e: HookRegistryEntry): void => {
    const tmp = `${file}.${process.pid}.tmp`
    rmSync(tmp, { force: true }) // a leftover keeps its mode: always create it anew, 0600
    writeFileSync(tmp, JSON.stringify(e) + '\n', { mode: 0o600, flag: 'wx' })
    renameSync(tmp, file)
    entry = e
  }
  const service = new HookService({
    session: options.session,
    logger: log,
    ...(options.now !== undefined ? { now: options.now } : {}),
    clientSessionId: options.clientSessionId ?? null,
    pid,
    onClientSession: id => {
      if (entry !== undefined) writeEntry({ ...entry, client_session_id: id })
    }
  })
  const connections = new Set<Socket>()
  const server: Server = createServer(conn => serveConnection(conn, service, log, connections))
  server.maxConnections = MAX_CONNECTIONS * 4 // the hard ceiling; MAX_CONNECTIONS is enforced below with a reply
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(socket, () => {
      server.off('error', reject)
      resolve()
    })
  })
  server.on('error', err => log.warn({ err: err.message }, 'hook endpoint error'))
  if (!windows) chmodSync(socket, 0o600)

  writeEntry({
    v: HOOK_PROTOCOL_VERSION,
    pid,
    client_pid: options.clientPid ?? process.ppid,
    client_session_id: options.clientSessionId ?? null,
    workspace_dir: options.session.config.workspaceDir,
    session_id: options.session.sessionId,
    principal_id: options.session.principalId,
    socket,
    started_at: new Date().toISOString()
  })
  service.start()
  log.info({ socket, registry: file }, 'hook endpoint listening')

  let closed = false
  const removeFiles = (): void => {
    try {
      // Only our own entry: never remove what another process wrote meanwhile.
      const current = JSON.parse(readFileSync(file, 'utf8')) as { pid?: unknown }
      if (current.pid === pid) unlinkSync(file)
    } catch {
      // already gone
    }
    if (!windows) rmSync(socket, { force: true })
  }
  const onExit = (): void => removeFiles()
  process.once('exit', onExit)

  return {
    socket,
    registryFile: file,
    service,
    async close () {
      if (closed) return
      closed = true
      process.off('exit', onExit)
      service.stop()
      for (const c of connections) c.destroy()
      await new Promise<void>(resolve => server.close(() => resolve()))
      removeFiles()
    }
  }
}

function serveConnection (conn: Socket, service: HookService, log: Logger, connections: Set<Socket>): void {
  if (connections.size >= MAX_CONNECTIONS) {
    log.warn({ open: connections.size }, 'hook endpoint: too many connections; one refused')
    conn.end(JSON.stringify({ ...emptyReply(null, 'ok', null), error: { code: 'TOO_LARGE', message: `more than ${MAX_CONNECTIONS} connections at once` } }) + '\n')
    conn.destroySoon()
    return
  }
  connections.add(conn)
  conn.setTimeout(IDLE_MS, () => conn.destroy())
  conn.on('close', () => connections.delete(conn))
  conn.on('error', () => conn.destroy())
  let buffered: Buffer[] = []
  let size = 0
  let queue: Promise<void> = Promise.resolve()
  let dead = false
  const reply = (r: HookReply): void => {
    if (!conn.destroyed && conn.writable) conn.write(JSON.stringify(r) + '\n')
  }
  const handleLine = (line: string): void => {
    if (line.trim() === '') return
    let parsed: unknown
    try {
      parsed = JSON.parse(line)
    } catch {
      log.warn({ bytes: line.length }, 'hook endpoint: a request that is not JSON')
      queue = queue.then(() => reply({ ...emptyReply(null, 'ok', null), error: { code: 'BAD_REQUEST', message: 'a request is one JSON object per line' } }))
      return
    }
    queue = queue.then(async () => reply(await service.handle(parsed)))
  }
  conn.on('data', (chunk: Buffer) => {
    if (dead) return
    let start = 0
    for (;;) {
      const nl = chunk.indexOf(0x0a, start)
      const part = chunk.subarray(start, nl === -1 ? chunk.length : nl)
      size += part.length
      if (size > MAX_REQUEST_BYTES) {
        dead = true
        log.warn({ limit: MAX_REQUEST_BYTES }, 'hook endpoint: request too large; connection closed')
        queue = queue.then(() => {
          if (!conn.destroyed) conn.end(JSON.stringify({ ...emptyReply(null, 'ok', null), error: { code: 'TOO_LARGE', message: `a request line may hold at most ${MAX_REQUEST_BYTES} bytes` } }) + '\n')
        })
        return
      }
      if (nl === -1) {
        if (part.length > 0) buffered.push(part)
        return
      }
      const line = Buffer.concat([...buffered, part]).toString('utf8')
      buffered = []
      size = 0
      handleLine(line)
      start = nl + 1
    }
  })
}
