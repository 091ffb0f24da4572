/**
 * Crash test (issue 5, item 8): the real sidecar runs as a child process on a
 * SQLite data directory; several agents announce, commit (with file_changes),
 * report conflicts and withdraw on overlapping files; the server is killed
 * with SIGKILL at a random point of that busy phase and started again on the
 * same data directory. Through the public surface only (HELLO, SESSION_SUMMARY,
 * FILE_LIST, FILE_READ) the restored state must reflect every message whose
 * terminal frame (or relay) a client received, and nothing a client never
 * sent or was refused. Three kill points per run, on the SAME data directory
 * (each restart recovers a journal that already went through recoveries).
 *
 * Reproduce a run with CRASH_SEED=<seed printed in the output>.
 * CRASH_RESTART_STORE=memory restarts on the in-memory store (the test must fail then).
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { WebSocket } from 'undici'
import { stateRef } from '../../src/protocol/state-ref.js'
import { mulberry32 } from '../helpers/prng.js'
import { startSidecar, type SidecarProcess } from '../helpers/sidecar.js'
import { envelope, hello, announce, type Frame } from '../helpers/ws.js'

const ROUNDS = 3
const SESSIONS: ReadonlyArray<{ id: string, agents: readonly string[] }> = [
  { id: 'crash-a', agents: ['agent:a1', 'agent:a2', 'agent:a3'] },
  { id: 'crash-b', agents: ['agent:b1', 'agent:b2'] }
]
const FILES = ['f0.txt', 'f1.txt', 'src/f2.ts', 'src/f3.ts']

const seed = process.env.CRASH_SEED !== undefined ? Number(process.env.CRASH_SEED) : Math.floor(Math.random() * 2 ** 31)
const restartStore = process.env.CRASH_RESTART_STORE ?? 'sqlite'

const rng = mulberry32(seed)
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)] as T

// ---------------------------------------------------------------- the server

type Server = SidecarProcess

function startServer (dataDir: string, store: string): Promise<Server> {
  return startSidecar(t, ['--data-dir', dataDir, '--store', store], { HOME: mkdtempSync(join(tmpdir(), 'mpac-crash-home-')), LOG_LEVEL: 'warn' })
}

// ---------------------------------------------------------------- a client

type Outcome = { status: 'accepted' } | { status: 'rejected', code: string } | { status: 'lost' }

/**
 * One WebSocket connection. A request resolves with its terminal frame's
 * verdict: the relay/echo carrying its message_id (accepted), the
 * PROTOCOL_ERROR whose refers_to is its message_id (rejected), or `lost` when
 * the connection closes first. Every relay of a participant's message is
 * recorded in arrival order (the session's journal order).
 */
class Client {
  readonly relays: string[] = []
  readonly ws: WebSocket
  closed = false
  epoch: number | undefined
  readonly #pending = new Map<string, (o: Outcome) => void>()
  #hello: ((o: Outcome) => void) | undefined
  #sideband: { types: readonly string[], resolve: (f: Frame) => void, reject: (e: Error) => void } | undefined
  readonly #closedP: Promise<void>

