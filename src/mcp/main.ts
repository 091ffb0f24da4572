/**
 * `mpac-mcp` except `hook`, loaded by the dispatcher `cli.ts`: with no
 * arguments, the MCP stdio server (stdout carries only JSON-RPC; logs go to
 * fd 2). Subcommands: `setup claude [--hooks]`, `smoke`, `--help`,
 * `--version`. This module imports the MCP SDK, pino, zod and undici (through
 * the session); the hook path never loads it.
 */
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js'
import { pino, type Logger } from 'pino'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { socketDir } from '../hooks/protocol.js'
import { VERSION } from '../version.js'
import { ConfigError, checkShimEnvironment, logLevelOf } from './config.js'
import { startHookEndpoint, type HookEndpoint } from './hooks/endpoint.js'
import { createMcpServer } from './server.js'
import { SessionPool } from './session.js'
import { setupClaude } from './setup.js'
import { setupClaudeHooks } from './setup-hooks.js'
import { SMOKE_FLOWS, runSmoke } from './smoke.js'

const USAGE = `Usage:
  mpac-mcp                                   run the MCP server over stdio (for Claude Code, Cursor, …)
  mpac-mcp setup claude [--scope local|project|user] [--format command|json] [--workspace DIR] [--name NAME]
                                             print the \`claude mcp add\` command or the .mcp.json entry
  mpac-mcp setup claude --hooks [--scope local|project|user] [--remove]
                                             also write (or remove) the hooks that check every edit in .claude/settings*.json
  mpac-mcp hook <session-start|user-prompt|pre-edit|post-edit|stop|session-end> [--client claude|cursor|codex|gemini]
                                             the agent hook: reads the client's hook JSON on stdin (see README "Enforcement")
  mpac-mcp hook doctor                       which running shim a hook started here would reach, and its view age
  mpac-mcp guard <install|uninstall|status|check> …
                                             the git pre-commit/pre-push guard (mpac-mcp guard --help)
  mpac-mcp smoke <${SMOKE_FLOWS.join('|')}|all> --workspace DIR [--file README.md]
                                             run an end-to-end check on a scratch copy of one file
  mpac-mcp dashboard [--open] [--workspace DIR]
                                             print (or open) this workspace's dashboard URL
  mpac-mcp --help | --version

Environment: MPAC_WORKSPACE_DIR, MPAC_COORDINATOR_URL, MPAC_SESSION_ID, MPAC_COORDINATOR_TOKEN,
MPAC_AGENT_NAME, MPAC_PRINCIPAL_ID, MPAC_AGENT_ROLES, MPAC_AGENT_CAPABILITIES, MPAC_SIDECAR_PORT,
MPAC_SIDECAR_HOST, MPAC_SIDECAR_IDLE_EXIT, MPAC_GOODBYE_DISPOSITION, MPAC_REQUEST_TIMEOUT_MS,
MPAC_CLAIM_WAIT_MS, MPAC_LOG_LEVEL, MPAC_HOOKS (see docs/agents.md). A bad value: one line on stderr, exit 2.`

/** Throws ConfigError for an unknown MPAC_LOG_LEVEL. */
export function createLogger (env: NodeJS.ProcessEnv): Logger {
  return pino({ name: 'mpac-mcp', level: logLevelOf(env) }, pino.destination({ fd: 2, sync: true }))
}

async function serve (): Promise<void> {
  // Every variable is checked before the MCP server starts: a bad one is one line on
  // stderr and exit 2 (main), which the MCP client shows as a failed server.
  const { warnings } = checkShimEnvironment(process.env, process.cwd())
  for (const warning of warnings) process.stderr.write(`mpac-mcp: warning: ${warning}\n`)
  const log = createLogger(process.env)
  const pool = new SessionPool(process.env, process.cwd(), { logger: log })
  const server = createMcpServer(pool)
  const transport = new StdioServerTransport()

  let stopping = false
  let hooks: HookEndpoint | undefined
  const stop = async (why: string): Promise<void> => {
    if (stopping) return
    stopping = true
    log.info({ why }, 'shutting down')
    await hooks?.close().catch(() => {})
    await pool.closeAll()
    await server.close().catch(() => {})
    process.exit(0)
  }
  // The SDK's stdio transport does not close when stdin ends (style-anchors §5): we do.
  process.stdin.on('end', () => { void stop('stdin closed') })
  process.stdin.on('close', () => { void stop('stdin closed') })
  process.on('SIGINT', () => { void stop('SIGINT') })
  process.on('SIGTERM', () => { void stop('SIGTERM') })

  await server.connect(transport)
  log.info({ version: VERSION }, 'mpac-mcp ready on stdio')

  // Join the session right away so other agents see us; failures surface on the first tool call.
  try {
    const session = pool.get()
    session.ready().catch(err => log.warn({ err: (err as Error).message }, 'coordinator not reachable yet'))
    // The local hook endpoint (docs/agents.md): answers this agent's hooks from the session's live view.
    if (session.config.hooks) {
      startHookEndpoint({
        session,
        logger: log,
        socketDir: socketDir(process.env),
        registryDir: join(session.config.stateDir, 'hooks'),
        clientSessionId: process.env['CLAUDE_CODE_SESSION_ID']?.trim() || null
      }).then(endpoint => {
        if (stopping) void endpoint.close()
        else hooks = endpoint
      }, err => log.warn({ err: (err as Error).message }, 'hook endpoint not started; hooks will find no shim'))
    }
  } catch (err) {
    if (err instanceof ConfigError) log.error({ code: err.code }, err.message)
    else throw err
  }
}

