/**
 * The live session view a shim keeps for its hooks (agent-hooks §7.1):
 * participants, live intents, open conflicts (and which are frozen), built
 * from SESSION_SUMMARY (`rebase`) and kept current by the relays the
 * shim's coordinator connection receives anyway (`apply`).
 *
 * Contract:
 * - Owns: the view, the time it was last confirmed by the coordinator
 *   (any summary or inbound envelope), the files this shim's agent edited
 *   (`noteEdited`), and the log of events that concern this agent, with a
 *   cursor per consumer (each event delivered once per consumer).
 * - Promises: pure and synchronous; time comes from the injected clock.
 *   `apply` returns true when the envelope may have effects the relays do
 *   not spell out (a participant gone unavailable, a claim decided, a
 *   freeze, a GOODBYE, a coordinator recovery): the caller then re-bases
 *   soon with a summary. Every text it produces quotes other agents' words
 *   through `sanitizeText`.
 * - Never: sends anything or decides an edit (decisions.ts does).
 */
import type { Envelope, Frame } from '../client/types.js'
import { HOOK_EVENT_KINDS, quoteText, sanitizeText, type HookEvent, type HookEventKind } from '../../hooks/protocol.js'

export interface ViewIntent {
  readonly intent_id: string
  readonly principal_id: string
  objective: string
  state: string
  /** The scope's files (normalised), or undefined for a scope of another kind. */
  files: string[] | undefined
}

export interface ViewParticipant {
  readonly principal_id: string
  display_name: string
  is_available: boolean
  status: string
  /** When this view saw it become unavailable (ms), if it did. */
  unavailable_since: number | null
}

export interface ViewConflict {
  readonly conflict_id: string
  category: string
  state: string
  intent_a: string | null
  intent_b: string | null
  principal_a: string | null
  principal_b: string | null
  frozen: boolean
  escalated_to: string | null
}

const MAX_EVENTS = 500
const MAX_CONSUMERS = 64
const MAX_EDITED = 10_000
const LIVE = new Set(['ANNOUNCED', 'ACTIVE', 'SUSPENDED'])

function str (v: unknown): string | null {
  return typeof v === 'string' ? v : null
}

/** A scope resource as a repository path: `./`, repeated and trailing `/` dropped. */
export function cleanPath (p: string): string {
  let s = p.trim().replace(/\\/g, '/').replace(/\/{2,}/g, '/')
  while (s.startsWith('./')) s = s.slice(2)
  while (s.length > 1 && s.endsWith('/')) s = s.slice(0, -1)
  return s
}

function filesOf (scope: unknown): string[] | undefined {
  if (scope === null || typeof scope !== 'object') return undefined
  const resources = (scope as Frame)['resources']
  if (!Array.isArray(resources)) return undefined
  return [...new Set(resources.filter((r): r is string => typeof r === 'string').map(cleanPath))]
}

export class SessionView {
  readonly #me: string
  readonly #now: () => number
  readonly intents = new Map<string, ViewIntent>()
  readonly participants = new Map<string, ViewParticipant>()
  readonly conflicts = new Map<string, ViewConflict>()
  #confirmedAt: number | null = null
  #rebasedAt: number | null = null
  #usedAt: number | null = null
  #events: HookEvent[] = []
  #seq = 0
  readonly #cursors = new Map<string, number>()
  readonly #edited = new Set<string>()

  constructor (principalId: string, now: () => number) {
    this.#me = principalId
    this.#now = now
  }

