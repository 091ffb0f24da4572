/**
 * The per-token session quota and idle retention through the real sidecar
 * (a child process on a SQLite data directory, real sockets): the quota
 * counts the sessions the store holds, so a restart does not reset it, and a
 * session idle past --session-idle-retention is deleted, freeing its slot.
 */
import type { ChildProcess } from 'node:child_process'
import t from 'tap'
import { tempDir, type Teardown } from '../helpers/process.js'
import { hello, joined, TestClient } from '../helpers/ws.js'
import { startSidecar } from '../helpers/sidecar.js'

const TOKENS = JSON.stringify({ 'tok-tenant': { allowed_sessions: ['*'] }, 'tok-other': { allowed_sessions: ['*'] } })

interface Sidecar { readonly child: ChildProcess, readonly url: string, readonly output: () => string, stop (): Promise<void> }

/** The real multi-session sidecar on `dataDir` with the two tenants' tokens (test/helpers/sidecar.ts). */
async function sidecar (tt: Teardown, dataDir: string, extra: readonly string[]): Promise<Sidecar> {
  const sc = await startSidecar(tt, ['--data-dir', dataDir, '--max-sessions-per-token', '1', ...extra], { HOME: dataDir, MPAC_TOKEN_TABLE: TOKENS, LOG_LEVEL: 'info' })
  return { child: sc.child, url: sc.url, output: () => sc.lines.join('\n'), stop: async () => { await sc.stop() } }
}

async function refusedCreation (url: string, sessionId: string, token: string): Promise<{ code: number, reason: string }> {
  const c = await TestClient.connect(`${url}/session/${sessionId}`)
  c.send(hello('agent:a', { sessionId, token }))
  return c.waitForClose(5000)
}

t.test('the per-token session quota counts stored sessions: a restart does not reset it', async t => {
  const dir = tempDir(t, 'mpac-quota-')
  const first = await sidecar(t, dir, [])
  const { client } = await joined(`${first.url}/session/mine-1`, 'agent:a', { token: 'tok-tenant' })
  client.close()
  t.same(await refusedCreation(first.url, 'mine-2', 'tok-tenant'), { code: 4429, reason: 'session limit for this token reached' })
  await first.stop()

  const second = await sidecar(t, dir, [])
  t.teardown(() => second.stop())
  t.same(await refusedCreation(second.url, 'mine-2', 'tok-tenant'), { code: 4429, reason: 'session limit for this token reached' },
    'after the restart the stored session still counts against its token')
  const rejoin = await joined(`${second.url}/session/mine-1`, 'agent:b', { token: 'tok-tenant' })
  rejoin.client.close()
  t.pass('joining its existing session works')
  const other = await joined(`${second.url}/session/theirs-1`, 'agent:c', { token: 'tok-other' })
  other.client.close()
  t.pass('another token is not affected')
})

t.test('a session idle past --session-idle-retention is deleted and its quota slot freed', async t => {
  const dir = tempDir(t, 'mpac-retention-')
  const srv = await sidecar(t, dir, ['--session-idle-retention', '1'])
  t.teardown(() => srv.stop())
  const { client } = await joined(`${srv.url}/session/old`, 'agent:a', { token: 'tok-tenant' })
  // While connected the session is never idle: the quota stays taken.
  t.same(await refusedCreation(srv.url, 'new', 'tok-tenant'), { code: 4429, reason: 'session limit for this token reached' })
  client.close()
  const deadline = Date.now() + 10_000
  while (!srv.output().includes('idle session closed and deleted')) {
    if (Date.now() > deadline) throw new Error(`the idle session was not deleted within 10 s: ${srv.output()}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  t.equal(srv.output().split('idle session closed and deleted').length - 1, 1, 'logged once')
  const fresh = await joined(`${srv.url}/session/new`, 'agent:a', { token: 'tok-tenant' })
  t.teardown(() => fresh.client.close())
  t.pass('the token may create a session again')
  // The deleted session is gone from the store: a summary shows it empty.
  const probe = await TestClient.connect(`${srv.url}/session/old`, { authorization: 'Bearer tok-tenant' })
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const summary = await probe.next(f => f.type === 'SESSION_SUMMARY_RESPONSE')
  t.equal((summary.session as Record<string, unknown>).participant_count, 0)
})
