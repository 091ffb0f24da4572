/**
 * Issue 12 item 6: the file tools refuse paths outside the repository
 * (`../x`, `/etc/passwd`) and VCS metadata before anything is announced,
 * with MPAC_ERR_PATH_OUTSIDE_REPO — no intent is ever held on them. The shim's
 * real MCP server in process, in local mode (its own sidecar process),
 * driven by the MCP SDK client.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cleanEnv, startInProcessShim, stateHome, tempDir } from './harness.js'

t.test('begin_task, check_overlap, get_file_state and submit_change refuse paths outside the repository', async t => {
  const ws = tempDir(t, 'mpac-paths-ws-')
  mkdirSync(join(ws, '.git'))
  writeFileSync(join(ws, 'ok.txt'), 'ok\n')
  const shim = await startInProcessShim(t, cleanEnv({ XDG_STATE_HOME: stateHome(t), MPAC_AGENT_NAME: 'Paths' }), ws)

  for (const [bad, rule] of [
    ['../x', /leaves the repository/],
    ['/etc/passwd', /outside the repository \(an absolute path elsewhere\)/],
    ['sub/../../x', /leaves the repository/],
    ['.git/config', /is VCS metadata \(\.git\)/]
  ] as const) {
    const begin = await shim.raw('begin_task', { objective: 'escape', files: ['ok.txt', bad] })
    t.equal(begin.isError, true, `begin_task ${bad}: an error result`)
    t.match(begin.structuredContent, { status: 'error', code: 'MPAC_ERR_PATH_OUTSIDE_REPO', retryable: false, message: rule })
    const overlap = await shim.call('check_overlap', { files: [bad] })
    t.match(overlap, { status: 'error', code: 'MPAC_ERR_PATH_OUTSIDE_REPO', message: rule }, `check_overlap ${bad}`)
    const read = await shim.call('get_file_state', { path: bad })
    t.match(read, { status: 'error', code: 'MPAC_ERR_PATH_OUTSIDE_REPO' }, `get_file_state ${bad}`)
  }
  const impact = await shim.call('begin_task', { objective: 'escape', files: ['ok.txt'], impact: ['/etc/shadow'] })
  t.match(impact, { status: 'error', code: 'MPAC_ERR_PATH_OUTSIDE_REPO' }, 'impact files are checked too')
  const who = await shim.call('who_is_working')
  t.equal(who['active_intent_count'], 0, 'no intent was announced on any of them')

  // An absolute path inside the repository is still converted and accepted.
  const good = await shim.call('begin_task', { objective: 'edit ok', files: [join(ws, 'ok.txt')] })
  t.match(good, { status: 'ok', files: ['ok.txt'] })
  const submit = await shim.call('submit_change', { intent_id: good['intent_id'], target: '../ok.txt', content: 'x\n', state_ref_before: 'sha256:e3b0c44298fc1c14' })
  t.match(submit, { status: 'error', code: 'MPAC_ERR_PATH_OUTSIDE_REPO' }, 'submit_change refuses it before sending')
})
