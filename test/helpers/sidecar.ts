/** The real `mpac-mcp-sidecar` program as a child process (server runs and one-shot commands). */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { cleanEnv, type Env, type Teardown } from './process.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const CLI = ['--import', './scripts/ts-register.mjs', 'src/server/cli.ts']

export interface SidecarProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  readonly url: string
  /** Everything printed on stdout so far (banner, JSON log lines), line by line. */
  readonly lines: string[]
  /** The exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>
  /** Resolves with the first stdout line matching, or rejects after `deadlineMs`. */
  waitForLine (match: (line: string) => boolean, deadlineMs?: number): Promise<string>
  /** SIGTERM and wait for the exit. */
  stop (): Promise<number | null>
}

/** Starts the sidecar with `args` (plus `--port 0`) and waits for its banner. Killed at teardown. */
export function startSidecar (t: Teardown, args: readonly string[], env: Env): Promise<SidecarProcess> {
  const child = spawn(process.execPath, [...CLI, '--port', '0', ...args], { cwd: root, env: cleanEnv(env) })
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL') })
  const exited = new Promise<number | null>(resolve => child.on('exit', code => resolve(code)))
  const lines: string[] = []
  let partial = ''
  let stderr = ''
  const watchers: Array<{ match: (line: string) => boolean, resolve: (line: string) => void }> = []
  child.stdout?.on('data', (d: Buffer) => {
    partial += d.toString('utf8')
    const parts = partial.split('\n')
    partial = parts.pop() ?? ''
    for (const line of parts) {
      lines.push(line)
      for (const w of [...watchers]) {
        if (w.match(line)) {
          watchers.splice(watchers.indexOf(w), 1)
          w.resolve(line)
        }
      }
    }
  })
  child.stderr?.on('data', (d: Buffer) => { stderr += d.toString('utf8') })
  const waitForLine = (match: (line: string) => boolean, deadlineMs = 20_000): Promise<string> => {
    const seen = lines.find(match)
    if (seen !== undefined) return Promise.resolve(seen)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching line within ${deadlineMs} ms; stdout: ${lines.join('\n')}; stderr: ${stderr}`)), deadlineMs)
      watchers.push({ match, resolve: (line) => { clearTimeout(timer); resolve(line) } })
      void exited.then(code => { clearTimeout(timer); reject(new Error(`sidecar exited with ${String(code)}; stdout: ${lines.join('\n')}; stderr: ${stderr}`)) })
    })
  }
  return waitForLine(line => line.includes('clients connect:')).then(() => {
    const m = /listening: +\S+:(\d+)/.exec(lines.join('\n'))
    if (m === null) throw new Error(`no port in the banner: ${lines.join('\n')}`)
    const port = Number(m[1])
    return {
      child,
      pid: child.pid as number,
      port,
      url: `ws://127.0.0.1:${port}`,
      lines,
      exited,
      waitForLine,
      stop: () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
        return exited
      }
    }
  })
}

export interface CliResult { readonly code: number | null, readonly stdout: string, readonly stderr: string }

/** Runs `mpac-mcp-sidecar args…` to its end (killed after `deadlineMs`). */
export function runSidecarCli (args: readonly string[], env: Env, deadlineMs = 30_000): Promise<CliResult> {
  const child = spawn(process.execPath, [...CLI, ...args], { cwd: root, env: cleanEnv(env) })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (d: Buffer) => { stdout += d.toString('utf8') })
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString('utf8') })
  const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs)
  return new Promise(resolve => child.on('close', code => {
    clearTimeout(timer)
    resolve({ code, stdout, stderr })
  }))
}
