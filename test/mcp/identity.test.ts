/**
 * Who a shim is, and what happens to its intents when it leaves: two agents
 * started with the same configuration are two participants; an explicit
 * principal id shared by two shims (close 4409) is reported, not fought
 * over; GOODBYE on stdin close follows MPAC_GOODBYE_DISPOSITION and covers
 * every intent the coordinator holds for us (a claim approved after
 * take_over_task timed out included); a restarted agent gets its intents back.
 * Real `mpac-mcp` processes against one coordinator child process whose
 * claims wait a grace period (so a claim stays pending).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { cleanEnv, eventually, startCoordinator, startShim, stateHome, tempDir, type Shim } from './harness.js'

type R = Record<string, unknown>
const list = (v: unknown): R[] => (Array.isArray(v) ? v : []) as R[]

const state = stateHome(t)
const workspace = tempDir(t, 'mpac-identity-ws-')
for (const f of ['a.txt', 'b.txt', 'c.txt', 'd.txt', 'e.txt']) writeFileSync(join(workspace, f), `${f}\n`)
const coordinator = await startCoordinator(t, ['--port', '0', '--workspace', workspace, '--session-id', 'identity-room', '--data-dir', join(state, 'data'), '--claim-grace', '2'])
const url = `ws://127.0.0.1:${coordinator.port}/session/identity-room`
const env = (extra: Record<string, string> = {}): Record<string, string> =>
  cleanEnv({ MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: workspace, XDG_STATE_HOME: state, ...extra })

const observer = await startShim(t, env({ MPAC_AGENT_NAME: 'Observer' }))
const intentsNow = async (): Promise<R[]> => list((await observer.call('who_is_working'))['active_intents'])

t.test('two agents started with the same configuration are two participants', async t => {
  // What `setup claude` gives every Claude Code session of one repository: the same env.
  const same = env()
  const [one, two] = await Promise.all([startShim(t, same), startShim(t, same)])
  const a = await one.call('who_is_working')
  const b = await two.call('who_is_working')
  t.match(a, { status: 'ok' })
  t.match(b, { status: 'ok' })
  t.not(a['principal_id'], b['principal_id'], 'distinct principal ids')
  const seen = list((await one.call('who_is_working'))['participants']).filter(p => p['is_available'] === true).map(p => p['principal_id'])
  t.ok(seen.includes(a['principal_id']) && seen.includes(b['principal_id']), 'each sees the other, both connected')
  const first = await one.call('begin_task', { objective: 'edit a', files: ['a.txt'] })
  const second = await two.call('begin_task', { objective: 'edit a too', files: ['a.txt'] })
  t.match(first, { status: 'ok' })
  t.match(second, { status: 'error', error_code: 'STALE_INTENT' }, 'the second is race-locked, not superseding the first')
  t.equal((await one.call('yield_task', { intent_id: first['intent_id'] }))['status'], 'ok')
  await Promise.all([one.close(), two.close()])
  // Restarted (the previous process is gone): the first free identity again, so its intents are its own.
  const again = await startShim(t, same)
  // Started in parallel, either of the two may have taken slot 1 (the plain identity, without "-2").
  const slot1 = [a['principal_id'], b['principal_id']].find(p => !String(p).includes('-2@'))
  t.ok(slot1 !== undefined, 'one of them has the plain default identity')
  t.equal((await again.call('who_is_working'))['principal_id'], slot1, 'a restarted agent takes the first free identity')
})

t.test('an explicit principal shared by two shims: the replaced one says so and does not fight back', async t => {
  const shared = env({ MPAC_PRINCIPAL_ID: 'agent:shared', MPAC_AGENT_NAME: 'Shared' })
  const older = await startShim(t, shared)
  t.equal((await older.call('who_is_working'))['status'], 'ok')
  const newer = await startShim(t, shared)
  t.equal((await newer.call('who_is_working'))['status'], 'ok', 'the newer connection is admitted')
  // The coordinator closed the older connection with 4409.
  const replaced = await eventually(async () => {
    const r = await older.raw('who_is_working')
    return r.isError === true ? r : undefined
  }, 5000, 'the older shim to report the replacement')
  t.match(replaced.structuredContent, { status: 'error', code: 'MPAC_ERR_REPLACED', retryable: false, hint: /MPAC_PRINCIPAL_ID/ })
  const still = await older.raw('begin_task', { objective: 'x', files: ['b.txt'] })
  t.match(still.structuredContent, { code: 'MPAC_ERR_REPLACED' }, 'every later call says so too, without reconnecting')
  const who = await newer.call('who_is_working')
  t.equal(who['status'], 'ok', 'the newer shim keeps its connection')
  t.equal((await newer.call('begin_task', { objective: 'y', files: ['b.txt'] }))['status'], 'ok')
  await newer.close()
})

t.test('GOODBYE on stdin close follows MPAC_GOODBYE_DISPOSITION; a restarted agent gets its intents back', async t => {
  const mine = env({ MPAC_AGENT_NAME: 'Restarter', MPAC_GOODBYE_DISPOSITION: 'transfer' })
  const before = await startShim(t, mine)
  const begin = await before.call('begin_task', { objective: 'long task', files: ['c.txt'] })
  t.equal(begin['status'], 'ok')
  await before.close()
  t.match((await intentsNow()).find(i => i['intent_id'] === begin['intent_id']), { state: 'SUSPENDED' }, 'transfer: the intent is SUSPENDED, claimable by others')

  const after = await startShim(t, mine)
  const who = await after.call('who_is_working')
  t.equal(who['principal_id'], begin['principal_id'], 'the same principal after the restart')
  t.match(list(who['active_intents']).find(i => i['intent_id'] === begin['intent_id']), { state: 'ACTIVE' }, 'its HELLO made the intent ACTIVE again')
  const file = await after.call('get_file_state', { path: 'c.txt' })
  const commit = await after.call('submit_change', { intent_id: begin['intent_id'], target: 'c.txt', content: 'c2\n', state_ref_before: file['state_ref'] })
  t.equal(commit['status'], 'success', 'and it may commit under it')
  t.equal((await after.call('yield_task', { intent_id: begin['intent_id'] }))['status'], 'ok')
  await after.close()
})

t.test('take_over_task: timeout while the claim is pending; GOODBYE then withdraws the claimed intent too', async t => {
  const leaver = await startShim(t, env({ MPAC_AGENT_NAME: 'Leaver', MPAC_GOODBYE_DISPOSITION: 'transfer' }))
  const left = await leaver.call('begin_task', { objective: 'half done', files: ['d.txt'] })
  t.equal(left['status'], 'ok')
  await leaver.close()

  const claimer: Shim = await startShim(t, env({ MPAC_AGENT_NAME: 'Claimer', MPAC_CLAIM_WAIT_MS: '200' }))
  const own = await claimer.call('begin_task', { objective: 'own work', files: ['e.txt'] })
  t.equal(own['status'], 'ok')
  const take = await claimer.call('take_over_task', { original_intent_id: left['intent_id'], justification: 'Leaver left' })
  t.match(take, { status: 'timeout', decision: 'pending', original_intent_id: left['intent_id'], message: /not decided/ }, 'the coordinator holds the claim for its grace period')
  t.match(take['claim_id'], /^claim-claimer-[0-9a-f]{8}$/)
  t.match(take['new_intent_id'], /^intent-claimer-claim-[0-9a-f]{8}$/, 'the replacement intent id has the original bridge\'s form')
  const newId = take['new_intent_id'] as string

  // After the grace period the claim is approved: the new intent is the claimer's.
  await eventually(async () => (await intentsNow()).some(i => i['intent_id'] === newId && i['state'] === 'ACTIVE') ? true : undefined, 10_000, 'the claim to be approved')
  await claimer.close()
  const remaining = (await intentsNow()).map(i => i['intent_id'])
  t.notOk(remaining.includes(own['intent_id']), 'GOODBYE(withdraw) withdrew the intent announced with begin_task')
  t.notOk(remaining.includes(newId), 'and the one obtained by the claim approved after the tool returned')
})
