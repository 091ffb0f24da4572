import type { ManagedSessionStore, StoreLogger } from './managed.js'
import { MemoryStore } from './memory.js'
import { SqliteStore } from './sqlite.js'

export interface OpenStoreOptions {
  /** `--store`: 'sqlite' (default) or 'memory' (nothing survives a restart). */
  readonly store?: 'sqlite' | 'memory'
  /** `--data-dir` / `MPAC_DATA_DIR`: where `mpac.db` lives. Required for 'sqlite'; `':memory:'` also selects memory. */
  readonly dataDir?: string | undefined
  readonly logger?: StoreLogger
  /** See `SqliteStoreOptions.synchronous`. Default 'FULL'. */
  readonly synchronous?: 'FULL' | 'NORMAL'
  /** See `SqliteStoreOptions.sessionId`: a single-session coordinator locks only its session. */
  readonly sessionId?: string | undefined
}

/** Opens the store the server runs on: SQLite in `dataDir`, or memory. */
export function openStore (options: OpenStoreOptions = {}): ManagedSessionStore {
  const { store, dataDir, logger, synchronous, sessionId } = options
  if (store === 'memory' || dataDir === undefined || dataDir === ':memory:') return new MemoryStore()
  return new SqliteStore({
    dir: dataDir,
    ...(logger === undefined ? {} : { logger }),
    ...(synchronous === undefined ? {} : { synchronous }),
    ...(sessionId === undefined ? {} : { sessionId })
  })
}
