/**
 * What `mpac-mcp guard` asks git (agent-hooks-and-dashboard.md §7.8): the
 * hooks directory as git resolves it, where `core.hooksPath` comes from,
 * `core.ignorecase`, the staged paths of a commit and the paths of the
 * commits a push sends. Node built-ins only (the guard runs on every commit).
 *
 * Contract:
 * - Every function runs `git` in `cwd` with the caller's environment (git
 *   sets GIT_DIR, GIT_INDEX_FILE… for hooks; they must be kept) and throws a
 *   `GitError` carrying git's own message when git fails.
 * - Paths come from `-z` output, so no quoting or escaping applies; they are
 *   repository-relative (git prints paths relative to the top level).
 * - Never: writes to the repository.
 */
import { spawnSync } from 'node:child_process'
import { isAbsolute, resolve } from 'node:path'

export class GitError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'GitError'
  }
}

export interface GitResult { readonly status: number | null, readonly stdout: string, readonly stderr: string }

/** Runs git; returns whatever it printed (never throws, except when git cannot be started). */
export function runGit (cwd: string, args: readonly string[], env: NodeJS.ProcessEnv = process.env): GitResult {
  const r = spawnSync('git', args, { cwd, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })
  if (r.error !== undefined) throw new GitError(`cannot run git: ${r.error.message}`)
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Runs git and returns its stdout; a non-zero exit throws GitError with git's message. */
export function git (cwd: string, args: readonly string[], env?: NodeJS.ProcessEnv): string {
  const r = runGit(cwd, args, env)
  if (r.status !== 0) throw new GitError(r.stderr.trim() !== '' ? r.stderr.trim() : `git ${args.join(' ')} exited with ${String(r.status)}`)
  return r.stdout
}

/** The top level of the working tree (throws GitError outside a repository). */
export function topLevel (cwd: string, env?: NodeJS.ProcessEnv): string {
  return git(cwd, ['rev-parse', '--show-toplevel'], env).trim()
}

/**
 * The hooks directory git runs hooks from: `git rev-parse --git-path hooks`
 * accounts for `core.hooksPath`, linked worktrees (their hooks live in the
 * common directory) and includes. Relative answers are relative to `cwd`.
 */
export function hooksDir (cwd: string, env?: NodeJS.ProcessEnv): string {
  const out = git(cwd, ['rev-parse', '--git-path', 'hooks'], env).trim()
  return isAbsolute(out) ? out : resolve(cwd, out)
}

export interface ConfigOrigin {
  readonly value: string
  /** git's scope: `system`, `global`, `local`, `worktree` or `command`. */
  readonly scope: string
  /** e.g. `file:/home/me/.gitconfig`, `command line:`. */
  readonly origin: string
}

/** Where the effective `core.hooksPath` comes from (`git config --show-origin --show-scope`), or undefined when unset. */
export function hooksPathOrigin (cwd: string, env?: NodeJS.ProcessEnv): ConfigOrigin | undefined {
  const r = runGit(cwd, ['config', '--show-origin', '--show-scope', '--get', 'core.hooksPath'], env)
  if (r.status === 1) return undefined
  if (r.status !== 0) throw new GitError(r.stderr.trim())
  const line = r.stdout.replace(/\n$/, '')
  const [scope = '', origin = '', ...value] = line.split('\t')
  return { scope, origin, value: value.join('\t') }
}

/** `core.ignorecase` (false when unset). */
export function ignoreCase (cwd: string, env?: NodeJS.ProcessEnv): boolean {
  const r = runGit(cwd, ['config', '--bool', '--get', 'core.ignorecase'], env)
  return r.status === 0 && r.stdout.trim() === 'true'
}

/**
 * The paths of `--name-status -z` output: one for an added, modified,
 * deleted or type-changed file, both names of a rename, the new name of a
 * copy. Deduplicated, in order of appearance.
 */
export function parseNameStatus (z: string): string[] {
  const fields = z.split('\0')
  const out: string[] = []
  const seen = new Set<string>()
  const add = (p: string | undefined): void => {
    if (p === undefined || p === '' || seen.has(p)) return
    seen.add(p)
    out.push(p)
  }
  for (let i = 0; i < fields.length;) {
    const status = fields[i++] ?? ''
    // `diff-tree --stdin` heads each commit's entries with its id (where a status would be).
    if (status === '' || /^[0-9a-f]{40}([0-9a-f]{24})?$/.test(status)) continue
    if (status.startsWith('R')) {
      add(fields[i++])
      add(fields[i++])
    } else if (status.startsWith('C')) {
      i++
      add(fields[i++])
    } else {
      add(fields[i++])
    }
  }
  return out
}

/** The staged paths of the commit being made (`git diff --cached --name-status -M -z`). */
export function stagedPaths (cwd: string, env?: NodeJS.ProcessEnv): string[] {
  return parseNameStatus(git(cwd, ['diff', '--cached', '--name-status', '-M', '-z'], env))
}

const ZERO_SHA = /^0+$/

export interface PushedCommits {
  /** The commits the push sends that no ref of the remote has, newest first (capped). */
  readonly commits: string[]
  /** More commits than the cap were found; only the first `commits.length` are checked. */
  readonly truncated: boolean
}

/**
 * The commits a push sends (git's pre-push stdin: `<local ref> <local sha>
 * <remote ref> <remote sha>` lines): for each updated ref, `git rev-list
 * <local sha> --not --remotes=<remote>` (and not the remote sha when this
 * repository has it). Deletions (local sha all zeros) send nothing.
 */
export function pushedCommits (cwd: string, remote: string, stdin: string, env?: NodeJS.ProcessEnv, cap = 1000): PushedCommits {
  const commits: string[] = []
  const seen = new Set<string>()
  let truncated = false
  for (const line of stdin.split('\n')) {
    const [, localSha, , remoteSha] = line.trim().split(/\s+/)
    if (localSha === undefined || ZERO_SHA.test(localSha) || !/^[0-9a-f]{7,64}$/i.test(localSha)) continue
    const args = ['rev-list', localSha, '--not', `--remotes=${remote}`]
    if (remoteSha !== undefined && !ZERO_SHA.test(remoteSha) && /^[0-9a-f]{7,64}$/i.test(remoteSha) &&
        runGit(cwd, ['cat-file', '-e', `${remoteSha}^{commit}`], env).status === 0) {
      args.push(remoteSha)
    }
    for (const sha of git(cwd, args, env).split('\n')) {
      if (sha === '' || seen.has(sha)) continue
      if (commits.length >= cap) {
        truncated = true
        break
      }
      seen.add(sha)
      commits.push(sha)
    }
  }
  return { commits, truncated }
}

/**
 * The paths these commits change: `git diff-tree -r --root --name-status -M
 * -z` per commit (merges show none), all in one `--stdin` run.
 */
export function commitPaths (cwd: string, shas: readonly string[], env?: NodeJS.ProcessEnv): string[] {
  if (shas.length === 0) return []
  const r = spawnSync('git', ['diff-tree', '--stdin', '-r', '--root', '--name-status', '-M', '-z'], { cwd, env: env ?? process.env, encoding: 'utf8', input: shas.join('\n') + '\n', maxBuffer: 64 * 1024 * 1024 })
  if (r.error !== undefined) throw new GitError(`cannot run git: ${r.error.message}`)
  if (r.status !== 0) throw new GitError(r.stderr.trim() !== '' ? r.stderr.trim() : `git diff-tree exited with ${String(r.status)}`)
  return parseNameStatus(r.stdout)
}
