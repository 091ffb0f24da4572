/**
 * `mpac-mcp smoke <flow>`: the original's end-to-end smoke flows (bridge.md
 * §7) against an isolated scratch copy of one file. The scratch directory is
 * made in the OS temp directory and checked not to lie inside a git
 * repository (the Python smokes silently used the enclosing repository).
 * The shim side runs the real MCP server and SDK client (in-memory
 * transport); the other agents are plain MPAC participants. Every wait is on
 * a coordinator reply, never a fixed sleep.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js'
import type { Scope } from '../protocol/scope.js'
import type { Logger } from 'pino'
import { CoordinatorClient, type Reply } from './client.js'
import { detectWorkspace, loadShimConfig, parseList } from './config.js'
import { createMcpServer } from './server.js'
import { SessionPool, parseSummary, type Summary } from './session.js'
import { ensureLocalSidecar, localSecretOf, readSidecarPid, sidecarCommand, sidecarPaths } from './sidecar.js'

export const SMOKE_FLOWS = ['milestone0', 'tools', 'commit', 'governance', 'takeover', 'remote'] as const
export type SmokeFlow = typeof SMOKE_FLOWS[number]

export interface SmokeOptions {
  readonly workspace: string
  readonly file: string
  readonly logger: Logger
  readonly out: (line: string) => void
  readonly env?: NodeJS.ProcessEnv
}

interface Check { readonly name: string, readonly ok: boolean, readonly detail?: string }

type Structured = Record<string, unknown>

interface Bridge {
  call (tool: string, args: Record<string, unknown>): Promise<Structured>
  close (): Promise<void>
}

interface Harness {
  readonly scratch: string
  readonly file: string
  readonly env: NodeJS.ProcessEnv
  bridge (name: string, roles?: string, principal?: string): Promise<Bridge>
  dev (name: string, roles?: string): Promise<CoordinatorClient>
  summary (): Promise<Summary>
}

export async function runSmoke (flow: string, options: SmokeOptions): Promise<boolean> {
  const flows = flow === 'all' ? [...SMOKE_FLOWS] : [flow as SmokeFlow]
  let allOk = true
  for (const f of flows) {
    const ok = await runOne(f, options)
    allOk &&= ok
  }
  if (flows.length > 1) options.out(allOk ? 'smoke: all flows passed' : 'smoke: some flows FAILED')
  return allOk
}

async function runOne (flow: SmokeFlow, options: SmokeOptions): Promise<boolean> {
  const checks: Check[] = []
  const cleanups: Array<() => Promise<void> | void> = []
  let final: Summary | undefined
  try {
    const harness = await makeHarness(flow, options, cleanups)
    final = await FLOWS[flow](harness, checks)
  } catch (err) {
    checks.push({ name: 'flow ran to the end', ok: false, detail: (err as Error).message })
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try { await cleanup() } catch { /* best effort */ }
    }
  }
  const ok = checks.length > 0 && checks.every(c => c.ok)
  options.out(`${flow}: ${ok ? 'PASS' : 'FAIL'}`)
  for (const c of checks) options.out(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}${c.detail !== undefined ? ` (${c.detail})` : ''}`)
  if (final !== undefined) for (const line of describe(final)) options.out(`  ${line}`)
  return ok
}

/** A compact picture of the final session state. */
export function describe (s: Summary): string[] {
  const lines = [`session ${s.session_id}: ${s.participant_count} participant(s), ${s.active_intent_count} active intent(s), ${s.open_conflict_count} open conflict(s)`]
  for (const p of s.participants) lines.push(`  participant ${p.principal_id} [${(p.roles ?? []).join(',')}] ${p.is_available === true ? 'available' : 'unavailable'}`)
  for (const i of s.active_intents) {
    const res = (i.scope as { resources?: unknown } | null)?.resources
    lines.push(`  intent ${i.intent_id} ${i.state} by ${i.principal_id} on ${Array.isArray(res) ? res.join(',') : '?'}`)
  }
  for (const c of s.open_conflicts) lines.push(`  conflict ${c.conflict_id} ${c.category ?? ''} ${c.state ?? ''} ${c.intent_a ?? ''} vs ${c.intent_b ?? ''}`)
  return lines
}

function scrub (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('MPAC_')) out[k] = v
  return out
}

async function makeHarness (flow: SmokeFlow, options: SmokeOptions, cleanups: Array<() => Promise<void> | void>): Promise<Harness> {
  const scratch = realpathSync(mkdtempSync(join(tmpdir(), `mpac-smoke-${flow}-`)))
  cleanups.push(() => rmSync(scratch, { recursive: true, force: true }))
  if (detectWorkspace(scratch) !== scratch) {
    throw new Error(`the temp directory ${scratch} lies inside a git repository (${detectWorkspace(scratch)}); set TMPDIR to a directory outside any repository`)
  }
  const state = realpathSync(mkdtempSync(join(tmpdir(), `mpac-smoke-state-${flow}-`)))
  cleanups.push(() => rmSync(state, { recursive: true, force: true }))

  const file = basename(options.file)
  const source = resolve(options.workspace, options.file)
  if (existsSync(source)) copyFileSync(source, join(scratch, file))
  else writeFileSync(join(scratch, file), '# mpac-mcp smoke placeholder\n')

  const env: NodeJS.ProcessEnv = {
    ...scrub(options.env ?? process.env),
    MPAC_WORKSPACE_DIR: scratch,
    XDG_STATE_HOME: state,
    MPAC_SIDECAR_IDLE_EXIT: '60'
  }
  let url: string
  let sessionId: string
  let helloSecret: (() => string) | undefined
  if (flow === 'remote') {
    const { port, child } = await startMultiSession(join(state, 'remote-data'), env)
    cleanups.push(() => stopChild(child))
    sessionId = `mpac-remote-smoke-${port}`
    url = `ws://127.0.0.1:${port}/session/${sessionId}`
    env['MPAC_COORDINATOR_URL'] = url
  } else {
    // A free port rather than the derived one: 38000–39999 lies in the OS's ephemeral
    // range, so on a busy machine another program may hold the derived port, and
    // the flows check coordination, not port derivation (config tests do).
    env['MPAC_SIDECAR_PORT'] = String(await freePort())
    const config = loadShimConfig(env)
    await ensureLocalSidecar(config, options.logger, { env })
    cleanups.push(() => {
      const pid = readSidecarPid(config.stateDir, config.sessionId)
      if (pid !== undefined) {
        try { process.kill(pid, 'SIGTERM') } catch { /* gone */ }
      }
    })
    url = config.url
    sessionId = config.sessionId
    // The observer and helper clients present the local secret, as the shim does.
    helloSecret = () => localSecretOf(config).secret
  }

  const logger = options.logger
  const harness: Harness = {
    scratch,
    file,
    env,
    async bridge (name, roles, principal) {
      const bridgeEnv: NodeJS.ProcessEnv = { ...env, MPAC_AGENT_NAME: name, MPAC_AGENT_ROLES: roles ?? 'contributor' }
      if (principal !== undefined) bridgeEnv['MPAC_PRINCIPAL_ID'] = principal
      const pool = new SessionPool(bridgeEnv, scratch, { logger, env: bridgeEnv })
      const server = createMcpServer(pool)
      const client = new Client({ name: 'mpac-smoke', version: '1' })
      const [a, b] = InMemoryTransport.createLinkedPair()
      await server.connect(a)
      await client.connect(b)
      const bridge: Bridge = {
        async call (tool, args) {
          const res = await client.callTool({ name: tool, arguments: args })
          return (res.structuredContent ?? {}) as Structured
        },
        async close () {
          await pool.closeAll()
          await client.close()
          await server.close()
        }
      }
      cleanups.push(() => bridge.close())
      return bridge
    },
    async dev (name, roles) {
      const dev = new CoordinatorClient({
        url,
        sessionId,
        sessionIdPinned: true,
        identity: { principalId: `agent:${name}`, displayName: name, roles: parseList(roles, ['contributor']), capabilities: ['intent.broadcast', 'intent.withdraw', 'conflict.ack'] },
        ...(helloSecret === undefined ? {} : { helloSecret }),
        logger
      })
      cleanups.push(() => dev.close())
      await dev.ensureConnected()
      return dev
    },
    async summary () {
      const probe = await harness.dev('SmokeObserver', 'observer')
      const s = parseSummary(await probe.query({ type: 'SESSION_SUMMARY' }))
      await probe.close({ disposition: 'withdraw', activeIntents: [] })
      return s
    }
  }
  return harness
}

