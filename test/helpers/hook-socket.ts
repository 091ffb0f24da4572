/** A tiny JSON-lines client of the shim's hook socket (src/hooks/protocol.ts), for tests and the bench. */
import { connect, type Socket } from 'node:net'
import type { HookReply } from '../../src/hooks/protocol.js'

/** One connection; `ask` sends one request line and resolves with the next reply line. */
export class HookConnection {
  readonly #socket: Socket
  #buffer = ''
  readonly #waiting: Array<{ resolve: (r: HookReply) => void, reject: (e: Error) => void }> = []
  #closed = false

  private constructor (socket: Socket) {
    this.#socket = socket
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk
      for (;;) {
        const nl = this.#buffer.indexOf('\n')
        if (nl === -1) break
        const line = this.#buffer.slice(0, nl)
        this.#buffer = this.#buffer.slice(nl + 1)
        this.#waiting.shift()?.resolve(JSON.parse(line) as HookReply)
      }
    })
    const fail = (why: string): void => {
      this.#closed = true
      for (const w of this.#waiting.splice(0)) w.reject(new Error(why))
    }
    socket.on('close', () => fail('connection closed'))
    socket.on('error', err => fail(err.message))
  }

  static open (path: string): Promise<HookConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(path)
      socket.once('connect', () => resolve(new HookConnection(socket)))
      socket.once('error', reject)
    })
  }

  get closed (): boolean { return this.#closed }

  /** Sends a raw line (no newline needed) and waits for one reply. */
  sendRaw (line: string, timeoutMs = 5000): Promise<HookReply> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs} ms`)), timeoutMs)
      this.#waiting.push({ resolve: r => { clearTimeout(timer); resolve(r) }, reject: e => { clearTimeout(timer); reject(e) } })
      this.#socket.write(line.endsWith('\n') ? line : line + '\n')
    })
  }

  ask (request: Record<string, unknown>, timeoutMs = 5000): Promise<HookReply> {
    return this.sendRaw(JSON.stringify({ v: 1, ...request }), timeoutMs)
  }

  close (): void {
    this.#socket.destroy()
  }
}

/** Opens a connection, asks once, closes. */
export async function askHook (path: string, request: Record<string, unknown>, timeoutMs = 5000): Promise<HookReply> {
  const conn = await HookConnection.open(path)
  try {
    return await conn.ask(request, timeoutMs)
  } finally {
    conn.close()
  }
}
