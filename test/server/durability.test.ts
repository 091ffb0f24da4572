import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { SqliteStore } from '../../src/store/index.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, isError, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

// The server's side of issue 5: restart grace, closed-session retention.

const payload = (f: Frame): Frame => f.payload as Frame

t.test('after a restart, --restart-grace keeps silent participants available; then liveness applies', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-grace-'))
  let now = Date.now()
  const clock = (): number => now
  const argv = ['--unavailability-timeout', '10', '--restart-grace', '30', '--heartbeat-interval', '0.2']
  const store1 = new SqliteStore({ dir })
  const one = await startServer(t, { store: store1, argv, now: clock })
  const url1 = `${one.url}/session/g`
  const { client: a } = await joined(url1, 'agent:a')
  const { client: b1 } = await joined(url1, 'agent:b')
  await a.request(announce('agent:a', 'i-a', ['a.txt'], 'g'))
  await one.close()
  store1.close()

  const store2 = new SqliteStore({ dir })
  t.teardown(() => store2.close())
  const two = await startServer(t, { store: store2, argv, now: clock })
  const { client: b, info } = await joined(`${two.url}/session/g`, 'agent:b')
  t.teardown(() => { b.close(); b1.close() })
  t.equal(info.coordinator_epoch, 2)
  /** Advances the injected clock and waits for a heartbeat produced by a tick at that time. */
  const advance = async (sec: number): Promise<void> => {
    now += sec * 1000
    b.send(envelope('HEARTBEAT', 'agent:b', { status: 'idle' }, 'g'))
    const at = now
    await b.next(f => f.message_type === 'COORDINATOR_STATUS' && payload(f).event === 'heartbeat' && Date.parse(String(f.ts)) >= at, 5000)
  }
  await advance(15) // past the unavailability timeout, inside timeout + grace
  t.notOk(b.received.some(isError('PARTICIPANT_UNAVAILABLE')), 'agent:a (not reconnected) is still available during the grace')
  await advance(30) // past timeout + grace
  const gone = await b.next(isError('PARTICIPANT_UNAVAILABLE'), 5000)
  t.equal(payload(gone).principal_id, 'agent:a', 'then the silent participant is declared unavailable')
})

t.test('a closed session is kept for --closed-retention, then purged from the store and from memory', async t => {
  let now = Date.now()
  const srv = await startServer(t, { argv: ['--closed-retention', '60'], now: () => now })
  const url = `${srv.url}/session/done`
  const { client } = await joined(url, 'agent:a')
  const runtime = srv.app.mpac.registry.peek('done')
  if (runtime === undefined) throw new Error('session not loaded')
  runtime.applyInput({ kind: 'close', now, reason: 'completed' })
  const close = await client.next(f => f.message_type === 'SESSION_CLOSE')
  t.equal(payload(close).reason, 'completed', 'SESSION_CLOSE reached the participant')
  client.close()
  await client.waitForClose()
  for (let i = 0; i < 1000 && runtime.peerCount !== 0; i++) await new Promise(resolve => setImmediate(resolve))
  const registry = srv.app.mpac.registry
  now += 59_000
  registry.sweep()
  t.ok(srv.store.load('done') !== undefined, 'kept during the retention')
  now += 2_000
  registry.sweep()
  t.equal(srv.store.load('done'), undefined, 'purged from the store after it')
  t.equal(registry.peek('done'), undefined, 'and from memory')
  t.equal(registry.sessionCount, 0)
  const probe = await TestClient.connect(url)
  t.teardown(() => probe.close())
  probe.send({ type: 'SESSION_SUMMARY' })
  const summary = await probe.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.equal((summary.session as Frame).participant_count, 0, 'a probe sees no session')
})
