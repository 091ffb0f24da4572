import { createHash } from 'node:crypto'

/**
 * The wire `state_ref` of a file's text (protocol.md §7.1): `sha256:` and the
 * first 16 lowercase hex digits of SHA-256 over the UTF-8 encoding. Python
 * agents and the Python FileStore derive it the same way, so refs match.
 * (A lone UTF-16 surrogate, which Python cannot encode, is hashed as U+FFFD.)
 */
export function stateRef (text: string): string {
  return 'sha256:' + createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 16)
}
