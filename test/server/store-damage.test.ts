/**
 * Issue 11 item 6: a journal row that fails its checksum is damage, wherever
 * it is (the last row too: SQLite commits a row whole, so a committed row was
 * acknowledged). The real sidecar writes the database, the test damages rows
 * with the sqlite3 API, the real sidecar restarts on it: the damaged sessions
 * are quarantined (4503) with one log line each, every other session is served.
 */
import Database from 'better-sqlite3'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/process.js'
import { startSidecar } from '../helpers/sidecar.js'
import { announce, hello, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

t.test('a damaged journal row, last or not, quarantines its session only; the row is kept and logged once', async t => {
  const dir = tempDir(t, 'mpac-damage-')
  const env = { HOME: tempDir(t, 'mpac-damage-home-'), LOG_LEVEL: 'info' }
  const args = ['--data-dir', dir]
  const one = await startSidecar(t, args, env)
  for (const id of ['bad-last', 'bad-first', 'good']) {
    const { client } = await joined(`${one.url}/session/${id}`, 'agent:a')
    await client.request(announce('agent:a', `i-${id}-1`, [`${id}-1.txt`], id))
    await client.request(announce('agent:a', `i-${id}-2`, [`${id}-2.txt`], id))
    client.close()
  }
  // A crash, not a shutdown: the journal rows stay (a shutdown would snapshot them away).
  one.child.kill('SIGKILL')
  await one.exited

  const db = new Database(join(dir, 'mpac.db'))
  const rows = (id: string): number[] => db.prepare('SELECT seq FROM journal WHERE session_id = ? ORDER BY seq').pluck().all(id) as number[]
  const last = rows('bad-last').at(-1) as number
  const first = rows('bad-first')[0] as number
  t.ok(rows('bad-last').length >= 3 && rows('bad-first').length >= 3, 'the acknowledged inputs are journal rows')
  const damage = db.prepare('UPDATE journal SET crc = (crc + 1) % 4294967296 WHERE session_id = ? AND seq = ?')
  damage.run('bad-last', last)
  damage.run('bad-first', first)
  const before = { last: rows('bad-last'), first: rows('bad-first') }
  db.close()

  const two = await startSidecar(t, args, env)
  for (const [id, seq] of [['bad-last', last], ['bad-first', first]] as const) {
    const probe = await TestClient.connect(`${two.url}/session/${id}`)
    probe.send(hello('agent:a', { sessionId: id }))
    t.same(await probe.waitForClose(), { code: 4503, reason: 'session unavailable' }, `${id}: a HELLO is refused with 4503`)
    const summary = await TestClient.connect(`${two.url}/session/${id}`)
    summary.send({ type: 'SESSION_SUMMARY' })
    t.equal((await summary.waitForClose()).code, 4503, `${id}: a sideband query too`)

    const logged = two.lines.filter(l => l.includes(`"${id}"`) && l.includes('quarantined'))
    t.equal(logged.length, 1, `${id}: one log line`)
    const line = JSON.parse(logged[0] ?? '{}') as Frame
    t.match(line, { level: 50, sessionId: id, seq, reason: `journal entry ${seq}: checksum mismatch` }, `${id}: it names the session, the row and the reason`)
  }
  t.notOk(two.lines.some(l => l.includes('torn write')), 'nothing is dropped as a torn write')

  const { client: ok, info } = await joined(`${two.url}/session/good`, 'agent:a')
  t.equal(info.message_type, 'SESSION_INFO', 'the undamaged session is served')
  ok.send({ type: 'SESSION_SUMMARY' })
  const s = (await ok.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.same((s.active_intents as Frame[]).map(i => i.intent_id).sort(), ['i-good-1', 'i-good-2'], 'with its history')
  ok.close()
  t.equal(await two.stop(), 0)

  const after = new Database(join(dir, 'mpac.db'), { readonly: true })
  t.teardown(() => after.close())
  const seqs = (id: string): unknown[] => after.prepare('SELECT seq FROM journal WHERE session_id = ? ORDER BY seq').pluck().all(id)
  t.same({ last: seqs('bad-last'), first: seqs('bad-first') }, before, 'the damaged journals are kept as found, nothing dropped or added')
  t.same(after.prepare('SELECT session_id, quarantine_reason FROM sessions WHERE quarantined = 1 ORDER BY session_id').all(), [
    { session_id: 'bad-first', quarantine_reason: `journal entry ${first}: checksum mismatch` },
    { session_id: 'bad-last', quarantine_reason: `journal entry ${last}: checksum mismatch` }
  ], 'the quarantine is recorded')
})
