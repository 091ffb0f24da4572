/**
 * The dashboard timeline (agent-hooks-and-dashboard.md §9.2): the frames a
 * session broadcasts, turned into short events, kept in a per-session ring
 * of the last RING_SIZE with increasing sequence numbers. A ring has a
 * random id, so an SSE `Last-Event-ID` of another ring (another process, a
 * session unloaded and reloaded) never matches one of this ring's events.
 * Summaries hold participant text verbatim: whoever shows them escapes them.
 */
import { randomBytes } from 'node:crypto'
import { formatTs } from '../../protocol/time.js'
import type { RuntimeNotice } from '../session-runtime.js'

export const RING_SIZE = 1000

export interface DashEvent {
  readonly seq: number
  readonly at: string
  readonly type: string
  readonly principal_id: string | null
  readonly summary: string
  readonly refs: { readonly intent_id?: string, readonly conflict_id?: string, readonly files?: readonly string[] }
}

type Frame = Readonly<Record<string, unknown>>

const str = (v: unknown): string | undefined => typeof v === 'string' ? v : undefined
const MAX_SUMMARY = 300

function cut (text: string): string {
  return text.length > MAX_SUMMARY ? `${text.slice(0, MAX_SUMMARY - 1)}…` : text
}

function scopeFiles (scope: unknown): string[] | undefined {
  if (scope === null || typeof scope !== 'object') return undefined
  const s = scope as Record<string, unknown>
  const list = Array.isArray(s.resources) ? s.resources : Array.isArray(s.entities) ? s.entities : Array.isArray(s.task_ids) ? s.task_ids : typeof s.pattern === 'string' ? [s.pattern] : undefined
  return list?.filter((x): x is string => typeof x === 'string').slice(0, 20)
}

function fileList (files: readonly string[] | undefined): string {
  if (files === undefined || files.length === 0) return ''
  return files.length > 3 ? ` on ${files.slice(0, 3).join(', ')} and ${files.length - 3} more` : ` on ${files.join(', ')}`
}

/** The event an MPAC frame stands for, without `seq` (undefined: not shown, e.g. status heartbeats). */
export function eventOf (frame: Frame): Omit<DashEvent, 'seq'> | undefined {
  const type = str(frame.message_type)
  if (type === undefined) return undefined // sideband pushes (FILE_UPDATED): the commit's own event says it
  const p = (frame.payload ?? {}) as Record<string, unknown>
  const sender = str((frame.sender as Record<string, unknown> | undefined)?.principal_id) ?? null
  const at = str(frame.ts) ?? ''
  const mk = (principal: string | null, summary: string, refs: DashEvent['refs'] = {}): Omit<DashEvent, 'seq'> =>
    ({ at, type, principal_id: principal, summary: cut(summary), refs })
  const who = sender ?? 'someone'
  const intent = str(p.intent_id)
  const conflict = str(p.conflict_id)
  switch (type) {
    case 'INTENT_ANNOUNCE': {
      const files = scopeFiles(p.scope)
      return mk(sender, `${who} announced ${intent ?? 'an intent'}${fileList(files)}: ${str(p.objective) ?? ''}`, { ...(intent ? { intent_id: intent } : {}), ...(files ? { files } : {}) })
    }
    case 'INTENT_UPDATE': {
      const files = scopeFiles(p.scope)
      return mk(sender, `${who} updated ${intent ?? 'an intent'}${fileList(files)}`, { ...(intent ? { intent_id: intent } : {}), ...(files ? { files } : {}) })
    }
    case 'INTENT_WITHDRAW': return mk(sender, `${who} withdrew ${intent ?? 'an intent'}`, intent ? { intent_id: intent } : {})
    case 'INTENT_CLAIM': {
      const original = str(p.original_intent_id)
      return mk(sender, `${who} claimed ${original ?? 'an intent'}`, original ? { intent_id: original } : {})
    }
    case 'INTENT_CLAIM_STATUS': return mk(null, `claim ${str(p.claim_id) ?? ''} ${str(p.decision) ?? ''}`.trim(), str(p.original_intent_id) ? { intent_id: str(p.original_intent_id) as string } : {})
    case 'INTENT_DEFERRED': return mk(sender, `${who} deferred${str(p.reason) ? `: ${str(p.reason) as string}` : ''}`)
    case 'OP_PROPOSE': return mk(sender, `${who} proposed a change to ${str(p.target) ?? '?'}`, { ...(intent ? { intent_id: intent } : {}), ...(str(p.target) ? { files: [str(p.target) as string] } : {}) })
    case 'OP_COMMIT': return mk(sender, `${who} committed ${str(p.target) ?? '?'}`, { ...(intent ? { intent_id: intent } : {}), ...(str(p.target) ? { files: [str(p.target) as string] } : {}) })
    case 'OP_BATCH_COMMIT': {
      const ops = Array.isArray(p.operations) ? p.operations : []
      const files = ops.map(o => str((o as Record<string, unknown> | null)?.target)).filter((x): x is string => x !== undefined).slice(0, 20)
      return mk(sender, `${who} committed a batch of ${ops.length}${fileList(files)}`, { ...(intent ? { intent_id: intent } : {}), files })
    }
    case 'OP_REJECT': return mk(sender, `operation ${str(p.op_id) ?? '?'} rejected${str(p.reason) ? `: ${str(p.reason) as string}` : ''}`)
    case 'OP_SUPERSEDE': return mk(sender, `${who} superseded ${str(p.supersedes_op_id) ?? 'an operation'}`)
    case 'CONFLICT_REPORT': return mk(sender, `conflict ${conflict ?? '?'} (${str(p.category) ?? '?'}, ${str(p.severity) ?? '?'}) between ${str(p.principal_a) ?? '?'} and ${str(p.principal_b) ?? '?'}`, conflict ? { conflict_id: conflict } : {})
    case 'CONFLICT_ACK': return mk(sender, `${who} acknowledged conflict ${conflict ?? '?'} (${str(p.ack_type) ?? '?'})`, conflict ? { conflict_id: conflict } : {})
    case 'CONFLICT_ESCALATE': return mk(sender, `${who} escalated conflict ${conflict ?? '?'} to ${str(p.escalate_to) ?? '?'}`, conflict ? { conflict_id: conflict } : {})
    case 'RESOLUTION': return mk(sender, `conflict ${conflict ?? '?'} resolved: ${str(p.decision) ?? '?'}${str(p.rationale) ? ` (${str(p.rationale) as string})` : ''}`, conflict ? { conflict_id: conflict } : {})
    case 'GOODBYE': return mk(sender, `${who} left`)
    case 'PROTOCOL_ERROR': {
      // Broadcast errors only (the runtime passes no sender-only frame): PARTICIPANT_UNAVAILABLE, mostly.
      if (p.error_code === 'PARTICIPANT_UNAVAILABLE') {
        const pid = str(p.principal_id) ?? null
        return mk(pid, `${pid ?? 'a participant'} became unavailable (its intents are suspended)`)
      }
      return mk(null, `coordinator: ${str(p.error_code) ?? 'error'}${str(p.description) ? `: ${str(p.description) as string}` : ''}`)
    }
    case 'COORDINATOR_STATUS': {
      const ev = str(p.event)
      if (ev === 'heartbeat') return undefined
      return mk(null, `coordinator: ${ev ?? 'status'}`)
    }
    case 'SESSION_CLOSE': return mk(null, `session closed (${str(p.reason) ?? '?'})`)
    case 'HEARTBEAT': return undefined
    default: return mk(sender, `${type} from ${who}`)
  }
}

