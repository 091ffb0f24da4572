/**
 * Workspace safety (issue 11 items 1 and 6, issue 12 item 6): VCS metadata,
 * git-ignored files, symlinks leading outside and the coordinator's own
 * temporary files are never served or written; INTENT_ANNOUNCE scopes
 * outside the workspace are refused; a multi-file commit lands whole across
 * a SIGKILL at any of its steps (the real sidecar CLI, restarted on the same
 * SQLite data directory).
 */
import { execFileSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { deriveSessionId } from '../../src/protocol/workspace-id.js'
import { cleanEnv, tempDir } from '../helpers/process.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isType, TestClient, type Frame } from '../helpers/ws.js'
import { startSidecar as startRealSidecar } from '../helpers/sidecar.js'


function git (cwd: string, ...args: string[]): void {
  execFileSync('git', ['-c', 'user.email=t@example.invalid', '-c', 'user.name=t', ...args], { cwd, stdio: 'ignore', env: cleanEnv() })
}

/** Every file under `dir` whose name ends in `.mpac-tmp` (relative paths). */
function temps (dir: string): string[] {
  const out: string[] = []
  const walk = (d: string, rel: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const r = rel === '' ? e.name : `${rel}/${e.name}`
      if (e.isDirectory() && e.name !== '.git') walk(join(d, e.name), r)
      else if (e.name.endsWith('.mpac-tmp')) out.push(r)
    }
  }
  walk(dir, '')
  return out
}

function commit (sessionId: string, opId: string, intentId: string, changes: Record<string, { content: string, before: string }>): Frame {
  const paths = Object.keys(changes)
  const target = paths[0] as string
  const first = changes[target] as { content: string, before: string }
  const fileChanges: Frame = {}
  for (const [p, c] of Object.entries(changes)) fileChanges[p] = { content: c.content, state_ref_before: stateRef(c.before) }
  return envelope('OP_COMMIT', 'agent:a', {
    op_id: opId, intent_id: intentId, target, op_kind: 'replace',
    state_ref_before: stateRef(first.before), state_ref_after: stateRef(first.content),
    file_changes: fileChanges
  }, sessionId)
}

