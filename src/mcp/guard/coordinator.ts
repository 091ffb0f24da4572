/**
 * The guard's way to the coordinator when no shim of the committer's agent
 * answers (agent-hooks-and-dashboard.md §7.8 step 4): one connection, one
 * sideband SESSION_SUMMARY, closed again.
 *
 * Contract:
 * - Remote mode (`MPAC_COORDINATOR_URL`): the summary is asked before any
 *   HELLO, with `MPAC_COORDINATOR_TOKEN` as the bearer header (enough for a
 *   sideband query in the authenticated profile).
 * - Local mode: the coordinator at the derived (or `MPAC_SIDECAR_PORT`)
 *   port must first prove it knows the user's local secret (LOCAL_PROOF,
 *   src/local-secret.ts) for the derived session; only then is the secret
 *   sent, as the credential of a HELLO of the guard's own observer
 *   principal (`service:mpac-guard-<user>`, never an agent's id: that would
 *   replace the agent's connection), followed by the summary and a GOODBYE.
 *   No secret file, nothing listening, or another workspace's coordinator:
 *   `absent` (no coordinator knows this repository). The secret is only
 *   read, never created.
 * - Settles within `deadlineMs` (plus the undici import), never throws:
 *   every failure is `unreachable` with a detail.
 */
import { randomUUID } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { hookStateDir } from '../../hooks/protocol.js'
import { LOCAL_SECRET_FILE, localProof, newNonce, readLocalSecret, sameHex } from '../../local-secret.js'
import { derivePort, deriveSessionId } from '../../protocol/workspace-id.js'

type Env = Readonly<Record<string, string | undefined>>
type Frame = Record<string, unknown>

const PROTOCOL_VERSION = '0.1.13'

export type Target =
  | { readonly kind: 'local', readonly url: string, readonly host: string, readonly port: number, readonly sessionId: string, readonly secretFile: string, readonly user: string }
  | { readonly kind: 'remote', readonly url: string, readonly token: string | undefined }

export type SummaryResult =
  | { readonly kind: 'ok', readonly summary: Frame, readonly where: string }
  | { readonly kind: 'absent', readonly where: string }
  | { readonly kind: 'unreachable', readonly detail: string, readonly where: string }

function read (env: Env, name: string): string | undefined {
  const v = env[name]?.trim()
  return v === undefined || v === '' ? undefined : v
}

function userName (env: Env): string {
  const fromEnv = read(env, 'USER') ?? read(env, 'USERNAME')
  if (fromEnv !== undefined) return fromEnv
  try {
    return userInfo().username
  } catch {
    return 'user'
  }
}

/** Where the coordinator of `workspaceDir` is, by the shim's own rules (src/mcp/config.ts). */
export function coordinatorTarget (env: Env, workspaceDir: string): Target {
  const url = read(env, 'MPAC_COORDINATOR_URL')
  if (url !== undefined) return { kind: 'remote', url, token: read(env, 'MPAC_COORDINATOR_TOKEN') }
  const host = read(env, 'MPAC_SIDECAR_HOST') ?? '127.0.0.1'
  const portText = read(env, 'MPAC_SIDECAR_PORT')
  const port = portText !== undefined && /^\d+$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65_535 ? Number(portText) : derivePort(workspaceDir)
  const sessionId = deriveSessionId(workspaceDir)
  const urlHost = host.includes(':') ? `[${host}]` : host
  return {
    kind: 'local',
    url: `ws://${urlHost}:${port}/session/${encodeURIComponent(sessionId)}`,
    host,
    port,
    sessionId,
    secretFile: join(hookStateDir(env), 'sidecars', LOCAL_SECRET_FILE),
    user: userName(env)
  }
}

function listening (host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = netConnect({ host, port })
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('connect', () => { clearTimeout(timer); socket.destroy(); resolve(true) })
    socket.once('error', () => { clearTimeout(timer); resolve(false) })
  })
}

/** A WebSocket whose frames are read in order with one overall deadline. */
interface Exchange {
  send (frame: Frame): void
  next (what: string, match: (f: Frame) => boolean): Promise<Frame>
  close (): void
}

async function openExchange (url: string, headers: Record<string, string>, deadline: number): Promise<Exchange> {
  const { WebSocket } = await import('undici')
  const ws = new WebSocket(url, { headers })
  const queue: Frame[] = []
  let wake: (() => void) | undefined
  let closed: string | undefined
  ws.addEventListener('message', ev => {
    try {
      const f: unknown = JSON.parse(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer).toString('utf8'))
      if (f !== null && typeof f === 'object' && !Array.isArray(f)) queue.push(f as Frame)
    } catch { /* not JSON: ignored */ }
    wake?.()
  })
  ws.addEventListener('close', ev => { closed = `connection closed (${ev.code}${ev.reason !== '' ? ` ${ev.reason}` : ''})`; wake?.() })
  ws.addEventListener('error', () => { closed ??= 'connection failed'; wake?.() })
  const wait = (): Promise<void> => new Promise(resolve => {
    const timer = setTimeout(() => { wake = undefined; resolve() }, Math.max(0, deadline - Date.now()))
    wake = () => { clearTimeout(timer); wake = undefined; resolve() }
  })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no WebSocket handshake in time')), Math.max(0, deadline - Date.now()))
    ws.addEventListener('open', () => { clearTimeout(timer); resolve() })
    ws.addEventListener('error', () => { clearTimeout(timer); reject(new Error('the WebSocket handshake failed')) })
    ws.addEventListener('close', ev => { clearTimeout(timer); reject(new Error(`connection closed (${ev.code})`)) })
  })
  return {
    send: frame => ws.send(JSON.stringify(frame)),
    async next (what, match) {
      for (;;) {
        const i = queue.findIndex(match)
        if (i >= 0) return queue.splice(i, 1)[0] as Frame
        if (closed !== undefined) throw new Error(`${closed} before ${what}`)
        if (Date.now() >= deadline) throw new Error(`no ${what} in time`)
        await wait()
      }
    },
    close: () => { try { ws.close(1000) } catch { /* not open */ } }
  }
}

