/**
 * The dashboard in a real browser, on a local loopback coordinator (the real
 * `mpac-mcp-sidecar` program, open profile: no sign-in):
 *
 * - an agent silent past the unavailability timeout (1 s here) shows as
 *   offline, its intent SUSPENDED, with an attention item, live;
 * - the coordinator stopped and started again on the same data directory
 *   and port: the open page reconnects by itself and shows a snapshot
 *   consistent with the coordinator's own view JSON.
 */
import { join } from 'node:path'
import type { Page } from 'playwright-core'
import t from 'tap'
import { browserSkip, openBrowser } from '../helpers/browser.js'
import { tempDir } from '../helpers/process.js'
import { startSidecar } from '../helpers/sidecar.js'
import { envelope, joined, type Frame, type TestClient } from '../helpers/ws.js'

const skip = browserSkip()
const SESSION = 'local-demo'

const row = (section: string, key: string): string => `[data-section="${section}"] > [data-key="${key}"]`

async function send (client: TestClient, type: string, principal: string, payload: Frame): Promise<Frame> {
  const reply = await client.request(envelope(type, principal, payload, SESSION))
  if (reply.message_type === 'PROTOCOL_ERROR') throw new Error(`${type} refused: ${JSON.stringify(reply.payload)}`)
  return reply
}

/** The keys of the rows a section of the page shows now. */
async function keys (page: Page, section: string): Promise<string[]> {
  return await page.evaluate<string[]>(`[...document.querySelectorAll('[data-section="${section}"] > [data-key]')].map(r => r.getAttribute('data-key')).sort()`)
}

t.test('an agent silent past the unavailability timeout shows offline, its intent SUSPENDED, with an attention item', { skip }, async t => {
  const sidecar = await startSidecar(t, ['--store', 'memory', '--unavailability-timeout', '1'], {})
  const base = `http://127.0.0.1:${sidecar.port}`
  const { client: dave } = await joined(`${sidecar.url}/session/${SESSION}`, 'agent:dave')
  t.teardown(() => dave.close())
  await send(dave, 'INTENT_ANNOUNCE', 'agent:dave', { intent_id: 'i-dave', objective: 'Port the CLI to the new parser', scope: { kind: 'file_set', resources: ['src/cli.ts'] } })
  const lastHeard = Date.now()

  const b = await openBrowser(t)
  const page = b.page
  await page.goto(`${base}/dashboard/s/${SESSION}`)
  t.equal(new URL(page.url()).pathname, `/dashboard/s/${SESSION}`, 'a loopback coordinator needs no sign-in')
  await page.locator(row('intents', 'i-dave')).waitFor({ timeout: 2000 })

  // dave sends nothing more: after 1 s the coordinator declares him unavailable.
  await page.locator(`${row('participants', 'agent:dave')} [data-field="is_available"]`, { hasText: 'offline' }).waitFor({ timeout: 5000 })
  const offlineAt = Date.now()
  t.comment(`dave shown offline ${offlineAt - lastHeard} ms after his last message (timeout 1 s)`)
  await page.locator(`${row('intents', 'i-dave')} [data-field="state"]`, { hasText: 'SUSPENDED' }).waitFor({ timeout: 2000 })
  t.pass('his intent shows SUSPENDED')
  const attention = page.locator('[data-section="attention"] > [data-key]').filter({ hasText: 'i-dave' })
  await attention.first().waitFor({ timeout: 2000 })
  t.match(await attention.first().innerText(), /suspended/i, 'the attention queue lists the suspended intent')
  t.same(b.problems, [], 'no console error, page error or CSP violation')
})

