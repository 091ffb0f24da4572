/**
 * `mpac-mcp guard check --staged | --pre-push <remote> <url>`: what the git
 * hooks run (agent-hooks-and-dashboard.md §7.8).
 *
 * Contract:
 * - Paths: the staged ones (both names of a rename), or those of every
 *   commit a push sends that the remote does not have.
 * - Identity, in order: the committer's agent shim (rendezvous on
 *   `CLAUDE_CODE_SESSION_ID` or an ancestor process being the agent's
 *   client, and serving this repository), else `MPAC_PRINCIPAL_ID` /
 *   `MPAC_AGENT_NAME`, else a human committer. Finding the shim by the
 *   workspace alone is not enough: a human committing next to a running
 *   agent would be taken for it.
 * - Answer: the shim's `guard_check` (1 s deadline); if no shim answers
 *   well, one SESSION_SUMMARY from the coordinator (./coordinator.ts),
 *   classified here (./classify.ts).
 * - Exit codes: 1 when a path is blocked in block mode (or, with
 *   MPAC_GUARD_FAIL=closed, when nothing could be checked); 2 for a knob
 *   with a bad value; 0 otherwise. Nothing known about this repository (no
 *   shim, no coordinator URL, no local coordinator answering) is a silent 0.
 *   Pre-push blocks only on others' ACTIVE intents.
 * - Output goes to stderr (git shows it); lines naming other agents' work
 *   quote their text, at most 20 per list.
 */
import { realpathSync } from 'node:fs'
import { resolve } from 'node:path'
import { parentPid, liveEntries, matchEntry } from '../../hooks/rendezvous.js'
import { CLIENT_DEADLINE_MS, HOOK_PROTOCOL_VERSION, registryDir, type HookRegistryEntry, type HookReply } from '../../hooks/protocol.js'
import { socketRequest } from '../../hooks/socket-client.js'
import { classifyShimReply, classifySummary, describeAll, type Committer, type Decision, type Finding } from './classify.js'
import { coordinatorTarget, fetchSummary } from './coordinator.js'
import { commitPaths, ignoreCase, pushedCommits, stagedPaths, topLevel } from './git.js'
import { GUARD_MODES, type GuardMode, type Outcome } from './install.js'

type Env = NodeJS.ProcessEnv

export type CheckWhat =
  | { readonly kind: 'staged' }
  | { readonly kind: 'pre-push', readonly remote: string, readonly url: string, readonly stdin: string }

export interface Knobs {
  readonly mode: GuardMode
  readonly failClosed: boolean
  readonly humansBlock: boolean
  readonly bypass: boolean
}

export class KnobError extends Error {}

function read (env: Env, name: string): string | undefined {
  const v = env[name]?.trim()
  return v === undefined || v === '' ? undefined : v
}

function oneOf<T extends string> (env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const v = read(env, name)?.toLowerCase()
  if (v === undefined) return fallback
  if (!(allowed as readonly string[]).includes(v)) throw new KnobError(`${name} must be ${allowed.join(' or ')}, got ${JSON.stringify(v)}`)
  return v as T
}

/** The knobs: MPAC_GUARD_MODE (wins over the installed --mode), MPAC_GUARD_FAIL, MPAC_GUARD_HUMANS, MPAC_GUARD_BYPASS. */
export function guardKnobs (env: Env, installedMode: GuardMode | undefined): Knobs {
  const bypassText = read(env, 'MPAC_GUARD_BYPASS')?.toLowerCase()
  if (bypassText !== undefined && !['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'].includes(bypassText)) {
    throw new KnobError(`MPAC_GUARD_BYPASS must be 1 or 0, got ${JSON.stringify(bypassText)}`)
  }
  return {
    mode: oneOf(env, 'MPAC_GUARD_MODE', GUARD_MODES, installedMode ?? 'block'),
    failClosed: oneOf(env, 'MPAC_GUARD_FAIL', ['open', 'closed'] as const, 'open') === 'closed',
    humansBlock: oneOf(env, 'MPAC_GUARD_HUMANS', ['warn', 'block'] as const, 'warn') === 'block',
    bypass: bypassText !== undefined && ['1', 'true', 'yes', 'on'].includes(bypassText)
  }
}

/**
 * The pids above this process (parent first), up to `depth`: Claude Code's
 * Bash runs `git commit`, git the hook's sh, sh this node (claude is the
 * fourth); a few more allow for wrappers.
 */
