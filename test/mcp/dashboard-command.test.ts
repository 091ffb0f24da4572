/**
 * `mpac-mcp dashboard` through the real CLI: the URL it prints is the page of
 * the coordinator this workspace's shims use (the same port and session as a
 * running shim), a note says when nothing runs there yet, `--open` hands the
 * URL to the desktop's opener, and remote mode points at the team server
 * without printing the token.
 */
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, TSX, cleanEnv, startCoordinator, startShim, stateHome, tempDir, type Env } from './harness.js'

const SHIM_CLI = join(ROOT, 'src', 'mcp', 'cli.ts')

interface Run { readonly code: number | null, readonly stdout: string, readonly stderr: string }

function dashboard (args: string[], env: Env): Promise<Run> {
  const child = spawn(process.execPath, ['--import', TSX, SHIM_CLI, 'dashboard', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  return new Promise(resolve => child.once('close', code => resolve({ code, stdout, stderr })))
}

async function freePort (): Promise<number> {
  const { createServer } = await import('node:net')
  return await new Promise(resolve => {
    const srv = createServer()
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

/** Resolves when `file` exists, polling; rejects after the deadline (the opener runs detached). */
async function fileAppears (file: string, deadlineMs: number): Promise<string> {
  const deadline = Date.now() + deadlineMs
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${deadlineMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
  return readFileSync(file, 'utf8')
}

t.test('the printed URL is the dashboard of the coordinator the workspace\'s shim runs', async t => {
  const ws = tempDir(t, 'mpac-dash-ws-')
  const port = await freePort()
  const env = cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: ws, MPAC_SIDECAR_PORT: String(port) })

  const before = await dashboard([], env)
  t.equal(before.code, 0)
  t.match(before.stdout, new RegExp(`^http://127\\.0\\.0\\.1:${port}/dashboard/s/[^/\\s]+\\n$`), 'one line: the URL')
  t.match(before.stderr, /no coordinator is running for this workspace yet/, 'says nothing answers yet')

  const shim = await startShim(t, env)
  const who = await shim.call('who_is_working')
  t.equal(who.status, 'ok', shim.stderr())
  const sessionId = String(who.session_id)
  const after = await dashboard([], env)
  t.equal(after.code, 0)
  t.equal(after.stdout, `http://127.0.0.1:${port}/dashboard/s/${encodeURIComponent(sessionId)}\n`, 'the session and port the shim uses')
  t.notMatch(after.stderr, /no coordinator is running/, 'no note once the coordinator runs')
  const page = await fetch(after.stdout.trim())
  t.equal(page.status, 200, 'the URL serves the page, without a sign-in (a loopback coordinator)')
  t.match(await page.text(), `<h1>Session ${sessionId}</h1>`, 'of this workspace\'s session')

  const fromElsewhere = await dashboard(['--workspace', ws], { ...env, MPAC_WORKSPACE_DIR: '' })
  t.equal(fromElsewhere.stdout, after.stdout, '--workspace names the same repository')
})

t.test('the note says when the coordinator there has no such session, or no dashboard', async t => {
  for (const [flags, note] of [
    [[], /has no session mpac-local-\S+ yet: the first agent's mpac-mcp creates it/],
    [['--dashboard=false'], /does not serve the dashboard \(an older version, or started with --dashboard=false\)/]
  ] as const) {
    const port = await freePort()
    const coordinator = await startCoordinator(t, ['--port', String(port), '--store', 'memory', ...flags])
    const run = await dashboard([], cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: tempDir(t, 'mpac-dash-ws-'), MPAC_SIDECAR_PORT: String(port) }))
    t.equal(run.code, 0)
    t.match(run.stderr, note, `${flags.join(' ') || 'default'}: ${run.stderr.trim()}`)
    await coordinator.stop()
  }
})

t.test('--open hands the URL to xdg-open (or open), and says so when there is none', async t => {
  const bin = tempDir(t, 'mpac-dash-bin-')
  const record = join(bin, 'opened.txt')
  for (const opener of ['xdg-open', 'open']) {
    writeFileSync(join(bin, opener), `#!/bin/sh\nprintf '%s\\n' "$@" > ${record}.tmp && mv ${record}.tmp ${record}\n`)
    chmodSync(join(bin, opener), 0o755)
  }
  const ws = tempDir(t, 'mpac-dash-ws-')
  const env = cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: ws, MPAC_SIDECAR_PORT: String(await freePort()) })

  const opened = await dashboard(['--open'], { ...env, PATH: `${bin}:/usr/bin:/bin` })
  t.equal(opened.code, 0)
  t.equal(await fileAppears(record, 5000), opened.stdout, 'the opener got exactly the printed URL')
  t.notMatch(opened.stderr, /open the URL above yourself/)

  const none = tempDir(t, 'mpac-dash-empty-')
  const missing = await dashboard(['--open'], { ...env, PATH: none })
  t.equal(missing.code, 0, 'still prints the URL')
  t.equal(missing.stdout, opened.stdout)
  t.match(missing.stderr, /no browser opener here \((xdg-)?open not found\); open the URL above yourself/)
})

t.test('remote mode: the team server\'s page, no token printed; bad arguments exit 2', async t => {
  const env = cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_WORKSPACE_DIR: tempDir(t, 'mpac-dash-ws-'), MPAC_COORDINATOR_TOKEN: 's3cret-token' })
  const tls = await dashboard([], { ...env, MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/proj-a?x=1' })
  t.equal(tls.code, 0)
  t.equal(tls.stdout, 'https://mpac.example.com/dashboard/s/proj-a\n', 'https, the session of the URL path, the query dropped')
  t.match(tls.stderr, /asks for an access token/)
  t.notMatch(tls.stdout + tls.stderr, /s3cret/, 'the token is never printed')
  const plain = await dashboard([], { ...env, MPAC_COORDINATOR_URL: 'ws://10.0.0.5:8766/', MPAC_SESSION_ID: 'team:x' })
  t.equal(plain.stdout, 'http://10.0.0.5:8766/dashboard/s/team%3Ax\n', 'MPAC_SESSION_ID, encoded')

  const bad = await dashboard(['--frobnicate'], env)
  t.equal(bad.code, 2)
  t.match(bad.stderr, /usage: mpac-mcp dashboard/)
  const badEnv = await dashboard([], { ...env, MPAC_COORDINATOR_URL: 'http://x' })
  t.equal(badEnv.code, 2)
  t.match(badEnv.stderr, /MPAC_COORDINATOR_URL must start with ws:\/\/ or wss:\/\//)
})
