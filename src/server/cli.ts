#!/usr/bin/env node
import { watch, readFileSync, type FSWatcher } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { dirname } from 'node:path'
import { DataDirLockedError, MemoryStore, openFleetStore, openStore, type FleetStore, type ManagedSessionStore } from '../store/index.js'
import { HandoverWatcher, NodeLease } from '../store/ownership.js'
import { VERSION } from '../version.js'
import { buildApp } from './app.js'
import type { FleetOptions } from './registry.js'
import { helpText, isLoopback, loadServerConfig, type ServerConfig } from './config.js'
import { createLogger } from './logger.js'
import { listenMetrics, type MetricsListener } from './metrics-listener.js'
import { TokenTable } from './token-table.js'

/**
 * `mpac-mcp-sidecar`: the one process entry of the server. Reads argv and
 * env, opens the store, listens, prints the banner, installs signal
 * handlers (SIGTERM/SIGINT: graceful shutdown; SIGHUP: reload the token
 * table file). `mpac-mcp-sidecar token …` is dispatched to the token command,
 * `backup …` and `restore …` to the backup command.
 */

function banner (config: ServerConfig, port: number, tokens: number, metricsPort: number | undefined): string {
  const scheme = config.tls !== undefined || config.tlsByProxy ? 'wss' : 'ws'
  const shownHost = config.host === '0.0.0.0' || config.host === '::' || config.host === ''
    ? '<this-host>'
    : config.host.includes(':') ? `[${config.host}]` : config.host
  const base = `${scheme}://${shownHost}:${port}`
  const url = config.mode === 'single' ? `${base}/session/${config.sessionId as string}` : `${base}/session/<id>`
  const lines = [
    `mpac-mcp-sidecar ${VERSION}`,
    `  listening:        ${config.host}:${port}${config.tls !== undefined ? ' (TLS)' : ''}`,
    `  mode:             ${config.mode === 'single' ? `single-session (${config.sessionId as string})` : 'multi-session'}`,
    ...(config.workspaceDir === undefined ? [] : [`  workspace:        ${config.workspaceDir}`]),
    `  security profile: ${config.securityProfile}${config.tokenTable === undefined ? '' : ` (${tokens} token${tokens === 1 ? '' : 's'}${config.tokenTableFile === undefined ? '' : `, from ${config.tokenTableFile}`})`}`,
    `  policies:         ${config.complianceProfile}, ${config.executionModel}`,
    `  store:            ${config.fleet !== undefined ? `postgres (node ${config.fleet.nodeId}, router ${config.routing.router})` : config.store === 'memory' ? 'memory (nothing survives a restart)' : `sqlite in ${config.dataDir} (sync ${config.storeSync})`}`,
    `  clients connect:  ${url}${config.mode === 'single' ? ` (or ${base}/)` : ''}`,
    `  metrics:          ${metricsPort !== undefined ? `http://127.0.0.1:${metricsPort}/metrics (loopback, no token)` : config.metricsToken !== undefined ? '/metrics with the MPAC_METRICS_TOKEN bearer token' : config.metricsPublic ? '/metrics, open (--metrics-public)' : 'off (set MPAC_METRICS_TOKEN, --metrics-port or --metrics-public)'}`
  ]
  if (!isLoopback(config.host) && config.tokenTable === undefined) lines.push('  WARNING: reachable from other machines without authentication (--allow-open)')
  return lines.join('\n') + '\n'
}

/** How the user gave a setting: the flag if it is on the command line, else its environment variable. */
function settingName (argv: readonly string[], env: NodeJS.ProcessEnv, flag: string, envName: string): string {
  const given = argv.some(a => a === `--${flag}` || a.startsWith(`--${flag}=`))
  return given || env[envName] === undefined || env[envName] === '' ? `--${flag}` : envName
}

function oneLine (text: string): string {
  return text.replace(/\s*\n\s*/g, ' ')
}

