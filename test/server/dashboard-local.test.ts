import t from 'tap'
import { startServer } from '../helpers/server.js'
import { SseClient } from '../helpers/sse.js'
import { announce, joined } from '../helpers/ws.js'

t.test('local mode: pages, view JSON and a live delta within a second of an announce', async t => {
  const srv = await startServer(t)
  const url = `${srv.url}/session/demo`
  const { client: a } = await joined(url, 'alice')
  t.teardown(() => a.close())
  const page = await fetch(`${srv.httpUrl}/dashboard/s/demo`)
  t.equal(page.status, 200)
  const body = await page.text()
  t.match(body, /<h1>Session demo<\/h1>/)
  t.match(page.headers.get('content-security-policy'), /script-src 'self'/)
  const view = await (await fetch(`${srv.httpUrl}/dashboard/api/s/demo/view`)).json() as Record<string, unknown>
  t.equal(view.session_id, 'demo')

  const sse = await SseClient.open(`${srv.httpUrl}/dashboard/s/demo/events`)
  if (!(sse instanceof SseClient)) throw new Error(`stream refused: ${JSON.stringify(sse)}`)
  t.teardown(() => sse.close())
  const snap = await sse.next(m => m.event === 'snapshot')
  t.ok(snap.id)
  const started = Date.now()
  await a.request(announce('alice', 'i-1', ['src/a.ts'], 'demo'))
  const delta = await sse.next(m => m.event === 'delta', 1000)
  t.ok(Date.now() - started < 1000, 'delta within a second')
  const data = JSON.parse(delta.data) as { events: Array<Record<string, unknown>>, patch: Array<Record<string, unknown>> }
  t.equal(data.events[0]?.type, 'INTENT_ANNOUNCE')
  t.ok(data.patch.some(p => p.section === 'intents' && p.op === 'upsert'))
})
