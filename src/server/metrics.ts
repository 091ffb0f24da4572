/**
 * Prometheus metrics, text exposition format 0.0.4, written by hand (no
 * dependency). Counters and gauges are plain numbers; label values are the
 * bounded sets of message types, error codes and close codes.
 */

const BUCKETS_SEC = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

function escapeLabel (value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

/** Label values come from the wire; keep them bounded and printable. */
function boundedLabel (value: unknown): string {
  if (typeof value !== 'string' || !/^[A-Z_]{1,40}$/.test(value)) return 'OTHER'
  return value
}

export class Metrics {
  connections = 0
  sessionsLoaded = 0
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
    const key = boundedLabel(type)
    this.#messagesIn.set(key, (this.#messagesIn.get(key) ?? 0) + 1)
  }

  messageOut (type: unknown, count = 1): void {
    const key = boundedLabel(type)
    this.#messagesOut.set(key, (this.#messagesOut.get(key) ?? 0) + count)
  }

  protocolError (code: unknown): void {
    const key = boundedLabel(code)
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
