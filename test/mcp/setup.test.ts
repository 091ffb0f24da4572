import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import t from 'tap'
import { setupClaude, shellQuote } from '../../src/mcp/setup.js'
import { VERSION } from '../../src/version.js'
import { ROOT, TSX, cleanEnv, startCoordinator, stateHome, tempDir } from './harness.js'

t.test('setup claude prints the claude mcp add command for a local workspace', async t => {
  const out = setupClaude({ MPAC_WORKSPACE_DIR: '/srv/My Repo' }, { scope: 'local', format: 'command', name: 'mpac-coding', cwd: '/' })
  t.ok(out.ok)
  if (!out.ok) return
  t.match(out.text, /^claude mcp add --transport stdio --scope local mpac-coding /)
  t.match(out.text, /--env MPAC_WORKSPACE_DIR='\/srv\/My Repo' -- /)
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
  t.same(entry.env, { MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/team', MPAC_COORDINATOR_TOKEN: '${MPAC_COORDINATOR_TOKEN}' }, 'no workspace, no personal identity pinned in a project config')
  t.notMatch(out.text, /s3cret/)
  t.match(out.notes.join('\n'), /not written to the shared project configuration.*MPAC_AGENT_NAME/, 'says what it left out and why')
  const mine = setupClaude({ ...env, MPAC_PRINCIPAL_ID: 'agent:alice' }, { scope: 'user', format: 'json', name: 'mpac-coding', cwd: '/' })
  t.ok(mine.ok && mine.text.includes('claude-alice') && mine.text.includes('agent:alice'), 'user scope keeps them (it is your own config)')
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

/** The words a POSIX shell makes of `command` (with `env` for its expansions). */
function shellWords (command: string, env: Record<string, string>): Promise<string[]> {
  const child = spawn('/bin/sh', ['-c', `set -- ${command}; printf '%s\\0' "$@"`], { env, stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  return new Promise(resolve => child.once('close', () => resolve(out.split('\0').slice(0, -1))))
}

/**
 * How Claude Code's CLI reads `claude mcp add [options] <name> <commandOrUrl> [args...]`
 * (commander): `-e/--env <env...>` and `-H/--header <header...>` are variadic
 * (they take every following word up to the next one starting with `-`),
 * `--` ends the options, and each env value must be KEY=value.
 */
function parseClaudeMcpAdd (words: string[]): { positionals: string[], env: Record<string, string>, scope?: string, transport?: string } {
  if (words.slice(0, 3).join(' ') !== 'claude mcp add') throw new Error(`not a claude mcp add command: ${words.join(' ')}`)
  const positionals: string[] = []
  const env: Record<string, string> = {}
  let scope: string | undefined
  let transport: string | undefined
  for (let i = 3; i < words.length; i++) {
    const w = words[i]!
    if (w === '--') { positionals.push(...words.slice(i + 1)); break }
    if (w === '-e' || w === '--env' || w === '-H' || w === '--header') {
      while (i + 1 < words.length && !words[i + 1]!.startsWith('-')) {
        const value = words[++i]!
        if (w === '-e' || w === '--env') {
          const eq = value.indexOf('=')
          if (eq <= 0) throw new Error(`Invalid environment variable format: ${value}, environment variables should be added as: -e KEY1=value1 -e KEY2=value2`)
          env[value.slice(0, eq)] = value.slice(eq + 1)
        }
      }
      continue
    }
    if (w === '-s' || w === '--scope') { scope = words[++i]; continue }
    if (w === '-t' || w === '--transport') { transport = words[++i]; continue }
    positionals.push(w)
  }
  return { positionals, env, ...(scope !== undefined ? { scope } : {}), ...(transport !== undefined ? { transport } : {}) }
}

t.test('the printed claude mcp add command is read by Claude Code as intended (name before the variadic --env)', async t => {
  for (const [scope, extra] of [['local', { MPAC_WORKSPACE_DIR: '/srv/My Repo' }], ['user', { MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/team', MPAC_COORDINATOR_TOKEN: 'tok', MPAC_AGENT_NAME: 'alice' }], ['project', {}]] as const) {
    const out = setupClaude(extra, { scope, format: 'command', name: 'mpac-coding', cwd: '/srv' })
    t.ok(out.ok)
    if (!out.ok) continue
    const parsed = parseClaudeMcpAdd(await shellWords(out.text, cleanEnv({ MPAC_COORDINATOR_TOKEN: 'tok' })))
    t.equal(parsed.positionals[0], 'mpac-coding', `${scope}: the server name`)
    t.equal(parsed.positionals[1], process.execPath, `${scope}: the command`)
    t.match(parsed, { scope, transport: 'stdio' })
    for (const [k, v] of Object.entries(extra)) if (k !== 'MPAC_WORKSPACE_DIR' || scope === 'local') t.equal(parsed.env[k], v, `${scope}: ${k}`)
  }
})

t.test('the printed remote setup, run as Claude Code would run it, reaches the coordinator', async t => {
  const state = stateHome(t)
  const coordinator = await startCoordinator(t, ['--port', '0', '--data-dir', join(state, 'data')], cleanEnv({ MPAC_TOKEN_TABLE: JSON.stringify({ 'tok-setup': { allowed_sessions: ['team'], roles: ['contributor'] } }) }))
  const url = `ws://127.0.0.1:${coordinator.port}/session/team`
  const userEnv = cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_COORDINATOR_TOKEN: 'tok-setup', MPAC_AGENT_NAME: 'claude-setup' })
  const printed = await new Promise<string>(resolve => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'mcp', 'cli.ts'), 'setup', 'claude', '--scope', 'user'], { env: userEnv, stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    child.once('close', () => resolve(out.trim()))
  })
  t.notMatch(printed, /tok-setup/, 'the token is referenced, not printed')
  const parsed = parseClaudeMcpAdd(await shellWords(printed, userEnv))
  const [, command, ...args] = parsed.positionals
  // Claude Code starts the server with the configured env only (plus its own basics).
  const transport = new StdioClientTransport({ command: command!, args, env: { PATH: process.env['PATH'] ?? '', HOME: state, XDG_STATE_HOME: state, ...parsed.env }, stderr: 'ignore' })
  const client = new Client({ name: 'claude-code-stand-in', version: '0' })
  await client.connect(transport)
  t.teardown(() => client.close())
  const res = await client.callTool({ name: 'who_is_working', arguments: {} })
  t.match(res.structuredContent, { status: 'ok', session_id: 'team', participant_count: 1 })
})

/** Runs the real `mpac-mcp` CLI; stdout and stderr apart. */
function runCli (args: string[], env: Record<string, string>, cwd: string = ROOT): Promise<{ code: number | null, out: string, err: string }> {
  const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'mcp', 'cli.ts'), ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
  return new Promise(resolve => child.once('close', code => resolve({ code, out, err })))
}

t.test('project scope: the token stays a ${VAR} reference after the shell ran the printed command', async t => {
  // A fake `claude` on PATH records the argv the shell gives it: what Claude Code would write to .mcp.json.
  const bin = tempDir(t, 'mpac-fake-claude-')
  const argvFile = join(bin, 'argv')
  writeFileSync(join(bin, 'claude'), `#!/bin/sh\nprintf '%s\\0' "$@" > '${argvFile}'\n`)
  chmodSync(join(bin, 'claude'), 0o755)
  const secret = 'tok-very-secret-42'
  const env = cleanEnv({ MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/team', MPAC_COORDINATOR_TOKEN: secret, PATH: `${bin}:${process.env['PATH'] ?? ''}` })
  for (const scope of ['project', 'user'] as const) {
    const printed = await runCli(['setup', 'claude', '--scope', scope], env)
    t.equal(printed.code, 0, `${scope}: setup exits 0`)
    t.notMatch(printed.out, secret, `${scope}: the token is not printed`)
    const ran = spawn('bash', ['-c', printed.out.trim()], { env, stdio: 'inherit' })
    t.equal(await new Promise(resolve => ran.once('close', resolve)), 0, `${scope}: the command runs`)
    const argv = readFileSync(argvFile, 'utf8').split('\0').slice(0, -1)
    t.equal(argv.slice(0, 2).join(' '), 'mcp add', `${scope}: claude got its arguments`)
    if (scope === 'project') {
      t.notOk(argv.some(a => a.includes(secret)), 'project: no literal token reaches the shared .mcp.json')
      t.ok(argv.includes('MPAC_COORDINATOR_TOKEN=${MPAC_COORDINATOR_TOKEN}'), 'project: Claude Code expands ${MPAC_COORDINATOR_TOKEN} at start')
    } else {
      t.ok(argv.includes(`MPAC_COORDINATOR_TOKEN=${secret}`), 'user: the shell expands the token into the user\'s own config')
    }
  }
})

t.test('setup claude outside a git repository says it pinned the current directory', async t => {
  const dir = tempDir(t, 'mpac-nogit-')
  const plain = await runCli(['setup', 'claude'], cleanEnv(), dir)
  t.equal(plain.code, 0)
  t.match(plain.out, `MPAC_WORKSPACE_DIR=${dir} `, 'the directory is pinned')
  t.match(plain.err, `no git repository at or above ${dir}: pinned this directory as the workspace`)
  mkdirSync(join(dir, '.git'))
  mkdirSync(join(dir, 'sub'))
  const repo = await runCli(['setup', 'claude'], cleanEnv(), join(dir, 'sub'))
  t.match(repo.out, `MPAC_WORKSPACE_DIR=${dir} `, 'inside a repository: its root')
  t.equal(repo.err, '', 'and no note')
})
