/**
 * A real browser for the dashboard tests: Debian's `chromium` (or
 * `MPAC_CHROMIUM`) driven by playwright-core, which downloads no browser.
 *
 * `openBrowser(t)` launches it headless with `--no-sandbox` (the tests run as
 * root), opens one context and page, and records what a test asserts on:
 * console errors, uncaught page errors, Content-Security-Policy violations
 * (reported by the page's `securitypolicyviolation` event, so a blocked inline
 * script or style is caught even when the browser logs nothing) and the URL of
 * every request. The browser is closed at teardown, whatever happened.
 *
 * `browserSkip()` decides whether a browser test may run: without a chromium
 * it is a skip with a clear message on a developer's machine, and a failure
 * in CI (`CI` set), where `.ci/run` installs it.
 *
 * `runAxe(page)` injects axe-core (through the DevTools protocol, so the
 * page's strict CSP does not block it) and runs the WCAG 2 A and AA rules.
 */
import { accessSync, constants, mkdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'

interface Teardown { teardown (fn: () => unknown): void }

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** The chromium executable: `MPAC_CHROMIUM`, else Debian's `/usr/bin/chromium`. */
export function chromiumPath (): string {
  const configured = process.env['MPAC_CHROMIUM']?.trim()
  return configured !== undefined && configured !== '' ? configured : '/usr/bin/chromium'
}

function executable (path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * `false` when the browser tests can run; a skip message when there is no
 * chromium outside CI. Throws in CI without chromium: the tests must run there.
 */
export function browserSkip (): string | false {
  const path = chromiumPath()
  if (executable(path)) return false
  const why = `no chromium at ${path} (apt-get install -y --no-install-recommends chromium, or set MPAC_CHROMIUM)`
  if ((process.env['CI'] ?? '') !== '') throw new Error(`browser tests cannot run in CI: ${why}`)
  return `skipped: ${why}`
}

export interface Problem {
  readonly kind: 'console' | 'pageerror' | 'csp'
  readonly text: string
  readonly url: string
}

export interface BrowserSession {
  readonly browser: Browser
  readonly context: BrowserContext
  readonly page: Page
  /** Console errors, page errors and CSP violations, in order. */
  readonly problems: Problem[]
  /** Every request URL any page of the context made. */
  readonly requests: string[]
  /** A new page in the same context (same cookies), with the same recording. */
  newPage (): Promise<Page>
  /**
   * Saves a full-page screenshot as `<name>.png` under the test output
   * directory (down to the bottom of `until` when given); returns its path.
   */
  screenshot (page: Page, name: string, until?: string): Promise<string>
  close (): Promise<void>
}

/** Where screenshots go: `.tap/screenshots` in the package (tap's own output folder, ignored by git). */
export const SCREENSHOT_DIR = join(ROOT, '.tap', 'screenshots')

const CSP_BINDING = '__mpacTestCspViolation'

export async function openBrowser (t: Teardown, options: { viewport?: { width: number, height: number } } = {}): Promise<BrowserSession> {
  const browser = await chromium.launch({ executablePath: chromiumPath(), args: ['--no-sandbox'] })
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= browser.close().catch(() => {})
    return closed
  }
  t.teardown(close)
  const context = await browser.newContext({ viewport: options.viewport ?? { width: 1280, height: 900 } })
  const problems: Problem[] = []
  const requests: string[] = []
  await context.exposeBinding(CSP_BINDING, ({ page }, directive: unknown, blocked: unknown) => {
    problems.push({ kind: 'csp', text: `${String(directive)} blocked ${String(blocked)}`, url: page.url() })
  })
  // Runs before any page script, injected by the browser (not subject to the page's CSP).
  await context.addInitScript({
    content: `document.addEventListener('securitypolicyviolation', ev => { globalThis.${CSP_BINDING}(ev.violatedDirective, ev.blockedURI) })`
  })
  context.on('request', req => { requests.push(req.url()) })
  const watch = (page: Page): Page => {
    page.on('console', msg => { if (msg.type() === 'error') problems.push({ kind: 'console', text: msg.text(), url: page.url() }) })
    page.on('pageerror', err => { problems.push({ kind: 'pageerror', text: err.message, url: page.url() }) })
    return page
  }
  const page = watch(await context.newPage())
  return {
    browser,
    context,
    page,
    problems,
    requests,
    newPage: async () => watch(await context.newPage()),
    async screenshot (p, name, until) {
      mkdirSync(SCREENSHOT_DIR, { recursive: true })
      const path = join(SCREENSHOT_DIR, `${name}.png`)
      const box = until === undefined ? null : await p.locator(until).boundingBox()
      const width = p.viewportSize()?.width ?? 1280
      await p.screenshot(box === null ? { path, fullPage: true } : { path, fullPage: true, clip: { x: 0, y: 0, width, height: Math.ceil(box.y + box.height + 16) } })
      return path
    },
    close
  }
}

export interface AxeViolation {
  readonly id: string
  readonly impact: string | null
  readonly help: string
  readonly targets: string[]
}

const require = createRequire(import.meta.url)
let axeSource: string | undefined

/** Runs axe-core's `wcag2a` and `wcag2aa` rules on the page; resolves with the violations. */
export async function runAxe (page: Page): Promise<AxeViolation[]> {
  axeSource ??= (require('axe-core') as { source: string }).source
  // page.evaluate goes through the DevTools protocol: the page's CSP does not apply.
  await page.evaluate(axeSource)
  const run = "axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] } })" +
    '.then(r => r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map(n => n.target.map(String).join(" ")) })))'
  return await page.evaluate<AxeViolation[]>(run)
}
