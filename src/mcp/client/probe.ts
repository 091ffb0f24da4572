/**
 * Is an MPAC coordinator listening at a URL? A one-shot check, independent
 * of any `CoordinatorClient`.
 *
 * Contract:
 * - Owns: one TCP connect and, when something listens, one WebSocket with a
 *   single sideband SESSION_SUMMARY (no HELLO: the probe never joins the
 *   session). Both are closed before the promise settles.
 * - Promises: settles within about twice `timeoutMs`; every network outcome
 *   is an answer (`refused`, `foreign`), so it rejects only for a URL that
 *   does not parse.
 * - Never: proves who the coordinator is (the local secret's LOCAL_PROOF
 *   check is src/mcp/sidecar.ts), retries, or logs.
 */
import { connect as netConnect } from 'node:net'
import { WebSocket } from 'undici'
import type { Frame } from './types.js'

export type ProbeResult =
  | { readonly kind: 'ok', readonly summary: Frame }
  | { readonly kind: 'refused' }
  | { readonly kind: 'foreign', readonly detail: string }

/**
 * Is an MPAC coordinator listening at `url`? A TCP connect first tells
 * "nothing there" (refused) from "something else there" (foreign); then a
 * sideband SESSION_SUMMARY on a fresh connection, without HELLO, must be
 * answered by a SESSION_SUMMARY_RESPONSE.
 */
export async function probeCoordinator (url: string, options: { timeoutMs?: number, token?: string | undefined } = {}): Promise<ProbeResult> {
  const timeoutMs = options.timeoutMs ?? 2000
  const parsed = new URL(url)
  const port = Number(parsed.port !== '' ? parsed.port : parsed.protocol === 'wss:' ? 443 : 80)
  const host = parsed.hostname.replace(/^\[|\]$/g, '')
  const reachable = await new Promise<boolean>(resolve => {
    const socket = netConnect({ host, port })
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve(true) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
  if (!reachable) return { kind: 'refused' }

  const headers: Record<string, string> = {}
  if (options.token !== undefined) headers['authorization'] = `Bearer ${options.token}`
  return new Promise<ProbeResult>(resolve => {
    let settled = false
    const ws = new WebSocket(url, { headers })
    const finish = (result: ProbeResult): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      try { ws.close(1000) } catch { /* not open */ }
      resolve(result)
    }
    const timer = setTimeout(() => finish({ kind: 'foreign', detail: `no reply to SESSION_SUMMARY within ${timeoutMs} ms` }), timeoutMs)
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'SESSION_SUMMARY' })))
    ws.addEventListener('error', () => finish({ kind: 'foreign', detail: 'the port is open but does not speak the MPAC WebSocket protocol' }))
    ws.addEventListener('close', ev => finish({ kind: 'foreign', detail: `connection closed (${ev.code})` }))
    ws.addEventListener('message', ev => {
      try {
        const frame = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer).toString('utf8')) as Frame
        if (frame['type'] === 'SESSION_SUMMARY_RESPONSE' && typeof frame['session'] === 'object' && frame['session'] !== null) {
          finish({ kind: 'ok', summary: frame['session'] as Frame })
        } else {
          finish({ kind: 'foreign', detail: `unexpected first frame ${JSON.stringify(frame['type'] ?? frame['message_type'])}` })
        }
      } catch {
        finish({ kind: 'foreign', detail: 'unparsable reply' })
      }
    })
  })
}
