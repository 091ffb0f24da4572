import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs'
import { dirname, isAbsolute, join, relative, sep } from 'node:path'
import { randomBytes } from 'node:crypto'

/**
 * The directory a single-session sidecar serves (`--workspace DIR`): loaded
 * into the session at creation, read through for FILE_READ and before
 * commits, written through (atomically) after accepted commits. Paths on the
 * wire are relative POSIX paths; nothing is ever read or written outside DIR.
 */

/** Directories and files skipped when loading (bridge.md §3). */
export const SKIPPED_DIRS: ReadonlySet<string> = new Set([
  '.git', '.hg', '.svn', '__pycache__', '.pytest_cache', '.mypy_cache', '.ruff_cache', 'node_modules',
  '.venv', 'venv', 'env', '.idea', '.vscode', 'dist', 'build', '.next', '.turbo'
])
export const SKIPPED_FILES: ReadonlySet<string> = new Set(['.DS_Store', 'Thumbs.db', '.gitignore'])

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export interface LoadedFile { readonly path: string, readonly content: string }

export interface LoadReport {
  readonly files: LoadedFile[]
  readonly skipped: number
  readonly bytes: number
}

export class DiskWorkspace {
  readonly root: string
  readonly #realRoot: string
  readonly #maxFileBytes: number

  constructor (root: string, maxFileBytes = 4 * 1024 * 1024) {
    this.root = root
    this.#realRoot = realpathSync(root)
    this.#maxFileBytes = maxFileBytes
  }

  /**
   * Every UTF-8 text file under the root, sorted by path, stopping before
   * `maxBytes` in total (files past the budget are skipped and counted).
   */
  load (maxBytes: number): LoadReport {
    const files: LoadedFile[] = []
    let skipped = 0
    let bytes = 0
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
        if (st.isDirectory()) {
          if (!SKIPPED_DIRS.has(name)) walk(abs)
          continue
        }
        if (SKIPPED_FILES.has(name)) continue
        if (st.isSymbolicLink()) {
          // Follow a link only to a regular file inside the root; never to directories (loops).
          try {
            const target = realpathSync(abs)
            if (!this.#inside(target) || !statSync(target).isFile()) { skipped++; continue }
          } catch {
            skipped++
            continue
          }
        } else if (!st.isFile()) {
          continue
        }
        const content = this.#readText(abs)
        if (content === null) { skipped++; continue }
        const size = Buffer.byteLength(content, 'utf8')
        if (bytes + size > maxBytes) { skipped++; continue }
        bytes += size
        files.push({ path: relative(this.root, abs).split(sep).join('/'), content })
      }
    }
    walk(this.root)
    return { files, skipped, bytes }
  }

  /** The file's text, or null when absent, not a regular file, not UTF-8, too big or outside the root. */
  read (path: string): string | null {
    const abs = this.resolve(path)
    if (abs === undefined) return null
    try {
      const real = realpathSync(abs)
      if (!this.#inside(real)) return null
      return this.#readText(real)
    } catch {
      return null
    }
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

  /**
   * Writes atomically: a temporary file in the same directory, fsync, rename.
   * Refuses paths that leave the root, including through a symlinked parent;
   * missing directories are created one at a time, each checked first, so
   * nothing (not even an empty directory) is created outside the root.
   */
  write (path: string, content: string): void {
    const chain = this.#parentChain(path)
    if (chain === undefined) throw new Error(`refusing to write outside the workspace: ${JSON.stringify(path)}`)
    for (const dir of chain.missing) {
      mkdirSync(dir)
      const real = realpathSync(dir)
      if (!this.#inside(real)) throw new Error(`refusing to write outside the workspace: ${JSON.stringify(path)}`)
    }
    const abs = chain.abs
    const dir = dirname(abs)
    const realDir = realpathSync(dir)
    if (realDir !== this.#realRoot && !this.#inside(realDir)) throw new Error(`refusing to write outside the workspace: ${JSON.stringify(path)}`)
    const tmp = join(dir, `.${randomBytes(6).toString('hex')}.mpac-tmp`)
    const fd = openSync(tmp, 'wx', 0o644)
    try {
      writeSync(fd, content, null, 'utf8')
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    try {
      renameSync(tmp, abs)
    } catch (err) {
      try { unlinkSync(tmp) } catch { /* already gone */ }
      throw err
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

  #inside (real: string): boolean {
    const rel = relative(this.#realRoot, real)
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)
  }

  #readText (abs: string): string | null {
    try {
      const st = statSync(abs)
      if (!st.isFile() || st.size > this.#maxFileBytes) return null
      return utf8.decode(readFileSync(abs))
    } catch {
      return null
    }
  }
}
