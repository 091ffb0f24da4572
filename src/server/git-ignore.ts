import { execFileSync, spawnSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { homedir } from 'node:os'
import { isAbsolute, join, relative, resolve, sep } from 'node:path'

/**
 * git's ignore rules for a workspace directory, asked of git itself
 * (`git check-ignore`, `git ls-files`) through a child process.
 *
 * When the directory is not inside a git work tree, no ignore rule applies
 * (`ignored` always answers "not ignored"; `list` is undefined and the
 * caller walks the directory itself).
 *
 * Answers are cached per path. A cached answer is reused only while every
 * file that can change it is unchanged: the `.gitignore` of each directory
 * from the top of the work tree down to the path, `$GIT_DIR/info/exclude`,
 * the global excludes file and the index (tracked files are never ignored,
 * so `git add` changes the answer). Paths not in the cache are asked in one
 * `git check-ignore --stdin -z` per call, however many there are.
 */
export class GitIgnore {
  /** The work tree's top directory, or undefined when the workspace is not in a git work tree. */
  readonly topLevel: string | undefined
  readonly #root: string
  readonly #gitDir: string | undefined
  readonly #globalExcludes: string | undefined
  readonly #cache = new Map<string, { readonly stamp: string, readonly ignored: boolean }>()
  /** How many times git was run for ignore checks (tests and the log read it). */
  checks = 0

  constructor (root: string) {
    this.#root = root
    const out = git(root, ['rev-parse', '--show-toplevel', '--absolute-git-dir'])
    if (out === undefined) {
      this.topLevel = undefined
      this.#gitDir = undefined
      this.#globalExcludes = undefined
      return
    }
    const [top, gitDir] = out.split('\n')
    this.topLevel = top
    this.#gitDir = gitDir
    const configured = git(root, ['config', '--path', '--get', 'core.excludesFile'])?.trim()
    const xdg = process.env.XDG_CONFIG_HOME !== undefined && process.env.XDG_CONFIG_HOME !== ''
      ? join(process.env.XDG_CONFIG_HOME, 'git', 'ignore')
      : join(homedir(), '.config', 'git', 'ignore')
    this.#globalExcludes = configured !== undefined && configured !== '' ? resolve(root, configured) : xdg
  }

  get isRepository (): boolean { return this.topLevel !== undefined }

  /**
   * The paths of `paths` (relative POSIX paths under the workspace root)
   * that git ignores. A path git cannot answer for (inside a nested
   * repository or submodule, say) is reported in `unknown`.
   */
  ignored (paths: readonly string[]): { readonly ignored: Set<string>, readonly unknown: Set<string> } {
    const ignored = new Set<string>()
    const unknown = new Set<string>()
    if (this.topLevel === undefined || paths.length === 0) return { ignored, unknown }
    const ask: string[] = []
    const stamps = new Map<string, string>()
    for (const p of new Set(paths)) {
      const stamp = this.#stamp(p)
      stamps.set(p, stamp)
      const hit = this.#cache.get(p)
      if (hit !== undefined && hit.stamp === stamp) {
        if (hit.ignored) ignored.add(p)
      } else {
        ask.push(p)
      }
    }
    if (ask.length > 0) {
      let answer = this.#checkIgnore(ask)
      if (answer === undefined) {
        // git refused the batch (a path in a submodule, say): ask one by one, so one bad path does not hide the rest.
        answer = new Set()
        for (const p of ask) {
          const one = this.#checkIgnore([p])
          if (one === undefined) unknown.add(p)
          else if (one.has(p)) answer.add(p)
        }
      }
      if (this.#cache.size > 50_000) this.#cache.clear()
      for (const p of ask) {
        if (unknown.has(p)) continue
        const isIgnored = answer.has(p)
        if (isIgnored) ignored.add(p)
        this.#cache.set(p, { stamp: stamps.get(p) as string, ignored: isIgnored })
      }
    }
    return { ignored, unknown }
  }

  /**
   * Every file git does not ignore under the workspace root (tracked, and
   * untracked but not ignored), relative POSIX paths; undefined outside a
   * git work tree or when git fails. Tracked files deleted from the disk are
   * listed too: the caller checks the disk.
   */
  list (): string[] | undefined {
    if (this.topLevel === undefined) return undefined
    const r = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
      cwd: this.#root, env: gitEnv(), maxBuffer: 512 * 1024 * 1024, encoding: 'utf8'
    })
    if (r.status !== 0) return undefined
    return [...new Set(r.stdout.split('\0').filter(p => p !== ''))].sort()
  }

  #checkIgnore (paths: readonly string[]): Set<string> | undefined {
    this.checks++
    const r = spawnSync('git', ['check-ignore', '--stdin', '-z'], {
      cwd: this.#root, env: gitEnv(), input: paths.join('\0') + '\0', encoding: 'utf8', maxBuffer: 64 * 1024 * 1024
    })
    // 0: some are ignored, 1: none is, 128: fatal.
    if (r.status === 1) return new Set()
    if (r.status !== 0) return undefined
    return new Set(r.stdout.split('\0').filter(p => p !== ''))
  }

  /** What the answer for `path` depends on: size, mtime and inode of each rule file and of the index. */
  #stamp (path: string): string {
    const top = this.topLevel as string
    const files = [join(this.#gitDir as string, 'index'), join(this.#gitDir as string, 'info', 'exclude')]
    if (this.#globalExcludes !== undefined) files.push(this.#globalExcludes)
    const abs = join(this.#root, ...path.split('/'))
    const rel = relative(top, abs)
    if (!rel.startsWith('..') && !isAbsolute(rel)) {
      let dir = top
      files.push(join(dir, '.gitignore'))
      const parts = rel.split(sep)
      for (const part of parts.slice(0, -1)) {
        dir = join(dir, part)
        files.push(join(dir, '.gitignore'))
      }
    }
    return files.map(fileStamp).join('|')
  }
}

function fileStamp (file: string): string {
  try {
    const st = statSync(file, { bigint: true })
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
  } catch {
    return '-'
  }
}

/** The environment for git: without GIT_* variables that would point it at another repository. */
function gitEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('GIT_')) env[k] = v
  }
  return env
}

function git (cwd: string, args: readonly string[]): string | undefined {
  try {
    return execFileSync('git', args, { cwd, env: gitEnv(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).replace(/\n$/, '')
  } catch {
    return undefined
  }
}
