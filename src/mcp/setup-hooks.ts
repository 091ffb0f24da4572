/**
 * `mpac-mcp setup claude --hooks [--scope local|project|user] [--remove]`:
 * merges the mpac hook handlers (agent-hooks-and-dashboard.md §7.2) into
 * Claude Code's settings: `.claude/settings.local.json` (local, the default),
 * `.claude/settings.json` (project) in the workspace, or
 * `~/.claude/settings.json` (user). Handlers run in exec form (`command` +
 * `args`: no shell, paths with spaces survive, and the hook stays the
 * client's child for the rendezvous) with the absolute path of the built
 * `dist/mcp/cli.js`. Our handlers are recognised by their arguments
 * (`…/mcp/cli.js hook <event>`, or a shell command `mpac-mcp hook <event>`);
 * everything else in the file is preserved as it is. Installing twice changes
 * nothing (the file is not rewritten); `--remove` takes out exactly our
 * handlers (and the groups and events left empty by that). The file is
 * written atomically (a temporary file in the same directory, then rename)
 * and never through a symbolic link.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { resolveWorkspace, type Env } from './config.js'
import { packageRoot } from './sidecar.js'

export const HOOK_SCOPES = ['local', 'project', 'user'] as const
export type HookScope = typeof HOOK_SCOPES[number]

/** The edit tools of Claude Code whose calls the pre-edit and post-edit hooks see. */
export const EDIT_MATCHER = 'Edit|Write|MultiEdit|NotebookEdit'

const HOOK_EVENT_ARGS = ['session-start', 'user-prompt', 'pre-edit', 'post-edit', 'stop', 'session-end']

/** [Claude Code event, matcher, our event, timeout in seconds]: what we install. */
const INSTALLED: ReadonlyArray<readonly [string, string | undefined, string, number]> = [
  ['SessionStart', undefined, 'session-start', 5],
  ['UserPromptSubmit', undefined, 'user-prompt', 5],
  ['PreToolUse', EDIT_MATCHER, 'pre-edit', 5],
  ['PostToolUse', EDIT_MATCHER, 'post-edit', 5],
  ['SessionEnd', undefined, 'session-end', 2]
]

export interface HookSetupOptions {
  readonly scope: string
  readonly remove: boolean
  readonly workspace?: string | undefined
  readonly cwd: string
  /** The hook entry to run (default: this installation's `dist/mcp/cli.js`). */
  readonly entry?: string
  /** The node to run it with (default: this process's executable; `node` for the shared project file). */
  readonly node?: string
}

export type HookSetupResult =
  | { readonly ok: true, readonly file: string, readonly changed: boolean, readonly message: string, readonly notes: readonly string[] }
  | { readonly ok: false, readonly error: string }

type Json = Record<string, unknown>

