/**
 * Every tool's success and failure paths: the shim's real MCP server (in this
 * process, over the SDK's InMemoryTransport: what `mpac-mcp` serves on stdio,
 * which stdio.test.ts and the local/remote tests drive as a process) and the
 * MCP SDK client, against a real single-session coordinator process serving
 * a temp workspace directory.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import t from 'tap'
import { CoordinatorClient } from '../../src/mcp/client.js'
import { loadShimConfig } from '../../src/mcp/config.js'
import { TOOL_NAMES } from '../../src/mcp/tools/index.js'
import { stateRef } from '../../src/protocol/state-ref.js'
import { cleanEnv, startCoordinator, startInProcessShim, tempDir } from './harness.js'

const workspace = tempDir(t, 'mpac-tools-ws-')
mkdirSync(join(workspace, 'src'))
writeFileSync(join(workspace, 'src', 'app.txt'), 'line one\n')
writeFileSync(join(workspace, 'src', 'lib.txt'), 'lib\n')
writeFileSync(join(workspace, 'src', 'local.txt'), 'local\n')
const state = tempDir(t, 'mpac-tools-state-')
const coordinator = await startCoordinator(t, ['--port', '0', '--workspace', workspace, '--session-id', 'tools-room', '--data-dir', join(state, 'data')])
const url = `ws://127.0.0.1:${coordinator.port}/session/tools-room`
const env = (name: string, extra: Record<string, string> = {}): Record<string, string> =>
  cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: workspace, MPAC_AGENT_NAME: name, XDG_STATE_HOME: state, ...extra })

const alice = await startInProcessShim(t, env('Alice'))
const bob = await startInProcessShim(t, env('Bob'))

type R = Record<string, unknown>
const list = (v: unknown): R[] => (Array.isArray(v) ? v : []) as R[]

t.test('the server is mpac-coding with ten tools, annotations and instructions', async t => {
  t.equal(alice.client.getServerVersion()?.name, 'mpac-coding')
  const instructions = alice.client.getInstructions() ?? ''
  for (const step of ['who_is_working', 'check_overlap', 'begin_task', 'get_file_state', 'submit_change', 'yield_task', 'ack_conflict', 'escalate_conflict', 'resolve_conflict', 'take_over_task', 'STALE_INTENT', 'retryable', 'MPAC_ERR_AUTH_REJECTED']) {
    t.ok(instructions.includes(step), `the instructions teach ${step}`)
  }
  // Claude Code keeps the first 2 KB of a server's instructions: stay well under, essentials first.
  t.ok(Buffer.byteLength(instructions, 'utf8') < 1800, `instructions are ${Buffer.byteLength(instructions, 'utf8')} bytes (< 1800)`)
  t.ok(instructions.indexOf('begin_task') < 200 && instructions.indexOf('STALE_INTENT') < 400, 'announcing before editing comes first')
  const { tools } = await alice.client.listTools()
  t.same(tools.map(tool => tool.name).sort(), [...TOOL_NAMES].sort())
  for (const tool of tools) {
    t.ok(tool.outputSchema, `${tool.name} has an output schema`)
    t.equal(tool.annotations?.readOnlyHint === true, ['who_is_working', 'check_overlap', 'get_file_state'].includes(tool.name), `${tool.name} readOnlyHint`)
  }
})

t.test('who_is_working lists both agents and their principal ids', async t => {
  const a = await alice.call('who_is_working')
  const b = await bob.call('who_is_working')
  t.equal(a['status'], 'ok')
  t.equal(a['session_id'], 'tools-room')
  t.equal(a['workspace_dir'], workspace)
  t.equal(a['sidecar_uri'], url)
  const principals = list(b['participants']).map(p => p['principal_id'])
  t.ok(principals.includes(a['principal_id']), 'Bob sees Alice')
  t.ok(principals.includes(b['principal_id']), 'Bob sees himself')
  const res = await alice.raw('who_is_working')
  t.match((res.content[0] as { text: string }).text, /participant\(s\)/, 'a readable text comes with the structured content')
})

t.test('begin_task, the race lock, check_overlap, get_file_state, submit_change, yield_task', async t => {
  const begin = await alice.call('begin_task', { objective: 'edit app', files: ['./src/app.txt', join(workspace, 'src', 'app.txt'), ' '] })
  t.equal(begin['status'], 'ok', 'Alice announces')
  t.same(begin['files'], ['src/app.txt'], 'paths are normalised and deduplicated')
  t.match(begin['intent_id'], /^intent-alice-[0-9a-f]{8}$/)
  t.match(begin['intent'], { state: 'ACTIVE' })
  const intentId = begin['intent_id'] as string

  const blocked = await bob.call('begin_task', { objective: 'also edit app', files: ['src/app.txt'] })
  t.equal(blocked['status'], 'error', 'Bob is race-locked')
  t.equal(blocked['error_code'], 'STALE_INTENT')
  t.equal(list(blocked['errors']).length, 1, 'only the error of this call is reported')
  t.match(list(blocked['errors'])[0], { holder_intent_id: intentId })

  const overlap = await bob.call('check_overlap', { files: ['src/app.txt', 'src/lib.txt'] })
  t.equal(overlap['has_overlap'], true)
  t.match(list(overlap['overlaps']), [{ intent_id: intentId, blocking: true, shared_files: ['src/app.txt'] }])
  const own = await alice.call('check_overlap', { files: ['src/app.txt'] })
  t.equal(own['has_overlap'], false, 'one\'s own intents are not overlaps')

  const file = await alice.call('get_file_state', { path: 'src/app.txt' })
  t.match(file, { status: 'ok', path: 'src/app.txt', content: 'line one\n', state_ref: stateRef('line one\n'), size: 9 })
  const noContent = await alice.call('get_file_state', { path: 'src/app.txt', include_content: false })
  t.equal(noContent['content'], undefined)
  t.equal(noContent['state_ref'], file['state_ref'])
  const missing = await alice.call('get_file_state', { path: 'src/none.txt' })
  t.match(missing, { status: 'missing', path: 'src/none.txt' })

  const foreign = await bob.call('submit_change', { intent_id: intentId, target: 'src/app.txt', content: 'bob\n', state_ref_before: file['state_ref'] })
  t.equal(foreign['status'], 'error', 'Bob cannot commit under Alice\'s intent')
  t.match(foreign['message'], /not owned/)

  const stale = await alice.call('submit_change', { intent_id: intentId, target: 'src/app.txt', content: 'two\n', state_ref_before: stateRef('something else') })
  t.equal(stale['status'], 'stale')
  t.equal(stale['error_code'], 'STALE_STATE_REF')
  t.equal(stale['current_state_ref'], file['state_ref'])
  t.equal(readFileSync(join(workspace, 'src', 'app.txt'), 'utf8'), 'line one\n', 'a stale commit leaves the file alone')

  const ok = await alice.call('submit_change', { intent_id: intentId, target: 'src/app.txt', content: 'line two\n', state_ref_before: file['state_ref'] })
  t.match(ok, { status: 'success', state_ref_after: stateRef('line two\n'), current_state_ref: stateRef('line two\n'), conflicting_files: [] })
  t.equal(readFileSync(join(workspace, 'src', 'app.txt'), 'utf8'), 'line two\n', 'the commit wrote the real file')

  const notMine = await bob.call('yield_task', { intent_id: intentId })
  t.equal(notMine['status'], 'error', 'Bob cannot yield Alice\'s intent')
  const y = await alice.call('yield_task', { intent_id: intentId, reason: 'done' })
  t.match(y, { status: 'ok', message: 'Intent withdrawn: done', active_intent_count: 0 })
  const again = await alice.call('yield_task', { intent_id: intentId })
  t.equal(again['status'], 'error', 'a withdrawn intent is no longer owned')
  const nowFree = await bob.call('begin_task', { objective: 'edit app', files: ['src/app.txt'] })
  t.equal(nowFree['status'], 'ok', 'the lock is released')
  await bob.call('yield_task', { intent_id: nowFree['intent_id'] })
})

t.test('submit_change after the agent already wrote the file itself (edit on disk, then commit)', async t => {
  const begin = await alice.call('begin_task', { objective: 'edit locally', files: ['src/local.txt'] })
  const read = await alice.call('get_file_state', { path: 'src/local.txt' })
  // The agent's own editor tool writes the checkout the coordinator serves.
  writeFileSync(join(workspace, 'src', 'local.txt'), 'edited locally\n')
  const commit = await alice.call('submit_change', { intent_id: begin['intent_id'], target: 'src/local.txt', content: 'edited locally\n', state_ref_before: read['state_ref'] })
  t.match(commit, { status: 'success', state_ref_after: stateRef('edited locally\n'), current_state_ref: stateRef('edited locally\n') }, 'the file holds exactly this content: the commit is recorded')
  // A change the agent did not make still makes its commit stale.
  writeFileSync(join(workspace, 'src', 'local.txt'), 'someone else\n')
  const stale = await alice.call('submit_change', { intent_id: begin['intent_id'], target: 'src/local.txt', content: 'mine\n', state_ref_before: stateRef('edited locally\n') })
  t.match(stale, { status: 'stale', error_code: 'STALE_STATE_REF', current_state_ref: stateRef('someone else\n') })
  t.equal(readFileSync(join(workspace, 'src', 'local.txt'), 'utf8'), 'someone else\n', 'the stale commit wrote nothing')
  await alice.call('yield_task', { intent_id: begin['intent_id'] })
})

t.test('re-announcing overlapping files supersedes the earlier intent', async t => {
  const first = await alice.call('begin_task', { objective: 'one', files: ['src/lib.txt'] })
  const second = await alice.call('begin_task', { objective: 'two', files: ['src/lib.txt'] })
  t.equal(second['status'], 'ok')
  t.same(second['superseded_intents'], [first['intent_id']])
  const commit = await alice.call('submit_change', { intent_id: first['intent_id'], target: 'src/lib.txt', content: 'x\n', state_ref_before: stateRef('lib\n') })
  t.equal(commit['status'], 'error', 'the superseded intent is no longer owned')
  await alice.call('yield_task', { intent_id: second['intent_id'] })
})

t.test('conflicts: report, ack, escalate, resolve, with their failure paths', async t => {
  const a = await alice.call('begin_task', { objective: 'change lib api', files: ['src/lib.txt'], impact: ['src/app.txt'] })
  t.equal(a['status'], 'ok')
  const b = await bob.call('begin_task', { objective: 'use lib', files: ['src/app.txt'] })
  t.equal(b['status'], 'ok', 'a dependency conflict does not block')
  t.equal(b['has_conflict'], true)
  const conflict = list(b['conflicts'])[0]
  t.match(conflict, { category: 'dependency_breakage' })
  const conflictId = conflict?.['conflict_id'] as string

  const badAck = await bob.call('ack_conflict', { conflict_id: 'no-such-conflict' })
  t.match(badAck, { status: 'error', error_code: 'INVALID_REFERENCE' })
  const ack = await bob.call('ack_conflict', { conflict_id: conflictId, ack_type: 'seen' })
  t.match(ack, { status: 'ok', ack_type: 'seen', conflict: { state: 'ACKED' } })

  const noTarget = await bob.call('escalate_conflict', { conflict_id: conflictId, reason: 'x' })
  t.equal(noTarget['status'], 'error', 'no arbiter connected yet')
  t.match(noTarget['message'], /arbiter/)
  const arbiter = await startInProcessShim(t, env('Judge', { MPAC_AGENT_ROLES: 'arbiter' }))
  const judge = (await arbiter.call('who_is_working'))['principal_id']
  const esc = await bob.call('escalate_conflict', { conflict_id: conflictId, reason: 'needs a decision', context: 'lib api' })
  t.match(esc, { status: 'ok', escalate_to: judge, conflict: { state: 'ESCALATED' } })
  const badEsc = await bob.call('escalate_conflict', { conflict_id: 'no-such-conflict', reason: 'x', escalate_to: 'agent:nobody' })
  t.equal(badEsc['status'], 'error')

  const unauthorised = await bob.call('resolve_conflict', { conflict_id: conflictId, decision: 'approved' })
  t.match(unauthorised, { status: 'error', error_code: 'AUTHORIZATION_FAILED' })
  const res = await arbiter.call('resolve_conflict', { conflict_id: conflictId, decision: 'approved', rationale: 'compatible' })
  t.match(res, { status: 'ok', remaining_conflict: null })
  const twice = await arbiter.call('resolve_conflict', { conflict_id: conflictId, decision: 'approved' })
  t.match(twice, { status: 'error', error_code: 'RESOLUTION_CONFLICT' })
  const unknown = await arbiter.call('resolve_conflict', { conflict_id: 'no-such-conflict', decision: 'approved' })
  t.match(unknown, { status: 'error', error_code: 'INVALID_REFERENCE' })

  await alice.call('yield_task', { intent_id: a['intent_id'] })
  await bob.call('yield_task', { intent_id: b['intent_id'] })
})

t.test('take_over_task claims a suspended intent; failures name their cause', async t => {
  const leaver = new CoordinatorClient({
    url,
    sessionId: 'tools-room',
    sessionIdPinned: true,
    identity: { principalId: 'agent:leaver', displayName: 'Leaver', roles: ['contributor'], capabilities: [] },
    logger: pino({ level: 'silent' })
  })
  t.teardown(() => leaver.close())
  const announced = await leaver.request('INTENT_ANNOUNCE', { intent_id: 'intent-leaver', objective: 'half done', scope: { kind: 'file_set', resources: ['src/lib.txt'] } })
  t.ok(announced.accepted)

  const active = await bob.call('take_over_task', { original_intent_id: 'intent-leaver' })
  t.match(active, { status: 'error', error_code: 'INVALID_REFERENCE' }, 'an ACTIVE intent cannot be claimed')
  const unknown = await bob.call('take_over_task', { original_intent_id: 'intent-nobody' })
  t.match(unknown, { status: 'error', message: /not found/ })

  await leaver.close({ disposition: 'transfer', activeIntents: ['intent-leaver'] })
  const take = await bob.call('take_over_task', { original_intent_id: 'intent-leaver', justification: 'Leaver left' })
  t.match(take, { status: 'ok', decision: 'approved' })
  const newIntent = take['new_intent_id'] as string
  const who = await alice.call('who_is_working')
  t.match(list(who['active_intents']).find(i => i['intent_id'] === newIntent), { principal_id: (await bob.call('who_is_working'))['principal_id'], state: 'ACTIVE' })
  const commit = await bob.call('submit_change', { intent_id: newIntent, target: 'src/lib.txt', content: 'taken over\n', state_ref_before: stateRef('lib\n') })
  t.equal(commit['status'], 'success', 'the new intent is Bob\'s to commit under')
  const twice = await alice.call('take_over_task', { original_intent_id: 'intent-leaver' })
  t.equal(twice['status'], 'error', 'a transferred intent cannot be claimed again')
  await bob.call('yield_task', { intent_id: newIntent })
})

t.test('invalid arguments are refused by the schema', async t => {
  const res = await alice.raw('ack_conflict', { conflict_id: 'c', ack_type: 'bogus' })
  t.equal(res.isError, true)
})

t.test('an unpinned coordinator URL adopts the session id the coordinator serves', async t => {
  const config = loadShimConfig(env('Free', { MPAC_COORDINATOR_URL: `ws://127.0.0.1:${coordinator.port}` }))
  t.equal(config.sessionIdPinned, false)
  const client = new CoordinatorClient({ url: config.url, sessionId: config.sessionId, sessionIdPinned: false, identity: config.identity, logger: pino({ level: 'silent' }) })
  t.teardown(() => client.close())
  await client.ensureConnected()
  t.equal(client.sessionId, 'tools-room')
  const reply = await client.request('INTENT_ANNOUNCE', { intent_id: 'intent-free', objective: 'x', scope: { kind: 'file_set', resources: ['free.txt'] } })
  t.ok(reply.accepted)
})
