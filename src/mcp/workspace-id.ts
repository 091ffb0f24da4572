/**
 * Deterministic ids derived from a workspace path (bridge.md §2.3), the same
 * algorithm as the Python bridge so that a Python bridge and this shim in the
 * same repository meet in the same local session on the same port.
 */
import { createHash } from 'node:crypto'
import { basename } from 'node:path'

/** First port of the derived range; the range is 38000–39999. */
export const DERIVED_PORT_BASE = 38000
export const DERIVED_PORT_SPAN = 2000

function sha1Hex (text: string): string {
  return createHash('sha1').update(text, 'utf8').digest('hex')
}

/** Drops trailing slashes (but keeps the root `/`). */
function canonical (path: string): string {
  let p = path
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1)
  return p
}

/**
 * `mpac-local-<slug>-<first 10 hex of SHA-1(path)>`: slug = the last path
 * component, spaces turned into `-`, lowercased, `workspace` for the root.
 * `path` must be the resolved absolute path.
 */
export function deriveSessionId (path: string): string {
  const p = canonical(path)
  const last = basename(p)
  const slug = last === '' ? 'workspace' : last.replaceAll(' ', '-').toLowerCase()
  return `mpac-local-${slug}-${sha1Hex(p).slice(0, 10)}`
}

/** `38000 + (first 8 hex of SHA-1(path) as an integer) mod 2000`. */
export function derivePort (path: string): number {
  const p = canonical(path)
  return DERIVED_PORT_BASE + (parseInt(sha1Hex(p).slice(0, 8), 16) % DERIVED_PORT_SPAN)
}

/** `sha256:` + first 16 hex of SHA-256 of the UTF-8 text (bridge.md §2.3, protocol.md §7.1). */
export function stateRef (text: string): string {
  return 'sha256:' + createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 16)
}
