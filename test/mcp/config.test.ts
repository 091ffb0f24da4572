import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { claimAgentSlot } from '../../src/mcp/agent-slot.js'
import {
  ConfigError,
  DEFAULT_CAPABILITIES,
  defaultPrincipalId,
  detectWorkspace,
  loadShimConfig,
  parseList,
  resolveWorkspace,
  stateDirFor
} from '../../src/mcp/config.js'
import { hookStateDir } from '../../src/hooks/protocol.js'
import { derivePort, deriveSessionId } from '../../src/protocol/workspace-id.js'
import { stateRef } from '../../src/protocol/state-ref.js'

t.test('bridge.md §2.3 test vectors', async t => {
  const vectors: Array<[string, string, number]> = [
    ['/srv/example-workspace', 'mpac-local-example-workspace-fb397488b0', 38600],
    ['/home/u/My Repo', 'mpac-local-my-repo-49ad09b3e5', 38979],
    ['/srv/mpac-rooms/room-alpha', 'mpac-local-room-alpha-add88ce338', 38211],
    ['/', 'mpac-local-workspace-42099b4af0', 39834]
  ]
  for (const [path, session, port] of vectors) {
    t.equal(deriveSessionId(path), session, `session id of ${path}`)
    t.equal(derivePort(path), port, `port of ${path}`)
  }
  t.equal(deriveSessionId('/srv/example-workspace/'), 'mpac-local-example-workspace-fb397488b0', 'a trailing slash is ignored')
  t.equal(stateRef('hello a\n'), 'sha256:448a19594af45f88')
  t.equal(stateRef(''), 'sha256:e3b0c44298fc1c14')
})

const base = { HOME: '/home/tester', USER: 'tester' }

t.test('local config: derived session and port, pinned, no token', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/example-workspace', MPAC_COORDINATOR_TOKEN: 'ignored' })
  t.equal(c.workspaceDir, '/srv/example-workspace')
  t.equal(c.isRemote, false)
  t.equal(c.sessionId, 'mpac-local-example-workspace-fb397488b0')
  t.equal(c.port, 38600)
  t.equal(c.host, '127.0.0.1')
  t.equal(c.url, 'ws://127.0.0.1:38600/session/mpac-local-example-workspace-fb397488b0')
  t.equal(c.sessionIdPinned, true)
  t.equal(c.token, undefined, 'the token is ignored in local mode')
  t.same(c.identity.roles, ['contributor'])
  t.same(c.identity.capabilities, DEFAULT_CAPABILITIES)
  t.equal(c.goodbyeDisposition, 'withdraw')
  t.equal(c.sidecarIdleExitSec, 600)
  t.equal(c.stateDir, '/home/tester/.local/state/mpac-mcp')
  t.ok(Object.isFrozen(c), 'the config is immutable')
  t.ok(Object.isFrozen(c.identity))
})

t.test('MPAC_SIDECAR_PORT and MPAC_SIDECAR_HOST override the local address', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/x', MPAC_SIDECAR_PORT: '40123', MPAC_SIDECAR_HOST: '127.0.0.2' })
  t.equal(c.url, `ws://127.0.0.2:40123/session/${deriveSessionId('/srv/x')}`)
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/x', MPAC_SIDECAR_PORT: 'abc' }), ConfigError)
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/x', MPAC_SIDECAR_PORT: '70000' }), ConfigError)
  const empty = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/x', MPAC_SIDECAR_PORT: '', MPAC_SIDECAR_HOST: '' })
  t.equal(empty.port, derivePort('/srv/x'), 'empty counts as unset')
  t.equal(empty.host, '127.0.0.1')
})

t.test('remote config with /session/<id>', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_COORDINATOR_URL: 'wss://mpac.example.com/session/room-alpha', MPAC_COORDINATOR_TOKEN: 'tok' })
  t.equal(c.isRemote, true)
  t.equal(c.url, 'wss://mpac.example.com/session/room-alpha', 'the URL is used verbatim')
  t.equal(c.sessionId, 'room-alpha')
  t.equal(c.sessionIdPinned, true)
  t.equal(c.host, 'mpac.example.com')
  t.equal(c.port, 443)
  t.equal(c.token, 'tok')
  t.equal(c.workspaceDir, '/srv/w')
})

t.test('MPAC_SESSION_ID beats the URL path', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_COORDINATOR_URL: 'ws://h:9000/session/a', MPAC_SESSION_ID: 'b' })
  t.equal(c.sessionId, 'b')
  t.equal(c.port, 9000)
})

t.test('a remote URL without a session path is unpinned', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_COORDINATOR_URL: 'ws://127.0.0.1:9999' })
  t.equal(c.isRemote, true)
  t.equal(c.sessionIdPinned, false)
  t.match(c.sessionId, /^mpac-local-/)
  t.equal(c.port, 9999)
})

t.test('bad remote URLs are configuration errors', async t => {
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_COORDINATOR_URL: 'http://h/session/x' }), { code: 'MPAC_ERR_CONFIG_INVALID' })
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_COORDINATOR_URL: 'not a url' }), { code: 'MPAC_ERR_CONFIG_INVALID' })
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_GOODBYE_DISPOSITION: 'vanish' }), { code: 'MPAC_ERR_CONFIG_INVALID' })
})

