import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'
import { deriveSessionId } from '../../src/protocol/workspace-id.js'
import { startServer } from '../helpers/server.js'
import { announce, envelope, hello, isType, TestClient, type Frame } from '../helpers/ws.js'

function makeWorkspace (): string {
  const root = mkdtempSync(join(tmpdir(), 'mpac-ws-'))
  writeFileSync(join(root, 'a.txt'), 'hello a\n')
  mkdirSync(join(root, 'sub'))
  writeFileSync(join(root, 'sub', 'b.md'), '# b\n')
  mkdirSync(join(root, '.git'))
  writeFileSync(join(root, '.git', 'config'), '[core]\n')
  mkdirSync(join(root, 'node_modules'))
  writeFileSync(join(root, 'node_modules', 'x.js'), 'x\n')
  writeFileSync(join(root, 'image.bin'), Buffer.from([0xff, 0xfe, 0x00, 0x80]))
  writeFileSync(join(root, '.gitignore'), 'dist\n')
  symlinkSync('/etc/hostname', join(root, 'escape.txt'))
  symlinkSync(join(root, 'a.txt'), join(root, 'inside-link.txt'))
  return root
}

t.test('workspace mode: the real directory is the shared workspace', async t => {
  const root = makeWorkspace()
  const outside = mkdtempSync(join(tmpdir(), 'mpac-outside-'))
  const srv = await startServer(t, { argv: ['--workspace', root] })
  const sessionId = deriveSessionId(root)
  t.equal(srv.config.sessionId, sessionId)

  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  c.send({ type: 'FILE_LIST' })
  const list = await c.next(isType('FILE_LIST_RESPONSE'))
  t.same((list.files as Frame[]).map(f => f.path), ['a.txt', 'inside-link.txt', 'sub/b.md'],
    'VCS, dependency, binary, ignored files and escaping symlinks are skipped')

  c.send({ type: 'FILE_READ', path: 'a.txt' })
  t.same(await c.next(), { type: 'FILE_CONTENT', path: 'a.txt', content: 'hello a\n', state_ref: 'sha256:448a19594af45f88' })

  writeFileSync(join(root, 'a.txt'), 'edited on disk\n')
  c.send({ type: 'FILE_READ', path: 'a.txt' })
  const reread = await c.next()
  t.equal(reread.content, 'edited on disk\n', 'FILE_READ reads the real file')
  t.equal(reread.state_ref, stateRef('edited on disk\n'))

  const info = await c.request(hello('agent:a', { sessionId }))
  t.equal(info.message_type, 'SESSION_INFO')
  const outsideScope = await c.request(announce('agent:a', 'i0', ['a.txt', '../evil.txt'], sessionId))
  t.equal((outsideScope.payload as Frame).error_code, 'AUTHORIZATION_FAILED', 'an intent on a path outside the workspace is refused')
  t.match((outsideScope.payload as Frame).description, /"\.\.\/evil\.txt" is not a path inside the workspace/)
  await c.request(announce('agent:a', 'i1', ['a.txt'], sessionId))
  const current = stateRef('edited on disk\n')
  const next = 'committed through MPAC\n'
  const commit = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op1', intent_id: 'i1', target: 'a.txt', op_kind: 'replace',
    state_ref_before: current, state_ref_after: stateRef(next),
    file_changes: { 'a.txt': { content: next, state_ref_before: current } }
  }, sessionId)
  const done = await c.request(commit)
  t.equal(done.message_type, 'OP_COMMIT', 'accepted')
  t.notOk('file_changes' in (done.payload as Frame), 'the relay carries no file contents')
  t.equal(readFileSync(join(root, 'a.txt'), 'utf8'), next, 'the real file was written')
  t.same(readdirSync(root).filter(n => n.includes('mpac-tmp')), [], 'no temporary file left behind')

  // Someone edits the file on disk; a commit based on the MPAC ref is now stale.
  writeFileSync(join(root, 'a.txt'), 'hand edit\n')
  const stale = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op2', intent_id: 'i1', target: 'a.txt', op_kind: 'replace',
    state_ref_before: stateRef(next), state_ref_after: stateRef('mine\n'),
    file_changes: { 'a.txt': { content: 'mine\n', state_ref_before: stateRef(next) } }
  }, sessionId)
  const rejected = await c.request(stale)
  t.equal((rejected.payload as Frame).error_code, 'STALE_STATE_REF')
  t.equal(readFileSync(join(root, 'a.txt'), 'utf8'), 'hand edit\n', 'the hand edit is kept')

  const evil = envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op3', intent_id: 'i1', target: '../evil.txt', op_kind: 'create',
    state_ref_before: stateRef(''), state_ref_after: stateRef('pwned\n'),
    file_changes: { '../evil.txt': { content: 'pwned\n', state_ref_before: stateRef('') } }
  }, sessionId)
  const refused = await c.request(evil)
  t.equal(refused.message_type, 'PROTOCOL_ERROR', 'a path leaving the workspace is refused')
  t.notOk(existsSync(join(root, '..', 'evil.txt')), 'nothing written outside')
  t.same(readdirSync(outside), [])

  c.send({ type: 'SESSION_SUMMARY' })
  const summary = await c.next(isType('SESSION_SUMMARY_RESPONSE'))
  t.equal((summary.session as Frame).workspace_dir, root)
})