function ancestors (depth = 8): number[] {
  const out: number[] = []
  let pid: number | undefined = process.ppid
  while (pid !== undefined && pid > 1 && out.length < depth && !out.includes(pid)) {
    out.push(pid)
    pid = parentPid(pid)
  }
  return out
}

/** The shim of the committing agent, if one serves this repository. */
export function committerShim (env: Env, top: string): HookRegistryEntry | undefined {
  const real = (p: string): string => {
    try { return realpathSync(p) } catch { return resolve(p) }
  }
  const here = real(top)
  const entries = liveEntries(registryDir(env)).filter(e => real(e.workspace_dir) === here)
  return matchEntry(entries, { sessionId: read(env, 'CLAUDE_CODE_SESSION_ID') ?? null }, ancestors())?.entry
}

function envCommitter (env: Env): Committer {
  const principal = read(env, 'MPAC_PRINCIPAL_ID')
  const name = read(env, 'MPAC_AGENT_NAME')
  if (principal === undefined && name === undefined) return { kind: 'human' }
  return { kind: 'agent', principalIds: new Set(principal === undefined ? [] : [principal]), names: new Set(name === undefined ? [] : [name]) }
}

const plural = (n: number, one: string, many: string): string => `${n} ${n === 1 ? one : many}`

export type Answer =
  | { readonly kind: 'decision', readonly decision: Decision, readonly committer: Committer['kind'], readonly via: string }
  | { readonly kind: 'unknown' }
  | { readonly kind: 'unreachable', readonly detail: string }

/** Asks the shim, else the coordinator, about `paths`. */
export async function askAbout (env: Env, top: string, paths: readonly string[], opts: { ignoreCase: boolean, humansBlock: boolean }): Promise<Answer> {
  const shim = committerShim(env, top)
  // An error reply (more than 1,000 paths, a line over 64 KiB), a stale view or no answer in
  // time: the coordinator answers instead, for this agent.
  if (shim !== undefined && paths.length > 0) {
    try {
      const reply = await socketRequest(shim.socket, {
        v: HOOK_PROTOCOL_VERSION,
        op: 'guard_check',
        client: 'git',
        client_session_id: read(env, 'CLAUDE_CODE_SESSION_ID') ?? null,
        paths
      }, { deadlineMs: CLIENT_DEADLINE_MS }) as unknown as HookReply
      if ((reply.error === undefined || reply.error === null) && reply.coordinator === 'ok' && Array.isArray(reply.block)) {
        return { kind: 'decision', decision: classifyShimReply(reply, paths, opts), committer: 'agent', via: `shim pid ${shim.pid}` }
      }
    } catch {
      // unreachable, timeout, malformed: as above
    }
  }
  const committer: Committer = shim !== undefined
    ? { kind: 'agent', principalIds: new Set([shim.principal_id]), names: new Set() }
    : envCommitter(env)
  const workspace = read(env, 'MPAC_WORKSPACE_DIR') !== undefined ? resolve(read(env, 'MPAC_WORKSPACE_DIR') as string) : top
  const result = await fetchSummary(coordinatorTarget(env, workspace), 3000)
  if (result.kind === 'ok') {
    return { kind: 'decision', decision: classifySummary(result.summary, committer, paths, opts), committer: committer.kind, via: result.where }
  }
  if (result.kind === 'absent' && shim === undefined) return { kind: 'unknown' }
  return { kind: 'unreachable', detail: result.kind === 'unreachable' ? `${result.where}: ${result.detail}` : `nothing answers at ${result.where}` }
}

export interface CheckInput {
  readonly cwd: string
  readonly env: Env
  readonly what: CheckWhat
  /** The hook script's --mode. */
  readonly installedMode: GuardMode | undefined
}

