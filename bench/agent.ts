/**
 * What the server benchmarks (load, tenants) share: a raw MPAC agent over
 * one WebSocket (HELLO, request → terminal frame, fire-and-forget sends,
 * counts of its replies and errors), command-line arguments, percentiles.
 */
import { WebSocket } from 'undici'

export type Frame = Record<string, unknown>

/** `--name value` from the command line, else `fallback`. */
export function arg (name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] as string : fallback
}

/** The `p` quantile (0–1) of an ascending array; NaN when empty. */
export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] as number
}

let seq = 0

export class Agent {
  readonly #ws: WebSocket
  readonly #pending = new Map<string, (f: Frame) => void>()
  #helloDone: ((f: Frame) => void) | undefined
  /** Frames received whose message_id or refers_to is one of ours (flood accounting). */
  replies = 0
  errors = 0

  private constructor (ws: WebSocket, readonly sessionId: string, readonly pid: string) {
    this.#ws = ws
    ws.addEventListener('message', (ev) => {
      const f = JSON.parse(ev.data as string) as Frame
      if (f.message_type === 'SESSION_INFO' && this.#helloDone !== undefined) {
        this.#helloDone(f)
        this.#helloDone = undefined
        return
      }
      const mine = typeof f.message_id === 'string' && f.message_id.startsWith(`${this.pid}-`)
      const refers = (f.payload as Frame | undefined)?.refers_to
      if (mine || (typeof refers === 'string' && refers.startsWith(`${this.pid}-`))) {
        this.replies++
        if (f.message_type === 'PROTOCOL_ERROR') this.errors++
      }
      const id = mine ? f.message_id as string : typeof refers === 'string' ? refers : undefined
      const done = id === undefined ? undefined : this.#pending.get(id)
      if (done !== undefined) {
        this.#pending.delete(id as string)
        done(f)
      }
    })
  }

  /** Connects to `sessionId` and completes a HELLO (with `token` as its credential when given). */
  static async join (port: number, sessionId: string, pid: string, token?: string): Promise<Agent> {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/session/${sessionId}`)
    await new Promise((resolve, reject) => { ws.addEventListener('open', resolve, { once: true }); ws.addEventListener('error', reject, { once: true }) })
    const agent = new Agent(ws, sessionId, pid)
    const info = await new Promise<Frame>((resolve) => {
      agent.#helloDone = resolve
      ws.send(JSON.stringify(agent.envelope('HELLO', {
        display_name: pid,
        roles: ['contributor'],
        capabilities: ['op.commit'],
        ...(token === undefined ? {} : { credential: { type: 'bearer_token', value: token } })
      })))
    })
    if (info.message_type !== 'SESSION_INFO') throw new Error(`HELLO refused: ${JSON.stringify(info.payload)}`)
    return agent
  }

  envelope (type: string, payload: Frame): Frame {
    return {
      protocol: 'MPAC',
      version: '0.1.13',
      message_type: type,
      message_id: `${this.pid}-${++seq}`,
      session_id: this.sessionId,
      sender: { principal_id: this.pid, principal_type: 'agent', sender_instance_id: `${this.pid}:1` },
      ts: new Date().toISOString(),
      payload
    }
  }

  send (type: string, payload: Frame): void {
    this.#ws.send(JSON.stringify(this.envelope(type, payload)))
  }

  /** Sends and resolves with the terminal frame, or rejects after `timeoutMs`. */
  request (type: string, payload: Frame, timeoutMs = 10_000): Promise<Frame> {
    const env = this.envelope(type, payload)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.#pending.delete(env.message_id as string); reject(new Error('timeout')) }, timeoutMs)
      this.#pending.set(env.message_id as string, (f) => { clearTimeout(timer); resolve(f) })
      this.#ws.send(JSON.stringify(env))
    })
  }

  close (): void { this.#ws.close() }
}