  get principalId (): string { return this.#me }
  /** Milliseconds since the coordinator last confirmed the view; null before the first summary. */
  age (): number | null {
    return this.#confirmedAt === null ? null : Math.max(0, this.#now() - this.#confirmedAt)
  }

  /** Milliseconds since the last SESSION_SUMMARY re-base (effects no relay spells out, such as TTL expiry, are caught up then); null before the first. */
  sinceRebase (): number | null {
    return this.#rebasedAt === null ? null : Math.max(0, this.#now() - this.#rebasedAt)
  }

  /** A hook asked the view (hooks are active: the session then re-bases after relays with implicit effects). */
  markUsed (): void {
    this.#usedAt = this.#now()
  }

  /** Whether a hook asked within the last `ms`. */
  usedWithin (ms: number): boolean {
    return this.#usedAt !== null && this.#now() - this.#usedAt <= ms
  }

  /** A readable name for a principal (sanitised). */
  nameOf (principalId: string | null | undefined): string {
    if (principalId === null || principalId === undefined) return 'unknown'
    const p = this.participants.get(principalId)
    return sanitizeText(p?.display_name !== undefined && p.display_name !== '' ? p.display_name : principalId)
  }

  /** Live intents of this agent. */
  mine (): ViewIntent[] {
    return [...this.intents.values()].filter(i => i.principal_id === this.#me && LIVE.has(i.state))
  }

  /** The frozen conflicts' scopes: the union of their two intents' files. */
  frozenFiles (c: ViewConflict): string[] {
    const out = new Set<string>()
    for (const id of [c.intent_a, c.intent_b]) {
      const files = id === null ? undefined : this.intents.get(id)?.files
      for (const f of files ?? []) out.add(f)
    }
    return [...out]
  }

  /** Files this agent edited in this shim's lifetime (from check_edit / post_edit). */
  noteEdited (files: readonly string[]): void {
    for (const f of files) {
      if (this.#edited.size >= MAX_EDITED) break
      this.#edited.add(f)
    }
  }

  // ----------------------------------------------------------------- rebase

  /** Replaces the view with a SESSION_SUMMARY's `session` object. */
  rebase (session: Frame): void {
    const before = new Map(this.conflicts)
    this.intents.clear()
    this.conflicts.clear()
    const seenParticipants = new Set<string>()
    for (const raw of Array.isArray(session['participants']) ? session['participants'] as Frame[] : []) {
      const id = str(raw['principal_id'])
      if (id === null) continue
      seenParticipants.add(id)
      const available = raw['is_available'] !== false
      const old = this.participants.get(id)
      this.participants.set(id, {
        principal_id: id,
        display_name: str(raw['display_name']) ?? id,
        is_available: available,
        status: str(raw['status']) ?? 'unknown',
        unavailable_since: available ? null : old?.unavailable_since ?? null
      })
    }
    for (const id of [...this.participants.keys()]) if (!seenParticipants.has(id)) this.participants.delete(id)
    for (const raw of Array.isArray(session['active_intents']) ? session['active_intents'] as Frame[] : []) {
      const id = str(raw['intent_id'])
      const pid = str(raw['principal_id'])
      if (id === null || pid === null) continue
      this.intents.set(id, { intent_id: id, principal_id: pid, objective: str(raw['objective']) ?? '', state: str(raw['state']) ?? 'ACTIVE', files: filesOf(raw['scope']) })
    }
    for (const raw of Array.isArray(session['open_conflicts']) ? session['open_conflicts'] as Frame[] : []) {
      const id = str(raw['conflict_id'])
      if (id === null) continue
      const c: ViewConflict = {
        conflict_id: id,
        category: str(raw['category']) ?? 'unknown',
        state: str(raw['state']) ?? 'OPEN',
        intent_a: str(raw['intent_a']),
        intent_b: str(raw['intent_b']),
        principal_a: str(raw['principal_a']),
        principal_b: str(raw['principal_b']),
        frozen: raw['scope_frozen'] === true || before.get(id)?.frozen === true,
        escalated_to: before.get(id)?.escalated_to ?? null
      }
      this.conflicts.set(id, c)
      // A freeze this view had not heard of (it happened while we were away).
      if (c.frozen && before.get(id)?.frozen !== true && this.#touchesMe(c)) this.#frozenEvent(c)
    }
    this.#confirmedAt = this.#now()
    this.#rebasedAt = this.#confirmedAt
  }

  // ------------------------------------------------------------------ relays

  /** One inbound envelope. True when the caller should re-base soon (effects not in the relay). */
  apply (env: Envelope): boolean {
    this.#confirmedAt = this.#now()
    const p = (env.payload ?? {})
    const sender = env.sender?.principal_id ?? ''
    switch (env.message_type) {
      case 'INTENT_ANNOUNCE': {
        const id = str(p['intent_id'])
        if (id === null) return false
        const files = filesOf(p['scope'])
        // Same-principal auto-supersede (protocol.md §6.7): the sender's overlapping ACTIVE intents end.
        if (files !== undefined) {
          for (const i of [...this.intents.values()]) {
            if (i.principal_id === sender && i.state === 'ACTIVE' && i.files !== undefined && i.files.some(f => files.includes(f))) this.intents.delete(i.intent_id)
          }
        }
        const intent: ViewIntent = { intent_id: id, principal_id: sender, objective: str(p['objective']) ?? '', state: 'ACTIVE', files }
        this.intents.set(id, intent)
        this.#announcedMyFile(intent, files)
        // HELLOs are not relayed: a sender this view does not know is a new participant (its name comes with a summary).
        return !this.participants.has(sender)
      }
      case 'INTENT_UPDATE': {
        const id = str(p['intent_id'])
        const i = id === null ? undefined : this.intents.get(id)
        if (i === undefined) return true
        if (typeof p['objective'] === 'string') i.objective = p['objective']
        if (p['scope'] !== undefined) {
          const before = new Set(i.files ?? [])
          i.files = filesOf(p['scope'])
          this.#announcedMyFile(i, i.files?.filter(f => !before.has(f)))
        }
        // A backend suspension is announced as an update of the objective (liveness.ts).
        return i.objective.startsWith('[SUSPENDED')
      }
      case 'INTENT_WITHDRAW': {
        const id = str(p['intent_id'])
        if (id !== null) this.intents.delete(id)
        return false
      }
      case 'INTENT_CLAIM': {
        const orig = str(p['original_intent_id'])
        const i = orig === null ? undefined : this.intents.get(orig)
        if (i !== undefined && i.principal_id === this.#me && sender !== this.#me) {
          this.#event('claim', `${this.nameOf(sender)} (${sanitizeText(sender)}) claims your SUSPENDED intent ${sanitizeText(orig)} to take over its work.`, { intent_id: orig, principal_id: sender, files: i.files ?? [] })
        }
        return false
      }
      case 'INTENT_CLAIM_STATUS': {
        const orig = str(p['original_intent_id'])
        const i = orig === null ? undefined : this.intents.get(orig)
        if (p['decision'] === 'approved' && i !== undefined && i.principal_id === this.#me) {
          const by = str(p['new_intent_id'])
          this.#event('taken_over', `Your intent ${sanitizeText(orig)} was taken over (now intent ${sanitizeText(by ?? 'unknown')}); its files are no longer yours.`, { intent_id: orig, files: i.files ?? [] })
        }
        return true
      }
      case 'CONFLICT_REPORT': {
        const id = str(p['conflict_id'])
        if (id === null) return false
        const related = Array.isArray(p['related_intents']) ? (p['related_intents'] as unknown[]).filter((x): x is string => typeof x === 'string') : []
        const c: ViewConflict = {
          conflict_id: id,
          category: str(p['category']) ?? 'unknown',
          state: 'OPEN',
          intent_a: str(p['intent_a']) ?? related[0] ?? null,
          intent_b: str(p['intent_b']) ?? related[1] ?? null,
          principal_a: str(p['principal_a']),
          principal_b: str(p['principal_b']),
          frozen: false,
          escalated_to: null
        }
        this.conflicts.set(id, c)
        if (this.#touchesMe(c)) this.#conflictEvent(c, `New conflict ${sanitizeText(id)} (${sanitizeText(c.category)})`)
        return false
      }
      case 'CONFLICT_ACK': {
        const c = this.#conflict(p)
        if (c === undefined) return true
        if (c.state === 'OPEN' && (p['ack_type'] === 'seen' || p['ack_type'] === 'accepted')) c.state = 'ACKED'
        if (this.#touchesMe(c) && sender !== this.#me) this.#conflictEvent(c, `${this.nameOf(sender)} acknowledged conflict ${sanitizeText(c.conflict_id)} (${sanitizeText(p['ack_type'])})`)
        return false
      }
      case 'CONFLICT_ESCALATE': {
        const c = this.#conflict(p)
        if (c === undefined) return true
        c.state = 'ESCALATED'
        c.escalated_to = str(p['escalate_to'])
        if (c.escalated_to === this.#me) {
          this.#event('escalation', `Conflict ${sanitizeText(c.conflict_id)} (${sanitizeText(c.category)}) between ${this.#parties(c)} was escalated to you as arbiter; resolve_conflict settles it.`, { conflict_id: c.conflict_id })
        } else if (this.#touchesMe(c) && sender !== this.#me) {
          this.#conflictEvent(c, `Conflict ${sanitizeText(c.conflict_id)} was escalated to ${this.nameOf(c.escalated_to)}`)
        }
        return false
      }
      case 'RESOLUTION': {
        const c = this.#conflict(p)
        if (c === undefined) return true
        this.conflicts.delete(c.conflict_id)
        if (this.#touchesMe(c) && sender !== this.#me) this.#conflictEvent(c, `Conflict ${sanitizeText(c.conflict_id)} was resolved (${sanitizeText(p['decision'])})`)
        return false
      }
      case 'PROTOCOL_ERROR': {
        const code = p['error_code']
        if (code === 'RESOLUTION_TIMEOUT') {
          const c = this.#conflict(p)
          if (c === undefined) return true
          if (!c.frozen) {
            c.frozen = true
            if (this.#touchesMe(c)) this.#frozenEvent(c)
          }
          return false
        }
        if (code === 'PARTICIPANT_UNAVAILABLE') {
          const pid = str(p['principal_id'])
          if (pid === null) return true
          const part = this.participants.get(pid)
          if (part !== undefined) {
            part.is_available = false
            part.unavailable_since = this.#now()
          }
          for (const i of this.intents.values()) if (i.principal_id === pid && i.state === 'ACTIVE') i.state = 'SUSPENDED'
          if (pid === this.#me) this.#event('suspended', 'The coordinator declared you unavailable (missed heartbeats) and suspended your intents; they come back when the shim is heard again, unless another agent takes them over.', { principal_id: pid })
          return true
        }
        return false
      }
      case 'GOODBYE':
      case 'COORDINATOR_STATUS':
        return env.message_type === 'GOODBYE' || p['event'] === 'recovered'
      default:
        return false
    }
  }

  // ------------------------------------------------------------------ events

  /** Events after this consumer's cursor (at most `max`); the cursor moves past them. */
  eventsFor (consumer: string, max = 20): HookEvent[] {
    const cursor = this.#cursors.get(consumer) ?? 0
    const out = this.#events.filter(e => e.seq > cursor).slice(0, max)
    const last = out[out.length - 1]
    this.#touchCursor(consumer, last !== undefined ? last.seq : cursor)
    return out
  }

  /** Whether this consumer has undelivered events. */
  hasEventsFor (consumer: string): boolean {
    const cursor = this.#cursors.get(consumer) ?? 0
    return this.#seq > cursor && this.#events.some(e => e.seq > cursor)
  }

  /** Moves a consumer's cursor to now (the digest told it the current state). */
  catchUp (consumer: string): void {
    this.#touchCursor(consumer, this.#seq)
  }

  /** Records an event of the shim's own (e.g. a check_edit reminder) in the log. */
  record (kind: HookEventKind, text: string, ids: { intent_id?: string | null, conflict_id?: string | null, principal_id?: string | null, files?: readonly string[] } = {}): HookEvent {
    return this.#event(kind, text, ids)
  }

  #touchCursor (consumer: string, seq: number): void {
    this.#cursors.delete(consumer)
    this.#cursors.set(consumer, seq)
    if (this.#cursors.size > MAX_CONSUMERS) {
      const oldest = this.#cursors.keys().next().value
      if (oldest !== undefined) this.#cursors.delete(oldest)
    }
  }

  #event (kind: HookEventKind, text: string, ids: { intent_id?: string | null, conflict_id?: string | null, principal_id?: string | null, files?: readonly string[] }): HookEvent {
    if (!(HOOK_EVENT_KINDS as readonly string[]).includes(kind)) throw new Error(`unknown event kind ${kind}`)
    const event: HookEvent = {
      seq: ++this.#seq,
      kind,
      text: sanitizeText(text, 400),
      intent_id: ids.intent_id ?? null,
      conflict_id: ids.conflict_id ?? null,
      principal_id: ids.principal_id ?? null,
      files: (ids.files ?? []).slice(0, 20).map(f => sanitizeText(f, 200)),
      at: new Date(this.#now()).toISOString()
    }
    this.#events.push(event)
    if (this.#events.length > MAX_EVENTS) this.#events = this.#events.slice(-MAX_EVENTS)
    return event
  }

  #conflict (p: Frame): ViewConflict | undefined {
    const id = str(p['conflict_id'])
    return id === null ? undefined : this.conflicts.get(id)
  }

  #mineIntent (id: string | null): boolean {
    if (id === null) return false
    return this.intents.get(id)?.principal_id === this.#me
  }

  #touchesMe (c: ViewConflict): boolean {
    if (c.principal_a === this.#me || c.principal_b === this.#me) return true
    if (this.#mineIntent(c.intent_a) || this.#mineIntent(c.intent_b)) return true
    if (!c.frozen) return false
    const mine = new Set(this.mine().flatMap(i => i.files ?? []))
    return this.frozenFiles(c).some(f => mine.has(f) || this.#edited.has(f))
  }

  #parties (c: ViewConflict): string {
    return `${this.nameOf(c.principal_a)} (intent ${sanitizeText(c.intent_a ?? '?')}) and ${this.nameOf(c.principal_b)} (intent ${sanitizeText(c.intent_b ?? '?')})`
  }

  #conflictEvent (c: ViewConflict, head: string): void {
    const other = [c.intent_a, c.intent_b].map(id => id === null ? undefined : this.intents.get(id)).find(i => i !== undefined && i.principal_id !== this.#me)
    const objective = other !== undefined ? `; ${this.nameOf(other.principal_id)}'s objective: ${quoteText(other.objective)}` : ''
    this.#event('conflict', `${head} between ${this.#parties(c)}${objective}. ack_conflict / escalate_conflict work it through.`, { conflict_id: c.conflict_id })
  }

  #frozenEvent (c: ViewConflict): void {
    const files = this.frozenFiles(c)
    this.#event('frozen', `Conflict ${sanitizeText(c.conflict_id)} went unresolved and its scope is frozen: ${files.slice(0, 10).map(f => sanitizeText(f, 200)).join(', ')}. Edits there are refused until it is resolved (ack_conflict / escalate_conflict).`, { conflict_id: c.conflict_id, files })
  }

  #announcedMyFile (intent: ViewIntent, files: readonly string[] | undefined): void {
    if (intent.principal_id === this.#me || files === undefined) return
    const hit = files.filter(f => this.#edited.has(f))
    if (hit.length === 0) return
    this.#event('announced_my_file', `${this.nameOf(intent.principal_id)} (${sanitizeText(intent.principal_id)}) announced intent ${sanitizeText(intent.intent_id)} on ${hit.slice(0, 10).map(f => sanitizeText(f, 200)).join(', ')}, which you edited in this session; objective (their text): ${quoteText(intent.objective)}.`, { intent_id: intent.intent_id, principal_id: intent.principal_id, files: hit })
  }
}
