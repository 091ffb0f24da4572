import { spawn } from 'node:child_process'
import { join } from 'node:path'
import t from 'tap'
import { setupClaude, shellQuote } from '../../src/mcp/setup.js'
import { VERSION } from '../../src/version.js'
import { ROOT, TSX, cleanEnv } from './harness.js'

t.test('setup claude prints the claude mcp add command for a local workspace', async t => {
  const out = setupClaude({ MPAC_WORKSPACE_DIR: '/srv/My Repo' }, { scope: 'local', format: 'command', name: 'mpac-coding', cwd: '/' })
  t.ok(out.ok)
  if (!out.ok) return
  t.match(out.text, /^claude mcp add --transport stdio --scope local /)
  t.match(out.text, /--env MPAC_WORKSPACE_DIR='\/srv\/My Repo' /)
  t.match(out.text, / mpac-coding -- /)
  t.match(out.text, /mcp\/cli\.(ts|js)$/)
})

t.test('setup claude --format json gives a .mcp.json entry; remote settings never print the token', async t => {
  const env = { MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/team', MPAC_COORDINATOR_TOKEN: 's3cret', MPAC_AGENT_NAME: 'claude-alice' }
  const out = setupClaude(env, { scope: 'project', format: 'json', name: 'mpac-coding', cwd: '/' })
  t.ok(out.ok)
  if (!out.ok) return
  const json = JSON.parse(out.text) as { mcpServers: Record<string, { type: string, command: string, args: string[], env: Record<string, string> }> }
  const entry = json.mcpServers['mpac-coding']!
  t.equal(entry.type, 'stdio')
  t.equal(entry.command, process.execPath)
  t.same(entry.env, { MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/team', MPAC_COORDINATOR_TOKEN: '${MPAC_COORDINATOR_TOKEN}', MPAC_AGENT_NAME: 'claude-alice' }, 'no workspace pinned in a project config')
  t.notMatch(out.text, /s3cret/)
  const cmd = setupClaude(env, { scope: 'user', format: 'command', name: 'mpac-coding', cwd: '/' })
  t.ok(cmd.ok && cmd.text.includes('--env MPAC_COORDINATOR_TOKEN="$MPAC_COORDINATOR_TOKEN"') && !cmd.text.includes('s3cret'))
  t.notOk(setupClaude({}, { scope: 'global', format: 'json', name: 'x', cwd: '/' }).ok)
  t.notOk(setupClaude({}, { scope: 'local', format: 'yaml', name: 'x', cwd: '/' }).ok)
  t.equal(shellQuote("it's"), "'it'\\''s'")
})

t.test('the CLI prints its version, help and setup output', async t => {
  const run = (args: string[]): Promise<{ code: number | null, out: string }> => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'mcp', 'cli.ts'), ...args], { env: cleanEnv({ MPAC_WORKSPACE_DIR: '/srv/w' }), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { out += c.toString('utf8') })
    return new Promise(resolve => child.once('close', code => resolve({ code, out })))
  }
  const [version, help, setup] = await Promise.all([run(['--version']), run(['--help']), run(['setup', 'claude'])])
  t.same(version, { code: 0, out: `${VERSION}\n` })
  t.equal(help.code, 0)
  t.match(help.out, /mpac-mcp setup claude/)
  t.equal(setup.code, 0)
  t.match(setup.out, /MPAC_WORKSPACE_DIR=\/srv\/w/)
})
