import { createHash, timingSafeEqual } from 'node:crypto'
import type { Credential, Verdict } from '../coordinator/types.js'

/**
 * The token table of the authenticated profile (bridge.md §4, DESIGN.md §4.5).
 *
 * Format: a JSON object mapping a token to an entry:
 *
 * ```json
 * {
 *   "tok-alice": { "allowed_sessions": ["proj-a"], "roles": ["owner"], "principal": "agent:alice" },
 *   "sha256:9f86d08…(64 hex)": { "allowed_sessions": ["*"] }
 * }
 * ```
 *
 * - `allowed_sessions` (required, list of strings): session ids the token is
 *   valid for; `"*"` means every session.
 * - `roles` (optional, non-empty list of strings): roles granted, replacing the
 *   role policy. Absent → `["contributor"]` (the Python tool required roles on
 *   every token and failed obscurely without them; bridge.md §4).
 * - `principal` (optional string): the HELLO must come from exactly this
 *   principal id.
 * - `expires_at` (optional RFC 3339): the token is refused after this instant.
 * - A key of the form `sha256:<64 hex>` is the SHA-256 of the token, so a table
 *   file need not hold the secrets themselves.
 *
 * Tokens are never logged or printed: errors name entries by position.
 */

export interface TokenEntry {
  readonly allowedSessions: readonly string[]
  readonly anySession: boolean
  readonly roles: readonly string[]
  readonly principal: string | undefined
  readonly expiresAt: number | undefined
  /** 1-based position in the table, for messages that must not show the token. */
  readonly position: number
  readonly digest: Buffer
}

export type TokenCheck =
  | { readonly ok: true, readonly entry: TokenEntry, readonly digest: string }
  | { readonly ok: false, readonly status: 401 | 403, readonly reason: string }

const DEFAULT_ROLES: readonly string[] = Object.freeze(['contributor'])
const HASHED_KEY = /^sha256:([0-9a-f]{64})$/

export function tokenDigest (token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex')
}

function isStringList (value: unknown): value is string[] {
  return Array.isArray(value) && value.every(item => typeof item === 'string')
}

export class TokenTable {
  /**
   * Keyed by the hex SHA-256 of the token. Why the lookup is constant-time
   * with respect to the secret: the attacker-supplied candidate is hashed
   * first, so the only value that flows into the Map's hashing and string
   * comparison is a digest. Timing of those operations can at best reveal
   * how many leading bytes of the *digest* match a stored digest, and since
   * SHA-256 is preimage-resistant, matching digest prefixes gives no way to
   * construct a candidate closer to the real token. The final comparison of
   * the found digest is also done with `timingSafeEqual`.
   */
  readonly #entries: ReadonlyMap<string, TokenEntry>

  private constructor (entries: Map<string, TokenEntry>) {
    this.#entries = entries
  }

  get size (): number {
    return this.#entries.size
  }

  /** Parses and validates a table; the error names the entry by position, never the token. */
  static parse (text: string): { ok: true, table: TokenTable } | { ok: false, message: string } {
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch (err) {
      return { ok: false, message: `not valid JSON (${(err as Error).message})` }
    }
    return TokenTable.fromObject(raw)
  }

