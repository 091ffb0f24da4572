import { request as httpRequest, type IncomingMessage } from 'node:http'

export interface SseMessage { readonly event: string, readonly id: string | undefined, readonly data: string, readonly comment?: string }

/**
 * An SSE client over node:http: parses the stream into messages (comments
 * too, as event `comment`) and lets a test wait for the first one matching
 * a predicate, with a deadline.
 */
export class SseClient {
  readonly messages: SseMessage[] = []
  readonly res: IncomingMessage
  #buf = ''
  #waiters: Array<{ pred: (m: SseMessage) => boolean, resolve: (m: SseMessage) => void }> = []
  #ended: Promise<void>
  ended = false

  private constructor (res: IncomingMessage) {
    this.res = res
    res.setEncoding('utf8')
    res.on('data', (chunk: string) => this.#feed(chunk))
    this.#ended = new Promise(resolve => {
      res.on('end', () => { this.ended = true; resolve() })
      res.on('close', () => { this.ended = true; resolve() })
      res.on('error', () => { this.ended = true; resolve() })
    })
  }

  static open (url: string, headers: Record<string, string> = {}): Promise<SseClient | { status: number, body: string, headers: IncomingMessage['headers'] }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest(url, { agent: false, headers: { accept: 'text/event-stream', ...headers } }, res => {
        if (res.statusCode !== 200) {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => { body += c })
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }))
          return
        }
        resolve(new SseClient(res))
      })
      req.on('error', reject)
      req.end()
    })
  }

  #feed (chunk: string): void {
    // Scan only what is new (a large message arrives in many chunks).
    const from = Math.max(0, this.#buf.length - 1)
    this.#buf += chunk
    for (let end = this.#buf.indexOf('\n\n', from); end >= 0; end = this.#buf.indexOf('\n\n')) {
      const block = this.#buf.slice(0, end)
      this.#buf = this.#buf.slice(end + 2)
      let event = 'message'
      let id: string | undefined
      const data: string[] = []
      let comment: string | undefined
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comment = line.slice(1).trim()
        else if (line.startsWith('event: ')) event = line.slice(7)
        else if (line.startsWith('id: ')) id = line.slice(4)
        else if (line.startsWith('data: ')) data.push(line.slice(6))
        else if (line.startsWith('retry: ')) event = 'retry'
      }
      const m: SseMessage = comment !== undefined && data.length === 0 && event === 'message'
        ? { event: 'comment', id, data: '', comment }
        : { event, id, data: data.join('\n') }
      this.messages.push(m)
      const i = this.#waiters.findIndex(w => w.pred(m))
      if (i >= 0) this.#waiters.splice(i, 1)[0]?.resolve(m)
    }
  }

  /** The first message (already received or future) matching `pred`, after index `from`. */
  next (pred: (m: SseMessage) => boolean, deadlineMs = 3000, from = 0): Promise<SseMessage> {
    const found = this.messages.slice(from).find(pred)
    if (found !== undefined) return Promise.resolve(found)
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: (m: SseMessage) => { clearTimeout(timer); resolve(m) } }
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter(x => x !== w)
        reject(new Error(`no matching SSE message within ${deadlineMs} ms; got ${JSON.stringify(this.messages.map(m => m.event))}`))
      }, deadlineMs)
      this.#waiters.push(w)
    })
  }

  waitEnd (deadlineMs = 3000): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`stream not ended within ${deadlineMs} ms`)), deadlineMs)
      void this.#ended.then(() => { clearTimeout(timer); resolve() })
    })
  }

  close (): void {
    this.res.destroy()
  }
}
