/**
 * `mpac-mcp guard install | uninstall | status | check`: the git guard's
 * command line (agent-hooks-and-dashboard.md §7.8). Node built-ins only,
 * except the coordinator fallback of `check`/`status`, which imports undici
 * when no shim answers (./coordinator.ts).
 *
 * Contract: `runGuardCli(argv)` resolves with the exit code and has written
 * its output; it never throws (an unexpected error is one line and exit 2,
 * except in `check`, where it counts as "could not check": fail open unless
 * MPAC_GUARD_FAIL=closed).
 */
import { existsSync, realpathSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { CLIENT_DEADLINE_MS, HOOK_PROTOCOL_VERSION } from '../../hooks/protocol.js'
import { socketRequest } from '../../hooks/socket-client.js'
import { askAbout, committerShim, runCheck } from './check.js'
import { GitError, hooksPathOrigin, topLevel } from './git.js'
import { GUARD_MODES, hookStatuses, installGuard, ORIG_SUFFIX, uninstallGuard, type GuardMode, type Outcome } from './install.js'

export const GUARD_USAGE = `Usage:
  mpac-mcp guard install [--pre-push] [--mode block|warn] [--no-chain] [--allow-global-hooks-path]
                                   install the git pre-commit (and pre-push) guard in this repository
  mpac-mcp guard uninstall         remove it (a chained hook of yours is put back)
  mpac-mcp guard status            what is installed, the mode, whether a coordinator answers
  mpac-mcp guard check --staged | --pre-push <remote> <url>   what the git hooks run

Environment: MPAC_GUARD_MODE=block|warn, MPAC_GUARD_BYPASS=1, MPAC_GUARD_FAIL=open|closed,
MPAC_GUARD_HUMANS=warn|block (see docs/agents.md).`

/** Loader flags this process runs with (`--import tsx` when running from source), kept for the hook. */
function loaderFlags (execArgv: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < execArgv.length; i++) {
    const a = execArgv[i] as string
    if (/^--(import|require|loader|experimental-loader)=/.test(a)) out.push(a)
    else if (/^(--import|--require|-r|--loader|--experimental-loader)$/.test(a) && execArgv[i + 1] !== undefined) out.push(a, execArgv[++i] as string)
  }
  return out
}

/** How a hook runs this very program: node, its loader flags and the absolute path of the entry script (symlinks resolved). */
export function selfProgram (): string[] {
  const entry = process.argv[1]
  if (entry === undefined) throw new Error('cannot tell which script is running')
  let script = resolve(entry)
  try { script = realpathSync(script) } catch { /* keep it as given */ }
  return [process.execPath, ...loaderFlags(process.execArgv), script]
}

function readStdin (): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let text = ''
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', (c: string) => { text += c })
    process.stdin.on('end', () => resolvePromise(text))
    process.stdin.on('error', reject)
  })
}

function emit (o: Outcome): number {
  for (const l of o.out) process.stdout.write(l + '\n')
  for (const l of o.err) process.stderr.write(l + '\n')
  return o.code
}

function parseMode (value: string | undefined): GuardMode | undefined {
  if (value === undefined) return undefined
  if (!(GUARD_MODES as readonly string[]).includes(value)) throw new UsageError(`--mode must be block or warn, got ${JSON.stringify(value)}`)
  return value as GuardMode
}

class UsageError extends Error {}

/** The absolute paths a hook script runs (node and the script), from the shell-quoted command line we wrote. */
function shWords (line: string): string[] {
  const words: string[] = []
  const re = /'((?:[^']|'\\'')*)'|(\S+)/g
  for (const m of line.matchAll(re)) words.push(m[1] !== undefined ? m[1].replace(/'\\''/g, '\'') : m[2] as string)
  return words
}