t.test('relative times say "now", never "in 0 s", and age while the page stays open', { skip }, async t => {
  const sidecar = await startSidecar(t, ['--store', 'memory'], {})
  const { client: finn } = await joined(`${sidecar.url}/session/${SESSION}`, 'agent:finn')
  t.teardown(() => finn.close())
  const b = await openBrowser(t)
  const page = b.page
  await page.clock.install()
  await page.goto(`http://127.0.0.1:${sidecar.port}/dashboard/s/${SESSION}`)
  await send(finn, 'INTENT_ANNOUNCE', 'agent:finn', { intent_id: 'i-finn', objective: 'Tidy the logs', scope: { kind: 'file_set', resources: ['src/log.ts'] } })
  const since = page.locator(`${row('intents', 'i-finn')} [data-field="created_at"]`)
  await since.waitFor({ timeout: 2000 })
  t.match(await since.innerText(), /^(now|\d+ s ago)$/, `a time just past reads as such (${await since.innerText()})`)
  const lastSeen = page.locator(`${row('participants', 'agent:finn')} [data-field="last_seen"]`)
  await page.clock.fastForward('02:00')
  await page.locator(`${row('participants', 'agent:finn')} [data-field="last_seen"]`, { hasText: '2 min ago' }).waitFor({ timeout: 2000 })
  t.pass(`two minutes later the page says so without an update (${await lastSeen.innerText()})`)
  t.same(b.problems, [], 'no console error, page error or CSP violation')
})

t.test('a coordinator restarted on the same data directory: the open page reconnects to a consistent snapshot', { skip }, async t => {
  const dataDir = join(tempDir(t, 'mpac-dash-restart-'), 'data')
  const args = ['--store', 'sqlite', '--data-dir', dataDir]
  const first = await startSidecar(t, args, {})
  const port = first.port
  const base = `http://127.0.0.1:${port}`
  const url = `${first.url}/session/${SESSION}`
  const { client: erin } = await joined(url, 'agent:erin')
  await send(erin, 'INTENT_ANNOUNCE', 'agent:erin', { intent_id: 'i-erin', objective: 'Split the config module', scope: { kind: 'file_set', resources: ['src/config.ts'] } })

  const b = await openBrowser(t)
  const page = b.page
  await page.goto(`${base}/dashboard/s/${SESSION}`)
  await page.locator(row('intents', 'i-erin')).waitFor({ timeout: 2000 })
  await page.locator('#live-status', { hasText: 'Live' }).waitFor({ timeout: 3000 })

  erin.close()
  await first.stop()
  await page.locator('#live-status', { hasText: 'reconnecting' }).waitFor({ timeout: 5000 })
  t.pass('the page says the connection was lost')

  const second = await startSidecar(t, [...args, '--port', String(port)], {})
  t.equal(second.port, port, 'the same address')
  const { client: again } = await joined(url, 'agent:erin')
  t.teardown(() => again.close())
  await send(again, 'INTENT_ANNOUNCE', 'agent:erin', { intent_id: 'i-erin-2', objective: 'Document the split', scope: { kind: 'file_set', resources: ['docs/config.md'] } })

  await page.locator(row('intents', 'i-erin-2')).waitFor({ timeout: 10_000 })
  t.pass('the page reconnected by itself and shows work done after the restart')
  const view = await (await fetch(`${base}/dashboard/api/s/${SESSION}/view`)).json() as { intents: Array<{ intent_id: string }>, participants: Array<{ principal_id: string }> }
  for (const i of view.intents) await page.locator(row('intents', i.intent_id)).waitFor({ timeout: 2000 })
  t.same(await keys(page, 'intents'), view.intents.map(i => i.intent_id).sort(), 'the intents shown are the coordinator\'s')
  t.same(await keys(page, 'participants'), view.participants.map(p => p.principal_id).sort(), 'so are the participants')
  t.ok(view.intents.some(i => i.intent_id === 'i-erin'), 'the intent from before the restart survived it')
  t.ok(await page.locator('[data-section="events"] > [data-key]').filter({ hasText: /restarted/ }).count() > 0, 'the timeline says the coordinator restarted')
  t.same(b.problems.filter(p => !/ERR_CONNECTION_REFUSED|net::ERR|Failed to load resource/.test(p.text)), [], 'no error but the refused reconnects while it was down')
})