t.test('workspace mode: /session/<its id> works, other ids get 4004', async t => {
  const root = makeWorkspace()
  const srv = await startServer(t, { argv: ['--workspace', root] })
  const sessionId = srv.config.sessionId as string
  const ok = await TestClient.connect(`${srv.url}/session/${sessionId}`)
  t.teardown(() => ok.close())
  ok.send({ type: 'SESSION_SUMMARY' })
  t.equal(((await ok.next()).session as Frame).session_id, sessionId)
  const wrong = await TestClient.connect(`${srv.url}/session/other`)
  t.equal((await wrong.waitForClose()).code, 4004)
})

t.test('workspace mode: a new file committed through MPAC is created on disk', async t => {
  const root = makeWorkspace()
  const srv = await startServer(t, { argv: ['--workspace', root] })
  const sessionId = srv.config.sessionId as string
  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  await c.request(hello('agent:a', { sessionId }))
  await c.request(announce('agent:a', 'i1', ['new/dir/c.txt'], sessionId))
  const r = await c.request(envelope('OP_COMMIT', 'agent:a', {
    op_id: 'op1', intent_id: 'i1', target: 'new/dir/c.txt', op_kind: 'create',
    state_ref_before: stateRef(''), state_ref_after: stateRef('c\n'),
    file_changes: { 'new/dir/c.txt': { content: 'c\n', state_ref_before: stateRef('') } }
  }, sessionId))
  t.equal(r.message_type, 'OP_COMMIT')
  const updated = await c.next(isType('FILE_UPDATED'))
  t.equal(updated.path, 'new/dir/c.txt')
  t.equal(readFileSync(join(root, 'new', 'dir', 'c.txt'), 'utf8'), 'c\n')
})

t.test('workspace mode: a commit through a symlinked directory (or onto a directory) never touches anything', async t => {
  const root = makeWorkspace()
  const outside = mkdtempSync(join(tmpdir(), 'mpac-outside-'))
  symlinkSync(outside, join(root, 'link'))
  const srv = await startServer(t, { argv: ['--workspace', root] })
  const sessionId = srv.config.sessionId as string
  const c = await TestClient.connect(`${srv.url}/`)
  t.teardown(() => c.close())
  await c.request(hello('agent:a', { sessionId }))
  for (const [i, path] of ['link/new/deep.txt', 'link/top.txt', 'sub', 'a.txt/under-a-file.txt'].entries()) {
    await c.request(announce('agent:a', `i${i}`, [path], sessionId))
    const r = await c.request(envelope('OP_COMMIT', 'agent:a', {
      op_id: `op${i}`, intent_id: `i${i}`, target: path, op_kind: 'create',
      state_ref_before: stateRef(''), state_ref_after: stateRef('x\n'),
      file_changes: { [path]: { content: 'x\n', state_ref_before: stateRef('') } }
    }, sessionId))
    t.equal(r.message_type, 'PROTOCOL_ERROR', `${path}: refused, not accepted and then silently not written`)
    t.match((r.payload as Frame).description, /cannot be written inside the workspace|resolves through a symlink outside the workspace/)
  }
  t.ok(statSync(join(root, 'sub')).isDirectory(), 'the directory in the way is untouched')
  t.equal(readFileSync(join(root, 'a.txt'), 'utf8'), 'hello a\n', 'the file in the way is untouched')
  t.same(readdirSync(outside), [], 'no directory or file was created outside the workspace')
  c.send({ type: 'FILE_READ', path: 'link/top.txt' })
  t.match((await c.next(isType('FILE_ERROR'))).error, /link\/top\.txt resolves through a symlink outside the workspace/, 'and the session serves no such file, naming the rule')
})
