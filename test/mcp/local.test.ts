/**
 * Local mode: shims in one workspace find or start one shared sidecar
 * (pid and log files in XDG_STATE_HOME, a lock against double starts), meet
 * in the derived session, and ride through a sidecar restart.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { sidecarPaths } from '../../src/mcp/sidecar.js'
import { deriveSessionId } from '../../src/protocol/workspace-id.js'
import { stateRef } from '../../src/protocol/state-ref.js'
import { cleanEnv, startShim, stateHome, tempDir, waitForExit } from './harness.js'

type R = Record<string, unknown>
const list = (v: unknown): R[] => (Array.isArray(v) ? v : []) as R[]

t.test('two shims in one workspace share one auto-started sidecar', async t => {
  const ws = tempDir(t, 'mpac-local-ws-')
  mkdirSync(join(ws, '.git'))
  mkdirSync(join(ws, 'docs'))
  mkdirSync(join(ws, 'sub'))
  writeFileSync(join(ws, 'docs', 'notes.md'), '# notes\n')
  const state = stateHome(t)
  const env = (name: string): Record<string, string> => cleanEnv({ XDG_STATE_HOME: state, MPAC_AGENT_NAME: name })
  const sessionId = deriveSessionId(ws)
  const paths = sidecarPaths(join(state, 'mpac-mcp'), sessionId)

  // Started together: the lock file lets only one of them spawn the sidecar.
  const [a, b] = await Promise.all([startShim(t, env('Alice'), join(ws, 'sub')), startShim(t, env('Bob'), join(ws, 'sub'))])
  const whoA = await a.call('who_is_working')
  const whoB = await b.call('who_is_working')
  t.equal(whoA['status'], 'ok', a.stderr())
  t.equal(whoA['workspace_dir'], ws, 'the workspace is found by walking up to .git')
  t.equal(whoA['session_id'], sessionId, 'the session id is derived from the workspace')
  t.equal(whoB['session_id'], sessionId)
  const pids = readdirSync(paths.dir).filter(f => f.endsWith('.pid'))
  t.same(pids, [`${sessionId}.pid`], 'exactly one sidecar was started')
  t.notOk(existsSync(paths.lockFile), 'the lock is released')
  t.ok(existsSync(paths.logFile), 'the sidecar logs to the state directory')
  t.notOk(existsSync(join(ws, '.mpac')) || readdirSync(ws).some(f => f.endsWith('.pid') || f.endsWith('.log')), 'nothing is written into the repository')
  const again = await a.call('who_is_working')
  const principals = list(again['participants']).map(p => p['principal_id'])
  t.ok(principals.includes(whoA['principal_id']) && principals.includes(whoB['principal_id']), 'each sees the other')

  // Milestone 0: the same file announced twice → one wins, the other is race-locked.
  const first = await a.call('begin_task', { objective: 'edit notes', files: ['docs/notes.md'] })
  const second = await b.call('begin_task', { objective: 'edit notes too', files: ['docs/notes.md'] })
  t.equal(first['status'], 'ok')
  t.match(second, { status: 'error', error_code: 'STALE_INTENT' })
  const who = await b.call('who_is_working')
  t.equal(who['active_intent_count'], 1)
  t.equal(who['open_conflict_count'], 0)

  // A commit through submit_change writes the real file.
  const file = await a.call('get_file_state', { path: 'docs/notes.md' })
  const commit = await a.call('submit_change', { intent_id: first['intent_id'], target: 'docs/notes.md', content: '# notes\nmore\n', state_ref_before: file['state_ref'] })
  t.equal(commit['status'], 'success', JSON.stringify(commit))
  t.equal(readFileSync(join(ws, 'docs', 'notes.md'), 'utf8'), '# notes\nmore\n')

  // Local edits are visible: the workspace is the real directory.
  writeFileSync(join(ws, 'docs', 'new.md'), 'fresh\n')
  const fresh = await b.call('get_file_state', { path: 'docs/new.md' })
  t.match(fresh, { status: 'ok', state_ref: stateRef('fresh\n') })

  // Restart the sidecar under the shims: the next call starts a new one and just works.
  const pid = Number(readFileSync(paths.pidFile, 'utf8').trim())
  process.kill(pid, 'SIGKILL')
  t.ok(await waitForExit(pid, 5000), 'the sidecar is gone')
  let after = await a.call('who_is_working')
  // A call that races the drop may get the retryable error; the next one reconnects.
  if (after['status'] !== 'ok') {
    t.match(after, { code: /^MPAC_ERR_REMOTE_/, retryable: true })
    after = await a.call('who_is_working')
  }
  t.equal(after['status'], 'ok', JSON.stringify(after))
  const newPid = Number(readFileSync(paths.pidFile, 'utf8').trim())
  t.not(newPid, pid, 'a new sidecar was started')
  t.ok(list(after['active_intents']).some(i => i['intent_id'] === first['intent_id']), 'the intent survived the restart')
  const y = await a.call('yield_task', { intent_id: first['intent_id'] })
  t.equal(y['status'], 'ok', 'ownership was rebuilt from the coordinator after the restart')

  // A shim that exits says GOODBYE: its intents are withdrawn.
  const held = await b.call('begin_task', { objective: 'hold', files: ['docs/notes.md'] })
  t.equal(held['status'], 'ok')
  await b.close()
  const final = await a.call('who_is_working')
  t.notOk(list(final['active_intents']).some(i => i['intent_id'] === held['intent_id']), 'GOODBYE withdrew Bob\'s intent')
  t.match(list(final['participants']).find(p => p['principal_id'] === whoB['principal_id']), { is_available: false })
})

t.test('a port held by another program is reported clearly', async t => {
  const ws = tempDir(t, 'mpac-local-busy-')
  const state = stateHome(t)
  const squatter = createServer((_req, res) => { res.statusCode = 200; res.end('not mpac') })
  await new Promise<void>(resolve => squatter.listen(0, '127.0.0.1', resolve))
  t.teardown(() => squatter.close())
  const port = (squatter.address() as AddressInfo).port
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_SIDECAR_PORT: String(port) }))
  const res = await shim.raw('who_is_working')
  t.equal(res.isError, true)
  t.match(res.structuredContent, { status: 'error', code: 'MPAC_ERR_SIDECAR_FAILED', message: new RegExp(`port ${port}.*not an MPAC coordinator`), hint: /MPAC_SIDECAR_PORT/ })
  t.notOk(existsSync(sidecarPaths(join(state, 'mpac-mcp'), deriveSessionId(ws)).pidFile), 'no sidecar was started')
})
