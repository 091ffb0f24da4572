/**
 * The dashboard in a real browser (agent-hooks-and-dashboard.md §9.6):
 * Debian's chromium driven by playwright-core against the real
 * `mpac-mcp-sidecar` program (a child process on 127.0.0.1 port 0, the token
 * table in a file it watches) with real WebSocket agents.
 *
 * - sign-in through the form, the token in no URL, history entry, request or
 *   page, and the cookie HttpOnly, SameSite=Strict, Path=/;
 * - an intent, then a conflict reported → acknowledged → escalated →
 *   resolved, each shown live within a second of the coordinator's reply
 *   (the delay is printed);
 * - participant text with markup renders as text: no script runs, no
 *   console error, no CSP violation;
 * - axe-core (wcag2a, wcag2aa): no violation; Tab reaches every control;
 *   updates never move the focus;
 * - Pause holds row changes, Resume applies them;
 * - removing the viewer's token from the file signs the open page out, its
 *   stream stops, and the next load asks to sign in.
 *
 * Screenshots go to .tap/screenshots (the path is printed).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CDPSession, Page } from 'playwright-core'
import t from 'tap'
import { browserSkip, openBrowser, runAxe, type BrowserSession } from '../helpers/browser.js'
import { tempDir, type Teardown } from '../helpers/process.js'
import { startSidecar, type SidecarProcess } from '../helpers/sidecar.js'
import { envelope, joined, type Frame, type TestClient } from '../helpers/ws.js'

const skip = browserSkip()
const SESSION = 'proj-a'
const VIEWER_TOKEN = 'viewer-token-3f9c1a7e5b'

const TOKENS: Record<string, unknown> = {
  [VIEWER_TOKEN]: { allowed_sessions: [SESSION], roles: ['observer'] },
  'alice-token': { allowed_sessions: [SESSION], roles: ['contributor'], principal: 'agent:alice' },
  'bob-token': { allowed_sessions: [SESSION], roles: ['contributor'], principal: 'agent:bob' },
  'carol-token': { allowed_sessions: [SESSION], roles: ['arbiter'], principal: 'human:carol' },
  'dave-token': { allowed_sessions: [SESSION], roles: ['contributor'], principal: 'agent:dave' },
  'mallory-token': { allowed_sessions: [SESSION], roles: ['contributor'], principal: 'agent:mallory' }
}

/** Every SSE message the page's EventSource receives, seen through the DevTools protocol. */
interface SseLog {
  readonly messages: Array<{ readonly event: string, readonly data: string, readonly at: number }>
  /** Resolves with the first message (already received or future) whose data includes `text`. */
  waitFor (text: string, deadlineMs: number): Promise<{ event: string, data: string, at: number }>
}

