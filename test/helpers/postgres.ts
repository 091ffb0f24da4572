/**
 * A throwaway PostgreSQL cluster for one test file (scale-out design §9.1):
 * Debian's binaries from /usr/lib/postgresql/<ver>/bin, `initdb` in a fresh
 * temp directory, `postgres` listening on 127.0.0.1 at a free port (fsync on:
 * durability is what the tests check), stopped and removed at teardown. As
 * root (CI), every command runs as the `postgres` user through `runuser`,
 * since PostgreSQL refuses to run as root; the package's default cluster is
 * never touched.
 *
 * Skipping: `PG_SKIP` is a reason to skip when no binaries exist and neither
 * MPAC_REQUIRE_PG nor CI is set; with either set, a missing binary fails the
 * file at import (CI must not silently skip the fleet tests).
 *
 * Usage:
 *   const pg = await startPostgres(t)          // t.teardown stops it
 *   const url = await pg.createDatabase()      // a fresh database per subtest
 *   new pg.Client({ connectionString: url })
 *   await pg.stop('fast'); await pg.start()    // an outage
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pg from 'pg'
import type { Teardown } from './process.js'

/** The newest /usr/lib/postgresql/<ver>/bin holding initdb and postgres; undefined when none. */
export function pgBinDir (): string | undefined {
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root).filter(v => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))
  for (const v of versions) {
    const bin = join(root, v, 'bin')
    if (existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres'))) return bin
  }
  return undefined
}

function required (): boolean {
  return (process.env.MPAC_REQUIRE_PG ?? '') !== '' || (process.env.CI ?? '') !== ''
}

/**
 * False when PostgreSQL can run here; otherwise the reason to skip. Throws
 * when the binaries are missing and MPAC_REQUIRE_PG or CI is set.
 */
export const PG_SKIP: string | false = (() => {
  if (pgBinDir() !== undefined) return false
  if (required()) {
    throw new Error('PostgreSQL binaries (/usr/lib/postgresql/<ver>/bin) are missing and MPAC_REQUIRE_PG or CI is set: apt-get install postgresql')
  }
  return 'PostgreSQL binaries are missing (apt-get install postgresql); set MPAC_REQUIRE_PG=1 to make this a failure'
})()

export interface PgCluster {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` (trust authentication). */
  readonly url: string
  readonly port: number
  readonly dir: string
  /** Whether the server process is running. */
  readonly running: boolean
  /** Stops the server (`pg_ctl stop -m <mode>`); default 'fast'. */
  stop (mode?: 'smart' | 'fast' | 'immediate'): Promise<void>
  /** Starts it again on the same port and data directory; resolves when it accepts connections. */
  start (): Promise<void>
  /** A URL for another database name or user on this cluster. */
  urlFor (database: string): string
  /** Creates a fresh, empty database (named `t1`, `t2`, … unless given) and returns its URL. */
  createDatabase (name?: string): Promise<string>
}

export interface StartPostgresOptions {
  /** Extra `-c name=value` server settings. */
  readonly settings?: Readonly<Record<string, string>>
  /** How long start may take (default 30 s). */
  readonly timeoutMs?: number
}

const asRoot = process.getuid?.() === 0

/** argv to run `cmd` as the cluster's user: through runuser when we are root. */
function asPg (cmd: string, args: string[]): [string, string[]] {
  return asRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args]
}

function run (cmd: string, args: string[]): void {
  const [file, argv] = asPg(cmd, args)
  const r = spawnSync(file, argv, { encoding: 'utf8' })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal ?? 'no status'}): ${r.stderr}${r.stdout}`)
}

async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0
      srv.close(() => { resolve(port) })
    })
  })
}

/** Clusters still running, stopped on exit if a test file dies without its teardown. */
const live = new Set<{ bin: string, data: string }>()
process.once('exit', () => {
  for (const c of live) {
    const [file, argv] = asPg(join(c.bin, 'pg_ctl'), ['stop', '-D', c.data, '-m', 'immediate', '-w'])
    spawnSync(file, argv)
  }
})

/** Starts a fresh cluster; `t.teardown` stops it and removes its directory. Fails when PG_SKIP is set. */
export async function startPostgres (t: Teardown, options: StartPostgresOptions = {}): Promise<PgCluster> {
  const bin = pgBinDir()
  if (bin === undefined) throw new Error(PG_SKIP === false ? 'no PostgreSQL binaries' : PG_SKIP)
  const dir = mkdtempSync(join(tmpdir(), 'mpac-pg-'))
  const data = join(dir, 'data')
  if (asRoot) {
    const pw = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' })
    const gw = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' })
    if (pw.status !== 0) throw new Error('running as root, but there is no postgres user to run the cluster as')
    chownSync(dir, Number(pw.stdout.trim()), Number(gw.stdout.trim()))
  }
  run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'])
  const port = await freePort()
  const timeoutMs = options.timeoutMs ?? 30_000
  const settings: Record<string, string> = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dir,
    fsync: 'on',
    max_connections: '200',
    shared_buffers: '32MB',
    ...options.settings
  }
  const entry = { bin, data }
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()

  const isReady = (): boolean => {
    const r = spawnSync(join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres'])
    return r.status === 0
  }

  const start = async (): Promise<void> => {
    if (child !== undefined) return
    const args = ['-D', data, '-p', String(port)]
    for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`)
    const [file, argv] = asPg(join(bin, 'postgres'), args)
    const proc = spawn(file, argv, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    proc.stderr?.setEncoding('utf8')
    proc.stderr?.on('data', (s: string) => { stderr = (stderr + s).slice(-8000) })
    child = proc
    live.add(entry)
    let gone = false
    exited = new Promise(resolve => proc.once('exit', () => { gone = true; child = undefined; resolve() }))
    const deadline = Date.now() + timeoutMs
    while (!isReady()) {
      if (gone) throw new Error(`postgres exited during start: ${stderr}`)
      if (Date.now() > deadline) throw new Error(`postgres did not accept connections within ${timeoutMs} ms: ${stderr}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  const stop = async (mode: 'smart' | 'fast' | 'immediate' = 'fast'): Promise<void> => {
    if (child === undefined) return
    run(join(bin, 'pg_ctl'), ['stop', '-D', data, '-m', mode, '-w'])
    await exited
    live.delete(entry)
  }

  t.teardown(async () => {
    await stop('immediate')
    rmSync(dir, { recursive: true, force: true })
  })
  await start()

  const urlFor = (database: string): string => `postgres://postgres@127.0.0.1:${port}/${database}`
  let databases = 0
  const createDatabase = async (name = `t${++databases}`): Promise<string> => {
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a plain database name: ${name}`)
    const c = new pg.Client({ connectionString: urlFor('postgres') })
    await c.connect()
    try {
      await c.query(`CREATE DATABASE ${name}`)
    } finally {
      await c.end()
    }
    return urlFor(name)
  }
  return {
    url: urlFor('postgres'),
    port,
    dir,
    get running () { return child !== undefined },
    stop,
    start,
    urlFor,
    createDatabase
  }
}
