/**
 * A browser posts the dashboard's own forms with `Origin: null` (the pages
 * send `Referrer-Policy: no-referrer`, found by the browser test): such a
 * post counts as same-origin only when the browser also says
 * `Sec-Fetch-Site: same-origin`. A really opaque origin (a sandboxed frame,
 * a data: page) is cross-site and still refused, so sign-in stays CSRF-safe.
 */
import { request } from 'node:http'
import t from 'tap'
import { startServer } from '../helpers/server.js'

interface Reply { readonly status: number, readonly cookie: string | undefined }

function postLogin (port: number, token: string, headers: Record<string, string>): Promise<Reply> {
  const body = new URLSearchParams({ token }).toString()
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/dashboard/login',
      agent: false,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body), ...headers }
    }, res => {
      res.resume()
      resolve({ status: res.statusCode ?? 0, cookie: res.headers['set-cookie']?.[0] })
    })
    req.on('error', reject)
    req.end(body)
  })
}

t.test('Origin: null signs in only with Sec-Fetch-Site: same-origin', async t => {
  const srv = await startServer(t, { env: { MPAC_TOKEN_TABLE: JSON.stringify({ 'viewer-tok': { allowed_sessions: ['p'], roles: ['observer'] } }) } })
  const own = await postLogin(srv.port, 'viewer-tok', { origin: 'null', 'sec-fetch-site': 'same-origin' })
  t.equal(own.status, 303, 'the browser\'s own form post under no-referrer')
  t.match(own.cookie, /^mpac_dash=[A-Za-z0-9_-]{43}; /, 'signed in')

  for (const site of ['cross-site', 'same-site', 'none']) {
    const r = await postLogin(srv.port, 'viewer-tok', { origin: 'null', 'sec-fetch-site': site })
    t.equal(r.status, 403, `Origin: null with Sec-Fetch-Site: ${site} is refused`)
    t.equal(r.cookie, undefined)
  }
  const bare = await postLogin(srv.port, 'viewer-tok', { origin: 'null' })
  t.equal(bare.status, 403, 'Origin: null without Sec-Fetch-Site is refused')
  const other = await postLogin(srv.port, 'viewer-tok', { origin: 'http://evil.example', 'sec-fetch-site': 'same-origin' })
  t.equal(other.status, 403, 'a real foreign Origin is refused whatever Sec-Fetch-Site says')
})
