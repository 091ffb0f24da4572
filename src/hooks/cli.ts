/**
 * `mpac-mcp hook <event> [--client claude|cursor|codex|gemini]` and
 * `mpac-mcp hook doctor`. The hook reads the client's JSON on stdin, finds
 * its agent's shim (rendezvous), asks it one question over the local socket
 * and prints the client's answer. It fails open (agent-hooks-and-dashboard.md
 * §7.6): no shim, a malformed stdin, a shim that does not answer within
 * 1,000 ms, a malformed reply, any exception → exit 0 with no output and one
 * line on stderr (the client's debug log). With MPAC_HOOK_FAIL=closed an edit
 * that could not be checked is denied with a message naming the way out.
 * MPAC_HOOKS=off turns every hook into a silent no-op. It never exits
 * non-zero: denies are JSON decisions on exit 0. Node built-ins only.
 */
import { ADAPTERS } from './adapters/index.js'
import { CLIENTS, HOOK_EVENTS, record, type ClientName, type HookEventName, type HookOutput } from './adapters/common.js'
import { EDIT_MODES, HOOK_PROTOCOL_VERSION, registryDir, type EditMode, type HookReply, type HookRequest } from './protocol.js'
import { findShim, liveEntries } from './rendezvous.js'
import { HookSocketError, socketRequest } from './socket-client.js'

/** SessionStart can run before the client has started the shim: wait this long for its registry entry. */
export const SESSION_START_WAIT_MS = 1500
/** How long the hook waits for the client to finish writing stdin. */
const STDIN_DEADLINE_MS = 1000
const STDIN_MAX_BYTES = 4 * 1024 * 1024

const USAGE = `usage: mpac-mcp hook <${HOOK_EVENTS.join('|')}> [--client ${CLIENTS.join('|')}]
       mpac-mcp hook doctor [--client ${CLIENTS.join('|')}]`

type Env = Readonly<Record<string, string | undefined>>

export interface HookIo {
  readonly stdin: NodeJS.ReadableStream
  readonly stdout: (s: string) => void
  readonly stderr: (s: string) => void
  readonly env: Env
  readonly cwd: string
}

/** Diagnostics are one line each (the client's debug log): inner line breaks become spaces. */
const oneLine = (s: string): string => s.replace(/\s*[\r\n]+\s*(?=.)/g, ' ')

const defaultIo = (): HookIo => ({
  stdin: process.stdin,
  stdout: s => { process.stdout.write(s) },
  stderr: s => { process.stderr.write(oneLine(s)) },
  env: process.env,
  cwd: process.cwd()
})

function readStdin (stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const timer = setTimeout(() => done(new Error(`stdin not closed within ${STDIN_DEADLINE_MS} ms`)), STDIN_DEADLINE_MS)
    const onData = (c: Buffer | string): void => {
      const b = typeof c === 'string' ? Buffer.from(c) : c
      size += b.length
      if (size > STDIN_MAX_BYTES) done(new Error(`stdin is longer than ${STDIN_MAX_BYTES} bytes`))
      else chunks.push(b)
    }
    const onEnd = (): void => done(undefined)
    const onError = (err: Error): void => done(err)
    const done = (err: Error | undefined): void => {
      clearTimeout(timer)
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
      if (err !== undefined) {
        stream.pause()
        reject(err)
      } else {
        resolve(Buffer.concat(chunks).toString('utf8'))
      }
    }
    stream.on('data', onData)
    stream.on('end', onEnd)
    stream.on('error', onError)
  })
}

interface Args { event: string | undefined, client: string, error?: string }

function parseArgs (argv: readonly string[]): Args {
  let event: string | undefined
  let client = 'claude'
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string
    if (a === '--client') {
      const v = argv[++i]
      if (v === undefined) return { event, client, error: '--client needs a value' }
      client = v
    } else if (a.startsWith('--client=')) {
      client = a.slice('--client='.length)
    } else if (a.startsWith('-')) {
      return { event, client, error: `unknown option ${a}` }
    } else if (event === undefined) {
      event = a
    } else {
      return { event, client, error: `unexpected argument ${a}` }
    }
  }
  return { event, client }
}