export async function runCheck (input: CheckInput): Promise<Outcome> {
  const { env, what } = input
  const err: string[] = []
  let knobs: Knobs
  try {
    knobs = guardKnobs(env, input.installedMode)
  } catch (e) {
    if (!(e instanceof KnobError)) throw e
    return { code: 2, out: [], err: [`mpac guard: ${e.message} (or bypass: git ${what.kind === 'staged' ? 'commit' : 'push'} --no-verify)`] }
  }
  const verb = what.kind === 'staged' ? 'commit' : 'push'
  if (knobs.bypass) return { code: 0, out: [], err: [`mpac guard: bypassed (MPAC_GUARD_BYPASS); this ${verb} was not checked against other agents' work`] }
  const bypassHint = `Bypass once: MPAC_GUARD_BYPASS=1 git ${verb} …, or git ${verb} --no-verify.`

  let answer: Answer
  let paths: string[] = []
  try {
    const top = topLevel(input.cwd, env)
    if (what.kind === 'staged') {
      paths = stagedPaths(input.cwd, env)
    } else {
      const pushed = pushedCommits(input.cwd, what.remote, what.stdin, env)
      paths = commitPaths(input.cwd, pushed.commits, env)
      if (pushed.truncated) err.push(`mpac guard: only the newest ${pushed.commits.length} commits of this push were checked`)
    }
    if (paths.length === 0) return { code: 0, out: [], err }
    answer = await askAbout(env, top, paths, { ignoreCase: ignoreCase(input.cwd, env), humansBlock: knobs.humansBlock })
  } catch (e) {
    answer = { kind: 'unreachable', detail: (e as Error).message }
  }

  if (answer.kind === 'unknown') return { code: 0, out: [], err }
  if (answer.kind === 'unreachable') {
    if (knobs.failClosed) {
      err.push(`mpac guard: cannot check this ${verb} against other agents' work (${answer.detail}); refused because MPAC_GUARD_FAIL=closed.`,
        `${bypassHint} MPAC_GUARD_FAIL=open lets it through with a warning.`)
      return { code: 1, out: [], err }
    }
    err.push(`mpac guard: warning: could not check this ${verb} against other agents' work (${answer.detail}); letting it through (MPAC_GUARD_FAIL=closed would refuse it).`)
    return { code: 0, out: [], err }
  }

  let { block, warn } = answer.decision
  if (what.kind === 'pre-push') {
    // A push is refused only for files another agent is editing now.
    warn = [...block.filter(f => f.kind !== 'held'), ...warn.filter(f => f.kind !== 'unannounced')]
    block = block.filter(f => f.kind === 'held')
  }
  const held = (fs: readonly Finding[]): string => fs.every(f => f.kind === 'held') ? 'other agents are working on' : 'other agents are working on or that are frozen'
  let code = 0
  if (block.length > 0) {
    const enforce = knobs.mode === 'block'
    const head = what.kind === 'staged'
      ? `this commit touches ${plural(block.length, 'file', 'files')} ${held(block)}`
      : `this push sends changes to ${plural(block.length, 'file', 'files')} ${held(block)}`
    err.push(enforce ? `mpac guard: ${head}:` : `mpac guard: warning (MPAC_GUARD_MODE=warn): ${head}:`)
    err.push(...describeAll(block))
    if (enforce) {
      err.push(what.kind === 'staged'
        ? 'Wait until they finish (the file is free once their intent is withdrawn), coordinate with them or the user (who_is_working, check_overlap), or leave these files out of the commit (git restore --staged <file>).'
        : 'Wait until they finish, or coordinate with them or the user (who_is_working, check_overlap), before pushing these changes.')
      if (block.some(f => f.kind === 'frozen')) err.push('A frozen file is free again once its conflict is resolved (ack_conflict, escalate_conflict, resolve_conflict).')
      err.push(`${bypassHint} MPAC_GUARD_MODE=warn only warns.`)
      code = 1
    }
  }
  const suspended = warn.filter(f => f.kind !== 'unannounced')
  const unannounced = warn.filter(f => f.kind === 'unannounced')
  if (suspended.length > 0) {
    err.push(`mpac guard: warning: ${plural(suspended.length, 'file', 'files')} of this ${verb} ${suspended.length === 1 ? 'is' : 'are'} in other agents' work${answer.committer === 'human' ? ' (you have no mpac identity, so this is not refused; MPAC_GUARD_HUMANS=block refuses it)' : ''}:`)
    err.push(...describeAll(suspended))
  }
  if (unannounced.length > 0) {
    err.push(`mpac guard: warning: ${plural(unannounced.length, 'file', 'files')} of this ${verb} ${unannounced.length === 1 ? 'is' : 'are'} in none of your intents (announce your work with begin_task so others see it):`)
    err.push(...describeAll(unannounced))
  }
  return { code, out: [], err }
}
