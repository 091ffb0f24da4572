import type { CoreInput } from '../coordinator/types.js'
import type { ManagedSessionStore, QuarantinedSession } from './managed.js'
import type { JournalStats, StoredSession } from './types.js'

interface MemorySession {
  /** JSON text of the snapshot, or undefined. */
  snapshot: string | undefined
  snapshotBytes: number
  /** JSON texts of the journal entries after the snapshot. */
  journal: string[]
  journalBytes: number
  closedAt: number | undefined
  owner: string | undefined
}

/**
 * A `SessionStore` held in memory, for tests and for running without a data
 * directory. Entries are kept as JSON text, so `load` hands back fresh copies
 * exactly as the SQLite store does, and a value that does not survive
 * `JSON.stringify` fails here too.
 */
export class MemoryStore implements ManagedSessionStore {
  readonly #sessions = new Map<string, MemorySession>()
  #closed = false

  /** Sorted, as the SQLite store lists them. */
  listSessions (): string[] {
    this.#assertOpen()
    return [...this.#sessions.keys()].sort()
  }

  load (sessionId: string): StoredSession | undefined {
    this.#assertOpen()
    const session = this.#sessions.get(sessionId)
    if (session === undefined) return undefined
    return {
      snapshot: session.snapshot === undefined ? undefined : JSON.parse(session.snapshot) as unknown,
      journal: session.journal.map(body => JSON.parse(body) as CoreInput)
    }
  }

  replay (sessionId: string, begin: (snapshot: unknown) => (input: CoreInput) => void): number | undefined {
    this.#assertOpen()
    const session = this.#sessions.get(sessionId)
    if (session === undefined) return undefined
    const onEntry = begin(session.snapshot === undefined ? undefined : JSON.parse(session.snapshot) as unknown)
    const journal = [...session.journal]
    for (const body of journal) onEntry(JSON.parse(body) as CoreInput)
    return journal.length
  }

  /** Runs `fn` (there is nothing to sync; unlike SQLite, a throw does not undo what `fn` stored). */
  batch<T> (fn: () => T): T {
    this.#assertOpen()
    return fn()
  }

  append (sessionId: string, inputs: readonly CoreInput[]): JournalStats {
    this.#assertOpen()
    let session = this.#sessions.get(sessionId)
    if (inputs.length > 0) {
      const bodies = inputs.map(input => JSON.stringify(input))
      session ??= this.#create(sessionId)
      for (const body of bodies) {
        session.journal.push(body)
        session.journalBytes += Buffer.byteLength(body)
      }
    }
    return {
      entriesSinceSnapshot: session?.journal.length ?? 0,
      bytesSinceSnapshot: session?.journalBytes ?? 0,
      snapshotBytes: session?.snapshotBytes ?? 0
    }
  }

  saveSnapshot (sessionId: string, snapshot: unknown): void {
    this.#assertOpen()
    const body = JSON.stringify(snapshot)
    const session = this.#sessions.get(sessionId) ?? this.#create(sessionId)
    session.snapshot = body
    session.snapshotBytes = Buffer.byteLength(body)
    session.journal = []
    session.journalBytes = 0
  }

  delete (sessionId: string): void {
    this.#assertOpen()
    this.#sessions.delete(sessionId)
  }

  markClosed (sessionId: string, at: number): void {
    this.#assertOpen()
    const session = this.#sessions.get(sessionId)
    if (session !== undefined) session.closedAt = at
  }

  setOwner (sessionId: string, owner: string): void {
    this.#assertOpen()
    const session = this.#sessions.get(sessionId)
    if (session !== undefined) session.owner = owner
  }

  listOwners (): Array<{ sessionId: string, owner: string }> {
    this.#assertOpen()
    const out: Array<{ sessionId: string, owner: string }> = []
    for (const id of this.listSessions()) {
      const owner = this.#sessions.get(id)?.owner
      if (owner !== undefined) out.push({ sessionId: id, owner })
    }
    return out
  }

  purgeClosed (olderThan: number, only?: string): string[] {
    this.#assertOpen()
    const purged: string[] = []
    for (const [id, session] of this.#sessions) {
      if (only !== undefined && id !== only) continue
      if (session.closedAt !== undefined && session.closedAt < olderThan) purged.push(id)
    }
    for (const id of purged) this.#sessions.delete(id)
    return purged
  }

  sessionBytes (sessionId: string): number {
    this.#assertOpen()
    const session = this.#sessions.get(sessionId)
    return session === undefined ? 0 : session.snapshotBytes + session.journalBytes
  }

  listQuarantined (): QuarantinedSession[] {
    this.#assertOpen()
    return []
  }

  close (): void {
    this.#closed = true
    this.#sessions.clear()
  }

  #create (sessionId: string): MemorySession {
    const session: MemorySession = { snapshot: undefined, snapshotBytes: 0, journal: [], journalBytes: 0, closedAt: undefined, owner: undefined }
    this.#sessions.set(sessionId, session)
    return session
  }

  #assertOpen (): void {
    if (this.#closed) throw new Error('store is closed')
  }
}
