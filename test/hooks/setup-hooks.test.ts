// `mpac-mcp setup claude --hooks`: real settings files in a temp directory.
// Merges our handlers (exec form, the absolute hook entry), keeps foreign
// entries, changes nothing on a second run, removes exactly its own, writes
// atomically and never through a symbolic link.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { EDIT_MATCHER, isOwnHandler, setupClaudeHooks } from '../../src/mcp/setup-hooks.js'
import { cleanEnv, tempDir } from '../helpers/process.js'
import { CLI, REGISTER, ROOT } from './fake-shim.js'

const ENTRY = '/opt/mpac mcp/dist/mcp/cli.js'
const own = (event: string, timeout = 5): Record<string, unknown> => ({ type: 'command', command: '/usr/bin/node', args: [ENTRY, 'hook', event], timeout })

const FOREIGN = {
  permissions: { allow: ['Bash(npm test)'] },
  hooks: {
    PreToolUse: [{ matcher: 'Bash', hooks: [{ type: 'command', command: 'echo bash-guard' }] }],
    Stop: [{ hooks: [{ type: 'command', command: 'say done' }] }]
  }
}

t.test('install into a project settings file with foreign entries, idempotently; remove takes out only ours', async t => {
  const ws = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws, '.git'))
  mkdirSync(join(ws, '.claude'))
  const file = join(ws, '.claude', 'settings.json')
  writeFileSync(file, JSON.stringify(FOREIGN, null, 2))
  const opts = { scope: 'project', remove: false, cwd: ws, entry: ENTRY, node: '/usr/bin/node' }
  const first = setupClaudeHooks({ HOME: '/nonexistent' }, opts)
  t.ok(first.ok && first.changed && first.file === file, JSON.stringify(first))
  const written = JSON.parse(readFileSync(file, 'utf8'))
  t.same(written, {
    permissions: { allow: ['Bash(npm test)'] },
    hooks: {
      PreToolUse: [FOREIGN.hooks.PreToolUse[0], { matcher: EDIT_MATCHER, hooks: [own('pre-edit')] }],
      Stop: FOREIGN.hooks.Stop,
      SessionStart: [{ hooks: [own('session-start')] }],
      UserPromptSubmit: [{ hooks: [own('user-prompt')] }],
      PostToolUse: [{ matcher: EDIT_MATCHER, hooks: [own('post-edit')] }],
      SessionEnd: [{ hooks: [own('session-end', 2)] }]
    }
  })
  const before = readFileSync(file, 'utf8')
  const mtime = statSync(file).mtimeMs
  const second = setupClaudeHooks({}, opts)
  t.ok(second.ok && !second.changed, 'a second run changes nothing')
  t.equal(readFileSync(file, 'utf8'), before)
  t.equal(statSync(file).mtimeMs, mtime, 'not even rewritten')
  t.same(readdirSync(join(ws, '.claude')), ['settings.json'], 'no temporary file left behind')

  // A user-added handler next to ours in our group, and an older install with another path: both handled.
  const edited = JSON.parse(before)
  edited.hooks.PreToolUse[1].hooks.push({ type: 'command', command: 'echo mine-too' })
  edited.hooks.SessionStart[0].hooks[0].args[0] = '/old/checkout/dist/mcp/cli.js'
  writeFileSync(file, JSON.stringify(edited))
  const third = setupClaudeHooks({}, opts)
  t.ok(third.ok && third.changed)
  const again = JSON.parse(readFileSync(file, 'utf8'))
  t.same(again.hooks.SessionStart, [{ hooks: [own('session-start')] }], 'the old path is replaced, not duplicated')
  t.same(again.hooks.PreToolUse, [FOREIGN.hooks.PreToolUse[0], { matcher: EDIT_MATCHER, hooks: [{ type: 'command', command: 'echo mine-too' }] }, { matcher: EDIT_MATCHER, hooks: [own('pre-edit')] }])

  const removed = setupClaudeHooks({}, { ...opts, remove: true })
  t.ok(removed.ok && removed.changed)
  t.same(JSON.parse(readFileSync(file, 'utf8')), {
    permissions: FOREIGN.permissions,
    hooks: { PreToolUse: [FOREIGN.hooks.PreToolUse[0], { matcher: EDIT_MATCHER, hooks: [{ type: 'command', command: 'echo mine-too' }] }], Stop: FOREIGN.hooks.Stop }
  })
  const removedAgain = setupClaudeHooks({}, { ...opts, remove: true })
  t.ok(removedAgain.ok && !removedAgain.changed)
})

