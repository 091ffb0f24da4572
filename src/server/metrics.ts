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

const COMMIT_BUCKETS_SEC = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
/** Why a claim succeeded (FleetStore's ClaimReason): the labels of mpac_claims_total. */
export const CLAIM_REASONS = ['new', 'released', 'expired', 'restart', 'reclaim'] as const

class Histogram {
  readonly #bounds: readonly number[]
  readonly #counts: number[]
  #count = 0
  #sum = 0
  constructor (bounds: readonly number[]) {
    this.#bounds = bounds
    this.#counts = new Array<number>(bounds.length).fill(0)
  }

  observe (value: number): void {
    this.#count++
    this.#sum += value
    for (let i = 0; i < this.#bounds.length; i++) if (value <= (this.#bounds[i] as number)) this.#counts[i] = (this.#counts[i] as number) + 1
  }

  render (out: string[], name: string, help: string): void {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`)
    for (let i = 0; i < this.#bounds.length; i++) out.push(`${name}_bucket{le="${this.#bounds[i] as number}"} ${this.#counts[i] as number}`)
    out.push(`${name}_bucket{le="+Inf"} ${this.#count}`, `${name}_sum ${this.#sum}`, `${name}_count ${this.#count}`)
  }
}

/** Fleet mode's metrics (docs/fleet.md): leases, claims, fencing, routing, group commit. */
export class FleetMetrics {
  /** The node's lease lapsed (self-fenced: every session dropped). */
  leaseLapses = 0
  /** Group-commit batches refused by the epoch fence (ownership lost). */
  fenceRejections = 0
  readonly claims = new Map<string, number>(CLAIM_REASONS.map(r => [r, 0]))
  /** Handover requests this node sent (routing) and honoured (as owner). */
  handoversRequested = 0
  handoversHonoured = 0
  /** Upgrades answered with fly-replay. */
  replays = 0
  /** Commits whose outcome had to be resolved after a broken connection. */
  ambiguousCommits = 0
  /** Upgrades refused with 503 because ownership could not be obtained in time. */
  routeUnavailable = 0
  ownedSessions = 0
  readonly #commitSeconds = new Histogram(COMMIT_BUCKETS_SEC)
  readonly #batchEntries = new Histogram(BATCH_BUCKETS)

  claimed (reason: string): void {
    if (this.claims.has(reason)) this.claims.set(reason, (this.claims.get(reason) as number) + 1)
  }

  observeCommit (seconds: number, entries: number): void {
    this.#commitSeconds.observe(seconds)
    this.#batchEntries.observe(entries)
  }

  render (out: string[]): void {
    const simple = (name: string, type: 'gauge' | 'counter', help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`)
    }
    simple('mpac_lease_lapses_total', 'counter', 'Times this node\'s lease lapsed (it delivered nothing more and dropped its sessions).', this.leaseLapses)
    simple('mpac_fence_rejections_total', 'counter', 'Session batches refused by the epoch fence (ownership lost).', this.fenceRejections)
    out.push('# HELP mpac_claims_total Sessions claimed by this node, by reason.', '# TYPE mpac_claims_total counter')
    for (const [reason, n] of this.claims) out.push(`mpac_claims_total{reason="${reason}"} ${n}`)
    out.push('# HELP mpac_handovers_total Cooperative handovers: requested by this node, honoured by it as the owner.', '# TYPE mpac_handovers_total counter')
    out.push(`mpac_handovers_total{role="requested"} ${this.handoversRequested}`, `mpac_handovers_total{role="honoured"} ${this.handoversHonoured}`)
    simple('mpac_replays_total', 'counter', 'Upgrades answered with fly-replay (sent to the owner).', this.replays)
    simple('mpac_route_unavailable_total', 'counter', 'Upgrades refused with 503 because the session could not be claimed in time.', this.routeUnavailable)
    simple('mpac_ambiguous_commits_total', 'counter', 'Group commits whose outcome was resolved after a broken connection.', this.ambiguousCommits)
    simple('mpac_owned_sessions', 'gauge', 'Sessions this node owns and serves.', this.ownedSessions)
    this.#commitSeconds.render(out, 'mpac_commit_seconds', 'Time of one lane\'s fenced group commit.')
    this.#batchEntries.render(out, 'mpac_commit_batch_entries', 'Journal entries per fenced group commit.')
  }
}

export class Metrics {
  /** Present in fleet mode only (--store postgres). */
  fleet: FleetMetrics | undefined
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
    this.fleet?.render(out)
    const mem = process.memoryUsage()
    simple('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.', mem.rss)
    simple('nodejs_heap_used_bytes', 'gauge', 'V8 heap used in bytes.', mem.heapUsed)
    return out.join('\n') + '\n'
  }
}
