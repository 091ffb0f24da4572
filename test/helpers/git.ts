/**
 * Real git repositories in temp dirs for the guard tests, with a private
 * git configuration (GIT_CONFIG_GLOBAL in the temp dir, no system config),
 * a private HOME and XDG_STATE_HOME, and runners for `git` and `mpac-mcp`
 * that resolve with the exit code and output (killed after a deadline).
 */
import { spawn } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { cleanEnv, tempDir, type Env, type Teardown } from './process.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const SHIM_CLI = join(ROOT, 'src', 'mcp', 'cli.ts')
export const TSX = import.meta.resolve('tsx')

export interface RunResult { readonly code: number | null, readonly stdout: string, readonly stderr: string }

export function run (command: string, args: readonly string[], opts: { cwd: string, env: Env, input?: string, deadlineMs?: number }): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`${command} ${args.join(' ')} did not finish within ${opts.deadlineMs ?? 30_000} ms; stderr: ${stderr}`)) }, opts.deadlineMs ?? 30_000)
    child.on('error', err => { clearTimeout(timer); reject(err) })
    child.on('close', code => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
    child.stdin.on('error', () => {}) // a child that exits without reading its stdin
    child.stdin.end(opts.input ?? '')
  })
}

export interface Sandbox {
  /** Temp root: HOME, the global git config, XDG_STATE_HOME live here. */
  readonly root: string
  readonly globalConfig: string
  /** The environment every git and mpac-mcp run gets (plus `extra`). */
  env (extra?: Env): Env
  git (cwd: string, args: readonly string[], extra?: Env, input?: string): Promise<RunResult>
  /** Runs `mpac-mcp args…` (the real CLI from source). */
  mpac (cwd: string, args: readonly string[], extra?: Env): Promise<RunResult>
  /** A new repository with one commit of `files`. */
  repo (name: string, files: Record<string, string>): Promise<string>
}

export function sandbox (t: Teardown): Sandbox {
  const root = tempDir(t, 'mpac-guard-')
  const globalConfig = join(root, 'gitconfig')
  writeFileSync(globalConfig, '[user]\n\tname = Bob Human\n\temail = bob@example.com\n[init]\n\tdefaultBranch = main\n')
  const env = (extra: Env = {}): Env => {
    const base = cleanEnv({
      HOME: root,
      XDG_STATE_HOME: join(root, 'state'),
      GIT_CONFIG_GLOBAL: globalConfig,
      GIT_CONFIG_NOSYSTEM: '1'
    })
    // A test run from inside an agent must not be taken for that agent.
    for (const k of Object.keys(base)) if (k.startsWith('CLAUDE_CODE_') || k.startsWith('GIT_')) delete base[k]
    return { ...base, GIT_CONFIG_GLOBAL: globalConfig, GIT_CONFIG_NOSYSTEM: '1', ...extra }
  }
  const git = (cwd: string, args: readonly string[], extra?: Env, input?: string): Promise<RunResult> =>
    run('git', args, { cwd, env: env(extra), ...(input !== undefined ? { input } : {}) })
  const sb: Sandbox = {
    root,
    globalConfig,
    env,
    git,
    mpac: (cwd, args, extra) => run(process.execPath, ['--import', TSX, SHIM_CLI, ...args], { cwd, env: env(extra) }),
    async repo (name, files) {
      const dir = join(root, name)
      mkdirSync(dir, { recursive: true })
      await must(git(dir, ['init', '-q']))
      for (const [path, text] of Object.entries(files)) {
        mkdirSync(join(dir, path, '..'), { recursive: true })
        writeFileSync(join(dir, path), text)
      }
      await must(git(dir, ['add', '-A']))
      await must(git(dir, ['commit', '-q', '-m', 'initial']))
      return dir
    }
  }
  return sb
}

/** The result, or a rejection showing its output when the exit code is not 0. */
export async function must (p: Promise<RunResult>): Promise<RunResult> {
  const r = await p
  if (r.code !== 0) throw new Error(`exit ${String(r.code)}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`)
  return r
}
