// The hook path must start fast: `mpac-mcp hook pre-edit` may load only node
// built-ins, src/mcp/cli.ts and src/hooks/*, never the MCP SDK, pino, zod or
// undici (0.5–1 s of imports). A module-resolution hook records every module
// the real process resolves; `--version` (which loads the shim) is the
// control that shows the recorder sees those packages.
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { registryDir } from '../../src/hooks/protocol.js'
import { tempDir, type Teardown } from '../helpers/process.js'
import { CLI, REGISTER, ROOT, hookEnv, startFakeShim } from './fake-shim.js'

const HEAVY = ['@modelcontextprotocol/sdk', 'pino', 'zod', 'undici']

/** Runs the CLI with a resolve hook that appends every resolved URL to a file; returns them. */
async function resolvedBy (t: Teardown, args: string[], stdin: string, env: Record<string, string>): Promise<string[]> {
  const dir = tempDir(t, 'mpac-imports-')
  const log = join(dir, 'resolved.txt')
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function resolve (specifier, context, next) {
  const r = await next(specifier, context)
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n')
  return r
}\n`)
  writeFileSync(join(dir, 'record.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})\n`)
  writeFileSync(log, '')
  const child = spawn(process.execPath, ['--import', REGISTER, '--import', join(dir, 'record.mjs'), CLI, ...args], { cwd: ROOT, env, stdio: ['pipe', 'ignore', 'pipe'] })
  let err = ''
  child.stderr.on('data', (c: Buffer) => { err += c.toString('utf8') })
  child.stdin.end(stdin)
  const code = await new Promise(resolve => child.once('close', resolve))
  if (code !== 0) throw new Error(`exit ${String(code)}: ${err}`)
  return readFileSync(log, 'utf8').split('\n').filter(l => l !== '')
}

function describe (url: string): string {
  return url.startsWith('file:') ? relative(ROOT, fileURLToPath(url)) : url
}

t.test('the pre-edit path loads only node built-ins and src/hooks', async t => {
  const home = tempDir(t, 'mpac-hookstate-')
  const shim = await startFakeShim(t, registryDir({ XDG_STATE_HOME: home }), { client_session_id: 'guard-session' })
  shim.answer({ decision: 'deny', holders: [{ principal_id: 'agent:a', display_name: 'A', intent_id: 'i', objective: 'o', state: 'ACTIVE', files: ['x'] }] })
  const stdin = JSON.stringify({ session_id: 'guard-session', cwd: '/tmp/cce2e/ws', hook_event_name: 'PreToolUse', tool_name: 'Write', tool_input: { file_path: '/tmp/cce2e/ws/x' } })
  const loaded = (await resolvedBy(t, ['hook', 'pre-edit'], stdin, hookEnv(home))).map(describe)
  t.equal(shim.requests.length, 1, 'the hook really asked the shim (the whole path ran)')
  t.ok(loaded.includes('src/hooks/cli.ts') && loaded.includes('src/hooks/adapters/claude.ts'), 'the recorder saw the hook modules')
  const foreign = loaded.filter(u => !u.startsWith('node:') && !u.startsWith('src/hooks/') && u !== 'src/mcp/cli.ts')
  t.same(foreign, [], 'nothing but node built-ins, src/mcp/cli.ts and src/hooks/*')
  t.same(loaded.filter(u => HEAVY.some(h => u.includes(`node_modules/${h}/`))), [])
})

t.test('control: --version loads the shim, and the recorder sees its heavy packages', async t => {
  const loaded = (await resolvedBy(t, ['--version'], '', hookEnv(tempDir(t, 'mpac-hookstate-')))).map(describe)
  for (const h of HEAVY) t.ok(loaded.some(u => u.includes(`node_modules/${h}/`)), `${h} is loaded by the shim path`)
})
