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
import { killSidecars } from './harness.js'

type R = Record<string, unknown>

t.test('local mode: the guard asks the local coordinator with the local secret', async t => {
  const sb = sandbox(t)
  t.teardown(() => { killSidecars(join(sb.root, 'state')) })
  const repo = await sb.repo('repo', { 'src/db.py': 'db\n', 'src/free.py': 'free\n' })
  const other = await sb.repo('other', { 'a.txt': 'a\n' })
  await must(sb.mpac(repo, ['guard', 'install']))
  await must(sb.mpac(other, ['guard', 'install']))

  const transport = new StdioClientTransport({
    command: '/bin/sh',
    args: ['-c', '"$0" --import "$1" "$2"; exit $?', process.execPath, TSX, SHIM_CLI],
    env: sb.env({ MPAC_AGENT_NAME: 'Alice' }),
    cwd: repo,
    stderr: 'pipe'
  })
  let shimErr = ''
  transport.stderr?.on('data', (c: Buffer) => { shimErr += c.toString('utf8') })
  const alice = new Client({ name: 'guard-local-test', version: '0.0.0' })
  await alice.connect(transport)
  t.teardown(() => alice.close())
  const call = async (name: string, args: R = {}): Promise<R> => ((await alice.callTool({ name, arguments: args })).structuredContent ?? {}) as R
  const begun = await call('begin_task', { objective: 'rename the users table', files: ['src/db.py'] })
  t.equal(begun['status'], 'ok', shimErr)

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