async function status (cwd: string, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const out: string[] = []
  const { dir, hooks } = hookStatuses(cwd, env)
  const origin = hooksPathOrigin(cwd, env)
  out.push(`hooks directory: ${dir}${origin === undefined ? '' : ` (core.hooksPath ${JSON.stringify(origin.value)}, ${origin.scope} config)`}`)
  let installed = false
  for (const h of hooks) {
    if (h.file.kind === 'absent') out.push(`${h.hook}: not installed${h.chained ? ` (${h.hook}${ORIG_SUFFIX} is there: guard uninstall puts it back)` : ''}`)
    else if (h.file.kind === 'foreign') out.push(`${h.hook}: a hook that is not mpac's${h.file.symlink ? ' (a symlink)' : ''}; guard install chains it`)
    else {
      installed = true
      const words = h.file.program === undefined ? [] : shWords(h.file.program)
      const missing = words.filter(w => w.startsWith('/') && !existsSync(w))
      out.push(`${h.hook}: installed, mode ${h.file.mode ?? 'block'}${h.chained ? `, then runs ${h.hook}${ORIG_SUFFIX}` : ''}`)
      out.push(`  runs: ${h.file.program ?? '?'}${missing.length > 0 ? ` — MISSING ${missing.join(', ')}: run mpac-mcp guard install again` : ''}`)
    }
  }
  const top = topLevel(cwd, env)
  const shim = committerShim(env, top)
  if (shim === undefined) {
    out.push('agent shim: none found for this process (commits are checked with MPAC_PRINCIPAL_ID/MPAC_AGENT_NAME, else as a human\'s)')
  } else {
    const ping = await socketRequest(shim.socket, { v: HOOK_PROTOCOL_VERSION, op: 'ping', client: 'git' }, { deadlineMs: CLIENT_DEADLINE_MS }).catch((err: Error) => err)
    out.push(ping instanceof Error
      ? `agent shim: pid ${shim.pid}, ${shim.principal_id}; does not answer (${ping.message}): commits are checked with the coordinator directly`
      : `agent shim: pid ${shim.pid}, ${shim.principal_id}; its coordinator connection: ${String(ping['coordinator'])}`)
    if (!(ping instanceof Error) && ping['coordinator'] === 'ok') {
      out.push(`coordinator: answers (through the shim, pid ${shim.pid})`)
      if (!installed) out.push('the guard is not installed: mpac-mcp guard install')
      return { code: 0, out, err: [] }
    }
  }
  const answer = await askAbout(env, top, [], { ignoreCase: false, humansBlock: false })
  if (answer.kind === 'decision') out.push(`coordinator: answers (${answer.via})`)
  else if (answer.kind === 'unreachable') out.push(`coordinator: NOT reachable (${answer.detail}); commits get a warning${env['MPAC_GUARD_FAIL']?.trim() === 'closed' ? ', and are refused (MPAC_GUARD_FAIL=closed)' : ''}`)
  else out.push('coordinator: none knows this repository (no shim, no MPAC_COORDINATOR_URL, no local coordinator answering): the guard lets every commit through')
  if (!installed) out.push('the guard is not installed: mpac-mcp guard install')
  return { code: 0, out, err: [] }
}

export async function runGuardCli (argv: readonly string[], cwd: string = process.cwd(), env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [sub, ...rest] = argv
  try {
    if (sub === 'check') {
      const { values, positionals } = parseArgs({
        args: [...rest],
        allowPositionals: true,
        options: { staged: { type: 'boolean' }, 'pre-push': { type: 'boolean' }, mode: { type: 'string' } }
      })
      const installedMode = parseMode(values.mode)
      if (values.staged === true && values['pre-push'] !== true && positionals.length === 0) {
        return emit(await runCheck({ cwd, env, what: { kind: 'staged' }, installedMode }))
      }
      if (values['pre-push'] === true && values.staged !== true && positionals.length >= 1 && positionals.length <= 2) {
        const stdin = await readStdin()
        return emit(await runCheck({ cwd, env, what: { kind: 'pre-push', remote: positionals[0] as string, url: positionals[1] ?? '', stdin }, installedMode }))
      }
      throw new UsageError('guard check needs --staged, or --pre-push <remote> <url>')
    }
    if (sub === 'install') {
      const { values } = parseArgs({
        args: [...rest],
        options: {
          'pre-push': { type: 'boolean' },
          mode: { type: 'string' },
          'no-chain': { type: 'boolean' },
          'allow-global-hooks-path': { type: 'boolean' }
        }
      })
      return emit(installGuard(cwd, env, {
        prePush: values['pre-push'] === true,
        mode: parseMode(values.mode) ?? 'block',
        chain: values['no-chain'] !== true,
        allowGlobalHooksPath: values['allow-global-hooks-path'] === true,
        program: selfProgram()
      }))
    }
    if (sub === 'uninstall') {
      const { values } = parseArgs({ args: [...rest], options: { 'allow-global-hooks-path': { type: 'boolean' } } })
      return emit(uninstallGuard(cwd, env, values['allow-global-hooks-path'] === true))
    }
    if (sub === 'status') {
      parseArgs({ args: [...rest], options: {} })
      return emit(await status(cwd, env))
    }
    if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
      process.stdout.write(GUARD_USAGE + '\n')
      return sub === undefined ? 2 : 0
    }
    throw new UsageError(`unknown guard command ${JSON.stringify(sub)}`)
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) {
      process.stderr.write(`mpac-mcp guard: ${(err as Error).message}\n${GUARD_USAGE}\n`)
      return 2
    }
    if (sub === 'check') {
      // A hook never fails by accident: this counts as "could not check".
      const closed = env['MPAC_GUARD_FAIL']?.trim().toLowerCase() === 'closed'
      process.stderr.write(`mpac guard: ${closed ? '' : 'warning: '}could not check against other agents' work (${(err as Error).message})${closed ? '; refused because MPAC_GUARD_FAIL=closed (bypass once: MPAC_GUARD_BYPASS=1 or --no-verify)' : '; letting it through'}\n`)
      return closed ? 1 : 0
    }
    process.stderr.write(`mpac-mcp guard: ${(err as Error).message}\n`)
    return err instanceof GitError ? 2 : 1
  }
}
