// The guard runs on every commit: `mpac-mcp guard check` may load only node
// built-ins, src/mcp/cli.ts, src/mcp/guard/*, src/hooks/* and the two small
// shared modules it needs (the local secret, the workspace ids), never the
// MCP SDK, pino or zod; undici only on the coordinator fallback, which the
// shim path and a repository no coordinator knows never reach. A
// module-resolution hook records what the real process resolves (the
// control that it sees heavy packages is test/hooks/import-guard.test.ts).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { registryDir } from '../../src/hooks/protocol.js'
import { must, sandbox } from '../helpers/git.js'
import { heavyIn, loadedBy } from '../helpers/imports.js'
import { startFakeShim } from '../hooks/fake-shim.js'

const ALLOWED = ['src/mcp/cli.ts', 'src/local-secret.ts', 'src/protocol/workspace-id.ts']

const foreign = (loaded: string[]): string[] => loaded.filter(u => !u.startsWith('node:') && !u.startsWith('src/hooks/') && !u.startsWith('src/mcp/guard/') && !ALLOWED.includes(u))

t.test('guard check, answered by the shim, loads node built-ins and the guard only', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('repo', { 'a.txt': 'a\n' })
  writeFileSync(join(repo, 'a.txt'), 'b\n')
  await must(sb.git(repo, ['add', 'a.txt']))
  const shim = await startFakeShim(t, registryDir({ XDG_STATE_HOME: join(sb.root, 'state') }), { client_session_id: 'guard-imports', workspace_dir: repo })
  shim.answer({ op: 'guard_check', block: ['a.txt'], warn: [], holders: [{ principal_id: 'agent:alice', display_name: 'Alice', intent_id: 'intent-a', objective: 'letters', state: 'ACTIVE', files: ['a.txt'] }] })
  const run = await loadedBy(t, { cwd: repo, args: ['guard', 'check', '--staged'], env: sb.env({ CLAUDE_CODE_SESSION_ID: 'guard-imports' }) })
  t.equal(run.code, 1, run.stderr)
  t.match(run.stderr, 'a.txt — held by "Alice" (intent-a, "letters")', 'the whole path ran')
  t.match(shim.requests, [{ op: 'guard_check', client: 'git', client_session_id: 'guard-imports', paths: ['a.txt'] }])
  t.ok(run.loaded.includes('src/mcp/guard/check.ts'), 'the recorder saw the guard')
  t.same(foreign(run.loaded), [], 'nothing else of ours')
  t.same(heavyIn(run.loaded), [], 'no heavy package')
})

t.test('guard check in a repository no coordinator knows loads no heavy package either', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('repo', { 'a.txt': 'a\n' })
  writeFileSync(join(repo, 'a.txt'), 'b\n')
  await must(sb.git(repo, ['add', 'a.txt']))
  const run = await loadedBy(t, { cwd: repo, args: ['guard', 'check', '--staged'], env: sb.env() })
  t.equal(run.code, 0, run.stderr)
  t.equal(run.stderr, '')
  t.same(foreign(run.loaded), [])
  t.same(heavyIn(run.loaded), [])
})
