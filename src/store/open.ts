import type { ManagedSessionStore, StoreLogger } from './managed.js'
import { MemoryStore } from './memory.js'
import { SqliteStore } from './sqlite.js'

export interface OpenStoreOptions {
  /**
   * The data directory (`--data-dir` / `MPAC_DATA_DIR`). Undefined or
   * `':memory:'` selects the in-memory store: nothing survives a restart.
   */
  readonly dataDir?: string | undefined
  readonly logger?: StoreLogger
  /** See `SqliteStoreOptions.synchronous`. Default 'FULL'. */
  readonly synchronous?: 'FULL' | 'NORMAL'
}

/** Opens the store the server runs on: SQLite in `dataDir`, or memory. */
export function openStore (options: OpenStoreOptions = {}): ManagedSessionStore {
  const { dataDir, logger, synchronous } = options
  if (dataDir === undefined || dataDir === ':memory:') return new MemoryStore()
  return new SqliteStore({
    dir: dataDir,
    ...(logger === undefined ? {} : { logger }),
    ...(synchronous === undefined ? {} : { synchronous })
  })
}
