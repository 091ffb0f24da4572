/**
 * The coordinator under measurement, for every benchmark: the real
 * `mpac-mcp-sidecar` CLI as a child process on a free port (`--port 0`),
 * ready once its banner names the port and the URL clients connect to.
 * `--dist` on the benchmark's command line runs the built server
 * (`npm run build` first), so no TypeScript loader runs in the measured
 * process; otherwise the sources run through scripts/ts-register.mjs.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('..', import.meta.url))

export interface BenchServer {
  readonly child: ChildProcess
  readonly port: number
}

/** A fresh data directory for one run (`--data-dir`). */
export function benchDataDir (prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/**
 * Starts the server with `args` (after `--port 0`) in the environment
 * `baseEnv` (this process's by default) plus `env`; `nodeFlags` go to node
 * (e.g. `--cpu-prof`).
 */
export function startServer (args: readonly string[], options: { env?: NodeJS.ProcessEnv, baseEnv?: NodeJS.ProcessEnv, nodeFlags?: readonly string[] } = {}): Promise<BenchServer> {
  const entry = process.argv.includes('--dist') ? ['dist/server/cli.js'] : ['--import', './scripts/ts-register.mjs', 'src/server/cli.ts']
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), ...entry, '--port', '0', ...args],
    { cwd: ROOT, env: { ...(options.baseEnv ?? process.env), LOG_LEVEL: 'warn', ...options.env }, stdio: ['ignore', 'pipe', 'inherit'] })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening: +[^\s]+:(\d+)/.exec(out)
      if (m !== null && out.includes('clients connect:')) resolve({ child, port: Number(m[1]) })
    })
    child.on('exit', (code) => reject(new Error(`server exited with ${String(code)}: ${out}`)))
  })
}

/** SIGTERM, then wait for the exit (a `--cpu-prof` profile is written on the way out). */
export async function stopServer (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}