function isObject (v: unknown): v is Json {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** Whether a handler is one of ours. */
export function isOwnHandler (handler: unknown): boolean {
  if (!isObject(handler) || handler['type'] !== 'command') return false
  const args = handler['args']
  if (Array.isArray(args)) {
    for (let i = 1; i + 1 < args.length; i++) {
      const before: unknown = args[i - 1]
      if (args[i] === 'hook' && typeof before === 'string' && /(?:^|[\\/])mcp[\\/]cli\.[cm]?[jt]s$/.test(before) && HOOK_EVENT_ARGS.includes(args[i + 1] as string)) return true
    }
    return false
  }
  const command = handler['command']
  return typeof command === 'string' && new RegExp(`(?:^|[\\s/\\\\])(?:mpac-mcp|mcp[\\\\/]cli\\.js)\\s+hook\\s+(?:${HOOK_EVENT_ARGS.join('|')})\\b`).test(command)
}

/** The settings file for a scope. */
export function settingsFile (scope: HookScope, env: Env, workspace: string): string {
  if (scope === 'user') return join(env['HOME']?.trim() || homedir(), '.claude', 'settings.json')
  return join(workspace, '.claude', scope === 'project' ? 'settings.json' : 'settings.local.json')
}

function desiredGroup (matcher: string | undefined, node: string, entry: string, event: string, timeout: number): Json {
  const handler = { type: 'command', command: node, args: [entry, 'hook', event], timeout }
  return matcher !== undefined ? { matcher, hooks: [handler] } : { hooks: [handler] }
}

/** `groups` without our handlers (groups left empty dropped). */
function withoutOwn (groups: unknown[]): unknown[] {
  const out: unknown[] = []
  for (const g of groups) {
    if (!isObject(g) || !Array.isArray(g['hooks'])) {
      out.push(g)
      continue
    }
    const kept = (g['hooks'] as unknown[]).filter(h => !isOwnHandler(h))
    if (kept.length === (g['hooks'] as unknown[]).length) out.push(g)
    else if (kept.length > 0) out.push({ ...g, hooks: kept })
  }
  return out
}

/** The settings with our handlers merged in (install) or taken out (remove); the input is not modified. */
export function mergeHooks (settings: Json, install: boolean, node: string, entry: string): Json {
  const hooks: Json = isObject(settings['hooks']) ? { ...settings['hooks'] } : {}
  const ours = new Map(INSTALLED.map(([name, matcher, event, timeout]) => [name, desiredGroup(matcher, node, entry, event, timeout)]))
  for (const name of new Set([...Object.keys(hooks), ...ours.keys()])) {
    const current = Array.isArray(hooks[name]) ? hooks[name] as unknown[] : undefined
    const desired = install ? ours.get(name) : undefined
    if (current === undefined) {
      if (desired !== undefined) hooks[name] = [desired]
      continue
    }
    const foreign = withoutOwn(current)
    // Already exactly ours (one group, as we would write it): leave the order of groups alone.
    const ownGroups = current.filter(g => !foreign.includes(g))
    if (desired !== undefined && ownGroups.length === 1 && isDeepStrictEqual(ownGroups[0], desired)) continue
    const next = desired !== undefined ? [...foreign, desired] : foreign
    if (next.length === 0) delete hooks[name]
    else hooks[name] = next
  }
  const out: Json = { ...settings }
  if (Object.keys(hooks).length > 0) out['hooks'] = hooks
  else if (isObject(settings['hooks']) && Object.keys(settings['hooks']).length > 0) delete out['hooks']
  return out
}

function refuseSymlink (path: string): string | undefined {
  try {
    if (lstatSync(path).isSymbolicLink()) return `${path} is a symbolic link; refusing to write through it (edit the file it points to by hand, or replace the link by a file)`
  } catch {
    // missing: fine
  }
  return undefined
}

export function setupClaudeHooks (env: Env, options: HookSetupOptions): HookSetupResult {
  if (!(HOOK_SCOPES as readonly string[]).includes(options.scope)) return { ok: false, error: `--scope must be local, project or user, got ${options.scope}` }
  const scope = options.scope as HookScope
  const workspace = resolveWorkspace(env, options.cwd, options.workspace !== undefined ? resolve(options.cwd, options.workspace) : undefined)
  const file = settingsFile(scope, env, workspace)
  const entry = options.entry ?? join(packageRoot(), 'dist', 'mcp', 'cli.js')
  const node = options.node ?? (scope === 'project' ? 'node' : process.execPath)
  const notes: string[] = []
  for (const p of [dirname(file), file]) {
    const refused = refuseSymlink(p)
    if (refused !== undefined) return { ok: false, error: refused }
  }
  let text: string | undefined
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return { ok: false, error: `cannot read ${file}: ${(err as Error).message}` }
  }
  let settings: Json = {}
  if (text !== undefined && text.trim() !== '') {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      return { ok: false, error: `${file} is not valid JSON (${(err as Error).message}); fix it first, nothing was changed` }
    }
    if (!isObject(parsed)) return { ok: false, error: `${file} does not hold a JSON object; nothing was changed` }
    if (parsed['hooks'] !== undefined && !isObject(parsed['hooks'])) return { ok: false, error: `${file}: "hooks" is not an object; nothing was changed` }
    settings = parsed
  }
  const merged = mergeHooks(settings, !options.remove, node, entry)
  const changed = !isDeepStrictEqual(merged, settings) || (text === undefined && !options.remove)
  if (!options.remove && !existsSync(entry)) notes.push(`note: ${entry} does not exist yet; run \`npm run build\` in ${packageRoot()} before starting Claude Code`)
  if (!options.remove && scope === 'project') notes.push(`note: ${file} is shared through the repository, but the hook path ${entry} is this machine's; teammates with another checkout should use --scope local`)
  if (!changed) {
    return { ok: true, file, changed: false, notes, message: options.remove ? `${file}: no mpac hooks to remove` : `${file}: mpac hooks already installed, nothing changed` }
  }
  if (options.remove && text === undefined) return { ok: true, file, changed: false, notes, message: `${file}: no mpac hooks to remove` }
  mkdirSync(dirname(file), { recursive: true })
  const temp = join(dirname(file), `.${process.pid}.${Date.now()}.mpac-tmp`)
  let mode = 0o644
  try {
    mode = lstatSync(file).mode & 0o777
  } catch { /* new file */ }
  try {
    writeFileSync(temp, JSON.stringify(merged, null, 2) + '\n', { mode, flag: 'wx' })
    renameSync(temp, file)
  } catch (err) {
    rmSync(temp, { force: true })
    return { ok: false, error: `cannot write ${file}: ${(err as Error).message}` }
  }
  return {
    ok: true,
    file,
    changed: true,
    notes,
    message: options.remove
      ? `removed the mpac hooks from ${file}`
      : `wrote the mpac hooks to ${file}: ${INSTALLED.map(([name]) => name).join(', ')} run \`${node} ${entry} hook <event>\``
  }
}
