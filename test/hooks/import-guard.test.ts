// The hook path must start fast: `mpac-mcp hook pre-edit` may load only node
// built-ins, src/mcp/cli.ts and src/hooks/*, never the MCP SDK, pino, zod or
// undici (0.5–1 s of imports). A module-resolution hook records every module
// the real process resolves; `--version` (which loads the shim) is the
// control that shows the recorder sees those packages.
import t from 'tap'
import { registryDir } from '../../src/hooks/protocol.js'
import { HEAVY_PACKAGES, heavyIn, loadedBy } from '../helpers/imports.js'
import { tempDir } from '../helpers/process.js'
import { hookEnv, startFakeShim } from './fake-shim.js'

t.test('the pre-edit path loads only node built-ins and src/hooks', async t => {
  const home = tempDir(t, 'mpac-hookstate-')
  const shim = await startFakeShim(t, registryDir({ XDG_STATE_HOME: home }), { client_session_id: 'guard-session' })
  shim.answer({ decision: 'deny', holders: [{ principal_id: 'agent:a', display_name: 'A', intent_id: 'i', objective: 'o', state: 'ACTIVE', files: ['x'] }] })
  const stdin = JSON.stringify({ session_id: 'guard-session', cwd: '/tmp/cce2e/ws', hook_event_name: 'PreToolUse', tool_name: 'Write', tool_input: { file_path: '/tmp/cce2e/ws/x' } })
  const run = await loadedBy(t, { args: ['hook', 'pre-edit'], stdin, env: hookEnv(home) })
  t.equal(run.code, 0, run.stderr)
  const loaded = run.loaded
  t.equal(shim.requests.length, 1, 'the hook really asked the shim (the whole path ran)')
  t.ok(loaded.includes('src/hooks/cli.ts') && loaded.includes('src/hooks/adapters/claude.ts'), 'the recorder saw the hook modules')
  const foreign = loaded.filter(u => !u.startsWith('node:') && !u.startsWith('src/hooks/') && u !== 'src/mcp/cli.ts')
  t.same(foreign, [], 'nothing but node built-ins, src/mcp/cli.ts and src/hooks/*')
  t.same(heavyIn(loaded), [])
})

t.test('control: --version loads the shim, and the recorder sees its heavy packages', async t => {
  const run = await loadedBy(t, { args: ['--version'], env: hookEnv(tempDir(t, 'mpac-hookstate-')) })
  t.equal(run.code, 0, run.stderr)
  const loaded = run.loaded
  for (const h of HEAVY_PACKAGES) t.ok(loaded.some(u => u.includes(`node_modules/${h}/`)), `${h} is loaded by the shim path`)
})
