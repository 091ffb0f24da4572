/**
 * The auto-started local sidecar's lifetime: it stops by itself once no
 * participant has been connected for MPAC_SIDECAR_IDLE_EXIT seconds, and 0
 * means it never stops by itself. Real `mpac-mcp` processes in local mode.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { sidecarPaths } from '../../src/mcp/sidecar.js'
import { deriveSessionId } from '../../src/protocol/workspace-id.js'
import { cleanEnv, startShim, stateHome, tempDir, waitForExit } from './harness.js'

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('the sidecar stops by itself after MPAC_SIDECAR_IDLE_EXIT seconds without participants', async t => {
  const ws = tempDir(t, 'mpac-idle-ws-')
  const state = stateHome(t)
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_AGENT_NAME: 'Idler', MPAC_SIDECAR_IDLE_EXIT: '1' }))
  t.match(await shim.call('who_is_working'), { status: 'ok' })
  const pid = Number(readFileSync(sidecarPaths(join(state, 'mpac-mcp'), deriveSessionId(ws)).pidFile, 'utf8').trim())
  t.ok(alive(pid), 'running while a participant is connected')
  await shim.close()
  t.ok(await waitForExit(pid, 15_000), 'gone once idle')
})

t.test('MPAC_SIDECAR_IDLE_EXIT=0 starts a sidecar that never stops by itself', async t => {
  const ws = tempDir(t, 'mpac-noidle-ws-')
  const state = stateHome(t)
  const shim = await startShim(t, cleanEnv({ XDG_STATE_HOME: state, MPAC_WORKSPACE_DIR: ws, MPAC_AGENT_NAME: 'Keeper', MPAC_SIDECAR_IDLE_EXIT: '0' }))
  const who = await shim.call('who_is_working')
  t.match(who, { status: 'ok', session_id: deriveSessionId(ws) })
  const log = readFileSync(sidecarPaths(join(state, 'mpac-mcp'), deriveSessionId(ws)).logFile, 'utf8')
  t.notMatch(log, /idle-exit/, 'the sidecar accepted its flags')
})
