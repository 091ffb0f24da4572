import type { FleetStore } from './fleet-types.js'
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

export interface OpenFleetStoreOptions {
  /** `--database-url` (or MPAC_DATABASE_URL / DATABASE_URL). */
  readonly databaseUrl: string
  /** `--database-listen-url`: the direct URL for LISTEN; default the database URL. */
  readonly databaseListenUrl?: string
  /** `--store-lanes`. */
  readonly storeLanes?: number
  readonly logger?: StoreLogger
}

/**
 * Opens the fleet store (`--store postgres`): connects, creates or migrates
 * the schema. The PostgreSQL client is loaded only here, so single-machine
 * users never load it. Rejects when the database cannot be reached or has a
 * newer schema than this build.
 */
export async function openFleetStore (options: OpenFleetStoreOptions): Promise<FleetStore> {
  const { PostgresStore } = await import('./postgres.js')
  return await PostgresStore.open({
    url: options.databaseUrl,
    ...(options.databaseListenUrl === undefined ? {} : { listenUrl: options.databaseListenUrl }),
    ...(options.storeLanes === undefined ? {} : { lanes: options.storeLanes }),
    ...(options.logger === undefined ? {} : { logger: options.logger })
  })
}
