#!/usr/bin/env node
/**
 * `mpac-mcp`: a small dispatcher. `mpac-mcp hook …` runs the agent hook
 * command (`src/hooks/cli.ts`, node built-ins only), which must start in
 * tens of milliseconds because the coding agent runs it before every edit;
 * everything else (the MCP stdio server, `setup`, `smoke`, `--help`,
 * `--version`) is `./main.ts`, imported on demand because it loads the MCP
 * SDK, pino, zod and undici (0.5–1 s). `mpac-mcp guard …` is the git guard
 * (`./guard/cli.ts`, node built-ins until it needs the coordinator). This
 * file imports nothing statically.
 */
const argv = process.argv.slice(2)
if (argv[0] === 'hook') {
  try {
    const { runHookCli } = await import('../hooks/cli.js')
    process.exitCode = await runHookCli(argv.slice(1))
  } catch (err) {
    // A hook must never fail by accident: the client would show an error, or (exit 2) block.
    process.stderr.write(`mpac-mcp hook: ${(err as Error).message}\n`)
    process.exitCode = 0
  }
} else if (argv[0] === 'guard') {
  const { runGuardCli } = await import('./guard/cli.js')
  process.exitCode = await runGuardCli(argv.slice(1))
} else {
  const { runShimCli } = await import('./main.js')
  await runShimCli(argv)
}