async function watchSse (page: Page): Promise<SseLog> {
  const cdp: CDPSession = await page.context().newCDPSession(page)
  await cdp.send('Network.enable')
  const messages: Array<{ event: string, data: string, at: number }> = []
  const waiters: Array<{ text: string, resolve: (m: { event: string, data: string, at: number }) => void }> = []
  cdp.on('Network.eventSourceMessageReceived', ev => {
    const m = { event: ev.eventName, data: ev.data, at: Date.now() }
    messages.push(m)
    for (const w of [...waiters]) {
      if (m.data.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  })
  return {
    messages,
    waitFor (text, deadlineMs) {
      const seen = messages.find(m => m.data.includes(text))
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no SSE message with ${JSON.stringify(text)} within ${deadlineMs} ms`)), deadlineMs)
        waiters.push({ text, resolve: m => { clearTimeout(timer); resolve(m) } })
      })
    }
  }
}

const row = (section: string, key: string): string => `[data-section="${section}"] > [data-key="${key}"]`

/** Lets the page run its pending tasks and paint twice (what an applied update needs to show). */
async function settle (page: Page): Promise<void> {
  await page.evaluate('new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(r, 0))))')
}

async function startCoordinator (t: Teardown, tokens: Record<string, unknown>): Promise<{ sidecar: SidecarProcess, tokenFile: string, base: string }> {
  const dir = tempDir(t, 'mpac-dash-browser-')
  const tokenFile = join(dir, 'tokens.json')
  writeFileSync(tokenFile, JSON.stringify(tokens, null, 2))
  const sidecar = await startSidecar(t, ['--store', 'memory', '--token-table-file', tokenFile, '--dashboard'], {})
  return { sidecar, tokenFile, base: `http://127.0.0.1:${sidecar.port}` }
}

async function agent (sidecar: SidecarProcess, principal: string, token: string, roles: string[] = ['contributor']): Promise<TestClient> {
  const { client } = await joined(`${sidecar.url}/session/${SESSION}`, principal, { token, roles })
  return client
}

/** Sends an MPAC message and waits for its terminal frame; fails the test on a PROTOCOL_ERROR. */
async function send (client: TestClient, type: string, principal: string, payload: Frame): Promise<Frame> {
  // The authenticated profile wants a watermark on a RESOLUTION (any Lamport value the sender saw).
  const env = type === 'RESOLUTION' ? { ...envelope(type, principal, payload, SESSION), watermark: { kind: 'lamport_clock', value: 1 } } : envelope(type, principal, payload, SESSION)
  const reply = await client.request(env)
  if (reply.message_type === 'PROTOCOL_ERROR') throw new Error(`${type} refused: ${JSON.stringify(reply.payload)}`)
  return reply
}

async function signIn (b: BrowserSession, base: string, token: string): Promise<void> {
  await b.page.goto(`${base}/dashboard/s/${SESSION}`)
  await b.page.getByLabel('Access token').fill(token)
  await Promise.all([b.page.waitForURL(url => !url.pathname.endsWith('/login')), b.page.getByRole('button', { name: 'Sign in' }).click()])
  await b.page.goto(`${base}/dashboard/s/${SESSION}`)
}

t.test('sign in, watch two agents collide, acknowledge, escalate and resolve, live; then revoke', { skip }, async t => {
  const { sidecar, tokenFile, base } = await startCoordinator(t, TOKENS)
  const alice = await agent(sidecar, 'agent:alice', 'alice-token')
  const bob = await agent(sidecar, 'agent:bob', 'bob-token')
  const carol = await agent(sidecar, 'human:carol', 'carol-token', ['arbiter'])
  t.teardown(() => { alice.close(); bob.close(); carol.close() })

  const b = await openBrowser(t, { viewport: { width: 1280, height: 1000 } })
  const page = b.page

  // --- sign-in -------------------------------------------------------------
  const unauth = await page.goto(`${base}/dashboard/s/${SESSION}`)
  t.ok(unauth !== null && new URL(page.url()).pathname === '/dashboard/login', `an unauthenticated page load lands on the login form (${page.url()})`)
  t.same(await runAxe(page), [], 'axe: the login page has no WCAG A/AA violation')
  await page.getByLabel('Access token').fill('not-a-token')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByRole('alert').waitFor({ timeout: 5000 })
  t.same(await b.context.cookies(), [], 'a bad token gets no cookie')
  // The browser logs the refusal's status (401) as a failed resource: that one is expected.
  t.match(b.problems, [{ kind: 'console', text: /status of 401/ }], `the only problem so far is the refused sign-in: ${JSON.stringify(b.problems)}`)
  t.equal(b.problems.length, 1)
  b.problems.length = 0

  await signIn(b, base, VIEWER_TOKEN)
  const cookies = await b.context.cookies()
  t.equal(cookies.length, 1, 'one cookie')
  t.match(cookies[0], { httpOnly: true, sameSite: 'Strict', path: '/' }, 'HttpOnly, SameSite=Strict, Path=/')
  t.notOk(cookies[0]?.value.includes(VIEWER_TOKEN), 'the cookie is not the token')

  const sse = await watchSse(page)
  await page.reload()
  await sse.waitFor('"session_id"', 5000)
  t.equal(new URL(page.url()).pathname, `/dashboard/s/${SESSION}`, 'signed in, on the session page')

  // --- live: an intent -----------------------------------------------------
  const sent = Date.now()
  await send(alice, 'INTENT_ANNOUNCE', 'agent:alice', {
    intent_id: 'i-alice',
    objective: 'Rename the users table to accounts',
    scope: { kind: 'resource_path', pattern: 'src/db/**' }
  })
  const replied = Date.now()
  await page.locator(row('intents', 'i-alice')).waitFor({ timeout: 2000 })
  const shown = Date.now()
  t.comment(`intent row visible ${shown - replied} ms after the coordinator's reply (${shown - sent} ms after the send)`)
  t.ok(shown - replied < 1000, `the intent appears within a second of the coordinator event (${shown - replied} ms)`)
  t.match(await page.locator(row('intents', 'i-alice')).innerText(), /Rename the users table to accounts/)

  // --- live: files held and a commit -----------------------------------------
  const dave = await agent(sidecar, 'agent:dave', 'dave-token')
  t.teardown(() => dave.close())
  await send(dave, 'INTENT_ANNOUNCE', 'agent:dave', { intent_id: 'i-dave', objective: 'Paginate the accounts API', scope: { kind: 'file_set', resources: ['src/api/accounts.ts', 'src/api/pagination.ts'] } })
  await page.locator(row('files', 'src/api/accounts.ts'), { hasText: 'agent:dave' }).waitFor({ timeout: 2000 })
  t.pass('the file shows its holder live')
  const committed = Date.now()
  await send(dave, 'OP_COMMIT', 'agent:dave', {
    op_id: 'op-dave-1', intent_id: 'i-dave', target: 'src/api/pagination.ts', op_kind: 'replace',
    state_ref_before: 'sha256:7d1a54127b222502f5b79b5fb0803061152a44f92b37e23c6527baf665d4da9a',
    state_ref_after: 'sha256:2f1ec2d8f6a8b5b4b3d7a3a0f7a1c4b9e1d2c3b4a5968778695a4b3c2d1e0f9a'
  })
  await page.locator(row('commits', 'op-dave-1'), { hasText: 'src/api/pagination.ts' }).waitFor({ timeout: 2000 })
  t.ok(Date.now() - committed < 1000, `the commit shows within a second (${Date.now() - committed} ms)`)

  // --- live: a conflict through its life ------------------------------------
  const bobWait = bob.next(f => f.message_type === 'CONFLICT_REPORT', 3000)
  await send(bob, 'INTENT_ANNOUNCE', 'agent:bob', {
    intent_id: 'i-bob',
    objective: 'Add an email column to users',
    scope: { kind: 'resource_path', pattern: 'src/db/*.sql' }
  })
  const conflictId = String(((await bobWait).payload as Frame).conflict_id)
  const stateCell = page.locator(`${row('conflicts', conflictId)} [data-field="state"]`)
  const stages: Array<[string, () => Promise<unknown>]> = [
    ['OPEN', async () => {}],
    ['ACKED', () => send(bob, 'CONFLICT_ACK', 'agent:bob', { conflict_id: conflictId, ack_type: 'seen' })],
    ['ESCALATED', () => send(alice, 'CONFLICT_ESCALATE', 'agent:alice', { conflict_id: conflictId, escalate_to: 'human:carol', reason: 'both need the users table this afternoon' })],
    ['CLOSED', () => send(carol, 'RESOLUTION', 'human:carol', { conflict_id: conflictId, decision: 'approved', rationale: 'alice renames first; bob rebases his column on accounts' })]
  ]
  const delays: string[] = []
  for (const [state, act] of stages) {
    await act()
    const at = Date.now()
    await page.locator(`${row('conflicts', conflictId)} [data-field="state"]`, { hasText: state }).waitFor({ timeout: 2000 })
    const delay = Date.now() - at
    delays.push(`${state} ${delay} ms`)
    t.ok(delay < 1000, `the conflict row shows ${state} within a second (${delay} ms)`)
    if (state === 'ESCALATED') {
      t.ok(await page.locator('[data-section="attention"] > [data-key]').filter({ hasText: conflictId }).count() > 0, 'the escalation is in the attention queue')
      t.comment(`screenshot (escalated): ${await b.screenshot(page, 'dashboard-escalated')}`)
    }
  }
  t.comment(`conflict state shown after: ${delays.join(', ')}`)
  t.match(await stateCell.innerText(), /CLOSED/)
  t.ok(await page.locator('[data-section="events"] > [data-key]').filter({ hasText: 'human:carol' }).count() > 0, 'the timeline has the resolution')
  t.comment(`screenshot (resolved): ${await b.screenshot(page, 'dashboard-resolved')}`)
  t.comment(`screenshot (resolved, down to the timeline; the one in docs/images/dashboard.png): ${await b.screenshot(page, 'dashboard-readme', '[data-section="events"]')}`)
  t.ok(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), 'nothing overflows the page width (long state refs wrap)')

  // --- the token is nowhere ---------------------------------------------------
  const cdp = await b.context.newCDPSession(page)
  const history = await cdp.send('Page.getNavigationHistory')
  const urls = [page.url(), ...history.entries.map(e => e.url), ...b.requests]
  t.notOk(urls.some(u => u.includes(VIEWER_TOKEN)), `the token is in no URL (${urls.length} checked: the page, ${history.entries.length} history entries, every request)`)
  t.notOk((await page.content()).includes(VIEWER_TOKEN), 'nor in the page')

  // --- untrusted text is text -----------------------------------------------
  const mallory = await agent(sidecar, 'agent:mallory', 'mallory-token')
  t.teardown(() => mallory.close())
  const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> & "quotes"'
  await send(mallory, 'INTENT_ANNOUNCE', 'agent:mallory', { intent_id: 'i-mallory', objective: hostile, scope: { kind: 'file_set', resources: ['src/<b>bold</b>.ts'] } })
  await page.locator(row('intents', 'i-mallory')).waitFor({ timeout: 2000 })
  t.match(await page.locator(`${row('intents', 'i-mallory')} [data-field="objective"]`).innerText(), hostile, 'the live row shows the markup as text')
  await page.reload()
  await sse.waitFor('"i-mallory"', 5000)
  t.match(await page.locator(`${row('intents', 'i-mallory')} [data-field="objective"]`).innerText(), hostile, 'so does the server-rendered page')
  t.equal(await page.evaluate('window.__pwned'), undefined, 'no injected script ran')
  t.notOk(b.requests.some(u => new URL(u).pathname === '/x'), 'no injected image was requested')
  t.equal(await page.locator('main img, main script, main b').count(), 0, 'no injected element exists')

  // --- accessibility ----------------------------------------------------------
  t.same(await runAxe(page), [], 'axe: the session page (with conflicts, commits, timeline) has no WCAG A/AA violation')
  await page.goto(`${base}/dashboard`)
  t.same(await runAxe(page), [], 'axe: the session list has no violation')
  await page.goto(`${base}/dashboard/s/${SESSION}/conflicts/${encodeURIComponent(conflictId)}`)
  t.match(await page.locator('main').innerText(), /both need the users table|alice renames first/, 'the conflict page tells its story')
  t.same(await runAxe(page), [], 'axe: the conflict page has no violation')

  await page.goto(`${base}/dashboard/s/${SESSION}`)
  await page.locator('#pause-live').waitFor({ state: 'visible', timeout: 5000 })
  const focusable = 'a[href], button:not([disabled]), input:not([disabled]), select, textarea, summary, [tabindex]:not([tabindex="-1"])'
  const reach = await tabWalk(page, focusable)
  t.ok(reach.total > 10, `the page has controls (${reach.total})`)
  t.same(reach.missed, [], `Tab reaches every control (${reach.total} in ${reach.presses} presses)`)

  // --- pause holds changes, resume applies them; focus never moves -----------
  const pause = page.locator('#pause-live')
  await pause.focus()
  await pause.press('Enter')
  t.equal(await pause.getAttribute('aria-pressed'), 'true', 'paused')
  const scrollBefore = await page.evaluate('window.scrollY')
  await send(alice, 'INTENT_ANNOUNCE', 'agent:alice', { intent_id: 'i-alice-2', objective: 'Update the accounts fixtures', scope: { kind: 'file_set', resources: ['test/fixtures/accounts.json'] } })
  await sse.waitFor('"i-alice-2"', 3000)
  await settle(page)
  t.equal(await page.locator(row('intents', 'i-alice-2')).count(), 0, 'while paused, the update arrived but the rows did not change')
  t.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'pause-live', 'the focus stayed on the control')
  t.equal(await page.evaluate('window.scrollY'), scrollBefore, 'the page did not scroll')
  await pause.press('Enter')
  t.equal(await pause.getAttribute('aria-pressed'), 'false', 'resumed')
  await page.locator(row('intents', 'i-alice-2')).waitFor({ timeout: 2000 })
  t.pass('Resume applied the held update')
  t.match(await page.locator('#live-status').innerText(), /\S/, 'the live region says what happened')

  t.same(b.problems, [], `no console error, page error or CSP violation on any page: ${JSON.stringify(b.problems)}`)

  // --- revocation -----------------------------------------------------------
  writeFileSync(tokenFile, JSON.stringify(Object.fromEntries(Object.entries(TOKENS).filter(([k]) => k !== VIEWER_TOKEN)), null, 2))
  const revokedAt = Date.now()
  await page.locator('#live-status', { hasText: 'Signed out' }).waitFor({ timeout: 5000 })
  t.comment(`signed out ${Date.now() - revokedAt} ms after the token file was rewritten`)
  t.pass('the open page shows it is signed out')
  const countBefore = sse.messages.length
  await send(alice, 'INTENT_ANNOUNCE', 'agent:alice', { intent_id: 'i-alice-3', objective: 'After the revocation', scope: { kind: 'file_set', resources: ['docs/after.md'] } })
  // The agents' own session goes on; a viewer still signed in would get this within 250 ms.
  const stillSigned = await openBrowser(t)
  await signIn(stillSigned, base, 'alice-token')
  await stillSigned.page.locator(row('intents', 'i-alice-3')).waitFor({ timeout: 3000 })
  await settle(page)
  t.equal(sse.messages.length, countBefore, 'the revoked page received nothing more')
  t.equal(await page.locator(row('intents', 'i-alice-3')).count(), 0, 'and shows nothing new')
  await page.reload()
  t.equal(new URL(page.url()).pathname, '/dashboard/login', 'the next load asks to sign in')
})

/** Presses Tab until the focus cycles; returns the controls it never reached (by index and text). */
async function tabWalk (page: Page, selector: string): Promise<{ total: number, presses: number, missed: string[] }> {
  const listExpr = `[...document.querySelectorAll(${JSON.stringify(selector)})].filter(el => !el.hidden && el.getClientRects().length > 0)`
  const total = await page.evaluate<number>(`${listExpr}.length`)
  await page.evaluate('document.activeElement && document.activeElement.blur()')
  const reached = new Set<number>()
  let presses = 0
  for (; presses < total + 10; presses++) {
    await page.keyboard.press('Tab')
    const i = await page.evaluate<number>(`${listExpr}.indexOf(document.activeElement)`)
    if (i >= 0) reached.add(i)
    if (reached.size === total) break
  }
  const labels = await page.evaluate<string[]>(`${listExpr}.map(el => el.tagName + ' ' + (el.textContent || el.getAttribute('aria-label') || el.id).trim().slice(0, 40))`)
  return { total, presses: presses + 1, missed: labels.filter((_, i) => !reached.has(i)) }
}
