/** Helpers for tests that run our programs as child processes. */
import { mkdtempSync, realpathSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface Teardown { teardown (fn: () => unknown): void }

export type Env = Record<string, string>

/**
 * The process environment without MPAC_* (so the developer's settings never
 * leak into a test), NODE_OPTIONS and tap's variables, plus `extra`.
 */
export function cleanEnv (extra: Env = {}): Env {
  const env: Env = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith('MPAC_') && k !== 'NODE_OPTIONS' && !k.startsWith('TAP')) env[k] = v
  }
  return { ...env, ...extra }
}

/** A fresh directory in the OS temp dir (symlinks resolved), removed at teardown. */
export function tempDir (t: Teardown, prefix: string): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), prefix)))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A TCP port that was free on 127.0.0.1 a moment ago (for programs that cannot listen on port 0 and report it, or for a port where nothing listens). */
export function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address()
      srv.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}
