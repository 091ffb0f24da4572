import { createHash } from 'node:crypto'
import { basename, resolve } from 'node:path'

/**
 * Deterministic ids of a local workspace, exactly as the original Python
 * bridge derives them (bridge.md §2.3), so a Python bridge and our shim in the
 * same repository meet in the same session on the same port.
 *
 * Both use the resolved absolute path string, UTF-8, without a trailing slash.
 */

function normalise (workspaceDir: string): string {
  const abs = resolve(workspaceDir)
  return abs.length > 1 && abs.endsWith('/') ? abs.slice(0, -1) : abs
}

function sha1Hex (text: string): string {
  return createHash('sha1').update(text, 'utf8').digest('hex')
}

/**
 * `mpac-local-<slug>-<first 10 hex of SHA-1(path)>`; slug = last path
 * component, spaces → `-`, lowercased; `workspace` for the root. No other
 * sanitising: dots, unicode and `:` are kept.
 */
export function deriveLocalSessionId (workspaceDir: string): string {
  const path = normalise(workspaceDir)
  const last = basename(path)
  const slug = last === '' ? 'workspace' : last.replaceAll(' ', '-').toLowerCase()
  return `mpac-local-${slug}-${sha1Hex(path).slice(0, 10)}`
}

/** `38000 + (int(first 8 hex of SHA-1(path), 16) mod 2000)`: 38000–39999. */
export function deriveLocalPort (workspaceDir: string): number {
  const path = normalise(workspaceDir)
  return 38000 + (parseInt(sha1Hex(path).slice(0, 8), 16) % 2000)
}