t.test('identity: roles and capabilities lists, stable principal per workspace and name', async t => {
  t.same(parseList(' owner, arbiter ,owner,, ', ['x']), ['arbiter', 'owner'])
  t.same(parseList(' , ', ['x']), ['x'])
  const a = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_AGENT_NAME: 'Alice', MPAC_AGENT_ROLES: 'owner,arbiter' })
  const b = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_AGENT_NAME: 'Alice' })
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/other', MPAC_AGENT_NAME: 'Alice' })
  const d = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_AGENT_NAME: 'Bob' })
  t.same(a.identity.roles, ['arbiter', 'owner'])
  t.equal(a.identity.displayName, 'Alice')
  t.match(a.identity.principalId, /^agent:Alice@[0-9a-f]{10}$/)
  t.equal(a.identity.principalId, b.identity.principalId, 'same workspace and name → same principal')
  t.not(a.identity.principalId, c.identity.principalId, 'another workspace → another principal')
  t.not(a.identity.principalId, d.identity.principalId, 'another name → another principal')
  const e = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w' })
  t.equal(e.identity.displayName, 'mpac-mcp-tester', 'the default name is per user, not per pid')
  const f = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_PRINCIPAL_ID: 'agent:fixed', MPAC_PRINCIPAL_ID_UNUSED: 'x' })
  t.equal(f.identity.principalId, 'agent:fixed')
  const g = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_PRINCIPAL_ID: '' })
  t.not(g.identity.principalId, '', 'an empty principal id counts as unset')
})

t.test('workspace detection walks up to .git; repo_path wins over MPAC_WORKSPACE_DIR', async t => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-cfg-')))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const repo = join(root, 'repo')
  mkdirSync(join(repo, 'a', 'b'), { recursive: true })
  mkdirSync(join(repo, '.git'))
  const worktree = join(root, 'worktree')
  mkdirSync(join(worktree, 'src'), { recursive: true })
  writeFileSync(join(worktree, '.git'), 'gitdir: elsewhere\n')
  t.equal(detectWorkspace(join(repo, 'a', 'b')), repo, 'a .git directory marks the root')
  t.equal(detectWorkspace(join(worktree, 'src')), worktree, 'a .git file marks the root too')
  const env = { ...base, MPAC_WORKSPACE_DIR: worktree }
  t.equal(resolveWorkspace(env, '/', join(repo, 'a')), repo, 'repo_path wins')
  t.equal(resolveWorkspace(env, '/', null), worktree, 'then MPAC_WORKSPACE_DIR')
  t.equal(resolveWorkspace({ ...base }, join(repo, 'a', 'b')), repo, 'then the cwd, walked up')
  t.equal(resolveWorkspace({ ...base, MPAC_WORKSPACE_DIR: '~/w' }, '/'), '/home/tester/w', '~ is expanded')
  const c = loadShimConfig(env, { repoPath: join(repo, 'a', 'b') })
  t.equal(c.workspaceDir, repo)
  t.equal(c.sessionId, deriveSessionId(repo))
})

t.test('XDG_STATE_HOME sets the state directory', async t => {
  const c = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', XDG_STATE_HOME: '/tmp/xdg' })
  t.equal(c.stateDir, '/tmp/xdg/mpac-mcp')
  t.equal(hookStateDir({ ...base, XDG_STATE_HOME: '/tmp/xdg' }), c.stateDir, 'the hooks compute the same state directory without the shim\'s modules')
  t.equal(hookStateDir({ HOME: '/home/u' }), stateDirFor({ HOME: '/home/u' }))
})

t.test('MPAC_HOOKS: on by default, off by a false value, a bad value is a configuration error', async t => {
  t.equal(loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w' }).hooks, true)
  for (const off of ['off', 'false', '0', 'no', 'OFF']) t.equal(loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_HOOKS: off }).hooks, false, off)
  t.equal(loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_HOOKS: 'on' }).hooks, true)
  t.throws(() => loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/w', MPAC_HOOKS: 'maybe' }), { name: 'ConfigError', message: /MPAC_HOOKS must be true or false/ })
})

t.test('identity slots: lowest free slot; a dead holder frees it, a live one does not; release', async t => {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-slots-')))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const id = loadShimConfig({ ...base, MPAC_WORKSPACE_DIR: '/srv/w', MPAC_AGENT_NAME: 'claude' }).identity
  const dead = spawnSync(process.execPath, ['-e', '0']).pid
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  t.teardown(() => { live.kill('SIGKILL') })

  const first = claimAgentSlot(dir, '/srv/w', id, live.pid)
  t.equal(first.slot, 1)
  t.equal(first.identity.principalId, id.principalId, 'slot 1 is the plain default identity')
  const second = claimAgentSlot(dir, '/srv/w', id, process.pid)
  t.equal(second.slot, 2, 'slot 1 is held by a live process')
  t.equal(second.identity.displayName, 'claude-2')
  t.equal(second.identity.principalId, defaultPrincipalId('/srv/w', 'claude', 2))
  t.match(second.identity.principalId, /^agent:claude-2@[0-9a-f]{10}$/)
  second.release()

  writeFileSync(join(dir, 'agents', `${id.principalId.replace(/^agent:/, '')}.1.pid`), `${dead}\n`)
  const takeover = claimAgentSlot(dir, '/srv/w', id, process.pid)
  t.equal(takeover.slot, 1, 'the slot of a process that died without releasing it is free')
  const other = claimAgentSlot(dir, '/srv/w', id, process.pid)
  t.equal(other.slot, 2, 'a slot this process already holds counts as taken')
  takeover.release()
  other.release()
  t.equal(claimAgentSlot(dir, '/srv/w', id, process.pid).slot, 1, 'released slots are free again')
})