/** MPAC_HOOKS off (the shim's own switch, docs/agents.md): 0, false, no or off. */
function hooksOff (env: Env): boolean {
  return ['0', 'false', 'no', 'off'].includes(env['MPAC_HOOKS']?.trim().toLowerCase() ?? '')
}

function isClient (c: string): c is ClientName {
  return (CLIENTS as readonly string[]).includes(c)
}

function editMode (env: Env): EditMode | undefined {
  const m = env['MPAC_HOOK_MODE']?.trim()
  return m !== undefined && (EDIT_MODES as readonly string[]).includes(m) ? m as EditMode : undefined
}

function failureMessage (err: unknown): string {
  if (err instanceof HookSocketError) return err.reason === 'timeout' ? `the shim did not answer within 1 s: ${err.message}` : err.message
  return (err as Error)?.message ?? String(err)
}

function print (io: HookIo, out: HookOutput): 0 {
  if (out.stdout !== null) io.stdout(out.stdout + '\n')
  return out.exitCode
}

const SESSION_START_RETRY_MS = 100

/** One request; the reply checked for the fields every reply has. */
async function ask (socket: string, request: HookRequest): Promise<HookReply> {
  const raw = await socketRequest(socket, request)
  if (raw['v'] !== HOOK_PROTOCOL_VERSION || typeof raw['decision'] !== 'string' || !Array.isArray(raw['holders'] ?? []) || !Array.isArray(raw['events'] ?? [])) {
    throw new Error('malformed reply from the shim')
  }
  return { holders: [], frozen: [], suspended: [], events: [], announced: null, ...raw } as unknown as HookReply
}

/** One hook invocation; always resolves to 0. */
export async function runHook (event: HookEventName, client: ClientName, io: HookIo): Promise<0> {
  const startedAt = performance.now()
  const adapter = ADAPTERS[client]
  const failClosed = io.env['MPAC_HOOK_FAIL']?.trim() === 'closed'
  let parsed
  try {
    const text = await readStdin(io.stdin)
    const input: unknown = JSON.parse(text)
    if (input === null || typeof input !== 'object' || Array.isArray(input)) throw new Error('not a JSON object')
    parsed = adapter.parse(event, record(input))
    if (parsed === undefined) throw new Error(`not ${client} hook input`)
  } catch (err) {
    io.stderr(`mpac-mcp hook ${event}: ignoring malformed stdin (${(err as Error).message})\n`)
    return 0
  }
  if (parsed.request === null) return 0
  const sessionId = parsed.sessionId ?? io.env['CLAUDE_CODE_SESSION_ID']?.trim() ?? null
  const found = await findShim({ sessionId, cwds: parsed.cwds.length > 0 ? parsed.cwds : [io.cwd], env: io.env, waitMs: event === 'session-start' ? SESSION_START_WAIT_MS : 0 })
  if (found === undefined) return 0 // not coordinated here
  let request: HookRequest = parsed.request
  if (request.op === 'check_edit') {
    const mode = editMode(io.env)
    if (mode !== undefined) request = { ...request, mode }
  }
  if (sessionId !== null && request.client_session_id === null) request = { ...request, client_session_id: sessionId }
  let reply: HookReply
  try {
    reply = await ask(found.entry.socket, request)
    // A shim the client has just started may not have joined its session yet: a SessionStart
    // asks again (within the same 1.5 s budget) until its view is fresh, for a real digest.
    while (event === 'session-start' && reply.coordinator !== 'ok' && performance.now() + SESSION_START_RETRY_MS < startedAt + SESSION_START_WAIT_MS) {
      await new Promise(resolve => setTimeout(resolve, SESSION_START_RETRY_MS))
      reply = await ask(found.entry.socket, request)
    }
  } catch (err) {
    const message = failureMessage(err)
    io.stderr(`mpac-mcp hook ${event}: ${message}; the edit is not checked\n`)
    return failClosed ? print(io, adapter.failClosed(event, message)) : 0
  }
  if (reply.error !== undefined && reply.error !== null) {
    io.stderr(`mpac-mcp hook ${event}: the shim answered ${reply.error.code}: ${reply.error.message}\n`)
  }
  if (failClosed && request.op === 'check_edit' && reply.decision !== 'deny' && reply.coordinator !== 'ok') {
    return print(io, adapter.failClosed(event, `coordinator ${reply.coordinator === 'down' ? 'unreachable' : 'view stale'}`))
  }
  return print(io, adapter.render(event, request, reply))
}