t.test('git workspace: VCS metadata, ignored files and temporary names are never listed, read or written', async t => {
  const root = tempDir(t, 'mpac-safe-git-')
  git(root, 'init', '-q')
  writeFileSync(join(root, '.gitignore'), '.env\nsecret/\n*.log\n')
  writeFileSync(join(root, 'README.md'), '# r\n')
  writeFileSync(join(root, '.env'), 'TOKEN=hunter2\n')
  mkdirSync(join(root, 'secret'))
  writeFileSync(join(root, 'secret', 'key.txt'), 'k\n')
  writeFileSync(join(root, 'tracked.log'), 'tracked despite *.log\n')
  mkdirSync(join(root, 'wt'))
  writeFileSync(join(root, 'wt', '.git'), 'gitdir: /somewhere/else\n')
  writeFileSync(join(root, 'wt', 'notes.txt'), 'n\n')
  writeFileSync(join(root, '.1234.mpac-tmp'), 'stale temp from a crash\n')
  git(root, 'add', 'README.md', '.gitignore')
  git(root, 'add', '-f', 'tracked.log')
  git(root, 'commit', '-q', '-m', 'init')

  const srv = await startServer(t, { argv: ['--workspace', root] })
  const sessionId = deriveSessionId(root)
  t.notOk(existsSync(join(root, '.1234.mpac-tmp')), 'a stale temporary file is removed at start')
  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  c.send({ type: 'FILE_LIST' })
  const list = await c.next(isType('FILE_LIST_RESPONSE'))
  t.same((list.files as Frame[]).map(f => f.path), ['README.md', 'tracked.log', 'wt/notes.txt'],
    'only files git does not ignore (a tracked file matching *.log is served), no .git file of a worktree, no temporary file')

  const readError = async (path: string): Promise<string> => {
    c.send({ type: 'FILE_READ', path })
    const r = await c.next(f => f.type === 'FILE_ERROR' || f.type === 'FILE_CONTENT')
    t.equal(r.type, 'FILE_ERROR', `FILE_READ ${path} is refused`)
    return String(r.error)
  }
  t.match(await readError('.env'), /path \.env is ignored by git/)
  t.match(await readError('secret/key.txt'), /path secret\/key\.txt is ignored by git/)
  t.match(await readError('.git/config'), /path \.git\/config is VCS metadata \(\.git\); workspace mode never reads or writes it/)
  t.match(await readError('wt/.git'), /path wt\/\.git is VCS metadata/)
  t.match(await readError('sub/.HG/store'), /is VCS metadata \(\.HG\)/)
  t.match(await readError('x.mpac-tmp'), /reserved for the coordinator's temporary files/)

  await c.request(hello('agent:a', { sessionId }))
  for (const [i, path, rule] of [
    [1, '/etc/passwd', /"\/etc\/passwd" is not a path inside the workspace \(absolute path\)/],
    [2, '../x', /"\.\.\/x" is not a path inside the workspace/],
    [3, '.git/config', /\.git\/config is VCS metadata/]
  ] as const) {
    const r = await c.request(announce('agent:a', `bad${i}`, ['README.md', path], sessionId))
    t.equal(r.message_type, 'PROTOCOL_ERROR', `INTENT_ANNOUNCE over ${path} is refused`)
    t.equal((r.payload as Frame).error_code, 'AUTHORIZATION_FAILED')
    t.match((r.payload as Frame).description, rule)
  }
  const glob = await c.request(envelope('INTENT_ANNOUNCE', 'agent:a', { intent_id: 'bad4', objective: 'x', scope: { kind: 'resource_path', pattern: '../**' } }, sessionId))
  t.match((glob.payload as Frame).description, /"\.\.\/\*\*" is not a path inside the workspace/, 'a resource_path pattern leaving the workspace is refused too')
  c.send({ type: 'SESSION_SUMMARY' })
  t.equal(((await c.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame).active_intent_count, 0, 'none of them holds an intent')

  const ok = await c.request(announce('agent:a', 'i1', ['README.md', 'new.txt'], sessionId))
  t.equal(ok.message_type, 'INTENT_ANNOUNCE')
  const widen = await c.request(envelope('INTENT_UPDATE', 'agent:a', { intent_id: 'i1', scope: { kind: 'file_set', resources: ['README.md', '/etc/passwd'] } }, sessionId))
  t.match(widen, { message_type: 'PROTOCOL_ERROR', payload: { error_code: 'AUTHORIZATION_FAILED', description: /"\/etc\/passwd" is not a path inside the workspace.*the intent was not updated/ } }, 'INTENT_UPDATE cannot widen a scope outside the workspace')
  for (const [i, path, rule] of [
    [1, '.git/hooks/pre-commit', /file_changes: path \.git\/hooks\/pre-commit is VCS metadata/],
    [2, 'wt/.git', /path wt\/\.git is VCS metadata/],
    [3, '.env', /path \.env is ignored by git/],
    [4, 'secret/new.txt', /path secret\/new\.txt is ignored by git/],
    [5, 'a.mpac-tmp', /reserved for the coordinator's temporary files/]
  ] as const) {
    const r = await c.request(commit(sessionId, `bad-op${i}`, 'i1', { 'new.txt': { content: 'n\n', before: '' }, [path]: { content: '#!/bin/sh\nexit 1\n', before: '' } }))
    t.equal(r.message_type, 'PROTOCOL_ERROR', `a commit writing ${path} is refused whole`)
    t.match((r.payload as Frame).description, rule)
  }
  t.equal(readFileSync(join(root, '.git', 'config'), 'utf8').includes('exit 1'), false)
  t.notOk(existsSync(join(root, '.git', 'hooks', 'pre-commit')), 'nothing was written into .git')
  t.equal(readFileSync(join(root, '.env'), 'utf8'), 'TOKEN=hunter2\n', 'the ignored file is untouched')
  t.notOk(existsSync(join(root, 'new.txt')), 'the allowed file of a refused commit was not written either')

  const good = await c.request(commit(sessionId, 'op-ok', 'i1', { 'README.md': { content: '# r2\n', before: '# r\n' } }))
  t.equal(good.message_type, 'OP_COMMIT', 'a commit of a served file is accepted')
  t.equal(readFileSync(join(root, 'README.md'), 'utf8'), '# r2\n')
  t.same(temps(root), [], 'no temporary file or manifest left behind')

  // The ignore rules are read again when they change.
  writeFileSync(join(root, 'notes.md'), 'n\n')
  c.send({ type: 'FILE_READ', path: 'notes.md' })
  t.equal((await c.next(f => f.type === 'FILE_CONTENT' || f.type === 'FILE_ERROR')).type, 'FILE_CONTENT', 'an untracked, unignored file is served')
  writeFileSync(join(root, '.gitignore'), '.env\nsecret/\n*.log\nnotes.md\n')
  t.match(await readError('notes.md'), /path notes\.md is ignored by git/, 'a new .gitignore line takes effect at once')
  c.send({ type: 'FILE_LIST' })
  const after = await c.next(isType('FILE_LIST_RESPONSE'))
  t.notOk((after.files as Frame[]).some(f => f.path === 'notes.md'), 'FILE_LIST drops a file that became ignored')
})

t.test('a workspace that is not a git repository: no ignore rule applies, VCS metadata is still refused', async t => {
  const root = tempDir(t, 'mpac-safe-plain-')
  writeFileSync(join(root, 'README.md'), '# r\n')
  writeFileSync(join(root, '.env'), 'A=1\n')
  writeFileSync(join(root, '.gitignore'), '.env\n')
  mkdirSync(join(root, '.svn'))
  writeFileSync(join(root, '.svn', 'entries'), 'e\n')
  const srv = await startServer(t, { argv: ['--workspace', root] })
  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  c.send({ type: 'FILE_LIST' })
  t.same(((await c.next(isType('FILE_LIST_RESPONSE'))).files as Frame[]).map(f => f.path), ['.env', 'README.md'])
  c.send({ type: 'FILE_READ', path: '.svn/entries' })
  t.match((await c.next(isType('FILE_ERROR'))).error, /\.svn\/entries is VCS metadata/)
})

// ---------------------------------------------------------------- the real sidecar

interface Sidecar { readonly child: ChildProcess, readonly port: number, readonly exited: Promise<number | null>, readonly output: () => string }

/** The real sidecar in workspace mode on `root` (test/helpers/sidecar.ts), with its stdout as one text. */
async function startSidecar (t: { teardown (fn: () => unknown): void }, root: string, dataDir: string, env: Record<string, string> = {}): Promise<Sidecar> {
  const sc = await startRealSidecar(t, ['--host', '127.0.0.1', '--data-dir', dataDir, '--store', 'sqlite', '--workspace', root], { LOG_LEVEL: 'info', ...env })
  return { child: sc.child, port: sc.port, exited: sc.exited, output: () => sc.lines.join('\n') }
}

async function waitFor (what: string, fn: () => boolean, deadlineMs = 15000): Promise<void> {
  const until = Date.now() + deadlineMs
  while (!fn()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 10))
  }
}

t.test('a directory swapped for a symlink between validation and write does not escape', async t => {
  const root = tempDir(t, 'mpac-safe-swap-')
  const outside = tempDir(t, 'mpac-safe-outside-')
  const dataDir = tempDir(t, 'mpac-safe-data-')
  mkdirSync(join(root, 'dir'))
  writeFileSync(join(root, 'dir', 'f.txt'), 'old\n')
  const flag = join(tempDir(t, 'mpac-safe-flag-'), 'paused')
  // Step 1 is the pending manifest, written once the commit passed every check: swap the directory there.
  const sc = await startSidecar(t, root, dataDir, { MPAC_TEST_HOOK_COMMIT_PAUSE_AT: '1', MPAC_TEST_HOOK_COMMIT_PAUSE_FILE: flag })
  const sessionId = deriveSessionId(root)
  const c = await TestClient.connect(`ws://127.0.0.1:${sc.port}/`)
  t.teardown(() => c.close())
  await c.request(hello('agent:a', { sessionId }))
  await c.request(announce('agent:a', 'i1', ['dir/f.txt'], sessionId))
  const msg = commit(sessionId, 'op1', 'i1', { 'dir/f.txt': { content: 'pwned\n', before: 'old\n' } })
  c.send(msg)
  await waitFor('the sidecar to pause before writing', () => existsSync(flag))
  renameSync(join(root, 'dir'), join(root, 'dir-moved'))
  symlinkSync(outside, join(root, 'dir'))
  execFileSync('rm', [flag])
  const reply = await c.next(f => f.message_id === msg.message_id || (f.payload as Frame | undefined)?.refers_to === msg.message_id, 15000)
  t.equal(reply.message_type, 'OP_COMMIT', 'the commit had been accepted (and journaled) before the swap')
  t.same(readdirSync(outside), [], 'nothing was written through the swapped-in symlink')
  t.equal(readFileSync(join(root, 'dir-moved', 'f.txt'), 'utf8'), 'old\n')
  await waitFor('the refusal to be logged', () => sc.output().includes('workspace write refused or failed'))
  c.send({ type: 'FILE_READ', path: 'dir/f.txt' })
  t.match((await c.next(isType('FILE_ERROR'))).error, /resolves through a symlink outside the workspace/, 'and the session does not serve it')
})

const OLD = { 'a.txt': 'a0\n', 'b.txt': 'b0\n', 'c/d.txt': null } as const
const NEW = { 'a.txt': 'a1\n', 'b.txt': 'b1\n', 'c/d.txt': 'd1\n' } as const
/** Steps of a 3-file commit: pending manifest, start, 3 temporary files, committed manifest, 3 renames, done. */
const STEPS = 10

function diskState (root: string): Record<string, string | null> {
  const out: Record<string, string | null> = {}
  for (const p of Object.keys(OLD)) out[p] = existsSync(join(root, p)) ? readFileSync(join(root, p), 'utf8') : null
  return out
}

t.test('a 3-file commit killed (SIGKILL) at each of its steps is whole after the restart', async t => {
  for (let crashAt = 1; crashAt <= STEPS + 1; crashAt++) {
    const root = tempDir(t, 'mpac-safe-crash-')
    const dataDir = tempDir(t, 'mpac-safe-data-')
    writeFileSync(join(root, 'a.txt'), OLD['a.txt'])
    writeFileSync(join(root, 'b.txt'), OLD['b.txt'])
    const sessionId = deriveSessionId(root)
    const sc = await startSidecar(t, root, dataDir, { MPAC_TEST_HOOK_COMMIT_CRASH_AT: String(crashAt) })
    const c = await TestClient.connect(`ws://127.0.0.1:${sc.port}/`)
    await c.request(hello('agent:a', { sessionId }))
    await c.request(announce('agent:a', 'i1', Object.keys(NEW), sessionId))
    const msg = commit(sessionId, 'op1', 'i1', {
      'a.txt': { content: NEW['a.txt'], before: OLD['a.txt'] },
      'b.txt': { content: NEW['b.txt'], before: OLD['b.txt'] },
      'c/d.txt': { content: NEW['c/d.txt'], before: '' }
    })
    c.send(msg)
    const acked = await Promise.race([
      c.next(f => f.message_id === msg.message_id, 15000).then(f => f.message_type === 'OP_COMMIT'),
      sc.exited.then(() => false)
    ])
    if (crashAt <= STEPS) await sc.exited
    else sc.child.kill('SIGKILL')
    await sc.exited
    c.close()
    t.equal(acked, crashAt > STEPS, `crash at step ${crashAt}: acknowledged only when every step ran`)

    const again = await startSidecar(t, root, dataDir)
    const disk = diskState(root)
    // Crash at step 1 (pending manifest written, commit not yet journaled): the disk is unchanged.
    // From step 2 on the commit is journaled: the restart rolls it forward.
    t.same(disk, crashAt === 1 ? OLD : NEW, `crash at step ${crashAt}: the disk holds the whole commit or none of it`)
    t.same(temps(root), [], `crash at step ${crashAt}: no temporary file or manifest is left`)
    const c2 = await TestClient.connect(`ws://127.0.0.1:${again.port}/`)
    c2.send({ type: 'FILE_LIST' })
    const files = (await c2.next(isType('FILE_LIST_RESPONSE'))).files as Frame[]
    t.same(files.map(f => f.path).sort(), Object.entries(disk).filter(([, v]) => v !== null).map(([k]) => k).sort(), `crash at step ${crashAt}: the session lists what the disk holds`)
    for (const f of files) t.equal(f.state_ref, stateRef(disk[String(f.path)] as string), `crash at step ${crashAt}: ${String(f.path)} has the disk's ref`)
    c2.close()
    again.child.kill('SIGKILL')
    await again.exited
  }
})
