#!/usr/bin/env node
/**
 * `mpac-mcp`: a small dispatcher. `mpac-mcp guard …` is the git guard
 * (`./guard/cli.ts`, node built-ins only until it needs the coordinator);
 * everything else is `./main.ts`, imported on demand because it loads the
 * MCP SDK, pino, zod and undici. This file imports nothing statically.
 */
const argv = process.argv.slice(2)
if (argv[0] === 'guard') {
  const { runGuardCli } = await import('./guard/cli.js')
  process.exitCode = await runGuardCli(argv.slice(1))
} else {
  await import('./main.js')
}
