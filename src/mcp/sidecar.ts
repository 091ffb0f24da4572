/**
 * Local mode: find or start the workspace's coordinator (`mpac-mcp-sidecar`)
 * on 127.0.0.1 at the derived port. The sidecar runs detached, with a pid
 * file and a log file in the per-user state directory
 * (`$XDG_STATE_HOME/mpac-mcp/sidecars/<session-id>.{pid,log}`), stops itself
 * after `--idle-exit` seconds without connections, and is reused while it
 * answers a SESSION_SUMMARY for our session id. A lock file keeps two shims
 * from starting two sidecars at once.
 */
import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { connect as netConnect } from 'node:net'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { WebSocket } from 'undici'
import { ensureLocalSecret, LocalSecretError, localProof, newNonce, sameHex } from '../local-secret.js'
import type { ShimConfig } from './config.js'
import { SidecarFailed, type MpacError } from '../errors.js'
import { isProcessAlive } from '../process-alive.js'

export interface SidecarPaths {
  /** 0700; also holds the local secret (src/local-secret.ts). */
  readonly dir: string
  readonly pidFile: string
  readonly logFile: string
  readonly lockFile: string
  readonly dataDir: string
}

export function sidecarPaths (stateDir: string, sessionId: string): SidecarPaths {
  const dir = join(stateDir, 'sidecars')
  const safe = sessionId.replace(/[^A-Za-z0-9._-]/g, '_')
  return {
    dir,
    pidFile: join(dir, `${safe}.pid`),
    logFile: join(dir, `${safe}.log`),
    lockFile: join(dir, `${safe}.lock`),
    dataDir: join(stateDir, 'data')
  }
}

/** The package root (where package.json is), from this module's location in src/mcp or dist/mcp. */
export function packageRoot (): string {
  return fileURLToPath(new URL('../..', import.meta.url))
}

/**
 * How to run the sidecar: the built `dist/server/cli.js` when this shim runs
 * from `dist`, or when the sources cannot be run; `--import tsx
 * src/server/cli.ts` when the shim itself runs from source (tests).
 */
export function sidecarCommand (): { command: string, args: string[] } {
  const root = packageRoot()
  const built = join(root, 'dist', 'server', 'cli.js')
  const source = join(root, 'src', 'server', 'cli.ts')
  const runningFromSource = import.meta.url.endsWith('.ts')
  if (runningFromSource && existsSync(source)) {
    try {
      const tsx = import.meta.resolve('tsx')
      return { command: process.execPath, args: ['--import', tsx, source] }
    } catch {
      // tsx not installed: fall back to the build
    }
  }
  if (existsSync(built)) return { command: process.execPath, args: [built] }
  throw new SidecarFailed(`cannot find the coordinator program (${built})`, {
    hint: 'build the package (npm run build) or reinstall mpac-mcp'
  })
}

function tail (file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return ''
  }
}

export interface EnsureOptions {
  /** How long a fresh sidecar may take to answer. */
  readonly startTimeoutMs?: number
  /** Environment given to the sidecar (MPAC_* variables are removed: the sidecar gets flags only). */
  readonly env?: NodeJS.ProcessEnv
}

const LOCK_STALE_MS = 30_000