  private constructor (ws: WebSocket) {
    this.ws = ws
    this.#closedP = new Promise(resolve => {
      ws.addEventListener('close', () => {
        this.closed = true
        for (const r of this.#pending.values()) r({ status: 'lost' })
        this.#pending.clear()
        this.#hello?.({ status: 'lost' })
        this.#sideband?.reject(new Error('connection closed'))
        resolve()
      })
    })
    ws.addEventListener('message', (ev) => {
      if (typeof ev.data !== 'string') return
      const f = JSON.parse(ev.data) as Frame
      const payload = (f.payload ?? {}) as Frame
      if (typeof f.type === 'string') {
        const s = this.#sideband
        if (s !== undefined && s.types.includes(f.type)) { this.#sideband = undefined; s.resolve(f) }
        return
      }
      if (f.message_type === 'SESSION_INFO' && this.#hello !== undefined) {
        this.epoch = Number(f.coordinator_epoch ?? payload.coordinator_epoch)
        const h = this.#hello
        this.#hello = undefined
        h({ status: 'accepted' })
        return
      }
      if (f.message_type === 'PROTOCOL_ERROR') {
        const ref = String(payload.refers_to)
        const r = this.#pending.get(ref)
        if (r !== undefined) { this.#pending.delete(ref); r({ status: 'rejected', code: String(payload.error_code) }) } else if (this.#hello !== undefined) {
          const h = this.#hello
          this.#hello = undefined
          h({ status: 'rejected', code: String(payload.error_code) })
        }
        return
      }
      const id = String(f.message_id)
      // Only relays of participants' messages follow the journal order at every client: what a message
      // caused reaches its sender before the terminal relay and the peers after it (docs/architecture.md).
      if (!String((f.sender as Frame | undefined)?.principal_id).startsWith('service:coordinator-')) this.relays.push(id)
      const r = this.#pending.get(id)
      if (r !== undefined) { this.#pending.delete(id); r({ status: 'accepted' }) }
    })
  }

  static connect (url: string): Promise<Client> {
    const ws = new WebSocket(url)
    const c = new Client(ws)
    return new Promise((resolve, reject) => {
      ws.addEventListener('open', () => resolve(c), { once: true })
      ws.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), { once: true })
    })
  }

  /** Sends an envelope and waits (with a deadline) for its terminal frame or the connection's end. */
  request (frame: Frame, deadlineMs = 10000): Promise<Outcome> {
    if (this.closed) return Promise.resolve({ status: 'lost' })
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no terminal frame for ${String(frame.message_type)} within ${deadlineMs} ms`)), deadlineMs)
      const done = (o: Outcome): void => { clearTimeout(timer); resolve(o) }
      if (frame.message_type === 'HELLO') this.#hello = done
      else this.#pending.set(String(frame.message_id), done)
      this.ws.send(JSON.stringify(frame))
    })
  }

  /** A sideband query (one at a time per connection); resolves with its reply (one of `replyTypes`). */
  sideband (query: Frame, ...replyTypes: string[]): Promise<Frame> {
    const deadlineMs = 10000
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${replyTypes.join('/')} within ${deadlineMs} ms`)), deadlineMs)
      this.#sideband = {
        types: replyTypes,
        resolve: (f) => { clearTimeout(timer); resolve(f) },
        reject: (e) => { clearTimeout(timer); reject(e) }
      }
      if (this.closed) { this.#sideband = undefined; clearTimeout(timer); reject(new Error('connection closed')); return }
      this.ws.send(JSON.stringify(query))
    })
  }

  async readFile (path: string): Promise<{ content: string, state_ref: string } | undefined> {
    const f = await this.sideband({ type: 'FILE_READ', path }, 'FILE_CONTENT', 'FILE_ERROR')
    return f.type === 'FILE_CONTENT' ? { content: String(f.content), state_ref: String(f.state_ref) } : undefined
  }

  waitClosed (deadlineMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`connection not closed within ${deadlineMs} ms`)), deadlineMs)
      void this.#closedP.then(() => { clearTimeout(timer); resolve() })
    })
  }

  close (): void { if (!this.closed) this.ws.close() }
}

// ---------------------------------------------------------------- the record

type Status = 'accepted' | 'rejected' | 'inflight'
interface Msg {
  readonly id: string
  readonly session: string
  readonly agent: string
  readonly type: 'INTENT_ANNOUNCE' | 'INTENT_WITHDRAW' | 'OP_COMMIT' | 'CONFLICT_REPORT'
  status: Status
  code?: string
  readonly intentId?: string
  readonly file?: string
  readonly content?: string
  readonly conflictId?: string
  readonly related?: readonly string[]
}

interface Round {
  readonly msgs: Msg[]
  /** Per session: each file's content as verified after the previous restart (the baseline). */
  readonly baseline: Map<string, Map<string, string>>
  accepted: number
  onAccepted?: () => void
}