async function main (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined) {
    await serve()
    return -1
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE + '\n')
    return 0
  }
  if (command === '--version' || command === '-v') {
    process.stdout.write(VERSION + '\n')
    return 0
  }
  if (command === 'setup') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        scope: { type: 'string', default: 'local' },
        format: { type: 'string', default: 'command' },
        workspace: { type: 'string' },
        name: { type: 'string', default: 'mpac-coding' },
        hooks: { type: 'boolean', default: false },
        remove: { type: 'boolean', default: false }
      }
    })
    if (positionals[0] !== 'claude' || (values.remove === true && values.hooks !== true)) {
      process.stderr.write('usage: mpac-mcp setup claude [--scope local|project|user] [--format command|json] [--hooks [--remove]]\n')
      return 2
    }
    if (values.remove === true) {
      const removed = setupClaudeHooks(process.env, { scope: values.scope, remove: true, workspace: values.workspace, cwd: process.cwd() })
      if (!removed.ok) {
        process.stderr.write(removed.error + '\n')
        return 2
      }
      process.stdout.write(removed.message + '\n')
      return 0
    }
    const out = setupClaude(process.env, {
      scope: values.scope,
      format: values.format,
      workspace: values.workspace,
      name: values.name,
      cwd: process.cwd()
    })
    if (!out.ok) {
      process.stderr.write(out.error + '\n')
      return 2
    }
    const notes = [...out.notes]
    if (values.hooks === true) {
      const hooks = setupClaudeHooks(process.env, { scope: values.scope, remove: false, workspace: values.workspace, cwd: process.cwd() })
      if (!hooks.ok) {
        process.stderr.write(hooks.error + '\n')
        return 2
      }
      notes.push(hooks.message, ...hooks.notes)
    }
    process.stdout.write(out.text + '\n')
    for (const note of notes) process.stderr.write(note + '\n')
    return 0
  }
  if (command === 'smoke') {
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: {
        workspace: { type: 'string', default: '.' },
        file: { type: 'string', default: 'README.md' }
      }
    })
    const flow = positionals[0]
    if (flow === undefined || (flow !== 'all' && !(SMOKE_FLOWS as readonly string[]).includes(flow))) {
      process.stderr.write(`usage: mpac-mcp smoke <${SMOKE_FLOWS.join('|')}|all> --workspace DIR [--file README.md]\n`)
      return 2
    }
    const log = createLogger({ ...process.env, MPAC_LOG_LEVEL: process.env['MPAC_LOG_LEVEL'] ?? 'warn' })
    const ok = await runSmoke(flow, { workspace: values.workspace, file: values.file, logger: log, out: s => process.stdout.write(s + '\n') })
    return ok ? 0 : 1
  }
  if (command === 'dashboard') {
    const { runDashboardCommand } = await import('./dashboard.js')
    return await runDashboardCommand(rest, process.env, process.cwd(), { out: s => process.stdout.write(s + '\n'), err: s => process.stderr.write(s + '\n') })
  }
  process.stderr.write(`unknown command ${JSON.stringify(command)}\n${USAGE}\n`)
  return 2
}

/** Runs the command; sets the exit code, or exits on a fatal error. The MCP server keeps running. */
export async function runShimCli (argv: string[]): Promise<void> {
  await main(argv).then(code => {
    if (code >= 0) process.exitCode = code
  }, err => {
    if (err instanceof ConfigError) {
      process.stderr.write(`mpac-mcp: ${err.code}: ${err.message}\n`)
      process.exit(2)
    }
    process.stderr.write(`mpac-mcp: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}