/** `mpac-mcp hook doctor`: which shim a hook run here would reach, and whether it answers. */
export async function runDoctor (io: HookIo): Promise<number> {
  const dir = registryDir(io.env)
  const entries = liveEntries(dir)
  const sessionId = io.env['CLAUDE_CODE_SESSION_ID']?.trim() ?? null
  io.stdout(`registry: ${dir} (${entries.length} live shim${entries.length === 1 ? '' : 's'})\n`)
  for (const e of entries) io.stdout(`  pid ${e.pid}: ${e.principal_id} in ${e.workspace_dir} (session ${e.session_id}, client pid ${e.client_pid}, client session ${e.client_session_id ?? '-'})\n`)
  if (hooksOff(io.env)) io.stdout('MPAC_HOOKS is off: hooks do nothing\n')
  const found = await findShim({ sessionId, cwds: [io.cwd], env: io.env })
  if (found === undefined) {
    io.stdout(`no shim for ${io.cwd}${sessionId !== null ? ` or client session ${sessionId}` : ''}: hooks run here do nothing (start the agent with mpac-mcp as its MCP server)\n`)
    return 1
  }
  io.stdout(`a hook here reaches pid ${found.entry.pid} (matched by ${found.rule}) at ${found.entry.socket}\n`)
  const started = performance.now()
  try {
    const reply = await socketRequest(found.entry.socket, { v: HOOK_PROTOCOL_VERSION, op: 'ping', client: 'other', client_session_id: sessionId })
    const ms = (performance.now() - started).toFixed(1)
    const identity = record(reply['identity'])
    const age = reply['view_age_ms']
    io.stdout(`ping: ${ms} ms; coordinator ${String(reply['coordinator'])}, view age ${typeof age === 'number' ? `${age} ms` : 'unknown'}${typeof identity['principal_id'] === 'string' ? `; principal ${identity['principal_id']}` : ''}\n`)
    const recent = Array.isArray(reply['recent']) ? (reply['recent'] as unknown[]).map(record).slice(-10) : []
    if (recent.length > 0) io.stdout('last decisions:\n')
    for (const d of recent) {
      const paths = Array.isArray(d['paths']) ? (d['paths'] as unknown[]).join(', ') : ''
      io.stdout(`  ${String(d['at'])} ${String(d['op'])} ${String(d['decision'])} (coordinator ${String(d['coordinator'])}, ${String(d['ms'])} ms) ${paths}\n`)
    }
    return reply['coordinator'] === 'ok' ? 0 : 1
  } catch (err) {
    io.stdout(`ping failed: ${failureMessage(err)}\n`)
    return 1
  }
}

/** The `hook` subcommand; resolves to the exit code (0 for every hook event, whatever happens). */
export async function runHookCli (argv: readonly string[], io: HookIo = defaultIo()): Promise<number> {
  const args = parseArgs(argv)
  if (args.event === 'doctor') {
    if (!isClient(args.client)) {
      io.stderr(`${USAGE}\n`)
      return 2
    }
    return await runDoctor(io)
  }
  // A hook never exits non-zero, even when misconfigured: it says so on stderr and lets the action proceed.
  if (args.error !== undefined || args.event === undefined || !(HOOK_EVENTS as readonly string[]).includes(args.event) || !isClient(args.client)) {
    io.stderr(`mpac-mcp hook: ${args.error ?? (args.event === undefined ? 'missing event' : !isClient(args.client) ? `unknown client ${args.client}` : `unknown event ${args.event}`)}\n${USAGE}\n`)
    return 0
  }
  if (hooksOff(io.env)) return 0
  try {
    return await runHook(args.event as HookEventName, args.client, io)
  } catch (err) {
    io.stderr(`mpac-mcp hook ${args.event}: ${(err as Error)?.message ?? String(err)}\n`)
    return 0
  }
}
