// The guard runs on every commit: `mpac-mcp guard check` may load only node
// built-ins, src/mcp/cli.ts, src/mcp/guard/*, src/hooks/* and the two small
// shared modules it needs (the local secret, the workspace ids), never the
// MCP SDK, pino or zod; undici only on the coordinator fallback, which the
// shim path and a repository no coordinator knows never reach. A
// module-resolution hook records what the real process resolves (the
// control that it sees heavy packages is test/hooks/import-guard.test.ts).
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import t from 'tap'
import { registryDir } from '../../src/hooks/protocol.js'
import { must, sandbox } from '../helpers/git.js'
import { tempDir, type Env, type Teardown } from '../helpers/process.js'
import { CLI, REGISTER, ROOT, startFakeShim } from '../hooks/fake-shim.js'

const HEAVY = ['@modelcontextprotocol/sdk', 'pino', 'zod', 'undici']
const ALLOWED = ['src/mcp/cli.ts', 'src/local-secret.ts', 'src/protocol/workspace-id.ts']

async function resolvedBy (t: Teardown, cwd: string, args: string[], env: Env): Promise<{ code: number | null, stderr: string, loaded: string[] }> {
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
  const child = spawn(process.execPath, ['--import', REGISTER, '--import', join(dir, 'record.mjs'), CLI, ...args], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  const code = await new Promise<number | null>(resolve => child.once('close', resolve))
  const loaded = readFileSync(log, 'utf8').split('\n').filter(l => l !== '').map(u => u.startsWith('file:') ? relative(ROOT, fileURLToPath(u)) : u)
  return { code, stderr, loaded }
}

const foreign = (loaded: string[]): string[] => loaded.filter(u => !u.startsWith('node:') && !u.startsWith('src/hooks/') && !u.startsWith('src/mcp/guard/') && !ALLOWED.includes(u))

t.test('guard check, answered by the shim, loads node built-ins and the guard only', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('repo', { 'a.txt': 'a\n' })
  writeFileSync(join(repo, 'a.txt'), 'b\n')
  await must(sb.git(repo, ['add', 'a.txt']))
  const shim = await startFakeShim(t, registryDir({ XDG_STATE_HOME: join(sb.root, 'state') }), { client_session_id: 'guard-imports', workspace_dir: repo })
  shim.answer({ op: 'guard_check', block: ['a.txt'], warn: [], holders: [{ principal_id: 'agent:alice', display_name: 'Alice', intent_id: 'intent-a', objective: 'letters', state: 'ACTIVE', files: ['a.txt'] }] })
  const run = await resolvedBy(t, repo, ['guard', 'check', '--staged'], sb.env({ CLAUDE_CODE_SESSION_ID: 'guard-imports' }))
  t.equal(run.code, 1, run.stderr)
  t.match(run.stderr, 'a.txt — held by "Alice" (intent-a, "letters")', 'the whole path ran')
  t.match(shim.requests, [{ op: 'guard_check', client: 'git', client_session_id: 'guard-imports', paths: ['a.txt'] }])
  t.ok(run.loaded.includes('src/mcp/guard/check.ts'), 'the recorder saw the guard')
  t.same(foreign(run.loaded), [], 'nothing else of ours')
  t.same(run.loaded.filter(u => HEAVY.some(h => u.includes(`node_modules/${h}/`))), [], 'no heavy package')
})

t.test('guard check in a repository no coordinator knows loads no heavy package either', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('repo', { 'a.txt': 'a\n' })
  writeFileSync(join(repo, 'a.txt'), 'b\n')
  await must(sb.git(repo, ['add', 'a.txt']))
  const run = await resolvedBy(t, repo, ['guard', 'check', '--staged'], sb.env())
  t.equal(run.code, 0, run.stderr)
  t.equal(run.stderr, '')
  t.same(foreign(run.loaded), [])
  t.same(run.loaded.filter(u => HEAVY.some(h => u.includes(`node_modules/${h}/`))), [])
})