t.test('scopes: local and user files; a new file; remove leaves no empty hooks', async t => {
  const ws = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws, '.git'))
  const home = tempDir(t, 'mpac-home-')
  const local = setupClaudeHooks({ HOME: home }, { scope: 'local', remove: false, cwd: ws, entry: ENTRY })
  t.ok(local.ok && local.file === join(ws, '.claude', 'settings.local.json'))
  const cfg = JSON.parse(readFileSync(join(ws, '.claude', 'settings.local.json'), 'utf8'))
  t.equal(cfg.hooks.PreToolUse[0].hooks[0].command, process.execPath, 'local scope runs this node')
  const user = setupClaudeHooks({ HOME: home }, { scope: 'user', remove: false, cwd: ws, entry: ENTRY })
  t.ok(user.ok && user.file === join(home, '.claude', 'settings.json'))
  setupClaudeHooks({ HOME: home }, { scope: 'user', remove: true, cwd: ws, entry: ENTRY })
  t.same(JSON.parse(readFileSync(join(home, '.claude', 'settings.json'), 'utf8')), {})
  const project = setupClaudeHooks({}, { scope: 'project', remove: false, cwd: ws, entry: ENTRY })
  t.ok(project.ok && project.notes.some(n => /this machine's/.test(n)), 'project scope warns that the path is this machine\'s')
  t.equal(JSON.parse(readFileSync(join(ws, '.claude', 'settings.json'), 'utf8')).hooks.SessionStart[0].hooks[0].command, 'node')
  t.notOk(setupClaudeHooks({}, { scope: 'global', remove: false, cwd: ws }).ok)
})

t.test('refuses a symlinked settings file or directory, and a file that is not JSON', async t => {
  const ws = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws, '.git'))
  mkdirSync(join(ws, '.claude'))
  const target = join(tempDir(t, 'mpac-elsewhere-'), 'real.json')
  writeFileSync(target, '{}')
  symlinkSync(target, join(ws, '.claude', 'settings.json'))
  const r = setupClaudeHooks({}, { scope: 'project', remove: false, cwd: ws, entry: ENTRY })
  t.ok(!r.ok && /symbolic link/.test(r.error))
  t.equal(readFileSync(target, 'utf8'), '{}', 'the link target is untouched')
  const ws2 = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws2, '.git'))
  symlinkSync(tempDir(t, 'mpac-elsewhere-'), join(ws2, '.claude'))
  t.notOk(setupClaudeHooks({}, { scope: 'project', remove: false, cwd: ws2, entry: ENTRY }).ok, 'a symlinked .claude directory too')
  const ws3 = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws3, '.git'))
  mkdirSync(join(ws3, '.claude'))
  writeFileSync(join(ws3, '.claude', 'settings.local.json'), '{ "hooks": ')
  const bad = setupClaudeHooks({}, { scope: 'local', remove: false, cwd: ws3, entry: ENTRY })
  t.ok(!bad.ok && /not valid JSON.*nothing was changed/.test(bad.error))
  t.equal(readFileSync(join(ws3, '.claude', 'settings.local.json'), 'utf8'), '{ "hooks": ')
})

t.test('isOwnHandler recognises exactly our handlers', async t => {
  t.ok(isOwnHandler(own('pre-edit')))
  t.ok(isOwnHandler({ type: 'command', command: 'mpac-mcp hook pre-edit' }))
  t.ok(isOwnHandler({ type: 'command', command: 'node /x/dist/mcp/cli.js hook session-start' }))
  t.notOk(isOwnHandler({ type: 'command', command: 'node', args: ['/x/other/cli.js', 'hook', 'pre-edit'] }))
  t.notOk(isOwnHandler({ type: 'command', command: 'node', args: [ENTRY, 'hook', 'unknown'] }))
  t.notOk(isOwnHandler({ type: 'command', command: 'echo mpac-mcp hooks are great' }))
  t.notOk(isOwnHandler({ type: 'mcp_tool', server: 'mpac-coding', tool: 'x' }))
})

t.test('the CLI: setup claude --hooks prints the MCP command and writes the hooks; --remove takes them out', async t => {
  const ws = tempDir(t, 'mpac-ws-')
  mkdirSync(join(ws, '.git'))
  const run = (args: string[]): Promise<{ code: number | null, out: string, err: string }> => {
    const child = spawn(process.execPath, ['--import', REGISTER, CLI, ...args], { cwd: ws, env: cleanEnv({ HOME: ws }), stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
    child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
    return new Promise(resolve => child.once('close', code => resolve({ code, out, err })))
  }
  const r = await run(['setup', 'claude', '--hooks'])
  t.equal(r.code, 0, r.err)
  t.match(r.out, /^claude mcp add --transport stdio --scope local mpac-coding /)
  t.match(r.err, /wrote the mpac hooks to .*settings\.local\.json/)
  const cfg = JSON.parse(readFileSync(join(ws, '.claude', 'settings.local.json'), 'utf8'))
  t.same(cfg.hooks.PreToolUse[0].hooks[0].args, [join(ROOT, 'dist', 'mcp', 'cli.js'), 'hook', 'pre-edit'], 'the absolute path of the built entry')
  const again = await run(['setup', 'claude', '--hooks'])
  t.match(again.err, /already installed, nothing changed/)
  const removed = await run(['setup', 'claude', '--hooks', '--remove'])
  t.equal(removed.code, 0)
  t.match(removed.out, /removed the mpac hooks from/)
  t.same(JSON.parse(readFileSync(join(ws, '.claude', 'settings.local.json'), 'utf8')), {})
  const misuse = await run(['setup', 'claude', '--remove'])
  t.equal(misuse.code, 2, '--remove needs --hooks')
})
