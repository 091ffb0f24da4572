import { closeSync, constants as fsc, existsSync, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { randomBytes } from 'node:crypto'
import { GitIgnore } from './git-ignore.js'

/**
 * The directory a single-session sidecar serves (`--workspace DIR`): loaded
 * into the session at creation, read through for FILE_READ and before
 * commits, written through after accepted commits. Paths on the wire are
 * relative POSIX paths; nothing is ever read or written outside DIR.
 *
 * The rules (docs/coordinator.md, Workspace mode):
 * - VCS metadata (`.git`, `.hg`, `.svn` at any depth, directory or file) is
 *   never read, listed or written.
 * - Nothing is read or written through a symbolic link that resolves outside
 *   DIR; every directory on the way is checked again when a file is written.
 * - In a git work tree, only files git does not ignore are served or
 *   written (tracked files always are). Outside one, no ignore rule applies.
 * - Names ending in `.mpac-tmp` are the coordinator's temporary files and
 *   the commit manifest: never listed, read or written as workspace files;
 *   stale ones are removed at start.
 * - A commit's files land together (write-ahead manifest, see `commit`).
 */

/** Directories and files skipped when loading (bridge.md §3). */
export const SKIPPED_DIRS: ReadonlySet<string> = new Set([
  '.git', '.hg', '.svn', '__pycache__', '.pytest_cache', '.mypy_cache', '.ruff_cache', 'node_modules',
  '.venv', 'venv', 'env', '.idea', '.vscode', 'dist', 'build', '.next', '.turbo'
])
export const SKIPPED_FILES: ReadonlySet<string> = new Set(['.DS_Store', 'Thumbs.db', '.gitignore'])

/** VCS metadata names, compared case-insensitively (case-insensitive file systems). */
export const VCS_NAMES: ReadonlySet<string> = new Set(['.git', '.hg', '.svn'])
/** Suffix of the coordinator's own temporary files. */
export const TEMP_SUFFIX = '.mpac-tmp'
/** The write-ahead manifest of the commit being written, at the workspace root. */
export const MANIFEST_NAME = '.mpac-commit' + TEMP_SUFFIX

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export interface LoadedFile { readonly path: string, readonly content: string }

export interface LoadReport {
  readonly files: LoadedFile[]
  readonly skipped: number
  readonly bytes: number
  /** Stale temporary files removed. */
  readonly cleaned: number
}

export type ReadResult =
  | { readonly kind: 'ok', readonly content: string }
  | { readonly kind: 'missing' }
  | { readonly kind: 'refused', readonly reason: string }

export interface RecoveryReport {
  /** The manifest's state when one was found. */
  readonly state: 'pending' | 'committed' | undefined
  /** Paths written from the manifest's temporary files or from the journal. */
  readonly rolledForward: string[]
  readonly failed: string[]
}

interface Manifest {
  readonly state: 'pending' | 'committed'
  readonly paths: string[]
  /** committed: path → temporary file (relative to the root). */
  readonly temps?: Record<string, string>
}

/** Why `path` names VCS metadata, or undefined. */
export function vcsSegment (path: string): string | undefined {
  for (const seg of path.split('/')) if (VCS_NAMES.has(seg.toLowerCase())) return seg
  return undefined
}

export function isTempName (name: string): boolean {
  return name.endsWith(TEMP_SUFFIX)
}

/**
 * Test hook (off unless MPAC_TEST_HOOK_COMMIT_CRASH_AT or
 * MPAC_TEST_HOOK_COMMIT_PAUSE_AT is set): numbered steps of workspace
 * commits. At step N the process kills itself with SIGKILL, or pauses: it
 * creates the file MPAC_TEST_HOOK_COMMIT_PAUSE_FILE and waits (blocking) for
 * it to be removed. Used by test/server/workspace-safety.test.ts.
 */
class CommitHook {
  #step = 0
  readonly #crashAt = Number(process.env.MPAC_TEST_HOOK_COMMIT_CRASH_AT ?? 0)
  readonly #pauseAt = Number(process.env.MPAC_TEST_HOOK_COMMIT_PAUSE_AT ?? 0)
  readonly #pauseFile = process.env.MPAC_TEST_HOOK_COMMIT_PAUSE_FILE

  step (): void {
    if (this.#crashAt <= 0 && this.#pauseAt <= 0) return
    this.#step++
    if (this.#step === this.#crashAt) process.kill(process.pid, 'SIGKILL')
    if (this.#step === this.#pauseAt && this.#pauseFile !== undefined) {
      writeFileSync(this.#pauseFile, String(process.pid))
      const until = Date.now() + 60_000
      const cell = new Int32Array(new SharedArrayBuffer(4))
      while (existsSync(this.#pauseFile) && Date.now() < until) Atomics.wait(cell, 0, 0, 5)
    }
  }
}

export class DiskWorkspace {
  readonly root: string
  readonly git: GitIgnore
  readonly #realRoot: string
  readonly #maxFileBytes: number
  readonly #hook = new CommitHook()

  constructor (root: string, maxFileBytes = 4 * 1024 * 1024) {
    this.root = root
    this.#realRoot = realpathSync(root)
    this.#maxFileBytes = maxFileBytes
    this.git = new GitIgnore(root)
  }

  /**
   * Every UTF-8 text file under the root that the rules allow (in a git work
   * tree: the files git does not ignore), sorted by path, stopping before
   * `maxBytes` in total (files past the budget are skipped and counted).
   * Stale temporary files met on the way are removed.
   */
  load (maxBytes: number): LoadReport {
    const files: LoadedFile[] = []
    let skipped = 0
    let bytes = 0
    let cleaned = 0
    const take = (rel: string, abs: string): void => {
      const content = this.#readText(abs)
      if (content === null) { skipped++; return }
      const size = Buffer.byteLength(content, 'utf8')
      if (bytes + size > maxBytes) { skipped++; return }
      bytes += size
      files.push({ path: rel, content })
    }
    const listed = this.git.list()
    if (listed !== undefined) {
      for (const rel of listed) {
        const parts = rel.split('/')
        const name = parts[parts.length - 1] as string
        if (isTempName(name)) { cleaned += this.#removeTemp(rel) ? 1 : 0; continue }
        if (vcsSegment(rel) !== undefined || SKIPPED_FILES.has(name) || parts.slice(0, -1).some(p => SKIPPED_DIRS.has(p))) continue
        const abs = this.resolve(rel)
        if (abs === undefined) { skipped++; continue }
        const real = this.#realInside(abs)
        if (real === undefined) { skipped++; continue }
        take(rel, real)
      }
      files.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
      return { files, skipped, bytes, cleaned }
    }
    const walk = (dir: string): void => {
      let names: string[]
      try {
        names = readdirSync(dir).sort()
      } catch {
        skipped++
        return
      }
      for (const name of names) {
        const abs = join(dir, name)
        let st
        try {
          st = lstatSync(abs)
        } catch {
          skipped++
          continue
        }
        if (VCS_NAMES.has(name.toLowerCase())) continue
        if (st.isDirectory()) {
          if (!SKIPPED_DIRS.has(name)) walk(abs)
          continue
        }
        const rel = relative(this.root, abs).split(sep).join('/')
        if (isTempName(name)) {
          if (st.isFile() && this.#removeTemp(rel)) cleaned++
          continue
        }
        if (SKIPPED_FILES.has(name)) continue
        if (st.isSymbolicLink()) {
          // Follow a link only to a regular file inside the root; never to directories (loops).
          const real = this.#realInside(abs)
          if (real === undefined) { skipped++; continue }
          take(rel, real)
          continue
        } else if (!st.isFile()) {
          continue
        }
        take(rel, abs)
      }
    }
    walk(this.root)
    return { files, skipped, bytes, cleaned }
  }

  /**
   * Why each of `paths` may not be read or written in workspace mode (paths
   * that may are absent from the map). One git call at most, for all of them.
   */
  refusals (paths: readonly string[]): Map<string, string> {
    const out = new Map<string, string>()
    const ask: string[] = []
    for (const path of paths) {
      const reason = this.#localRefusal(path)
      if (reason !== undefined) out.set(path, reason)
      else ask.push(path)
    }
    if (ask.length > 0 && this.git.isRepository) {
      const { ignored, unknown } = this.git.ignored(ask)
      for (const p of ignored) out.set(p, `path ${p} is ignored by git (.gitignore, .git/info/exclude or core.excludesFile); workspace mode serves only files git does not ignore`)
      for (const p of unknown) out.set(p, `path ${p} cannot be checked against git's ignore rules (inside a nested repository or submodule?); workspace mode refuses it`)
    }
    return out
  }

  /** Why `path` may not be read or written, or undefined when it may. */
  refusal (path: string): string | undefined {
    return this.refusals([path]).get(path)
  }

  /** Only the paths of `paths` that the rules allow, in order. */
  allowed (paths: readonly string[]): string[] {
    const refused = this.refusals(paths)
    return paths.filter(p => !refused.has(p))
  }

  /** The rules that need no git: a safe relative path, no VCS metadata, no temporary name, no symlink leading outside. */
  #localRefusal (path: string): string | undefined {
    const abs = this.resolve(path)
    if (abs === undefined) return `path ${JSON.stringify(path)} is not a relative path inside the workspace`
    const vcs = vcsSegment(path)
    if (vcs !== undefined) return `path ${path} is VCS metadata (${vcs}); workspace mode never reads or writes it`
    if (path.split('/').some(isTempName)) return `path ${path} is reserved for the coordinator's temporary files (*${TEMP_SUFFIX}); workspace mode never reads or writes it as a file`
    if (this.#escapes(abs)) return `path ${path} resolves through a symlink outside the workspace; workspace mode never follows it`
    return undefined
  }

  /** True when an existing component of `abs` is a symbolic link resolving outside the root. */
  #escapes (abs: string): boolean {
    const parts = relative(this.root, abs).split(sep)
    let cur = this.root
    for (const part of parts) {
      cur = join(cur, part)
      let st
      try {
        st = lstatSync(cur)
      } catch {
        return false
      }
      if (st.isSymbolicLink()) {
        let real: string
        try {
          real = realpathSync(cur)
        } catch {
          // A dangling link: where it points is what matters.
          try {
            const target = readlinkSync(cur)
            real = isAbsolute(target) ? target : join(dirname(cur), target)
          } catch {
            return true
          }
        }
        if (!this.#inside(real)) return true
      }
    }
    return false
  }

  /** The file's text, or null when absent, refused by the rules, not a regular file, not UTF-8 or too big. */
  read (path: string): string | null {
    const r = this.readChecked(path)
    return r.kind === 'ok' ? r.content : null
  }

  /** The file's text, or why it is not served. */
  readChecked (path: string): ReadResult {
    const reason = this.refusal(path)
    if (reason !== undefined) return { kind: 'refused', reason }
    const abs = this.resolve(path) as string
    const real = this.#realInside(abs)
    if (real === undefined) return { kind: 'missing' }
    const content = this.#readText(real)
    return content === null ? { kind: 'missing' } : { kind: 'ok', content }
  }

  /**
   * True when `path` can be written without leaving the root: every existing
   * directory on the way is a real directory inside the root (a symbolic link
   * is fine only if it resolves inside the root), nothing on the way is a
   * file, and the path itself is not a directory. Missing directories are
   * fine (they are created inside).
   */
  writable (path: string): boolean {
    return this.#parentChain(path) !== undefined
  }

  /** Writes one file (a commit of one file; see `commit`). */
  write (path: string, content: string): void {
    this.beginCommit([path])
    const failed = this.commit([{ path, content }])
    if (failed.length > 0) throw new Error(`refusing to write outside the workspace: ${JSON.stringify(path)}`)
  }

  /**
   * Phase 0 of a commit, before the commit is journaled: a `pending`
   * manifest naming the paths about to be written. A crash from here until
   * the `committed` manifest makes `recover` write those paths from the
   * journal (the session's state after replay) — whatever the journal holds.
   */
  beginCommit (paths: readonly string[]): void {
    this.#writeManifest({ state: 'pending', paths: [...new Set(paths)] })
    this.#hook.step()
  }

  /**
   * Writes the files of journaled commits so that they land together:
   * 1. each file's content into a temporary file beside it (O_EXCL,
   *    O_NOFOLLOW, its real location checked through /proc/self/fd), fsync;
   * 2. the `committed` manifest (path → temporary file), fsync, rename:
   *    from here a crash rolls the whole commit forward from the temporary
   *    files;
   * 3. each temporary file renamed over its file, the real path of its
   *    directory checked again just before; directories fsynced;
   * 4. the manifest removed.
   * Returns the paths that could not be written (logged by the caller).
   */
  commit (writes: ReadonlyArray<{ readonly path: string, readonly content: string }>): string[] {
    const last = new Map<string, string>()
    for (const w of writes) last.set(w.path, w.content)
    const failed: string[] = []
    const temps = new Map<string, { tmp: string, abs: string, realDir: string }>()
    this.#hook.step()
    for (const [path, content] of last) {
      try {
        temps.set(path, this.#writeTemp(path, content))
      } catch {
        failed.push(path)
      }
      this.#hook.step()
    }
    const record: Record<string, string> = {}
    for (const [path, t] of temps) record[path] = relative(this.root, t.tmp).split(sep).join('/')
    this.#writeManifest({ state: 'committed', paths: [...temps.keys()], temps: record })
    this.#hook.step()
    const dirs = new Set<string>()
    for (const [path, t] of temps) {
      try {
        this.#place(t.tmp, t.abs, t.realDir)
        dirs.add(dirname(t.abs))
      } catch {
        failed.push(path)
        try { unlinkSync(t.tmp) } catch { /* already gone */ }
      }
      this.#hook.step()
    }
    for (const d of dirs) fsyncDir(d)
    this.#removeManifest()
    this.#hook.step()
    return failed
  }

  /**
   * At start, before loading: finishes the commit a crash interrupted.
   * A `committed` manifest: every temporary file still there is renamed
   * over its file. A `pending` one: each of its paths is written with the
   * content `journaled` returns (the session's state after journal replay;
   * undefined = the journal has no such file: the disk is left alone).
   * Then the manifest and any temporary file it names are removed.
   */
  recover (journaled: (path: string) => string | null | undefined): RecoveryReport {
    const manifest = this.#readManifest()
    if (manifest === undefined) return { state: undefined, rolledForward: [], failed: [] }
    const rolledForward: string[] = []
    const failed: string[] = []
    if (manifest.state === 'committed') {
      for (const path of manifest.paths) {
        const tmpRel = manifest.temps?.[path]
        const abs = this.resolve(path)
        const tmp = tmpRel === undefined ? undefined : this.resolve(tmpRel)
        if (abs === undefined || tmp === undefined || !isTempName(tmp)) { failed.push(path); continue }
        let present = false
        try { present = lstatSync(tmp).isFile() } catch { /* renamed before the crash */ }
        if (!present) continue
        const realDir = this.#realInside(dirname(abs), true)
        try {
          if (realDir === undefined || this.#localRefusal(path) !== undefined) throw new Error('unsafe')
          this.#place(tmp, abs, realDir)
          fsyncDir(dirname(abs))
          rolledForward.push(path)
        } catch {
          failed.push(path)
          try { unlinkSync(tmp) } catch { /* gone */ }
        }
      }
    } else {
      const writes: Array<{ path: string, content: string }> = []
      for (const path of manifest.paths) {
        const content = journaled(path)
        if (typeof content !== 'string') continue
        if (this.read(path) === content) continue
        writes.push({ path, content })
      }
      this.#removeManifest()
      if (writes.length > 0) {
        this.beginCommit(writes.map(w => w.path))
        const bad = this.commit(writes)
        failed.push(...bad)
        rolledForward.push(...writes.map(w => w.path).filter(p => !bad.includes(p)))
      }
    }
    this.#removeManifest()
    return { state: manifest.state, rolledForward, failed }
  }

  #writeTemp (path: string, content: string): { tmp: string, abs: string, realDir: string } {
    if (this.#localRefusal(path) !== undefined) throw new Error('refused')
    const chain = this.#parentChain(path)
    if (chain === undefined) throw new Error('unsafe')
    for (const dir of chain.missing) {
      try {
        mkdirSync(dir)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
      const st = lstatSync(dir)
      if (!st.isDirectory() || this.#realInside(dir, true) === undefined) throw new Error('unsafe')
    }
    const abs = chain.abs
    const dir = dirname(abs)
    // Every directory on the way, as it is now.
    const realDir = this.#realInside(dir, true)
    if (realDir === undefined) throw new Error('unsafe')
    const tmp = join(dir, `.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`)
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o644)
    try {
      // Where the file really is (the kernel's word, not a path resolved again).
      const where = fdPath(fd)
      if (where !== undefined && dirname(where) !== realDir) {
        closeSync(fd)
        try { unlinkSync(where) } catch { /* gone */ }
        throw new Error('unsafe')
      }
      writeSync(fd, content, null, 'utf8')
      fsyncSync(fd)
    } catch (err) {
      try { closeSync(fd) } catch { /* closed */ }
      try { unlinkSync(tmp) } catch { /* gone */ }
      throw err
    }
    closeSync(fd)
    return { tmp, abs, realDir }
  }

  /** Renames a temporary file over its file, after checking that its directory still is where it was. */
  #place (tmp: string, abs: string, realDir: string): void {
    const now = this.#realInside(dirname(abs), true)
    if (now === undefined || now !== realDir) throw new Error('the directory moved')
    try {
      if (lstatSync(abs).isDirectory()) throw new Error('a directory is in the way')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
    renameSync(tmp, abs)
  }

  #writeManifest (m: Manifest): void {
    const path = join(this.root, MANIFEST_NAME)
    const tmp = join(this.root, `.mpac-commit-next${TEMP_SUFFIX}`)
    const fd = openSync(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW, 0o600)
    try {
      writeSync(fd, JSON.stringify(m), null, 'utf8')
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, path)
    fsyncDir(this.root)
  }

  #readManifest (): Manifest | undefined {
    try { unlinkSync(join(this.root, `.mpac-commit-next${TEMP_SUFFIX}`)) } catch { /* none */ }
    let text: string
    try {
      const st = lstatSync(join(this.root, MANIFEST_NAME))
      if (!st.isFile()) return undefined
      text = readFileSync(join(this.root, MANIFEST_NAME), 'utf8')
    } catch {
      return undefined
    }
    try {
      const m = JSON.parse(text) as Manifest
      if ((m.state !== 'pending' && m.state !== 'committed') || !Array.isArray(m.paths)) return undefined
      return { state: m.state, paths: m.paths.filter(p => typeof p === 'string'), ...(m.temps !== undefined ? { temps: m.temps } : {}) }
    } catch {
      return undefined
    }
  }

  #removeManifest (): void {
    try {
      unlinkSync(join(this.root, MANIFEST_NAME))
      fsyncDir(this.root)
    } catch { /* none */ }
  }

  /** Removes a stale temporary file (a regular file with the reserved suffix, inside the root). */
  #removeTemp (rel: string): boolean {
    const abs = this.resolve(rel)
    if (abs === undefined || rel === MANIFEST_NAME) return false
    try {
      if (!lstatSync(abs).isFile() || this.#realInside(dirname(abs), true) === undefined) return false
      unlinkSync(abs)
      return true
    } catch {
      return false
    }
  }

  /**
   * The absolute path and the directories to create for it, or undefined
   * when the path is unsafe or an existing parent leads outside the root.
   */
  #parentChain (path: string): { readonly abs: string, readonly missing: string[] } | undefined {
    const abs = this.resolve(path)
    if (abs === undefined) return undefined
    const parts = relative(this.root, abs).split(sep)
    const missing: string[] = []
    let dir = this.root
    for (const part of parts.slice(0, -1)) {
      dir = join(dir, part)
      if (missing.length > 0) {
        missing.push(dir)
        continue
      }
      let st
      try {
        st = lstatSync(dir)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return undefined
        missing.push(dir)
        continue
      }
      if (st.isSymbolicLink()) {
        try {
          const real = realpathSync(dir)
          if (!this.#inside(real) || !statSync(real).isDirectory()) return undefined
        } catch {
          return undefined
        }
      } else if (!st.isDirectory()) {
        return undefined
      }
    }
    if (missing.length === 0) {
      // The file itself may be replaced (even a symlink: rename replaces the link), but not a directory.
      try {
        if (lstatSync(abs).isDirectory()) return undefined
      } catch { /* absent: created */ }
    }
    return { abs, missing }
  }

  /** The absolute path of a wire path, or undefined when it is not a safe relative path. */
  resolve (path: string): string | undefined {
    if (typeof path !== 'string' || path === '' || path.includes('\0') || path.includes('\\')) return undefined
    if (isAbsolute(path)) return undefined
    const parts = path.split('/')
    if (parts.some(p => p === '..' || p === '')) return undefined
    const abs = join(this.root, ...parts.filter(p => p !== '.'))
    const rel = relative(this.root, abs)
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined
    return abs
  }

  /** The real path of `abs` when it exists and lies inside the root (the root itself too when `allowRoot`). */
  #realInside (abs: string, allowRoot = false): string | undefined {
    try {
      const real = realpathSync(abs)
      if (allowRoot && real === this.#realRoot) return real
      return this.#inside(real) ? real : undefined
    } catch {
      return undefined
    }
  }

  #inside (real: string): boolean {
    const rel = relative(this.#realRoot, real)
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
  }

  /** A regular file's text, opened without following a final symlink (`abs` is a real path) and checked where it was opened. */
  #readText (abs: string): string | null {
    let fd: number
    try {
      fd = openSync(abs, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK)
    } catch {
      return null
    }
    try {
      const where = fdPath(fd)
      if (where !== undefined && !this.#inside(where)) return null
      const st = fstatSync(fd)
      if (!st.isFile() || st.size > this.#maxFileBytes) return null
      return utf8.decode(readFileSync(fd))
    } catch {
      return null
    } finally {
      closeSync(fd)
    }
  }
}

/** Where an open file really is (Linux: /proc/self/fd), or undefined where that cannot be asked. */
function fdPath (fd: number): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`)
  } catch {
    return undefined
  }
}

function fsyncDir (dir: string): void {
  let fd: number | undefined
  try {
    fd = openSync(dir, fsc.O_RDONLY)
    fsyncSync(fd)
  } catch { /* best effort: not every platform can fsync a directory */ } finally {
    if (fd !== undefined) closeSync(fd)
  }
}