export async function main (argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv[0] === 'token') {
    const { runTokenCommand } = await import('./token-command.js')
    return runTokenCommand(argv.slice(1), { stdout: process.stdout, stderr: process.stderr })
  }
  if (argv[0] === 'backup' || argv[0] === 'restore') {
    const { runBackupCommand } = await import('./backup-command.js')
    return runBackupCommand(argv[0], argv.slice(1), env, { stdout: process.stdout, stderr: process.stderr })
  }
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(helpText())
    return 0
  }
  if (argv.includes('--version')) {
    process.stdout.write(`${VERSION}\n`)
    return 0
  }
  const loaded = loadServerConfig(argv, env)
  if (!loaded.ok) {
    process.stderr.write(`mpac-mcp-sidecar: invalid ${loaded.error.setting}: ${loaded.error.message}\n`)
    return 2
  }
  const config = loaded.value
  const logger = createLogger(config.logLevel)
  let store: ManagedSessionStore
  // Fleet mode (--store postgres): the fleet store, this node's lease and the handover watcher.
  let fleet: (FleetOptions & { readonly lease: NodeLease, readonly watcher: HandoverWatcher }) | undefined
  if (config.fleet !== undefined) {
    const f = config.fleet
    let pgStore: FleetStore
    try {
      pgStore = await openFleetStore({ databaseUrl: f.databaseUrl, databaseListenUrl: f.databaseListenUrl, storeLanes: f.storeLanes, logger })
    } catch (err) {
      const named = settingName(argv, env, 'database-url', 'MPAC_DATABASE_URL')
      const source = named === '--database-url' && !argv.some(x => x.startsWith('--database-url')) && (env.DATABASE_URL ?? '') !== '' ? 'DATABASE_URL' : named
      process.stderr.write(`mpac-mcp-sidecar: cannot open the PostgreSQL store (${source}): ${oneLine((err as Error).message)}\n`)
      return 1
    }
    const lease = new NodeLease({ store: pgStore, nodeId: f.nodeId, addr: f.nodeAddr, ttlMs: f.leaseTtlMs, renewMs: f.leaseRenewMs, marginMs: f.leaseMarginMs, logger })
    const watcher = new HandoverWatcher({ store: pgStore, node: () => lease.identity, pollMs: f.leaseRenewMs, logger })
    fleet = { store: pgStore, lease, watcher, router: config.routing.router }
  }
  try {
    // Fleet mode never touches the synchronous store: sessions are claimed, committed and released in PostgreSQL.
    store = fleet !== undefined ? new MemoryStore() : openStore({ dataDir: config.store === 'memory' ? ':memory:' : config.dataDir, logger, synchronous: config.storeSync === 'normal' ? 'NORMAL' : 'FULL', sessionId: config.mode === 'single' ? config.sessionId : undefined })
  } catch (err) {
    if (err instanceof DataDirLockedError) {
      // Not a bad value: the directory is busy (a runtime failure, exit 1).
      process.stderr.write(`mpac-mcp-sidecar: ${err.message}; stop it first, or give this one its own ${settingName(argv, env, 'data-dir', 'MPAC_DATA_DIR')}\n`)
      return 1
    }
    process.stderr.write(`mpac-mcp-sidecar: invalid ${settingName(argv, env, 'data-dir', 'MPAC_DATA_DIR')}: cannot open the store in ${config.dataDir}: ${oneLine((err as Error).message)}\n`)
    return 2
  }
  const app = buildApp(config, { store, logger, ...(fleet === undefined ? {} : { fleet }) })
  try {
    await app.listen({ host: config.host, port: config.port })
  } catch (err) {
    store.close()
    await fleet?.store.close()
    // An address this machine does not have, or a port it may not bind, is a bad value (exit 2);
    // anything else (a port already in use …) is a runtime failure (exit 1).
    const code = (err as NodeJS.ErrnoException).code
    const setting = code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' || code === 'EAI_AGAIN'
      ? settingName(argv, env, 'host', 'MPAC_SIDECAR_HOST')
      : code === 'EACCES' ? settingName(argv, env, 'port', 'MPAC_SIDECAR_PORT') : undefined
    if (code === 'EADDRINUSE') {
      // The first thing a new user meets when a sidecar already runs: say how to pick another port.
      const other = config.port < 65_535 ? config.port + 1 : config.port - 1
      process.stderr.write(`mpac-mcp-sidecar: port ${config.port} on ${config.host} is already in use (another mpac-mcp-sidecar?); pick another port: --port ${other} (npm start -- --port ${other}) or MPAC_SIDECAR_PORT=${other}, or --port 0 for any free port\n`)
      return 1
    }
    const why = `cannot listen on ${config.host}:${config.port}: ${oneLine((err as Error).message)}`
    process.stderr.write(setting === undefined ? `mpac-mcp-sidecar: ${why}\n` : `mpac-mcp-sidecar: invalid ${setting}: ${why}\n`)
    return setting === undefined ? 1 : 2
  }
  const port = (app.server.address() as AddressInfo).port
  if (fleet !== undefined) {
    const { lease, watcher } = fleet
    lease.on('superseded', () => {
      logger.fatal('fleet: another process registered this node id; exiting')
      void stop('superseded').finally(() => process.exit(1))
    })
    try {
      await lease.start()
    } catch (err) {
      await app.close()
      await fleet.store.close()
      process.stderr.write(`mpac-mcp-sidecar: cannot register this node in PostgreSQL: ${oneLine((err as Error).message)}\n`)
      return 1
    }
    await watcher.start()
  }
  let metricsListener: MetricsListener | undefined
  if (config.metricsPort !== undefined) {
    try {
      metricsListener = await listenMetrics(app.mpac.metrics, config.metricsPort)
    } catch (err) {
      await app.close()
      store.close()
      process.stderr.write(`mpac-mcp-sidecar: cannot listen on 127.0.0.1:${config.metricsPort} for ${settingName(argv, env, 'metrics-port', 'MPAC_METRICS_PORT')}: ${oneLine((err as Error).message)}\n`)
      return 1
    }
  }
  process.stdout.write(banner(config, port, config.tokenTable?.size ?? 0, metricsListener?.port))

  let stopping: Promise<void> | undefined
  const stop = (why: string): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ why }, 'shutting down')
      watcher?.close()
      if (idleTimer !== undefined) clearTimeout(idleTimer)
      try {
        await metricsListener?.close()
        // Fleet mode: app.close releases every session first (preClose); then the lease ends, so peers claim at once.
        await app.close()
        if (fleet !== undefined) {
          await fleet.watcher.stop()
          await fleet.lease.retire().catch((err: unknown) => { logger.warn({ err }, 'fleet: ending the lease failed (it expires after its TTL)') })
        }
      } finally {
        store.close()
        await fleet?.store.close()
      }
    })()
    return stopping
  }

  // Token table file: reload on change and on SIGHUP; a bad file keeps the old table.
  // The directory is watched, not the file: editors, `token new --table` and
  // Kubernetes secret mounts replace the file (rename or symlink swap), which
  // would leave a watch on the file itself attached to the old, deleted inode.
  let watcher: FSWatcher | undefined
  let lastText: string | undefined
  const reload = (force: boolean): void => {
    const file = config.tokenTableFile
    if (file === undefined) return
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      logger.error({ file, err: (err as Error).message }, 'token table reload failed; keeping the previous table')
      return
    }
    if (!force && text === lastText) return
    const parsed = TokenTable.parse(text)
    if (!parsed.ok) {
      logger.error({ file, reason: parsed.message }, 'token table reload failed; keeping the previous table')
      return
    }
    lastText = text
    const closed = app.mpac.setTokenTable(parsed.table)
    logger.info({ tokens: parsed.table.size, closed }, 'token table reloaded')
  }
  if (config.tokenTableFile !== undefined) {
    try {
      lastText = readFileSync(config.tokenTableFile, 'utf8')
    } catch { /* reported by the first reload */ }
    let debounce: NodeJS.Timeout | undefined
    try {
      watcher = watch(dirname(config.tokenTableFile), () => {
        if (debounce !== undefined) clearTimeout(debounce)
        debounce = setTimeout(() => reload(false), 100)
      })
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'cannot watch the token table file; reload with SIGHUP')
    }
    process.on('SIGHUP', () => reload(true))
  }

  // --idle-exit: stop after SEC seconds without any connection.
  let idleTimer: NodeJS.Timeout | undefined
  if (config.idleExitSec !== undefined) {
    const idleMs = config.idleExitSec * 1000
    const arm = (count: number): void => {
      if (idleTimer !== undefined) clearTimeout(idleTimer)
      idleTimer = undefined
      if (count === 0) idleTimer = setTimeout(() => { void stop('idle').then(() => process.exit(0)) }, idleMs)
    }
    app.mpac.registry.onConnectionCount = arm
    arm(app.mpac.registry.connectionCount)
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      // A client that never finishes its close handshake must not hold the
      // process past the platform's kill timeout (fly.toml and the systemd
      // unit allow 30 s): give up after 20 s, the store is already durable.
      setTimeout(() => {
        logger.error({ signal }, 'shutdown did not finish within 20 s; exiting')
        process.exit(1)
      }, 20_000).unref()
      stop(signal).then(() => process.exit(0), (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(1)
      })
    })
  }
  return -1
}

main(process.argv.slice(2), process.env).then((code) => {
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`mpac-mcp-sidecar: ${(err as Error).stack ?? String(err)}\n`)
  process.exitCode = 1
})
