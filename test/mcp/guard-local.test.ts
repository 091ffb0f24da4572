/**
 * The guard in local mode, with no shim of the committer: a real shim
 * (Alice, through the real MCP SDK client) starts the repository's local
 * coordinator and holds a file; Bob's `git commit` runs the guard, which
 * asks that coordinator itself: it must prove it knows the local secret
 * (LOCAL_PROOF), then the guard joins as its own observer principal with
 * the secret, reads the summary and leaves. The commit is refused naming
 * Alice; Alice's connection and intent are untouched. A second repository
 * of the same user, whose coordinator is not running, is not an mpac
 * repository: the guard says nothing.
 *
 * Alice's shim runs under `sh -c` so that the test process (Bob's git's
 * ancestor) is not her client: the rendezvous must not take Bob for Alice.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import t from 'tap'
import { must, sandbox, SHIM_CLI, TSX } from '../helpers/git.js'
import type { Env, Teardown } from '../helpers/process.js'
import { killSidecars, startShim } from './harness.js'

type R = Record<string, unknown>

interface Agent { call (name: string, args?: R): Promise<R>, stderr (): string }

/** A real shim whose parent is `sh`, not the test process (so it is not the client of the test's git commands). */
async function shimUnderSh (t: Teardown, env: Env, cwd: string): Promise<Agent> {
  const transport = new StdioClientTransport({
    command: '/bin/sh',
    args: ['-c', '"$0" --import "$1" "$2"; exit $?', process.execPath, TSX, SHIM_CLI],
    env,
    cwd,
    stderr: 'pipe'
  })
  let err = ''
  transport.stderr?.on('data', (c: Buffer) => { err += c.toString('utf8') })
  const client = new Client({ name: 'guard-local-test', version: '0.0.0' })
  await client.connect(transport)
  t.teardown(() => client.close())
  return {
    call: async (name, args = {}) => ((await client.callTool({ name, arguments: args })).structuredContent ?? {}) as R,
    stderr: () => err
  }
}

