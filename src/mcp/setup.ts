/**
 * `mpac-mcp setup claude`: the `claude mcp add …` command or the `.mcp.json`
 * entry that runs this installation of the shim. The token itself is never
 * printed: for the user's own config (local, user scope) the command expands
 * `$MPAC_COORDINATOR_TOKEN` from the shell; for the shared `.mcp.json`
 * (project scope, and the JSON form) it stays `${MPAC_COORDINATOR_TOKEN}`,
 * which Claude Code expands when it starts the server.
 */
import { existsSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { resolveWorkspace, type Env } from './config.js'
import { packageRoot } from './sidecar.js'

export interface SetupOptions {
  readonly scope: string
  readonly format: string
  readonly workspace?: string | undefined
  readonly name: string
  readonly cwd: string
}

/** `notes`: lines for the user (stderr), not part of the printed command or JSON. */
export type SetupResult = { readonly ok: true, readonly text: string, readonly notes: readonly string[] } | { readonly ok: false, readonly error: string }

/** How to start this installation: node + the built cli, or node + tsx + the source cli. */
export function shimCommand (): { command: string, args: string[] } {
  const root = packageRoot()
  const built = join(root, 'dist', 'mcp', 'cli.js')
  if (!import.meta.url.endsWith('.ts') || !existsSync(join(root, 'src', 'mcp', 'cli.ts'))) return { command: process.execPath, args: [built] }
  return { command: process.execPath, args: ['--import', import.meta.resolve('tsx'), join(root, 'src', 'mcp', 'cli.ts')] }
}

/** POSIX shell quoting: bare when safe, else single quotes. */
export function shellQuote (word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`
}

const PASSED_THROUGH = ['MPAC_SESSION_ID', 'MPAC_AGENT_NAME', 'MPAC_AGENT_ROLES', 'MPAC_PRINCIPAL_ID', 'MPAC_SIDECAR_PORT', 'NODE_EXTRA_CA_CERTS']
/**
 * Per person or per machine: never written to the shared .mcp.json (project
 * scope). Teammates sharing one MPAC_PRINCIPAL_ID or MPAC_AGENT_NAME would be
 * one participant and replace each other (close 4409); a port or a CA path is
 * this machine's.
 */
const PERSONAL = new Set(['MPAC_AGENT_NAME', 'MPAC_PRINCIPAL_ID', 'MPAC_SIDECAR_PORT', 'NODE_EXTRA_CA_CERTS'])

export function setupClaude (env: Env, options: SetupOptions): SetupResult {
  if (!['local', 'project', 'user'].includes(options.scope)) return { ok: false, error: `--scope must be local, project or user, got ${options.scope}` }
  if (!['command', 'json'].includes(options.format)) return { ok: false, error: `--format must be command or json, got ${options.format}` }

  const vars: Array<[string, string, string]> = [] // [name, value for JSON, value for the shell command]
  const remote = env['MPAC_COORDINATOR_URL']?.trim()
  if (remote !== undefined && remote !== '') {
    vars.push(['MPAC_COORDINATOR_URL', remote, shellQuote(remote)])
    if ((env['MPAC_COORDINATOR_TOKEN'] ?? '').trim() !== '') {
      // Project scope writes the shared .mcp.json: the value must stay a reference after the
      // shell ran the command, so it is single-quoted and Claude Code expands `${VAR}` when it
      // starts the server. Local and user scopes live in the user's own ~/.claude.json.
      vars.push(['MPAC_COORDINATOR_TOKEN', '${MPAC_COORDINATOR_TOKEN}', options.scope === 'project' ? "'${MPAC_COORDINATOR_TOKEN}'" : '"$MPAC_COORDINATOR_TOKEN"'])
    }
  }
  // A workspace pinned in a project or user config would be wrong on other machines or in
  // other repositories: there the shim finds the repository from its working directory.
  const notes: string[] = []
  if (options.scope === 'local') {
    const workspace = resolveWorkspace(env, options.cwd, options.workspace !== undefined ? resolve(options.cwd, options.workspace) : undefined)
    vars.push(['MPAC_WORKSPACE_DIR', workspace, shellQuote(workspace)])
    const explicit = options.workspace !== undefined || (env['MPAC_WORKSPACE_DIR'] ?? '').trim() !== ''
    if (!explicit && !existsSync(join(workspace, '.git'))) {
      notes.push(`note: no git repository at or above ${workspace}: pinned this directory as the workspace (MPAC_WORKSPACE_DIR). Run setup from the repository, or pass --workspace DIR.`)
    }
  }
  const leftOut: string[] = []
  for (const name of PASSED_THROUGH) {
    const value = env[name]?.trim()
    if (value === undefined || value === '') continue
    if (options.scope === 'project' && PERSONAL.has(name)) leftOut.push(name)
    else vars.push([name, value, shellQuote(value)])
  }
  if (leftOut.length > 0) {
    notes.push(`note: not written to the shared project configuration, because each person or machine sets its own: ${leftOut.join(', ')} (teammates with one MPAC_PRINCIPAL_ID or MPAC_AGENT_NAME would replace each other). Set them in your environment, or use --scope local.`)
  }

  const { command, args } = shimCommand()
  if (options.format === 'json') {
    const entry: Record<string, unknown> = { type: 'stdio', command, args, env: Object.fromEntries(vars.map(([k, v]) => [k, v])) }
    return { ok: true, text: JSON.stringify({ mcpServers: { [options.name]: entry } }, null, 2), notes }
  }
  // The name comes before the --env flags: Claude Code's `-e/--env <env...>` is
  // variadic and would take a name after it as one more KEY=value (and fail);
  // `--` then ends the env list.
  const parts = ['claude', 'mcp', 'add', '--transport', 'stdio', '--scope', options.scope, shellQuote(options.name)]
  for (const [name, , shellValue] of vars) parts.push('--env', `${name}=${shellValue}`)
  parts.push('--', shellQuote(command), ...args.map(shellQuote))
  return { ok: true, text: parts.join(' '), notes }
}