  static fromObject (raw: unknown): { ok: true, table: TokenTable } | { ok: false, message: string } {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      return { ok: false, message: 'must be a JSON object mapping each token to {allowed_sessions, roles?, principal?}' }
    }
    const entries = new Map<string, TokenEntry>()
    let position = 0
    for (const [token, value] of Object.entries(raw as Record<string, unknown>)) {
      position += 1
      const where = `entry #${position}`
      if (token.trim() === '') return { ok: false, message: `${where}: the token is empty` }
      if (value === null || typeof value !== 'object' || Array.isArray(value)) {
        return { ok: false, message: `${where}: must be an object {allowed_sessions, roles?, principal?}` }
      }
      const v = value as Record<string, unknown>
      const known = new Set(['allowed_sessions', 'roles', 'principal', 'expires_at', 'comment'])
      for (const key of Object.keys(v)) {
        if (!known.has(key)) return { ok: false, message: `${where}: unknown key "${key}"` }
      }
      if (v.allowed_sessions === undefined) {
        return { ok: false, message: `${where}: allowed_sessions is required (a list of session ids, or ["*"])` }
      }
      if (!isStringList(v.allowed_sessions)) return { ok: false, message: `${where}: allowed_sessions must be a list of strings` }
      if (v.roles !== undefined) {
        if (!isStringList(v.roles)) return { ok: false, message: `${where}: roles must be a list of strings` }
        if (v.roles.length === 0) return { ok: false, message: `${where}: roles must not be empty (omit it to grant ["contributor"])` }
      }
      if (v.principal !== undefined && (typeof v.principal !== 'string' || v.principal === '')) {
        return { ok: false, message: `${where}: principal must be a non-empty string` }
      }
      let expiresAt: number | undefined
      if (v.expires_at !== undefined) {
        expiresAt = typeof v.expires_at === 'string' ? Date.parse(v.expires_at) : NaN
        if (!Number.isFinite(expiresAt)) return { ok: false, message: `${where}: expires_at must be an RFC 3339 time` }
      }
      const hashed = HASHED_KEY.exec(token)
      const digest = hashed?.[1] ?? tokenDigest(token)
      if (entries.has(digest)) return { ok: false, message: `${where}: duplicate token` }
      entries.set(digest, Object.freeze({
        allowedSessions: Object.freeze([...v.allowed_sessions]),
        anySession: v.allowed_sessions.includes('*'),
        roles: v.roles === undefined ? DEFAULT_ROLES : Object.freeze([...(v.roles)]),
        principal: v.principal,
        expiresAt,
        position,
        digest: Buffer.from(digest, 'hex')
      }))
    }
    return { ok: true, table: new TokenTable(entries) }
  }

  /** Looks a token up and checks it for a session (not yet for a principal). */
  check (token: string, sessionId: string, now = Date.now()): TokenCheck {
    const digest = tokenDigest(token)
    const entry = this.#entries.get(digest)
    if (entry === undefined) return { ok: false, status: 401, reason: 'unknown bearer token' }
    // Belt and braces: compare the stored digest with the candidate's in constant time.
    if (!timingSafeEqual(entry.digest, Buffer.from(digest, 'hex'))) {
      return { ok: false, status: 401, reason: 'unknown bearer token' }
    }
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) return { ok: false, status: 401, reason: 'bearer token expired' }
    if (!entry.anySession && !entry.allowedSessions.includes(sessionId)) {
      return { ok: false, status: 403, reason: `token not authorized for session ${sessionId}` }
    }
    return { ok: true, entry, digest }
  }

  /**
   * Looks a token up without a session (the dashboard login): the same
   * digest lookup and constant-time comparison as `check`, and the expiry.
   */
  authenticate (token: string, now = Date.now()): { readonly ok: true, readonly entry: TokenEntry, readonly digest: string } | { readonly ok: false, readonly reason: string } {
    const digest = tokenDigest(token)
    const entry = this.#entries.get(digest)
    if (entry === undefined || !timingSafeEqual(entry.digest, Buffer.from(digest, 'hex'))) return { ok: false, reason: 'unknown token' }
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) return { ok: false, reason: 'token expired' }
    return { ok: true, entry, digest }
  }

  /** The entry of a token digest (hex), if the table has it. */
  entryOf (digest: string): TokenEntry | undefined {
    return this.#entries.get(digest)
  }

  /** True when the token with this digest is still valid for the session (used on reload). */
  stillValid (digest: string, sessionId: string, principalId: string | undefined, now = Date.now()): boolean {
    const entry = this.#entries.get(digest)
    if (entry === undefined) return false
    if (entry.expiresAt !== undefined && now >= entry.expiresAt) return false
    if (!entry.anySession && !entry.allowedSessions.includes(sessionId)) return false
    if (entry.principal !== undefined && principalId !== undefined && entry.principal !== principalId) return false
    return true
  }

  /** The core's `Verifier` (protocol.md §10.2): credential → verdict for this session and principal. */
  verify (credential: Credential, sessionId: string, principalId: string, now = Date.now()): Verdict {
    if (credential.type !== 'bearer_token') {
      return { accepted: false, reason: `unsupported credential type ${JSON.stringify(credential.type)} (expected bearer_token)` }
    }
    if (typeof credential.value !== 'string' || credential.value === '') return { accepted: false, reason: 'missing bearer token' }
    const checked = this.check(credential.value, sessionId, now)
    if (!checked.ok) return { accepted: false, reason: checked.reason }
    const { entry } = checked
    if (entry.principal !== undefined && entry.principal !== principalId) {
      return { accepted: false, reason: `token is pinned to another principal than ${principalId}` }
    }
    return entry.principal === undefined
      ? { accepted: true, grantedRoles: entry.roles }
      : { accepted: true, grantedRoles: entry.roles, principalId: entry.principal }
  }
}
