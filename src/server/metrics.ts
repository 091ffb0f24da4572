import { ERROR_CODES } from '../protocol/error-codes.js'
import { MESSAGE_TYPES, SIDEBAND_REPLIES, SIDEBAND_REQUESTS } from '../protocol/message-types.js'

/**
 * Prometheus metrics, text exposition format 0.0.4, written by hand (no
 * dependency). Counters and gauges are plain numbers; label values are the
 * bounded sets of message types, error codes and close codes: anything else
 * a client sends is counted as `OTHER`, so the wire cannot grow the label set.
 */

const BUCKETS_SEC = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

function escapeLabel (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

/** Frame kinds the server itself names (frames that are not JSON objects, or not text). */
const SERVER_KINDS = ['BINARY', 'INVALID_JSON'] as const
const TYPE_LABELS: ReadonlySet<string> = new Set<string>([...MESSAGE_TYPES, ...SIDEBAND_REQUESTS, ...SIDEBAND_REPLIES, ...SERVER_KINDS])
const CODE_LABELS: ReadonlySet<string> = new Set<string>(ERROR_CODES)

/** Label values come from the wire; only the known ones are kept. */
function boundedLabel (value: unknown, known: ReadonlySet<string>): string {
  return typeof value === 'string' && known.has(value) ? value : 'OTHER'
}

export class Metrics {
  connections = 0
  sessionsLoaded = 0
  /** Session timers armed (one per loaded session at most); a larger number is a leak. */
  sessionTimers = 0
  readonly #messagesIn = new Map<string, number>()
  readonly #messagesOut = new Map<string, number>()
  readonly #protocolErrors = new Map<string, number>()
  readonly #closes = new Map<string, number>()
  readonly #buckets = new Array<number>(BUCKETS_SEC.length).fill(0)
  #handleCount = 0
  #handleSum = 0
  connectionsTotal = 0
  journalAppends = 0

  messageIn (type: unknown): void {
    const key = boundedLabel(type, TYPE_LABELS)
    this.#messagesIn.set(key, (this.#messagesIn.get(key) ?? 0) + 1)
  }

  messageOut (type: unknown, count = 1): void {
    const key = boundedLabel(type, TYPE_LABELS)
    this.#messagesOut.set(key, (this.#messagesOut.get(key) ?? 0) + count)
  }

  protocolError (code: unknown): void {
    const key = boundedLabel(code, CODE_LABELS)
    this.#protocolErrors.set(key, (this.#protocolErrors.get(key) ?? 0) + 1)
  }

  closed (code: number): void {
    const key = String(code)
    this.#closes.set(key, (this.#closes.get(key) ?? 0) + 1)
  }

  /** Time from a frame's arrival to its outputs being handed to the sockets. */
  observeHandling (seconds: number): void {
    this.#handleCount++
    this.#handleSum += seconds
    for (let i = 0; i < BUCKETS_SEC.length; i++) {
      if (seconds <= (BUCKETS_SEC[i] as number)) this.#buckets[i] = (this.#buckets[i] as number) + 1
    }
  }

  render (): string {
    const out: string[] = []
    const simple = (name: string, type: 'gauge' | 'counter', help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`)
    }
    const labelled = (name: string, help: string, label: string, values: Map<string, number>): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
      for (const [key, value] of [...values].sort()) out.push(`${name}{${label}="${escapeLabel(key)}"} ${value}`)
    }
    simple('mpac_connections', 'gauge', 'Open WebSocket connections.', this.connections)
    simple('mpac_connections_total', 'counter', 'WebSocket connections accepted since start.', this.connectionsTotal)
    simple('mpac_sessions', 'gauge', 'Sessions loaded in memory.', this.sessionsLoaded)
    simple('mpac_session_timers', 'gauge', 'Session timers armed (at most one per loaded session).', this.sessionTimers)
    simple('mpac_journal_appends_total', 'counter', 'Group commits to the store.', this.journalAppends)
    labelled('mpac_messages_in_total', 'Frames received, by MPAC message_type or sideband type.', 'type', this.#messagesIn)
    labelled('mpac_messages_out_total', 'Frames sent, by MPAC message_type or sideband type.', 'type', this.#messagesOut)
    labelled('mpac_protocol_errors_total', 'PROTOCOL_ERROR frames sent, by error_code.', 'code', this.#protocolErrors)
    labelled('mpac_connection_closes_total', 'Connections closed by the server, by close code.', 'code', this.#closes)
    const h = 'mpac_message_handling_seconds'
    out.push(`# HELP ${h} Time from receiving a frame to sending its outputs (journal included).`, `# TYPE ${h} histogram`)
    for (let i = 0; i < BUCKETS_SEC.length; i++) out.push(`${h}_bucket{le="${BUCKETS_SEC[i] as number}"} ${this.#buckets[i] as number}`)
    out.push(`${h}_bucket{le="+Inf"} ${this.#handleCount}`, `${h}_sum ${this.#handleSum}`, `${h}_count ${this.#handleCount}`)
    const mem = process.memoryUsage()
    simple('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', mem.rss)
    simple('nodejs_heap_used_bytes', 'gauge', 'V8 heap used in bytes.', mem.heapUsed)
    return out.join('\n') + '\n'
  }
}