let seq = 0
/** Every message of every round (conflicts outlive a round). */
const history: Msg[] = []

async function send (round: Round, c: Client, m: Omit<Msg, 'status' | 'id'>, frame: Frame): Promise<Outcome> {
  const msg: Msg = { ...m, id: String(frame.message_id), status: 'inflight' }
  round.msgs.push(msg)
  history.push(msg)
  const o = await c.request(frame)
  if (o.status === 'accepted') {
    msg.status = 'accepted'
    round.accepted++
    round.onAccepted?.()
  } else if (o.status === 'rejected') {
    msg.status = 'rejected'
    msg.code = o.code
  }
  return o
}

/** Intents each session's agents currently hold (by the terminal frames seen), for conflict reports. */
const liveIntents = new Map<string, Map<string, string>>()

/** One agent's busy loop: announce on 1-2 files, sometimes report a conflict, commit 1-3 times, withdraw; until the connection dies. */
async function agentLoop (round: Round, c: Client, session: string, agent: string, r: number): Promise<void> {
  const live = liveIntents.get(session) ?? new Map<string, string>()
  liveIntents.set(session, live)
  while (!c.closed) {
    const files = rng() < 0.5 ? [pick(FILES)] : [...new Set([pick(FILES), pick(FILES)])]
    const intentId = `i-${agent}-r${r}-${++seq}`
    const a = await send(round, c, { session, agent, type: 'INTENT_ANNOUNCE', intentId }, announce(agent, intentId, files, session))
    if (a.status !== 'accepted') continue
    live.set(intentId, agent)
    const others = [...live].filter(([, owner]) => owner !== agent).map(([id]) => id)
    if (others.length > 0 && rng() < 0.4 && !c.closed) {
      const other = pick(others)
      const conflictId = `c-${agent}-r${r}-${++seq}`
      const report = envelope('CONFLICT_REPORT', agent, {
        conflict_id: conflictId,
        related_intents: [intentId, other],
        category: 'semantic_goal_conflict',
        severity: 'medium',
        basis: { kind: 'human_report' },
        based_on_watermark: { kind: 'lamport_clock', value: 1 },
        description: 'crash test report'
      }, session)
      await send(round, c, { session, agent, type: 'CONFLICT_REPORT', conflictId, related: [intentId, other] }, report)
    }
    const commits = 1 + Math.floor(rng() * 3)
    for (let k = 0; k < commits && !c.closed; k++) {
      const file = pick(files)
      let cur
      try { cur = await c.readFile(file) } catch { break }
      const content = `${session}/${file} by ${agent} #${++seq} ${rng().toString(36).slice(2)}\n`
      // Sometimes a deliberately stale before-ref: the coordinator must refuse it and its content must never appear.
      const stale = cur !== undefined && rng() < 0.2
      const before = stale ? stateRef(`not the current text ${seq}`) : (cur?.state_ref ?? stateRef(''))
      const commit = envelope('OP_COMMIT', agent, {
        op_id: `op-${agent}-r${r}-${seq}`,
        intent_id: intentId,
        target: file,
        op_kind: cur === undefined ? 'create' : 'replace',
        state_ref_before: before,
        state_ref_after: stateRef(content),
        file_changes: { [file]: { content, state_ref_before: before } }
      }, session)
      await send(round, c, { session, agent, type: 'OP_COMMIT', intentId, file, content }, commit)
    }
    if (c.closed) break
    const w = await send(round, c, { session, agent, type: 'INTENT_WITHDRAW', intentId },
      envelope('INTENT_WITHDRAW', agent, { intent_id: intentId, reason: 'done' }, session))
    if (w.status === 'accepted') live.delete(intentId)
  }
}

// ---------------------------------------------------------------- checks

interface Observed { epoch: number, intents: Frame[], conflicts: Frame[], files: Map<string, { content: string, state_ref: string }> }

