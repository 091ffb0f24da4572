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

/** A WebSocket client over raw TCP (`node:net`): completes the handshake by hand, then reads only when told. */
export class RawClient {
  readonly socket: import('node:net').Socket
  #buf = Buffer.alloc(0)

  private constructor (socket: import('node:net').Socket) {
    this.socket = socket
  }

  static async connect (port: number, path: string): Promise<RawClient> {
    const { connect } = await import('node:net')
    const socket = connect({ host: '127.0.0.1', port })
    await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${Buffer.from(randomUUID().slice(0, 16)).toString('base64')}\r\n\r\n`)
    const client = new RawClient(socket)
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer): void => {
        client.#buf = Buffer.concat([client.#buf, chunk])
        const end = client.#buf.indexOf('\r\n\r\n')
        if (end === -1) return
        socket.off('data', onData)
        const head = client.#buf.subarray(0, end).toString('latin1')
        client.#buf = client.#buf.subarray(end + 4)
        socket.pause()
        if (head.startsWith('HTTP/1.1 101')) resolve()
        else reject(new Error(`handshake failed: ${head.split('\r\n')[0] ?? ''}`))
      }
      socket.on('data', onData)
    })
    return client
  }

  /** Sends a masked text frame. */
  sendText (text: string): void {
    this.socket.write(RawClient.frame(text))
  }

  /** Sends several masked text frames in one TCP write (the server parses them in one turn). */
  sendBurst (texts: readonly string[]): void {
    this.socket.write(Buffer.concat(texts.map(text => RawClient.frame(text))))
  }

  static frame (text: string): Buffer {
    const payload = Buffer.from(text, 'utf8')
    const mask = Buffer.from([1, 2, 3, 4])
    const len = payload.length
    const header = len < 126
      ? Buffer.from([0x81, 0x80 | len])
      : len < 65536
        ? Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff])
        : Buffer.concat([Buffer.from([0x81, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(len)); return b })()])
    const masked = Buffer.alloc(len)
    for (let i = 0; i < len; i++) masked[i] = (payload[i] as number) ^ (mask[i % 4] as number)
    return Buffer.concat([header, mask, masked])
  }

  /**
   * Resumes reading and resolves with the close code of the server's close
   * frame (or 1006 if the connection ends without one), within the deadline.
   */
  readUntilClose (deadlineMs = 5000): Promise<number> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no close within ${deadlineMs} ms`)), deadlineMs)
      const done = (code: number): void => { clearTimeout(timer); this.socket.destroy(); resolve(code) }
      const parse = (): void => {
        for (;;) {
          const b = this.#buf
          if (b.length < 2) return
          const opcode = (b[0] as number) & 0x0f
          let len = (b[1] as number) & 0x7f
          let off = 2
          if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4 } else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10 }
          if (b.length < off + len) return
          if (opcode === 0x8) { done(len >= 2 ? b.readUInt16BE(off) : 1005); return }
          this.#buf = b.subarray(off + len)
        }
      }
      this.socket.on('data', (chunk: Buffer) => { this.#buf = Buffer.concat([this.#buf, chunk]); parse() })
      this.socket.on('close', () => done(1006))
      this.socket.on('error', () => {})
      parse()
      this.socket.resume()
    })
  }
}