/** Resolves when a coordinator for `config.sessionId` answers at `config.url`, starting one if needed. */
export async function ensureLocalSidecar (config: ShimConfig, log: Logger, options: EnsureOptions = {}): Promise<void> {
  const startTimeoutMs = options.startTimeoutMs ?? 20_000
  const paths = sidecarPaths(config.stateDir, config.sessionId)
  const { file: secretFile, secret } = localSecretOf(config)

  const first = await probe(config, secret)
  if (first === 'ours') return

  const deadline = Date.now() + startTimeoutMs
  for (;;) {
    if (tryLock(paths.lockFile)) break
    // Another shim is starting it: wait for it to answer.
    if ((await probe(config, secret)) === 'ours') return
    if (Date.now() > deadline) {
      throw new SidecarFailed(`another process holds ${paths.lockFile} and no coordinator came up at ${config.url}`, {
        retryable: true,
        hint: `remove ${paths.lockFile} if no mpac-mcp is starting a sidecar`
      })
    }
    await delay(100)
  }

  try {
    if ((await probe(config, secret)) === 'ours') return
    const { command, args } = sidecarCommand()
    const fullArgs = [
      ...args,
      '--workspace', config.workspaceDir,
      '--session-id', config.sessionId,
      '--port', String(config.port),
      '--host', config.host,
      // MPAC_SIDECAR_IDLE_EXIT=0: never stop by itself (the sidecar has no idle exit without the flag).
      ...(config.sidecarIdleExitSec > 0 ? ['--idle-exit', String(config.sidecarIdleExitSec)] : []),
      '--data-dir', paths.dataDir,
      '--local-secret-file', secretFile,
      ...(config.allowWithoutSecret ? ['--allow-without-secret'] : [])
    ]
    const env: NodeJS.ProcessEnv = {}
    for (const [k, v] of Object.entries(options.env ?? process.env)) {
      if (!k.startsWith('MPAC_')) env[k] = v
    }
    mkdirSync(paths.dataDir, { recursive: true })
    const logFd = openSync(paths.logFile, 'a')
    let exited: { code: number | null, signal: string | null } | undefined
    let spawnError: Error | undefined
    let child
    try {
      child = spawn(command, fullArgs, { cwd: config.workspaceDir, env, detached: true, stdio: ['ignore', logFd, logFd] })
    } catch (err) {
      throw spawnFailed(err as Error, command, config.workspaceDir)
    } finally {
      closeSync(logFd)
    }
    child.on('exit', (code, signal) => { exited = { code, signal } })
    child.on('error', err => { spawnError = err })
    if (child.pid !== undefined) writeFileSync(paths.pidFile, `${child.pid}\n`)
    child.unref()
    log.info({ pid: child.pid, port: config.port, sessionId: config.sessionId, logFile: paths.logFile }, 'sidecar started')

    for (;;) {
      // The spawn's 'error' comes on a later tick: report it now, not after the start timeout.
      if (spawnError !== undefined) throw spawnFailed(spawnError, command, config.workspaceDir)
      const state = await probe(config, secret, false)
      if (state === 'ours') return
      if (spawnError !== undefined) throw spawnFailed(spawnError, command, config.workspaceDir)
      if (exited !== undefined) {
        throw new SidecarFailed(`the local coordinator exited early (code ${exited.code ?? exited.signal}); log ${paths.logFile}:\n${tail(paths.logFile)}`, {
          retryable: true,
          hint: `if port ${config.port} is used by another program, set MPAC_SIDECAR_PORT`
        })
      }
      if (Date.now() > deadline) {
        throw new SidecarFailed(`the local coordinator did not answer within ${startTimeoutMs} ms; log ${paths.logFile}:\n${tail(paths.logFile)}`, { retryable: true })
      }
      await delay(100)
    }
  } finally {
    try { unlinkSync(paths.lockFile) } catch { /* gone */ }
  }
}

/** The local coordinator process could not be started at all (no log: it never ran). */
function spawnFailed (err: Error, command: string, cwd: string): MpacError {
  const code = (err as NodeJS.ErrnoException).code
  const hint = code === 'ENOENT' && !existsSync(cwd)
    ? `the workspace directory ${cwd} does not exist: check MPAC_WORKSPACE_DIR or repo_path`
    : `check that ${command} can be run from ${cwd}`
  return new SidecarFailed(`cannot start the local coordinator: ${err.message}`, { hint, cause: err, ...(code !== undefined ? { detail: { errno: code } } : {}) })
}

/** The user's local secret (made on first use); a file that may not be used → MPAC_ERR_SIDECAR_FAILED. */
export function localSecretOf (config: ShimConfig): { file: string, secret: string } {
  const dir = sidecarPaths(config.stateDir, config.sessionId).dir
  try {
    return ensureLocalSecret(dir)
  } catch (err) {
    if (!(err instanceof LocalSecretError)) throw err
    throw new SidecarFailed(`the local secret cannot be used: ${err.message}`, {
      hint: `only your user may read ${dir} and the files in it`
    })
  }
}

