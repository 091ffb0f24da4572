export type { JournalStats, SessionStore, StoredSession } from './types.js'
export { StoreDamagedError } from './types.js'
export type { ManagedSessionStore, QuarantinedSession, StoreLogger } from './managed.js'
export { MemoryStore } from './memory.js'