async function observe (port: number, session: string, r: number): Promise<Observed> {
  const c = await Client.connect(`ws://127.0.0.1:${port}/session/${session}`)
  try {
    const h = await c.request(hello(`agent:probe-${r}`, { sessionId: session }))
    if (h.status !== 'accepted') throw new Error(`probe HELLO refused: ${JSON.stringify(h)}`)
    const s = (await c.sideband({ type: 'SESSION_SUMMARY' }, 'SESSION_SUMMARY_RESPONSE')).session as Frame
    const list = (await c.sideband({ type: 'FILE_LIST' }, 'FILE_LIST_RESPONSE')).files as Frame[]
    const files = new Map<string, { content: string, state_ref: string }>()
    for (const path of new Set([...list.map(f => String(f.path)), ...FILES])) {
      const f = await c.readFile(path)
      if (f !== undefined) files.set(path, f)
    }
    t.same([...files.keys()].sort(), list.map(f => String(f.path)).sort(), `${session}: FILE_LIST names exactly the readable files`)
    for (const l of list) {
      const f = files.get(String(l.path))
      if (f !== undefined) {
        t.equal(l.state_ref, f.state_ref, `${session}: FILE_LIST ref of ${String(l.path)} matches FILE_READ`)
        t.equal(f.state_ref, stateRef(f.content), `${session}: ${String(l.path)}: state_ref is the ref of its content`)
      }
    }
    return { epoch: c.epoch ?? NaN, intents: s.active_intents as Frame[], conflicts: s.open_conflicts as Frame[], files }
  } finally {
    c.close()
  }
}

