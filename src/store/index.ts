export type { JournalStats, SessionStore, StoredSession } from './types.js'
export { StoreDamagedError } from './types.js'
export type { ManagedSessionStore, QuarantinedSession, StoreLogger } from './managed.js'
export { MemoryStore } from './memory.js'
export { SqliteStore, DATABASE_FILE } from './sqlite.js'
export { DataDirLock, DataDirLockedError, LOCK_FILE, PID_FILE } from './lock.js'
export type { SqliteStoreOptions } from './sqlite.js'
export { openFleetStore, openStore } from './open.js'
export type { OpenFleetStoreOptions, OpenStoreOptions } from './open.js'
export { SnapshotPolicy, DEFAULT_SNAPSHOT_EVERY_BYTES, DEFAULT_SNAPSHOT_EVERY_ENTRIES } from './snapshot-policy.js'
export type { SnapshotPolicyOptions } from './snapshot-policy.js'
export { recoverSession, replaySession } from './recovery.js'
export type { RecoveredSession } from './recovery.js'
export type {
  AppendBatch, AppendResult, ClaimOptions, ClaimReason, ClaimResult, FleetListener, FleetStore, FleetStoredSession,
  HandoverRequest, NodeIdentity, NodeRegistration, NodeSpec, ReleaseOptions, SessionOwnership
} from './fleet-types.js'
export { FenceLostError, LeaseExpiredError, StoreUnavailableError } from './fleet-types.js'
export { DEFAULT_STORE_LANES } from './fleet-types.js'
