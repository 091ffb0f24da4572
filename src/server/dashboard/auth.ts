/**
 * Dashboard sign-in (agent-hooks-and-dashboard.md §9.3). A viewer posts a
 * token once; it is checked with the token table's digest lookup (constant
 * time) and, when valid, answered with an opaque random cookie (32 bytes,
 * base64url) naming a server-side record: the token's digest and when the
 * record ends (8 h, or the token's `expires_at` if sooner). The token itself
 * is never kept, logged or put in a URL. Every request and every SSE
 * keep-alive looks the record's digest up in the *current* token table, so
 * a token removed or expired by a reload ends the view at once. Login
 * attempts are limited per client address (LOGIN_ATTEMPTS per minute).
 *
 * Without a token table (the local loopback coordinator) there is no login:
 * every request is the `local` viewer, who may see every session.
 */
import { randomBytes } from 'node:crypto'
import type { TokenEntry, TokenTable } from '../token-table.js'

export const RECORD_TTL_MS = 8 * 3600 * 1000
export const LOGIN_ATTEMPTS = 10
export const LOGIN_WINDOW_MS = 60_000
/** Sign-in records kept at most (the oldest is dropped beyond). */
const MAX_RECORDS = 10_000
/** Client addresses whose login attempts are tracked at most. */
const MAX_TRACKED_ADDRESSES = 10_000

interface DashRecord { readonly digest: string, readonly expiresAt: number }

export type Viewer =
  | { readonly kind: 'local' }
  | { readonly kind: 'token', readonly recordId: string, readonly digest: string, readonly entry: TokenEntry, readonly expiresAt: number }

/** May this viewer see that session? (any token valid for it: allowed_sessions or `*`) */
export function canView (viewer: Viewer, sessionId: string): boolean {
  return viewer.kind === 'local' || viewer.entry.anySession || viewer.entry.allowedSessions.includes(sessionId)
}

/** A token whose roles are only `observer` views and does nothing else (there are no dashboard actions yet). */
export function viewOnly (viewer: Viewer): boolean {
  return viewer.kind === 'token' && viewer.entry.roles.every(r => r === 'observer')
}

/** The key SSE streams are counted under (per token). */
export function viewerKey (viewer: Viewer): string {
  return viewer.kind === 'local' ? 'local' : viewer.digest
}

export class DashboardAuth {
  readonly #records = new Map<string, DashRecord>()
  readonly #attempts = new Map<string, number[]>()

  get recordCount (): number { return this.#records.size }

  /** False when `address` has used its login attempts of the last minute (counts this one). */
  attempt (address: string, now: number): boolean {
    let list = this.#attempts.get(address)
    if (list === undefined) {
      if (this.#attempts.size >= MAX_TRACKED_ADDRESSES) this.#pruneAttempts(now)
      this.#attempts.set(address, list = [])
    }
    while (list.length > 0 && now - (list[0] as number) >= LOGIN_WINDOW_MS) list.shift()
    if (list.length >= LOGIN_ATTEMPTS) return false
    list.push(now)
    return true
  }

  /** Seconds until `address` may try again. */
  retryAfterSec (address: string, now: number): number {
    const first = this.#attempts.get(address)?.[0]
    return first === undefined ? 1 : Math.max(1, Math.ceil((first + LOGIN_WINDOW_MS - now) / 1000))
  }

  #pruneAttempts (now: number): void {
    for (const [a, list] of this.#attempts) if (list.every(t => now - t >= LOGIN_WINDOW_MS)) this.#attempts.delete(a)
    // Still full: forget the oldest address (a flood from many addresses must not grow this map).
    if (this.#attempts.size >= MAX_TRACKED_ADDRESSES) this.#attempts.delete(this.#attempts.keys().next().value as string)
  }

  /** Checks a token; on success creates a record and returns its id and lifetime. */
  login (table: TokenTable, token: string, now: number): { readonly ok: true, readonly id: string, readonly maxAgeSec: number } | { readonly ok: false, readonly reason: string } {
    const checked = table.authenticate(token, now)
    if (!checked.ok) return checked
    const expiresAt = Math.min(now + RECORD_TTL_MS, checked.entry.expiresAt ?? Infinity)
    const id = randomBytes(32).toString('base64url')
    if (this.#records.size >= MAX_RECORDS) this.#records.delete(this.#records.keys().next().value as string)
    this.#records.set(id, { digest: checked.digest, expiresAt })
    return { ok: true, id, maxAgeSec: Math.max(1, Math.floor((expiresAt - now) / 1000)) }
  }

  /**
   * The viewer of a cookie, re-checked against the current table: undefined
   * when there is no such record, it ended, or its token is gone or expired
   * (the record is then deleted).
   */
  viewer (table: TokenTable | undefined, recordId: string | undefined, now: number): Viewer | undefined {
    if (table === undefined) return { kind: 'local' }
    if (recordId === undefined) return undefined
    const rec = this.#records.get(recordId)
    if (rec === undefined) return undefined
    const entry = table.entryOf(rec.digest)
    if (now >= rec.expiresAt || entry === undefined || (entry.expiresAt !== undefined && now >= entry.expiresAt)) {
      this.#records.delete(recordId)
      return undefined
    }
    // The record ends with the token (login took the earlier of both), or when a reload gave the token an earlier end.
    return { kind: 'token', recordId, digest: rec.digest, entry, expiresAt: Math.min(rec.expiresAt, entry.expiresAt ?? Infinity) }
  }

  logout (recordId: string | undefined): void {
    if (recordId !== undefined) this.#records.delete(recordId)
  }
}

/** The value of cookie `name` in a Cookie header. */
export function cookieValue (header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}
