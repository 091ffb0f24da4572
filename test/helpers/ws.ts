import { randomUUID } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { WebSocket } from 'undici'

export type Frame = Record<string, unknown>
export type Predicate = (frame: Frame) => boolean

interface Waiter { readonly predicate: Predicate, readonly resolve: (f: Frame) => void }

/**
 * A test client over undici's WebSocket (the client the shim uses). Every
 * received text frame is parsed and queued; `next` takes the first queued
 * frame matching a predicate (waiting up to a deadline), leaving the others.
 */
export class TestClient {
  readonly ws: WebSocket
  readonly received: Frame[] = []
  readonly #queue: Frame[] = []
  #waiters: Waiter[] = []
  #closed: Promise<{ code: number, reason: string }>
  #isClosed = false

  private constructor (ws: WebSocket) {
    this.ws = ws
    this.#closed = new Promise(resolve => {
      ws.addEventListener('close', (ev) => {
        this.#isClosed = true
        resolve({ code: ev.code, reason: ev.reason })
      })
    })
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return
      const frame = JSON.parse(ev.data) as Frame
      this.received.push(frame)
      const i = this.#waiters.findIndex(w => w.predicate(frame))
      if (i >= 0) {
        const [w] = this.#waiters.splice(i, 1)
        w?.resolve(frame)
      } else {
        this.#queue.push(frame)
      }
    })
  }

  static connect (url: string, headers?: Record<string, string>): Promise<TestClient> {
    const ws = new WebSocket(url, headers === undefined ? undefined : { headers })
    const client = new TestClient(ws)
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(client), { once: true })
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true })
    })
  }

  get isClosed (): boolean { return this.#isClosed }

  send (frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  sendBinary (data: Uint8Array): void {
    this.ws.send(data)
  }

  /** The first frame (queued or future) matching `predicate`, or a rejection after `deadlineMs`. */
  next (predicate: Predicate = () => true, deadlineMs = 3000): Promise<Frame> {
    const i = this.#queue.findIndex(predicate)
    if (i >= 0) return Promise.resolve(this.#queue.splice(i, 1)[0] as Frame)
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (f) => { clearTimeout(timer); resolve(f) }
      }
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter(w => w !== waiter)
        reject(new Error(`no matching frame within ${deadlineMs} ms; queued: ${JSON.stringify(this.#queue.map(describe))}`))
      }, deadlineMs)
      this.#waiters.push(waiter)
    })
  }

  /** The frames queued now that match (not waiting). */
  drain (predicate: Predicate = () => true): Frame[] {
    const out: Frame[] = []
    for (let i = 0; i < this.#queue.length;) {
      if (predicate(this.#queue[i] as Frame)) out.push(...this.#queue.splice(i, 1))
      else i++
    }
    return out
  }

  /** Sends a request and waits for its terminal frame (same message_id, or refers_to it). */
  async request (frame: Frame, deadlineMs = 3000): Promise<Frame> {
    const id = frame.message_id
    const isHello = frame.message_type === 'HELLO'
    this.send(frame)
    // SESSION_INFO carries no reference to the HELLO; it is the HELLO's terminal frame on success.
    return this.next(f => f.message_id === id || (f.payload as Frame | undefined)?.refers_to === id ||
      (isHello && f.message_type === 'SESSION_INFO'), deadlineMs)
  }

  waitForClose (deadlineMs = 3000): Promise<{ code: number, reason: string }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`not closed within ${deadlineMs} ms`)), deadlineMs)
      void this.#closed.then((c) => { clearTimeout(timer); resolve(c) })
    })
  }

  close (): void {
    if (!this.#isClosed) this.ws.close()
  }
}

function describe (f: Frame): string {
  return String(f.message_type ?? f.type) + ((f.payload as Frame | undefined)?.error_code !== undefined ? `:${String((f.payload as Frame).error_code)}` : '')
}

/** Status of a WebSocket upgrade request (101 when upgraded), for 401/403 before the upgrade. */
export function upgradeStatus (url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url.replace(/^ws/, 'http'), {
      agent: false,
      headers: {
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': Buffer.from(randomUUID().slice(0, 16)).toString('base64'),
        ...headers
      }
    })
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve(res.statusCode ?? 0) })
    req.on('response', (res) => { res.resume(); resolve(res.statusCode ?? 0) })
    req.on('error', reject)
    req.end()
  })
}

export const isType = (type: string): Predicate => f => f.message_type === type || f.type === type
export const isError = (code?: string): Predicate => f =>
  f.message_type === 'PROTOCOL_ERROR' && (code === undefined || (f.payload as Frame).error_code === code)

let seq = 0

/** An MPAC envelope from `principalId`. */
export function envelope (type: string, principalId: string, payload: Frame, sessionId = 'test'): Frame {
  seq++
  return {
    protocol: 'MPAC',
    version: '0.1.13',
    message_type: type,
    message_id: `m-${process.pid}-${seq}-${randomUUID().slice(0, 8)}`,
    session_id: sessionId,
    sender: { principal_id: principalId, principal_type: 'agent', sender_instance_id: `${principalId}:inst` },
    ts: new Date().toISOString(),
    payload
  }
}

export function hello (principalId: string, opts: { roles?: string[], token?: string, sessionId?: string } = {}): Frame {
  const payload: Frame = {
    display_name: principalId,
    roles: opts.roles ?? ['contributor'],
    capabilities: ['intent.broadcast', 'intent.withdraw', 'intent.claim', 'op.commit', 'conflict.ack', 'conflict.escalate', 'conflict.resolve']
  }
  if (opts.token !== undefined) payload.credential = { type: 'bearer_token', value: opts.token }
  return envelope('HELLO', principalId, payload, opts.sessionId)
}

export function announce (principalId: string, intentId: string, files: string[], sessionId?: string): Frame {
  return envelope('INTENT_ANNOUNCE', principalId, {
    intent_id: intentId,
    objective: `edit ${files.join(', ')}`,
    scope: { kind: 'file_set', resources: files }
  }, sessionId)
}

/** Connects and completes a HELLO; resolves with the client and its SESSION_INFO. */
export async function joined (url: string, principalId: string, opts: { roles?: string[], token?: string, headers?: Record<string, string> } = {}): Promise<{ client: TestClient, info: Frame }> {
  const client = await TestClient.connect(url, opts.headers)
  const sessionId = /\/session\/([^/?]+)/.exec(url)?.[1]
  const info = await client.request(hello(principalId, { ...opts, ...(sessionId === undefined ? {} : { sessionId }) }))
  if (info.message_type !== 'SESSION_INFO') throw new Error(`HELLO of ${principalId} not admitted: ${JSON.stringify(info.payload)}`)
  return { client, info }
}