function check (round: Round, session: string, clients: readonly Client[], epochBefore: number, obs: Observed, r: number): void {
  const label = `round ${r}, ${session}`
  const msgs = round.msgs.filter(m => m.session === session)
  // A relay seen by ANY client of the session is as good as the sender's own terminal frame.
  const relayed = new Set(clients.flatMap(c => c.relays))
  for (const m of msgs) {
    if (relayed.has(m.id)) {
      if (m.status === 'rejected') t.fail(`${label}: ${m.id} was both refused and relayed`)
      m.status = 'accepted'
    }
  }
  // Every client saw a prefix of the same journal order.
  const orders = clients.map(c => c.relays).sort((a, b) => b.length - a.length)
  const stream = orders[0] ?? []
  const pos = new Map(stream.map((id, i) => [id, i]))
  for (const o of orders) {
    const idx = o.map(id => pos.get(id) ?? -1)
    t.ok(idx.every((x, i) => i === 0 || x > (idx[i - 1] as number)), `${label}: relays arrived in one order at every client`)
  }

  t.equal(obs.epoch, epochBefore + 1, `${label}: coordinator_epoch went from ${epochBefore} to ${epochBefore + 1}`)

  // Intents.
  const present = new Map(obs.intents.map(i => [String(i.intent_id), i]))
  const announces = new Map(msgs.filter(m => m.type === 'INTENT_ANNOUNCE').map(m => [m.intentId as string, m]))
  const withdraws = new Map(msgs.filter(m => m.type === 'INTENT_WITHDRAW').map(m => [m.intentId as string, m]))
  let mustExist = 0
  let mustBeGone = 0
  for (const [id, a] of announces) {
    const w = withdraws.get(id)
    if (a.status === 'accepted' && (w === undefined || w.status === 'rejected')) {
      mustExist++
      const i = present.get(id)
      if (i === undefined) t.fail(`${label}: acknowledged intent ${id} (${a.agent}) is missing after the restart`)
      else if (i.state !== 'ACTIVE' && i.state !== 'SUSPENDED') t.fail(`${label}: intent ${id} is ${String(i.state)}`)
    }
    if (w?.status === 'accepted' && present.has(id)) t.fail(`${label}: intent ${id} is live although its withdraw was acknowledged`)
    if (w?.status === 'accepted') mustBeGone++
    if (a.status === 'rejected' && present.has(id)) t.fail(`${label}: refused announce ${id} (${a.code ?? ''}) appears as an intent`)
  }
  for (const [id, i] of present) {
    const a = announces.get(id)
    if (a === undefined || a.status === 'rejected') t.fail(`${label}: intent ${id} was never announced (or was refused)`)
    else t.equal(i.principal_id, a.agent, `${label}: intent ${id} belongs to its announcer`)
  }
  t.pass(`${label}: ${mustExist} acknowledged live intents present, ${mustBeGone} acknowledged withdraws gone, ${present.size} live in all`)

  // Conflicts (they outlive rounds: earlier rounds' reports count too): each open one was reported
  // (acknowledged or in flight) and names only intents that were announced (not refused).
  const ever = history.filter(m => m.session === session)
  const reports = new Map(ever.filter(m => m.type === 'CONFLICT_REPORT').map(m => [m.conflictId as string, m]))
  const known = new Set(ever.filter(m => m.type === 'INTENT_ANNOUNCE' && m.status !== 'rejected').map(m => m.intentId as string))
  for (const c of obs.conflicts) {
    const rep = reports.get(String(c.conflict_id))
    if (rep === undefined || rep.status === 'rejected') t.fail(`${label}: open conflict ${String(c.conflict_id)} was never reported (or was refused)`)
    const ids = [c.intent_a, c.intent_b].filter(x => x !== null && x !== undefined).map(String)
    for (const id of ids) if (!known.has(id)) t.fail(`${label}: conflict ${String(c.conflict_id)} names unknown intent ${id}`)
  }
  const open = new Set(obs.conflicts.map(c => String(c.conflict_id)))
  let mustBeOpen = 0
  for (const [cid, rep] of reports) {
    if (rep.status !== 'accepted' || !(rep.related ?? []).some(id => present.has(id))) continue
    mustBeOpen++
    if (!open.has(cid)) t.fail(`${label}: acknowledged conflict ${cid} is gone although ${(rep.related ?? []).filter(id => present.has(id)).join(', ')} is live`)
  }
  t.pass(`${label}: ${obs.conflicts.length} open conflicts, all reported and naming announced intents; ${mustBeOpen} acknowledged with a live intent all open`)

  // Files: final content = the last acknowledged commit on it (journal order), or an in-flight commit; nothing else.
  const base = round.baseline.get(session) ?? new Map<string, string>()
  const commits = msgs.filter(m => m.type === 'OP_COMMIT')
  for (const path of new Set([...FILES, ...obs.files.keys(), ...base.keys()])) {
    const on = commits.filter(m => m.file === path)
    const acked = on.filter(m => m.status === 'accepted').sort((x, y) => (pos.get(x.id) ?? -1) - (pos.get(y.id) ?? -1))
    const last = acked.at(-1)
    const inflight = on.filter(m => m.status === 'inflight').map(m => m.content as string)
    const allowed = new Set(inflight)
    if (last !== undefined) allowed.add(last.content as string)
    else if (base.has(path)) allowed.add(base.get(path) as string)
    const got = obs.files.get(path)
    if (got === undefined) {
      if (last !== undefined || base.has(path)) t.fail(`${label}: ${path} is missing although ${last !== undefined ? `commit ${last.id} was acknowledged` : 'it existed before'}`)
      continue
    }
    const refused = on.find(m => m.status === 'rejected' && m.content === got.content)
    if (refused !== undefined) t.fail(`${label}: ${path} holds the content of refused commit ${refused.id} (${refused.code ?? ''})`)
    if (!allowed.has(got.content)) {
      t.fail(`${label}: ${path} holds ${JSON.stringify(got.content)}; allowed: ${JSON.stringify([...allowed])}`)
    }
  }
  const n = (s: Status, type: Msg['type']): number => msgs.filter(m => m.type === type && m.status === s).length
  t.pass(`${label}: files match the last acknowledged commits (${n('accepted', 'OP_COMMIT')} acknowledged, ${n('rejected', 'OP_COMMIT')} refused, ${n('inflight', 'OP_COMMIT')} in flight)`)
}

// ---------------------------------------------------------------- the test

