/**
 * The browser helper's detectors can fail: a CSP violation, a page error and
 * a console error are each recorded, every request URL is seen, and axe-core
 * finds a real WCAG violation. The dashboard tests' "no problems, 0
 * violations" assertions rest on this.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { browserSkip, openBrowser, runAxe } from '../helpers/browser.js'

const CSP = "default-src 'self'; script-src 'self'; style-src 'self'"

const PAGES: Record<string, string> = {
  '/clean': '<!doctype html><html lang="en"><head><title>clean</title></head><body><main><h1>Clean</h1><p>text</p></main></body></html>',
  '/inline': '<!doctype html><html lang="en"><head><title>inline</title></head><body><main><h1>Inline</h1><script>document.title = "ran"</script></main></body></html>',
  '/throws': '<!doctype html><html lang="en"><head><title>throws</title><script src="/throws.js"></script></head><body><main><h1>Throws</h1></main></body></html>',
  '/no-alt': '<!doctype html><html lang="en"><head><title>no alt</title></head><body><main><h1>No alt</h1><img src="/pixel.png"></main></body></html>'
}

async function serve (): Promise<{ server: Server, base: string }> {
  const server = createServer((req, res) => {
    const path = req.url ?? '/'
    if (path === '/throws.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' })
      res.end('console.error("logged by the page"); throw new Error("thrown by the page")')
      return
    }
    const html = PAGES[path]
    if (html === undefined) { res.writeHead(404); res.end(); return }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': CSP })
    res.end(html)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

const skip = browserSkip()

t.test('the browser helper records CSP violations, page errors, console errors and requests', { skip }, async t => {
  const { server, base } = await serve()
  t.teardown(() => new Promise(resolve => server.close(resolve)))
  const b = await openBrowser(t)

  await b.page.goto(`${base}/clean`)
  t.same(b.problems, [], 'a clean page records nothing')

  await b.page.goto(`${base}/inline`)
  t.not(await b.page.title(), 'ran', 'the inline script was blocked')
  t.ok(b.problems.some(p => p.kind === 'csp' && p.text.startsWith('script-src')), `the CSP violation is recorded: ${JSON.stringify(b.problems)}`)

  b.problems.length = 0
  await b.page.goto(`${base}/throws`)
  t.ok(b.problems.some(p => p.kind === 'pageerror' && p.text.includes('thrown by the page')), 'the uncaught error is recorded')
  t.ok(b.problems.some(p => p.kind === 'console' && p.text.includes('logged by the page')), 'the console error is recorded')
  t.ok(b.requests.includes(`${base}/throws.js`), 'the script request is seen')
})

t.test('runAxe finds a missing alt text and passes a clean page', { skip }, async t => {
  const { server, base } = await serve()
  t.teardown(() => new Promise(resolve => server.close(resolve)))
  const b = await openBrowser(t)
  await b.page.goto(`${base}/no-alt`)
  const bad = await runAxe(b.page)
  t.ok(bad.some(v => v.id === 'image-alt'), `image-alt reported: ${JSON.stringify(bad.map(v => v.id))}`)
  await b.page.goto(`${base}/clean`)
  t.same(await runAxe(b.page), [], 'no violations on a clean page')
})