function check (checks: Check[], name: string, ok: boolean, detail?: unknown): void {
  checks.push(detail === undefined || ok ? { name, ok } : { name, ok, detail: typeof detail === 'string' ? detail : JSON.stringify(detail) })
}

function announce (dev: CoordinatorClient, intentId: string, file: string, impact?: string[]): Promise<Reply> {
  const scope: Scope = { kind: 'file_set', resources: [file] }
  if (impact !== undefined) scope.extensions = { impact }
  return dev.request('INTENT_ANNOUNCE', { intent_id: intentId, objective: `demo edit of ${file}`, scope })
}

type FlowFn = (h: Harness, checks: Check[]) => Promise<Summary>

const FLOWS: Record<SmokeFlow, FlowFn> = {
  async milestone0 (h, checks) {
    const alice = await h.dev('Alice')
    const bob = await h.dev('Bob')
    const a = await announce(alice, 'intent-alice-demo', h.file)
    const b = await announce(bob, 'intent-bob-demo', h.file)
    check(checks, 'Alice\'s announce accepted', a.accepted, a.error)
    check(checks, 'Bob\'s announce race-locked with STALE_INTENT', !b.accepted && b.error?.error_code === 'STALE_INTENT', b.error ?? 'accepted')
    const bridge = await h.bridge('SmokeBridge')
    const who = await bridge.call('who_is_working', {})
    check(checks, 'who_is_working sees at least 2 participants', Number(who['participant_count']) >= 2, who)
    check(checks, 'exactly 1 active intent', who['active_intent_count'] === 1, who['active_intent_count'])
    check(checks, 'no open conflict', who['open_conflict_count'] === 0, who['open_conflict_count'])
    return h.summary()
  },

  async tools (h, checks) {
    const alice = await h.dev('Alice')
    await announce(alice, 'intent-alice-demo', h.file)
    const bridge = await h.bridge('SmokeBridge')
    const before = await bridge.call('who_is_working', {})
    check(checks, 'before: at least 1 intent', Number(before['active_intent_count']) >= 1, before)
    const begin = await bridge.call('begin_task', { objective: 'smoke edit', files: [h.file] })
    const errors = (begin['errors'] ?? []) as Array<Record<string, unknown>>
    check(checks, 'begin_task refused with STALE_INTENT', begin['status'] === 'error' && errors.some(e => e['error_code'] === 'STALE_INTENT'), begin)
    const overlap = await bridge.call('check_overlap', { files: [h.file] })
    check(checks, 'check_overlap reports the overlap', overlap['has_overlap'] === true, overlap)
    if (begin['status'] === 'ok') await bridge.call('yield_task', { intent_id: begin['intent_id'] })
    const after = await bridge.call('who_is_working', {})
    check(checks, 'after: at least 1 intent', Number(after['active_intent_count']) >= 1, after)
    return h.summary()
  },

  async commit (h, checks) {
    const bridge = await h.bridge('SmokeBridge')
    const state = await bridge.call('get_file_state', { path: h.file })
    check(checks, 'get_file_state finds the file', state['status'] === 'ok', state)
    const begin = await bridge.call('begin_task', { objective: 'smoke commit', files: [h.file] })
    check(checks, 'begin_task ok', begin['status'] === 'ok', begin)
    const content = `${typeof state['content'] === 'string' ? state['content'] : ''}\n<!-- mpac-mcp smoke commit -->\n`
    const commit = await bridge.call('submit_change', { intent_id: begin['intent_id'], target: h.file, content, state_ref_before: state['state_ref'] })
    check(checks, 'submit_change success', commit['status'] === 'success', commit)
    const again = await bridge.call('get_file_state', { path: h.file, include_content: false })
    check(checks, 'the file has a new state_ref', again['status'] === 'ok' && again['state_ref'] !== state['state_ref'] && again['state_ref'] === commit['state_ref_after'], again)
    const onDisk = readFileSync(join(h.scratch, h.file), 'utf8')
    check(checks, 'the commit reached the file on disk', onDisk === content)
    const y = await bridge.call('yield_task', { intent_id: begin['intent_id'], reason: 'completed' })
    check(checks, 'yield_task ok', y['status'] === 'ok', y)
    return h.summary()
  },

  async governance (h, checks) {
    const dependent = 'dependent.md'
    writeFileSync(join(h.scratch, dependent), '# depends on the main file\n')
    const alice = await h.dev('Alice')
    const a = await announce(alice, 'intent-alice-demo', h.file, [dependent])
    check(checks, 'Alice announces with impact on dependent.md', a.accepted, a.error)
    const worker = await h.bridge('BridgeWorker', 'contributor', 'agent:bridge-worker')
    const begin = await worker.call('begin_task', { objective: 'edit the dependent file', files: [dependent] })
    check(checks, 'begin_task ok', begin['status'] === 'ok', begin)
    const conflicts = (begin['conflicts'] ?? []) as Array<Record<string, unknown>>
    const conflict = conflicts[0]
    check(checks, 'a dependency_breakage conflict is reported', conflict !== undefined && conflict['category'] === 'dependency_breakage', conflicts)
    const conflictId = typeof conflict?.['conflict_id'] === 'string' ? conflict['conflict_id'] : ''
    const ack = await worker.call('ack_conflict', { conflict_id: conflictId, ack_type: 'seen' })
    check(checks, 'ack_conflict ok', ack['status'] === 'ok', ack)
    await h.dev('Arbiter', 'arbiter')
    const esc = await worker.call('escalate_conflict', { conflict_id: conflictId, reason: 'needs a decision' })
    check(checks, 'escalate_conflict ok to agent:Arbiter', esc['status'] === 'ok' && esc['escalate_to'] === 'agent:Arbiter', esc)
    const arbiter = await h.bridge('BridgeArbiter', 'arbiter', 'agent:bridge-arbiter')
    const res = await arbiter.call('resolve_conflict', { conflict_id: conflictId, decision: 'approved', rationale: 'smoke: both edits are fine' })
    check(checks, 'resolve_conflict ok, nothing remaining', res['status'] === 'ok' && res['remaining_conflict'] === null, res)
    const y = await worker.call('yield_task', { intent_id: begin['intent_id'] })
    check(checks, 'yield_task ok', y['status'] === 'ok', y)
    const final = await h.summary()
    check(checks, 'the conflict is no longer open', !final.open_conflicts.some(c => c.conflict_id === conflictId))
    return final
  },

  async takeover (h, checks) {
    const alice = await h.dev('Alice')
    const a = await announce(alice, 'intent-alice-demo', h.file)
    check(checks, 'Alice announces', a.accepted, a.error)
    await alice.close({ disposition: 'transfer', activeIntents: ['intent-alice-demo'], reason: 'user_exit' })
    const claimer = await h.bridge('BridgeClaimer', 'contributor', 'agent:bridge-claimer')
    const who = await claimer.call('who_is_working', {})
    const intents = (who['active_intents'] ?? []) as Array<Record<string, unknown>>
    const suspended = intents.find(i => i['principal_id'] === 'agent:Alice' && i['state'] === 'SUSPENDED')
    check(checks, 'Alice\'s intent is SUSPENDED after her GOODBYE(transfer)', suspended !== undefined, intents)
    const take = await claimer.call('take_over_task', { original_intent_id: 'intent-alice-demo', justification: 'Alice left' })
    check(checks, 'take_over_task ok, approved', take['status'] === 'ok' && take['decision'] === 'approved', take)
    const final = await h.summary()
    check(checks, 'the new intent belongs to agent:bridge-claimer', final.active_intents.some(i => i.intent_id === take['new_intent_id'] && i.principal_id === 'agent:bridge-claimer'), final.active_intents)
    if (take['status'] === 'ok') await claimer.call('yield_task', { intent_id: take['new_intent_id'] })
    return final
  },

  async remote (h, checks) {
    const bridge = await h.bridge('SmokeRemote')
    const who = await bridge.call('who_is_working', {})
    check(checks, 'who_is_working reaches the remote session', who['status'] === 'ok' && who['session_id'] === (h.env['MPAC_COORDINATOR_URL'] ?? '').split('/').pop(), who)
    const begin = await bridge.call('begin_task', { objective: 'remote smoke', files: [h.file] })
    check(checks, 'begin_task ok', begin['status'] === 'ok', begin)
    const overlap = await bridge.call('check_overlap', { files: [h.file] })
    check(checks, 'check_overlap ok (own intent is not an overlap)', overlap['status'] === 'ok' && overlap['has_overlap'] === false, overlap)
    const y = await bridge.call('yield_task', { intent_id: begin['intent_id'] })
    check(checks, 'yield_task ok', y['status'] === 'ok', y)
    const sidecars = sidecarPaths(join(String(h.env['XDG_STATE_HOME']), 'mpac-mcp'), 'x').dir
    const spawned = existsSync(sidecars) ? readdirSync(sidecars).filter(f => f.endsWith('.pid')) : []
    check(checks, 'no local sidecar was started in remote mode', spawned.length === 0, spawned)
    return h.summary()
  }
}

/** Starts a multi-session coordinator on a free loopback port; resolves with the port from its banner. */
export async function startMultiSession (dataDir: string, env: NodeJS.ProcessEnv): Promise<{ port: number, child: ChildProcess }> {
  const { command, args } = sidecarCommand()
  const child = spawn(command, [...args, '--port', '0', '--host', '127.0.0.1', '--data-dir', dataDir], { env: scrub(env), stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  return new Promise((resolvePort, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`the coordinator did not start:\n${output}`)) }, 20_000)
    const onData = (chunk: Buffer): void => {
      output += chunk.toString('utf8')
      const m = /listening:\s+\S+:(\d+)/.exec(output)
      if (m !== null) {
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolvePort({ port: Number(m[1]), child })
      }
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', (chunk: Buffer) => { output += chunk.toString('utf8') })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the coordinator exited (${code}):\n${output}`)) })
  })
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolveListen)
  })
  const port = (server.address() as AddressInfo).port
  await new Promise<void>(resolveClose => server.close(() => resolveClose()))
  return port
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolveExit => child.once('exit', () => resolveExit()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
  await exited
  clearTimeout(timer)
}