/** The last RING_SIZE events of one session. */
export class EventRing {
  readonly id = randomBytes(6).toString('base64url')
  readonly #events: DashEvent[] = []
  #seq = 0

  get lastSeq (): number { return this.#seq }
  /** The oldest sequence number still held (lastSeq + 1 when empty). */
  get firstSeq (): number { return this.#events[0]?.seq ?? this.#seq + 1 }

  push (e: Omit<DashEvent, 'seq'>): DashEvent {
    const ev = { seq: ++this.#seq, ...e }
    this.#events.push(ev)
    if (this.#events.length > RING_SIZE) this.#events.splice(0, this.#events.length - RING_SIZE)
    return ev
  }

  /** Events of a notice, appended; returns them. */
  pushNotice (notice: Extract<RuntimeNotice, { kind: 'frames' }>): DashEvent[] {
    const out: DashEvent[] = []
    if (notice.joined !== undefined) {
      const j = notice.joined
      out.push(this.push({ at: formatTs(notice.at), type: 'HELLO', principal_id: j.principal_id, summary: cut(`${j.principal_id} joined${j.display_name !== j.principal_id ? ` as ${j.display_name}` : ''}`), refs: {} }))
    }
    for (const f of notice.frames) {
      const e = eventOf(f)
      if (e !== undefined) out.push(this.push(e.at === '' ? { ...e, at: formatTs(notice.at) } : e))
    }
    return out
  }

  /** Events after `seq` (all held ones when it is older than the ring), oldest first. */
  after (seq: number): DashEvent[] {
    const i = this.#events.findIndex(e => e.seq > seq)
    return i < 0 ? [] : this.#events.slice(i)
  }

  /** The newest `n`, newest first. */
  newest (n: number): DashEvent[] {
    return this.#events.slice(-n).reverse()
  }

  /** Is `seq` an event this ring can continue from (held, or the last one)? */
  canResume (seq: number): boolean {
    return Number.isInteger(seq) && seq >= this.firstSeq - 1 && seq <= this.#seq
  }
}
