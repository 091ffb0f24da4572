import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { tempDir } from '../helpers/process.js'
import { startSidecar as startRealSidecar, type SidecarProcess } from '../helpers/sidecar.js'

/**
 * Wire compatibility with existing Python clients (DESIGN.md §2): the real
 * `mpac-mcp-sidecar` runs as a child process on 127.0.0.1 port 0, and
 * `test/interop/py/run_flows.py` (Debian python3 + python3-websockets,
 * standard library otherwise) drives it the way the Python bridge and the
 * `mpac` participants do. Every JSON line the script prints is one named
 * assertion here.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const PYTHON = '/usr/bin/python3'
const SCRIPT = join(ROOT, 'test', 'interop', 'py', 'run_flows.py')
const INSTALL_HINT = `${PYTHON} cannot import websockets. Install Debian's python3-websockets: ` +
  '`apt-get update && apt-get install -y python3-websockets` (CI installs it in .ci/run)'

const TOKENS = {
  alice: 'tok-alice-interop',
  bob: 'tok-bob-interop',
  arbiter: 'tok-arbiter-interop',
  wild: 'tok-wild-interop',
  other: 'tok-other-interop'
}
const TOKEN_TABLE = {
  [TOKENS.alice]: { allowed_sessions: ['proj-a'], roles: ['contributor'] },
  [TOKENS.bob]: { allowed_sessions: ['proj-a'], roles: ['contributor'] },
  [TOKENS.arbiter]: { allowed_sessions: ['*'], roles: ['arbiter'] },
  [TOKENS.wild]: { allowed_sessions: ['*'] },
  [TOKENS.other]: { allowed_sessions: ['proj-b'], roles: ['contributor'] }
}

interface Teardown { teardown (fn: () => unknown): void }
type Sidecar = SidecarProcess
interface CheckLine { readonly check: string, readonly ok: boolean, readonly detail: unknown }
interface PyRun { readonly code: number | null, readonly lines: CheckLine[], readonly other: string[], readonly stderr: string }


/** Starts `mpac-mcp-sidecar` (test/helpers/sidecar.ts) with a fresh HOME; resolves once its banner names the real port. */
function startSidecar (t: Teardown, args: string[], env: Record<string, string>): Promise<Sidecar> {
  return startRealSidecar(t, ['--host', '127.0.0.1', ...args], { HOME: tempDir(t, 'mpac-interop-home-'), LOG_LEVEL: 'warn', ...env })
}

function runPython (args: string[], env: Record<string, string>): Promise<PyRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [SCRIPT, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PYTHONDONTWRITEBYTECODE: '1', PYTHONIOENCODING: 'utf-8', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      const lines: CheckLine[] = []
      const other: string[] = []
      for (const line of stdout.split('\n')) {
        if (line.trim() === '') continue
        try {
          const v = JSON.parse(line) as Partial<CheckLine>
          if (typeof v.check === 'string' && typeof v.ok === 'boolean') lines.push({ check: v.check, ok: v.ok, detail: v.detail })
          else other.push(line)
        } catch {
          other.push(line)
        }
      }
      resolve({ code, lines, other, stderr })
    })
  })
}

/** One assertion per check line, then the script's own verdict must agree with the lines. */
function assertChecks (t: Test, run: PyRun, mode: string): void {
  t.same(run.other, [], 'the script prints nothing but check lines')
  const names = new Set(run.lines.map(l => l.check))
  t.equal(names.size, run.lines.length, 'check names are unique')
  for (const line of run.lines) t.ok(line.ok, line.check, { detail: line.detail })
  t.ok(names.has(`${mode}: the scripted flow ran to the end`), `${mode}: the script reached its last step`)
  const failed = run.lines.filter(l => !l.ok)
  t.equal(run.code, failed.length === 0 ? 0 : 1, 'the exit code agrees with the check lines', { stderr: run.stderr })
}

const probe = spawnSync(PYTHON, ['-c', 'import websockets; print(websockets.__version__)'], { encoding: 'utf8', timeout: 15_000 })
const websocketsVersion = probe.status === 0 ? probe.stdout.trim() : undefined

t.test('python3-websockets is importable by /usr/bin/python3', async t => {
  t.ok(websocketsVersion !== undefined, websocketsVersion === undefined ? INSTALL_HINT : `websockets ${websocketsVersion}`, {
    stderr: probe.stderr, error: probe.error?.message
  })
})

t.test('Python clients against the multi-session server with a token table', async t => {
  if (websocketsVersion === undefined) {
    t.fail(INSTALL_HINT)
    return
  }
  const dataDir = tempDir(t, 'mpac-interop-data-')
  const sidecar = await startSidecar(t, ['--data-dir', dataDir, '--heartbeat-interval', '1'], {
    MPAC_TOKEN_TABLE: JSON.stringify(TOKEN_TABLE)
  })
  const run = await runPython(['multi', '--url', `ws://127.0.0.1:${sidecar.port}`, '--session', 'proj-a', '--other-session', 'proj-b'], {
    INTEROP_TOKENS: JSON.stringify(TOKENS)
  })
  t.ok(run.lines.length >= 60, `the multi-session flows ran their checks (${run.lines.length})`)
  assertChecks(t, run, 'multi')
  t.equal(sidecar.child.exitCode, null, 'the sidecar is still running after the flows')
})

t.test('Python bridge in local mode against the single-session --workspace server', async t => {
  if (websocketsVersion === undefined) {
    t.fail(INSTALL_HINT)
    return
  }
  const dataDir = tempDir(t, 'mpac-interop-data-')
  const ws = tempDir(t, 'mpac-interop-ws-')
  mkdirSync(join(ws, 'src'))
  mkdirSync(join(ws, 'node_modules'))
  mkdirSync(join(ws, '.git'))
  writeFileSync(join(ws, 'README.md'), '# Interop workspace\n\nhello\n')
  writeFileSync(join(ws, 'src', 'app.py'), 'print("hi")\n')
  writeFileSync(join(ws, 'src', 'emoji.txt'), 'smile \u{1F600} caf\u00e9\n')
  writeFileSync(join(ws, 'node_modules', 'skipped.js'), 'module.exports = 1\n')
  writeFileSync(join(ws, '.git', 'config'), '[core]\n')
  const sidecar = await startSidecar(t, ['--data-dir', dataDir, '--workspace', ws], {})
  const run = await runPython(['workspace', '--url', `ws://127.0.0.1:${sidecar.port}`, '--workspace', ws], {})
  t.ok(run.lines.length >= 20, `the workspace flows ran their checks (${run.lines.length})`)
  assertChecks(t, run, 'workspace')
  t.equal(sidecar.child.exitCode, null, 'the sidecar is still running after the flows')
})