t.test('local mode: the guard asks the local coordinator with the local secret', async t => {
  const sb = sandbox(t)
  t.teardown(() => { killSidecars(join(sb.root, 'state')) })
  const repo = await sb.repo('repo', { 'src/db.py': 'db\n', 'src/free.py': 'free\n' })
  const other = await sb.repo('other', { 'a.txt': 'a\n' })
  await must(sb.mpac(repo, ['guard', 'install']))
  await must(sb.mpac(other, ['guard', 'install']))

  // MPAC_HOOKS=false: no hook endpoint, so no shim can answer and the guard must ask the coordinator.
  const alice = await shimUnderSh(t, sb.env({ MPAC_AGENT_NAME: 'Alice', MPAC_HOOKS: 'false' }), repo)
  const call = alice.call.bind(alice)
  const begun = await call('begin_task', { objective: 'rename the users table', files: ['src/db.py'] })
  t.equal(begun['status'], 'ok', alice.stderr())

  const bob = { MPAC_AGENT_NAME: 'bob' }
  writeFileSync(join(repo, 'src/db.py'), 'db v2\n')
  await must(sb.git(repo, ['add', 'src/db.py']))
  const refused = await sb.git(repo, ['commit', '-m', 'db'], bob)
  t.not(refused.code, 0, 'refused')
  t.match(refused.stderr, `src/db.py — held by "Alice" (${String(begun['intent_id'])}, "rename the users table")`)

  const status = await must(sb.mpac(repo, ['guard', 'status'], bob))
  t.match(status.stdout, /coordinator: answers \(127\.0\.0\.1:\d+ \(local coordinator of session mpac-local-repo-/)

  const who = await call('who_is_working')
  t.equal(who['status'], 'ok', 'Alice is still connected')
  const intents = (who['active_intents'] ?? []) as R[]
  t.match(intents, [{ intent_id: begun['intent_id'], state: 'ACTIVE' }], 'and still holds her intent')
  const guard = ((who['participants'] ?? []) as R[]).find(p => String(p['principal_id']).startsWith('service:mpac-guard-'))
  t.match(guard, { is_available: false }, 'the guard joined as its own principal and left')

  // Bob's own file: through (with the unannounced reminder).
  await must(sb.git(repo, ['reset', '-q', '--hard']))
  writeFileSync(join(repo, 'src/free.py'), 'free v2\n')
  await must(sb.git(repo, ['add', 'src/free.py']))
  const free = await sb.git(repo, ['commit', '-m', 'free'], bob)
  t.equal(free.code, 0, free.stderr)
  t.match(free.stderr, /src\/free\.py — in none of your intents/)

  // The local secret exists, but no coordinator runs for this repository: not an mpac repository.
  writeFileSync(join(other, 'a.txt'), 'b\n')
  await must(sb.git(other, ['add', 'a.txt']))
  const silent = await sb.git(other, ['commit', '-m', 'other'], { ...bob, MPAC_GUARD_FAIL: 'closed' })
  t.equal(silent.code, 0, silent.stderr)
  t.equal(silent.stderr, '', 'not a word')
})

t.test('with the committer\'s own shim: its guard_check answers, as that agent', async t => {
  const sb = sandbox(t)
  t.teardown(() => { killSidecars(join(sb.root, 'state')) })
  const repo = await sb.repo('repo', { 'src/db.py': 'db\n', 'src/mine.py': 'mine\n', 'src/alice.py': 'alice\n' })
  await must(sb.mpac(repo, ['guard', 'install']))
  const alice = await shimUnderSh(t, sb.env({ MPAC_AGENT_NAME: 'Alice', CLAUDE_CODE_SESSION_ID: 'session-alice' }), repo)
  const a1 = await alice.call('begin_task', { objective: 'rename the users table', files: ['src/db.py'] })
  const a2 = await alice.call('begin_task', { objective: 'her own file', files: ['src/alice.py'] })
  t.equal(a1['status'], 'ok', alice.stderr())
  t.equal(a2['status'], 'ok')
  // Bob's shim is a child of this test process, as Claude Code's MCP server is a child of claude, whose Bash runs git.
  const bob = await startShim(t, sb.env({ MPAC_AGENT_NAME: 'Bob' }), repo)
  t.equal((await bob.call('begin_task', { objective: 'his file', files: ['src/mine.py'] }))['status'], 'ok', bob.stderr())

  // The commit's environment has no MPAC_* at all (an agent's Bash inherits the client's, not the MCP server's):
  // without the shim this would be a human's commit, only warned about.
  writeFileSync(join(repo, 'src/db.py'), 'db v2\n')
  writeFileSync(join(repo, 'src/mine.py'), 'mine v2\n')
  await must(sb.git(repo, ['add', 'src/db.py', 'src/mine.py']))
  const refused = await sb.git(repo, ['commit', '-m', 'db'])
  t.not(refused.code, 0, 'refused: the shim says who commits')
  t.match(refused.stderr, `src/db.py — held by "Alice" (${String(a1['intent_id'])}, "rename the users table")`)
  t.notMatch(refused.stderr, /src\/mine\.py/, 'his own file is fine')
  const who = await bob.call('who_is_working')
  t.notOk(((who['participants'] ?? []) as R[]).some(p => String(p['principal_id']).startsWith('service:mpac-guard-')), 'answered by the shim: the guard never joined the session')
  t.match((await must(sb.mpac(repo, ['guard', 'status']))).stdout, /agent shim: pid \d+, agent:Bob@/)

  // CLAUDE_CODE_SESSION_ID wins over the process tree: this commit is Alice's, and src/alice.py is hers.
  await must(sb.git(repo, ['reset', '-q', '--hard']))
  writeFileSync(join(repo, 'src/alice.py'), 'alice v2\n')
  await must(sb.git(repo, ['add', 'src/alice.py']))
  const hers = await sb.git(repo, ['commit', '-m', 'hers'], { CLAUDE_CODE_SESSION_ID: 'session-alice' })
  t.equal(hers.code, 0, hers.stderr)
  t.equal(hers.stderr, '', 'her own intent covers it: nothing to say')
  writeFileSync(join(repo, 'src/mine.py'), 'mine v3\n')
  await must(sb.git(repo, ['add', 'src/mine.py']))
  const notHers = await sb.git(repo, ['commit', '-m', 'his'], { CLAUDE_CODE_SESSION_ID: 'session-alice' })
  t.not(notHers.code, 0)
  // The shim's view names a participant that joined after its last re-base by its principal id.
  t.match(notHers.stderr, /src\/mine\.py — held by "(Bob|agent:Bob@[0-9a-f]+)" \(intent-\S+, "his file"\)/)
})
