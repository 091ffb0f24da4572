/**
 * Deterministic ids of a local workspace, the same algorithm as the original
 * Python bridge (bridge.md §2.3), so that a Python bridge and our shim in the
 * same repository meet in the same session on the same port. Both the shim
 * (which starts the local sidecar) and the sidecar (which names its session)
 * use these.
 */
import { createHash } from 'node:crypto'
import { basename, resolve } from 'node:path'

/** The derived port range is 38000–39999. */
export const DERIVED_PORT_BASE = 38000
export const DERIVED_PORT_SPAN = 2000

/** The resolved absolute path string without a trailing slash (the root `/` stays). */
function canonical (workspaceDir: string): string {
  let p = resolve(workspaceDir)
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p
}

function sha1Hex (text: string): string {
  return createHash('sha1').update(text, 'utf8').digest('hex')
}

/**
 * `mpac-local-<slug>-<first 10 hex of SHA-1(path)>`: slug = the last path
 * component, spaces turned into `-`, lowercased, `workspace` for the root. No
 * other sanitising: dots, unicode and `:` are kept.
 */
export function deriveSessionId (workspaceDir: string): string {
  const p = canonical(workspaceDir)
  const last = basename(p)
  const slug = last === '' ? 'workspace' : last.replaceAll(' ', '-').toLowerCase()
  return `mpac-local-${slug}-${sha1Hex(p).slice(0, 10)}`
}

/** `38000 + (first 8 hex of SHA-1(path) as an integer) mod 2000`. */
export function derivePort (workspaceDir: string): number {
  return DERIVED_PORT_BASE + (parseInt(sha1Hex(canonical(workspaceDir)).slice(0, 8), 16) % DERIVED_PORT_SPAN)
}
