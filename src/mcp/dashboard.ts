/**
 * `mpac-mcp dashboard [--open] [--workspace DIR]`: prints the URL of this
 * workspace's dashboard page, `…/dashboard/s/<session>` on the coordinator
 * the shim would use.
 *
 * - Local mode: `http://<MPAC_SIDECAR_HOST>:<port>/dashboard/s/<session>`
 *   with the port and session derived from the workspace exactly as the shim
 *   derives them (src/mcp/config.ts), so it is the page of the coordinator the
 *   agents of this repository share. A loopback coordinator needs no login.
 *   When nothing answers there yet, a note on stderr says the first agent
 *   starts it.
 * - Remote mode: the page on `MPAC_COORDINATOR_URL`'s host (ws → http,
 *   wss → https) for the session the shim joins there; the page asks for a
 *   token. Nothing secret is printed or put in the URL.
 *
 * `--open` also hands the URL to the desktop's opener (`open` on macOS,
 * `xdg-open` elsewhere) when there is one; without one, a note on stderr.
 * The URL is always the one line on stdout. Exit 0, or 2 for a bad argument
 * or configuration.
 */
import { spawn } from 'node:child_process'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { loadShimConfig, type Env, type ShimConfig } from './config.js'

export const DASHBOARD_USAGE = 'usage: mpac-mcp dashboard [--open] [--workspace DIR]'

/** The dashboard page of the session `config` names, on the coordinator it connects to. */
export function dashboardUrl (config: ShimConfig): string {
  const page = `/dashboard/s/${encodeURIComponent(config.sessionId)}`
  if (!config.isRemote) {
    const host = config.host.includes(':') ? `[${config.host}]` : config.host
    return `http://${host}:${config.port}${page}`
  }
  const ws = new URL(config.url)
  return `${ws.protocol === 'wss:' ? 'https:' : 'http:'}//${ws.host}${page}`
}

export interface DashboardIo {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
}

/** Runs the subcommand with its arguments (after `dashboard`); resolves with the exit code. */
export async function runDashboardCommand (args: readonly string[], env: Env, cwd: string, io: DashboardIo): Promise<number> {
  let values: { open?: boolean, workspace?: string }
  try {
    values = parseArgs({
      args: [...args],
      options: { open: { type: 'boolean', default: false }, workspace: { type: 'string' } }
    }).values
  } catch (err) {
    io.err(`${(err as Error).message}\n${DASHBOARD_USAGE}`)
    return 2
  }
  const config = loadShimConfig(env, { cwd, ...(values.workspace === undefined ? {} : { repoPath: resolve(cwd, values.workspace) }) })
  const url = dashboardUrl(config)
  io.out(url)
  if (!config.isRemote) {
    const note = await localNote(url, config)
    if (note !== undefined) io.err(`note: ${note}`)
  } else {
    io.err('note: the page asks for an access token (your MPAC_COORDINATOR_TOKEN works); it never goes in the URL')
  }
  if (values.open === true) {
    const failure = await openInBrowser(url, env)
    if (failure !== undefined) io.err(`note: ${failure}; open the URL above yourself`)
  }
  return 0
}

/** Why the local page will not load right now, or undefined when the coordinator serves it. */
async function localNote (url: string, config: ShimConfig): Promise<string | undefined> {
  try {
    const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(3000) })
    await res.body?.cancel()
    // The dashboard's own answers carry its CSP; a 404 without it is a coordinator without the dashboard.
    if (res.status === 404 && res.headers.has('content-security-policy')) return `the coordinator on port ${config.port} has no session ${config.sessionId} yet: the first agent's mpac-mcp creates it`
    if (res.status === 404) return `the coordinator on port ${config.port} does not serve the dashboard (an older version, or started with --dashboard=false)`
    return undefined
  } catch {
    return `no coordinator is running for this workspace yet (nothing answers on ${config.host}:${config.port}): the first agent's mpac-mcp starts it`
  }
}

/** Starts the desktop's URL opener detached; resolves with why it could not, or undefined once it started. */
function openInBrowser (url: string, env: Env): Promise<string | undefined> {
  const opener = process.platform === 'darwin' ? 'open' : 'xdg-open'
  return new Promise(done => {
    let child
    try {
      child = spawn(opener, [url], { detached: true, stdio: 'ignore', env: { ...env } })
    } catch (err) {
      done(`cannot start ${opener}: ${(err as Error).message}`)
      return
    }
    child.once('error', err => {
      const code = (err as NodeJS.ErrnoException).code
      done(code === 'ENOENT' ? `no browser opener here (${opener} not found)` : `cannot start ${opener}: ${err.message}`)
    })
    child.once('spawn', () => {
      child.unref()
      done(undefined)
    })
  })
}
