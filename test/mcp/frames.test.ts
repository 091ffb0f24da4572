/**
 * Frames per tool call: each tool sends the fewest frames its result needs
 * (the coordinator's rate limit, 200 frames/s per connection, is never
 * approached by tool use). Counted from the coordinator's own
 * `mpac_messages_in_total` metric around each call of the shim (in process, over
 * the SDK's InMemoryTransport; heartbeats excluded).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient } from '../../src/mcp/client.js'
import { stateRef } from '../../src/protocol/state-ref.js'
import { cleanEnv, startCoordinator, startInProcessShim, stateHome, tempDir } from './harness.js'

const state = stateHome(t)
const workspace = tempDir(t, 'mpac-frames-ws-')
writeFileSync(join(workspace, 'f.txt'), 'f\n')
const coordinator = await startCoordinator(t, ['--port', '0', '--workspace', workspace, '--session-id', 'frames', '--metrics-public', '--data-dir', join(state, 'data')])
const url = `ws://127.0.0.1:${coordinator.port}/session/frames`

async function framesIn (): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${coordinator.port}/metrics`)).text()
  const counts = new Map<string, number>()
  for (const m of text.matchAll(/^mpac_messages_in_total\{type="([^"]+)"\} (\d+)$/gm)) counts.set(m[1]!, Number(m[2]))
  return counts
}

t.test('each tool sends only the frames its result needs', async t => {
  const shim = await startInProcessShim(t, cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: workspace, XDG_STATE_HOME: state, MPAC_AGENT_NAME: 'Counter', MPAC_AGENT_ROLES: 'owner' }))
  await shim.call('who_is_working')
  const sent = async (tool: string, args: Record<string, unknown>): Promise<[Record<string, unknown>, Record<string, number>]> => {
    const before = await framesIn()
    const res = await shim.call(tool, args)
    const after = await framesIn()
    const delta: Record<string, number> = {}
    for (const [type, n] of after) {
      const d = n - (before.get(type) ?? 0)
      if (d > 0 && type !== 'HEARTBEAT') delta[type] = d
    }
    return [res, delta]
  }

  const [begin, beginFrames] = await sent('begin_task', { objective: 'count', files: ['f.txt'] })
  t.same(beginFrames, { INTENT_ANNOUNCE: 1 }, 'begin_task: the announce only')
  t.same((await sent('who_is_working', {}))[1], { SESSION_SUMMARY: 1 }, 'who_is_working')
  t.same((await sent('check_overlap', { files: ['f.txt'] }))[1], { SESSION_SUMMARY: 1 }, 'check_overlap')
  t.same((await sent('get_file_state', { path: 'f.txt' }))[1], { FILE_READ: 1 }, 'get_file_state')
  const [commit, commitFrames] = await sent('submit_change', { intent_id: begin['intent_id'], target: 'f.txt', content: 'g\n', state_ref_before: stateRef('f\n') })
  t.equal(commit['status'], 'success')
  t.same(commitFrames, { OP_COMMIT: 1 }, 'submit_change: the commit only (its FILE_UPDATED confirms the write)')
  t.same((await sent('yield_task', { intent_id: begin['intent_id'] }))[1], { INTENT_WITHDRAW: 1, SESSION_SUMMARY: 1 }, 'yield_task: withdraw, then the session count it reports')

  const leaver = new CoordinatorClient({ url, sessionId: 'frames', sessionIdPinned: true, identity: { principalId: 'agent:leaver', displayName: 'Leaver', roles: ['contributor'], capabilities: [] }, logger: pino({ level: 'silent' }) })
  t.teardown(() => leaver.close())
  t.ok((await leaver.request('INTENT_ANNOUNCE', { intent_id: 'intent-leaver', objective: 'x', scope: { kind: 'file_set', resources: ['f.txt'] } })).accepted)
  await leaver.close({ disposition: 'transfer', activeIntents: [] })
  const [take, takeFrames] = await sent('take_over_task', { original_intent_id: 'intent-leaver' })
  t.equal(take['status'], 'ok')
  t.same(takeFrames, { SESSION_SUMMARY: 1, INTENT_CLAIM: 1 }, 'take_over_task: the original\'s record, then the claim (its status arrives before the relay)')
  const [commit2, commit2Frames] = await sent('submit_change', { intent_id: take['new_intent_id'], target: 'f.txt', content: 'h\n', state_ref_before: stateRef('g\n') })
  t.equal(commit2['status'], 'success', 'the claimed intent is ours without asking the coordinator again')
  t.same(commit2Frames, { OP_COMMIT: 1 })
})