/**
 * 'ours' when the coordinator on the port proves it knows our secret for our
 * session and address (LOCAL_PROOF, src/local-secret.ts); 'absent' when
 * nothing listens; throws MPAC_ERR_SIDECAR_FAILED naming the port and what
 * holds it otherwise. Never falls back to an unverified coordinator.
 */
async function probe (config: ShimConfig, secret: string, strict = true): Promise<'ours' | 'absent'> {
  const result = await proveCoordinator(config, secret, 2000)
  if (result.kind === 'refused') return 'absent'
  if (result.kind === 'ok') return 'ours'
  if (!strict && result.kind === 'foreign') return 'absent'
  const where = `port ${config.port} on ${config.host}`
  const holder = portHolder(config.port)
  if (result.kind === 'other-session') {
    throw new SidecarFailed(`${where} is used by another MPAC coordinator (session ${JSON.stringify(result.sessionId)}, held by ${holder}), probably another workspace's sidecar`, {
      hint: 'set MPAC_SIDECAR_PORT to a free port for this workspace'
    })
  }
  if (result.kind === 'unproven') {
    throw new SidecarFailed(`${where} is held by ${holder}, which answers like an MPAC coordinator but cannot prove it knows your local secret (${result.detail}): it is not a coordinator that mpac-mcp started for you; refusing to use it`, {
      hint: 'stop that process (if it is an older mpac-mcp-sidecar of yours, kill it; a new one is started) or set MPAC_SIDECAR_PORT to a free port for this workspace'
    })
  }
  throw new SidecarFailed(`${where} is used by ${holder}, a program that is not an MPAC coordinator (${result.detail})`, {
    hint: 'stop that program or set MPAC_SIDECAR_PORT to a free port for this workspace'
  })
}

type ProofResult =
  | { kind: 'ok' }
  | { kind: 'refused' }
  | { kind: 'other-session', sessionId: unknown }
  | { kind: 'unproven', detail: string }
  | { kind: 'foreign', detail: string }