t.test(`SIGKILL at ${ROUNDS} random points loses nothing acknowledged (seed ${seed})`, async t => {
  t.comment(`crash seed: ${seed} (reproduce with CRASH_SEED=${seed}); restarts on --store ${restartStore}`)
  const started = Date.now()
  const dataDir = mkdtempSync(join(tmpdir(), 'mpac-crash-data-'))
  let server = await startServer(dataDir, 'sqlite')
  const baseline = new Map<string, Map<string, string>>()
  for (let r = 1; r <= ROUNDS; r++) {
    const round: Round = { msgs: [], baseline, accepted: 0 }
    liveIntents.clear()
    const clients = new Map<string, Client[]>()
    const epochs = new Map<string, number>()
    // Join; withdraw whatever the previous round left live (in-flight announces that survived).
    for (const s of SESSIONS) {
      const cs: Client[] = []
      for (const agent of s.agents) {
        const c = await Client.connect(`ws://127.0.0.1:${server.port}/session/${s.id}`)
        const h = await c.request(hello(agent, { sessionId: s.id }))
        t.equal(h.status, 'accepted', `round ${r}: ${agent} joined ${s.id}`)
        cs.push(c)
      }
      epochs.set(s.id, cs[0]?.epoch ?? NaN)
      const summary = (await cs[0]!.sideband({ type: 'SESSION_SUMMARY' }, 'SESSION_SUMMARY_RESPONSE')).session as Frame
      for (const i of summary.active_intents as Frame[]) {
        const idx = s.agents.indexOf(String(i.principal_id))
        if (idx < 0) continue
        const w = await cs[idx]!.request(envelope('INTENT_WITHDRAW', String(i.principal_id), { intent_id: i.intent_id, reason: 'cleanup' }, s.id))
        t.equal(w.status, 'accepted', `round ${r}: leftover ${String(i.intent_id)} withdrawn`)
      }
      clients.set(s.id, cs)
    }
    // Busy phase; the kill comes at a random point once it has really started.
    const loops = SESSIONS.flatMap(s => s.agents.map((agent, k) => agentLoop(round, clients.get(s.id)![k]!, s.id, agent, r)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the busy phase did not start within 15 s')), 15000)
      round.onAccepted = () => {
        // Started = five inputs and at least one commit acknowledged, so the kill always follows a commit.
        if (round.accepted >= 5 && round.msgs.some(m => m.type === 'OP_COMMIT' && m.status === 'accepted')) { clearTimeout(timer); round.onAccepted = undefined; resolve() }
      }
    })
    const delay = Math.floor(rng() * 500)
    const acceptedAtStart = round.accepted
    await new Promise(resolve => setTimeout(resolve, delay))
    const acceptedAtKill = round.accepted
    server.child.kill('SIGKILL')
    t.equal(await server.exited, null, `round ${r}: killed by SIGKILL ${delay} ms into the busy phase (${acceptedAtStart} → ${acceptedAtKill} acknowledged)`)
    await Promise.all(loops)
    const all = [...clients.values()].flat()
    await Promise.all(all.map(c => c.waitClosed(5000)))

    server = await startServer(dataDir, restartStore)
    for (const s of SESSIONS) {
      const obs = await observe(server.port, s.id, r)
      check(round, s.id, clients.get(s.id)!, epochs.get(s.id)!, obs, r)
      baseline.set(s.id, new Map([...obs.files].map(([p, f]) => [p, f.content])))
    }
    const count = (st: Status): number => round.msgs.filter(m => m.status === st).length
    t.comment(`round ${r}: kill after ${delay} ms; ${count('accepted')} acknowledged, ${count('rejected')} refused ` +
      `(${[...new Set(round.msgs.filter(m => m.status === 'rejected').map(m => m.code))].join(', ')}), ${count('inflight')} in flight`)
    t.ok(round.msgs.some(m => m.type === 'OP_COMMIT' && m.status === 'accepted'), `round ${r}: some commits were acknowledged before the kill`)
  }
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'the last server stops cleanly')
  t.comment(`${ROUNDS} kill points in ${Date.now() - started} ms`)
})
