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
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Logger } from 'pino'
import { probeCoordinator } from './client.js'
import type { ShimConfig } from './config.js'
import { SHIM_ERROR_CODES, ShimError } from './errors.js'

export interface SidecarPaths {
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
  throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `cannot find the coordinator program (${built})`, {
    hint: 'build the package (npm run build) or reinstall mpac-mcp'
  })
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
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

  const first = await probe(config)
  if (first === 'ours') return

  mkdirSync(paths.dir, { recursive: true })
  const deadline = Date.now() + startTimeoutMs
  for (;;) {
    if (tryLock(paths.lockFile)) break
    // Another shim is starting it: wait for it to answer.
    if ((await probe(config)) === 'ours') return
    if (Date.now() > deadline) {
      throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `another process holds ${paths.lockFile} and no coordinator came up at ${config.url}`, {
        retryable: true,
        hint: `remove ${paths.lockFile} if no mpac-mcp is starting a sidecar`
      })
    }
    await delay(100)
  }

  try {
    if ((await probe(config)) === 'ours') return
    const { command, args } = sidecarCommand()
    const fullArgs = [
      ...args,
      '--workspace', config.workspaceDir,
      '--session-id', config.sessionId,
      '--port', String(config.port),
      '--host', config.host,
      // MPAC_SIDECAR_IDLE_EXIT=0: never stop by itself (the sidecar has no idle exit without the flag).
      ...(config.sidecarIdleExitSec > 0 ? ['--idle-exit', String(config.sidecarIdleExitSec)] : []),
      '--data-dir', paths.dataDir
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
      const state = await probe(config, false)
      if (state === 'ours') return
      if (spawnError !== undefined) throw spawnFailed(spawnError, command, config.workspaceDir)
      if (exited !== undefined) {
        throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `the local coordinator exited early (code ${exited.code ?? exited.signal}); log ${paths.logFile}:\n${tail(paths.logFile)}`, {
          retryable: true,
          hint: `if port ${config.port} is used by another program, set MPAC_SIDECAR_PORT`
        })
      }
      if (Date.now() > deadline) {
        throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `the local coordinator did not answer within ${startTimeoutMs} ms; log ${paths.logFile}:\n${tail(paths.logFile)}`, { retryable: true })
      }
      await delay(100)
    }
  } finally {
    try { unlinkSync(paths.lockFile) } catch { /* gone */ }
  }
}

/** The local coordinator process could not be started at all (no log: it never ran). */
function spawnFailed (err: Error, command: string, cwd: string): ShimError {
  const code = (err as NodeJS.ErrnoException).code
  const hint = code === 'ENOENT' && !existsSync(cwd)
    ? `the workspace directory ${cwd} does not exist: check MPAC_WORKSPACE_DIR or repo_path`
    : `check that ${command} can be run from ${cwd}`
  return new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `cannot start the local coordinator: ${err.message}`, { hint, cause: err, ...(code !== undefined ? { detail: { errno: code } } : {}) })
}

/** 'ours' when our session answers; 'absent' when nothing listens; throws when something else holds the port. */
async function probe (config: ShimConfig, strict = true): Promise<'ours' | 'absent'> {
  const result = await probeCoordinator(config.url, { timeoutMs: 2000 })
  if (result.kind === 'refused') return 'absent'
  if (result.kind === 'ok') {
    if (result.summary['session_id'] === config.sessionId) return 'ours'
    throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `port ${config.port} on ${config.host} is used by another MPAC coordinator (session ${JSON.stringify(result.summary['session_id'])}), probably another workspace's sidecar`, {
      hint: 'set MPAC_SIDECAR_PORT to a free port for this workspace'
    })
  }
  if (!strict) return 'absent'
  throw new ShimError(SHIM_ERROR_CODES.SIDECAR_FAILED, `port ${config.port} on ${config.host} is used by a program that is not an MPAC coordinator (${result.detail})`, {
    hint: 'stop that program or set MPAC_SIDECAR_PORT to a free port for this workspace'
  })
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
    if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid) || age > LOCK_STALE_MS) {
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