/** One LOCAL_PROOF exchange with whatever listens on the configured port. */
async function proveCoordinator (config: ShimConfig, secret: string, timeoutMs: number): Promise<ProofResult> {
  const listening = await new Promise<boolean>(resolve => {
    const socket = netConnect({ host: config.host, port: config.port })
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve(true) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
  if (!listening) return { kind: 'refused' }
  const nonce = newNonce()
  const hostPort = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`
  const expected = localProof(secret, nonce, config.sessionId, hostPort)
  return await new Promise<ProofResult>(resolve => {
    let settled = false
    const ws = new WebSocket(config.url)
    const finish = (result: ProofResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try { ws.close(1000) } catch { /* not open */ }
      resolve(result)
    }
    const timer = setTimeout(() => finish({ kind: 'foreign', detail: `no reply to LOCAL_PROOF within ${timeoutMs} ms` }), timeoutMs)
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'LOCAL_PROOF', nonce })))
    ws.addEventListener('error', () => finish({ kind: 'foreign', detail: 'the port is open but does not speak the MPAC WebSocket protocol' }))
    ws.addEventListener('close', ev => finish({ kind: 'foreign', detail: `connection closed (${ev.code})` }))
    ws.addEventListener('message', ev => {
      let frame: Record<string, unknown>
      try {
        frame = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer).toString('utf8')) as Record<string, unknown>
      } catch {
        finish({ kind: 'foreign', detail: 'unparsable reply' })
        return
      }
      if (frame['type'] !== 'LOCAL_PROOF_RESPONSE') {
        const mpac = frame['protocol'] === 'MPAC' || typeof frame['type'] === 'string'
        finish(mpac ? { kind: 'unproven', detail: `it answered ${JSON.stringify(frame['type'] ?? frame['message_type'])}` } : { kind: 'foreign', detail: 'unexpected reply' })
        return
      }
      if (typeof frame['proof'] !== 'string' || !sameHex(frame['proof'], expected)) {
        finish(frame['session_id'] !== config.sessionId && typeof frame['session_id'] === 'string'
          ? { kind: 'other-session', sessionId: frame['session_id'] }
          : { kind: 'unproven', detail: 'wrong proof' })
        return
      }
      finish({ kind: 'ok' })
    })
  })
}

/**
 * The same proof on the connection the shim is about to send its secret on
 * (CoordinatorClient `verifyConnection`): closes the window between the
 * probe and the HELLO in which another process could have taken the port.
 */
export async function verifyLocalConnection (config: ShimConfig, query: (request: { type: 'LOCAL_PROOF', nonce: string }) => Promise<Record<string, unknown>>): Promise<void> {
  const { secret } = localSecretOf(config)
  const nonce = newNonce()
  const hostPort = `${config.host.includes(':') ? `[${config.host}]` : config.host}:${config.port}`
  const reply = await query({ type: 'LOCAL_PROOF', nonce })
  if (typeof reply['proof'] !== 'string' || !sameHex(reply['proof'], localProof(secret, nonce, config.sessionId, hostPort))) {
    throw new SidecarFailed(`port ${config.port} on ${config.host} is held by ${portHolder(config.port)}, which cannot prove it knows your local secret; refusing to use it`, {
      retryable: true,
      hint: 'stop that process or set MPAC_SIDECAR_PORT to a free port for this workspace'
    })
  }
}

/**
 * Who listens on a TCP port, for error messages: "pid N (user U)" when the
 * process is ours to inspect, "a process of user U (uid N)" from the
 * socket's owner in /proc/net/tcp{,6} (readable by everyone on Linux), else
 * "another process".
 */
export function portHolder (port: number): string {
  let owner: { uid: number, inode: string } | undefined
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      const local = f[1]
      if (local === undefined || f[3] !== '0A') continue
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue
      owner = { uid: Number(f[7]), inode: f[9] ?? '' }
      break
    }
    if (owner !== undefined) break
  }
  if (owner === undefined) return 'another process'
  const user = userName(owner.uid)
  const who = user === undefined ? `uid ${owner.uid}` : `user ${user}, uid ${owner.uid}`
  let pid: string | undefined
  try {
    const target = `socket:[${owner.inode}]`
    outer: for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      let fds: string[]
      try {
        fds = readdirSync(`/proc/${entry}/fd`)
      } catch {
        continue
      }
      for (const fd of fds) {
        try {
          if (readlinkSync(`/proc/${entry}/fd/${fd}`) === target) {
            pid = entry
            break outer
          }
        } catch { /* gone */ }
      }
    }
  } catch { /* no /proc */ }
  return pid === undefined ? `a process of ${who}` : `pid ${pid} (${who})`
}

function userName (uid: number): string | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':')
      if (Number(f[2]) === uid && f[0] !== undefined && f[0] !== '') return f[0]
    }
  } catch { /* none */ }
  return undefined
}

/** Creates the lock file exclusively; takes over a lock left by a dead or long-gone process. */
function tryLock (lockFile: string): boolean {
  mkdirSync(dirname(lockFile), { recursive: true })
  try {
    const fd = openSync(lockFile, 'wx')
    writeFileSync(fd, `${process.pid}\n`)
    closeSync(fd)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  try {
    const pid = Number(readFileSync(lockFile, 'utf8').trim())
    const age = Date.now() - statSync(lockFile).mtimeMs
    if (!Number.isInteger(pid) || pid <= 0 || !isProcessAlive(pid) || age > LOCK_STALE_MS) {
      unlinkSync(lockFile)
    }
  } catch {
    // raced with its owner removing it
  }
  return false
}

/** Polling interval between probes while waiting for a process to come up (not a correctness sleep). */
function delay (ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/** Pid recorded for the session's sidecar, when the file exists. */
export function readSidecarPid (stateDir: string, sessionId: string): number | undefined {
  try {
    const pid = Number(readFileSync(sidecarPaths(stateDir, sessionId).pidFile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}