function envelope (sessionId: string, principalId: string, instanceId: string, type: string, payload: Frame, lamport: number): Frame {
  return {
    protocol: 'MPAC',
    version: PROTOCOL_VERSION,
    message_type: type,
    message_id: randomUUID(),
    session_id: sessionId,
    sender: { principal_id: principalId, principal_type: 'service', sender_instance_id: instanceId },
    ts: new Date().toISOString(),
    payload,
    watermark: { kind: 'lamport_clock', value: lamport }
  }
}

const isSummary = (f: Frame): boolean => f['type'] === 'SESSION_SUMMARY_RESPONSE' && f['session'] !== null && typeof f['session'] === 'object'

/** One SESSION_SUMMARY from the coordinator of `target` (see the module comment). */
export async function fetchSummary (target: Target, deadlineMs: number): Promise<SummaryResult> {
  const deadline = Date.now() + deadlineMs
  const where = target.kind === 'remote' ? target.url : `${target.host}:${target.port} (local coordinator of session ${target.sessionId})`
  if (target.kind === 'remote') {
    let ex: Exchange | undefined
    try {
      const u = new URL(target.url)
      const port = u.port !== '' ? Number(u.port) : u.protocol === 'wss:' ? 443 : 80
      if (!(await listening(u.hostname.replace(/^\[|\]$/g, ''), port, Math.max(0, deadline - Date.now())))) {
        return { kind: 'unreachable', detail: 'nothing answers there (connection refused or timed out)', where }
      }
      ex = await openExchange(target.url, target.token !== undefined ? { authorization: `Bearer ${target.token}` } : {}, deadline)
      ex.send({ type: 'SESSION_SUMMARY' })
      const reply = await ex.next('SESSION_SUMMARY_RESPONSE', f => typeof f['type'] === 'string' || f['message_type'] === 'PROTOCOL_ERROR')
      if (!isSummary(reply)) return { kind: 'unreachable', detail: `unexpected reply ${JSON.stringify(reply['type'] ?? reply['message_type'])}`, where }
      return { kind: 'ok', summary: reply['session'] as Frame, where }
    } catch (err) {
      return { kind: 'unreachable', detail: (err as Error).message, where }
    } finally {
      ex?.close()
    }
  }

  let secret: string
  try {
    secret = readLocalSecret(target.secretFile)
  } catch {
    return { kind: 'absent', where } // mpac-mcp never ran a local coordinator for this user
  }
  if (!(await listening(target.host, target.port, Math.max(0, deadline - Date.now())))) return { kind: 'absent', where }
  let ex: Exchange | undefined
  try {
    ex = await openExchange(target.url, {}, deadline)
    const nonce = newNonce()
    ex.send({ type: 'LOCAL_PROOF', nonce })
    const proof = await ex.next('LOCAL_PROOF_RESPONSE', f => typeof f['type'] === 'string' || typeof f['message_type'] === 'string')
    const hostPort = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`
    if (proof['type'] !== 'LOCAL_PROOF_RESPONSE') return { kind: 'absent', where } // not an mpac-mcp local coordinator
    if (typeof proof['proof'] !== 'string' || !sameHex(proof['proof'], localProof(secret, nonce, target.sessionId, hostPort))) {
      if (typeof proof['session_id'] === 'string' && proof['session_id'] !== target.sessionId) return { kind: 'absent', where } // another workspace's
      return { kind: 'unreachable', detail: 'the coordinator on that port cannot prove it knows your local secret', where }
    }
    const principalId = `service:mpac-guard-${target.user}`
    const instanceId = `${principalId}:${randomUUID()}`
    const hello = envelope(target.sessionId, principalId, instanceId, 'HELLO', {
      display_name: 'mpac guard (git hook)',
      roles: ['observer'],
      capabilities: [],
      credential: { type: 'bearer_token', value: secret }
    }, 1)
    ex.send(hello)
    const admitted = await ex.next('SESSION_INFO', f => f['message_type'] === 'SESSION_INFO' || (f['message_type'] === 'PROTOCOL_ERROR' && (f['payload'] as Frame | undefined)?.['refers_to'] === hello['message_id']))
    if (admitted['message_type'] !== 'SESSION_INFO') {
      const p = (admitted['payload'] ?? {}) as Frame
      return { kind: 'unreachable', detail: `the coordinator refused the guard: ${String(p['error_code'])} ${typeof p['description'] === 'string' ? p['description'] : ''}`.trim(), where }
    }
    ex.send({ type: 'SESSION_SUMMARY' })
    const reply = await ex.next('SESSION_SUMMARY_RESPONSE', isSummary)
    const bye = envelope(target.sessionId, principalId, instanceId, 'GOODBYE', { reason: 'guard check done', intent_disposition: 'withdraw' }, 2)
    ex.send(bye)
    // Its relay is the terminal frame: once it is back, the coordinator recorded that the guard left.
    await ex.next('GOODBYE relay', f => f['message_id'] === bye['message_id'] || (f['payload'] as Frame | undefined)?.['refers_to'] === bye['message_id']).catch(() => {})
    return { kind: 'ok', summary: reply['session'] as Frame, where }
  } catch (err) {
    return { kind: 'unreachable', detail: (err as Error).message, where }
  } finally {
    ex?.close()
  }
}
