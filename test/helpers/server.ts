import { Writable } from 'node:stream'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/server/app.js'
import { loadServerConfig, type ServerConfig } from '../../src/server/config.js'
import { createLogger } from '../../src/server/logger.js'
import { MemoryStore, type ManagedSessionStore } from '../../src/store/index.js'

interface Teardown { teardown (fn: () => unknown): void }

export interface StartOptions {
  /** Extra CLI flags (the helper adds `--port 0 --store memory` unless given). */
  readonly argv?: readonly string[]
  readonly env?: Readonly<Record<string, string>>
  /** Defaults to a fresh MemoryStore. The store is not closed by the helper when given. */
  readonly store?: ManagedSessionStore
  /** Injected clock for the sessions (default Date.now). */
  readonly now?: () => number
}

export interface StartedServer {
  /** `ws://127.0.0.1:<port>` (no path). */
  readonly url: string
  readonly httpUrl: string
  readonly port: number
  readonly app: FastifyInstance
  readonly config: ServerConfig
  readonly store: ManagedSessionStore
  /** Every log line written so far, as text (JSON lines). */
  readonly logs: string[]
  /** Closes the app now (idempotent; also done in teardown). */
  close (): Promise<void>
}

/**
 * Starts the sidecar app in-process on 127.0.0.1 port 0 with captured logs
 * (level debug) and registers its teardown on `t`.
 */
export async function startServer (t: Teardown, opts: StartOptions = {}): Promise<StartedServer> {
  const argv = [...(opts.argv ?? [])]
  if (!argv.includes('--port')) argv.push('--port', '0')
  if (!argv.includes('--store')) argv.push('--store', 'memory')
  const loaded = loadServerConfig(argv, { LOG_LEVEL: 'debug', ...(opts.env ?? {}) })
  if (!loaded.ok) throw new Error(`bad test config: ${loaded.error.setting}: ${loaded.error.message}`)
  const config = loaded.value
  const logs: string[] = []
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(line => line !== ''))
      cb()
    }
  })
  const logger = createLogger(config.logLevel, sink)
  const store = opts.store ?? new MemoryStore()
  const app = buildApp(config, { store, logger, ...(opts.now === undefined ? {} : { now: opts.now }) })
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= app.close().then(() => { if (opts.store === undefined) store.close() })
    return closed
  }
  t.teardown(close)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const port = (app.server.address() as AddressInfo).port
  return { url: `ws://127.0.0.1:${port}`, httpUrl: `http://127.0.0.1:${port}`, port, app, config, store, logs, close }
}
