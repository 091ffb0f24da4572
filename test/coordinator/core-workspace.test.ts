/**
 * The shared workspace: file_changes validation (paths, scope, limits),
 * stale checks against the workspace before acceptance, FILE_UPDATED order
 * relative to the terminal relay, file_sync, listFiles and readFile.
 */
import t from 'tap'
import { charLength } from '../../src/protocol/text.js'
import { Harness, outputsOfType, refOf, terminalOf, assertRejected, assertRelayed, type Json } from '../helpers/mpac.js'

const fc = (entries: Record<string, [string, string | null]>): Json => ({
  file_changes: Object.fromEntries(Object.entries(entries).map(([p, [content, before]]) => [p, before === null ? { content } : { content, state_ref_before: before }]))
})

t.test('FILE_UPDATED: to peers right after their relay, to the committer after its terminal relay (protocol.md §11.4)', async t => {
  const h = new Harness()
  h.join('A', 'B', 'C')
  h.announce('A', 'i', ['a.py'])
  const s = h.commit('A', 'o1', 'a.py', refOf(''), refOf('hi'), 'i', fc({ 'a.py': ['hi', refOf('')] }))
  assertRelayed(t, s)
  const types = s.outputs.map(o => [o.frame.type ?? o.frame.message_type, o.audience.kind, o.terminal === true])
  t.same(types, [['OP_COMMIT', 'others', false], ['FILE_UPDATED', 'others', false], ['OP_COMMIT', 'sender', true], ['FILE_UPDATED', 'sender', false]])
  t.equal(s.outputs[1]?.frame, s.outputs[3]?.frame, 'one FILE_UPDATED frame for everyone')
  t.same(s.outputs[1]?.frame, { type: 'FILE_UPDATED', path: 'a.py', state_ref: refOf('hi'), updated_by: 'A' })
  t.notOk('file_changes' in (terminalOf(s)?.frame.payload as Json), 'the relay carries no file contents')
  t.ok('file_changes' in (s.envelope.payload as Json), 'the inbound envelope is not modified')
  t.same(s.fileWrites, [{ path: 'a.py', content: 'hi', stateRef: refOf('hi') }])
  t.same(h.c.readFile('a.py'), { content: 'hi', state_ref: refOf('hi') })
})

t.test('a lone participant gets its relay, then FILE_UPDATED (the peers\' copies reach nobody)', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  const s = h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', fc({ 'a.py': ['x', null] }))
  t.same(s.outputs.map(o => [o.audience.kind, o.frame.type ?? o.frame.message_type]), [['others', 'OP_COMMIT'], ['others', 'FILE_UPDATED'], ['sender', 'OP_COMMIT'], ['sender', 'FILE_UPDATED']])
})

t.test('paths: equal to the target, or inside an ACTIVE intent of the sender (file_set or resource_path)', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i', { kind: 'resource_path', pattern: 'src/**' })
  h.announce('B', 'j', ['lib/b.py'])
  assertRelayed(t, h.commit('A', 'o1', 'src/x.py', refOf(''), refOf('x'), 'i', fc({ 'src/x.py': ['x', null], 'src/deep/y.py': ['y', null] })))
  assertRejected(t, h.commit('A', 'o2', 'src/x.py', refOf('x'), refOf('z'), 'i', fc({ 'lib/b.py': ['z', null] })), 'AUTHORIZATION_FAILED')
  assertRejected(t, h.commit('A', 'o3', 'src/x.py', refOf('x'), refOf('z'), 'i', fc({ 'src/../etc': ['z', null] })), 'MALFORMED_MESSAGE')
  assertRejected(t, h.commit('A', 'o4', 'src/x.py', refOf('x'), refOf('z'), 'i', { file_changes: ['nope'] }), 'MALFORMED_MESSAGE')
  t.equal(h.opState('o2'), undefined)
  t.same(h.c.listFiles().map(f => f.path), ['src/deep/y.py', 'src/x.py'])
})

t.test('size limits: one file, and the whole workspace', async t => {
  const h = new Harness({ maxFileBytes: 10, maxWorkspaceBytes: 16 })
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  const big = assertRejected(t, h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', fc({ 'a.py': ['é'.repeat(6), null] })), 'MALFORMED_MESSAGE')
  t.match(big.description, /12 bytes/, 'counted in UTF-8 bytes')
  assertRelayed(t, h.commit('A', 'o2', 'a.py', refOf(''), refOf('x'), 'i', fc({ 'a.py': ['0123456789', null] })))
  const full = assertRejected(t, h.commit('A', 'o3', 'b.py', refOf(''), refOf('x'), 'i', fc({ 'b.py': ['0123456789', null] })), 'MALFORMED_MESSAGE')
  t.match(full.description, /workspace limit/)
  assertRelayed(t, h.commit('A', 'o4', 'a.py', refOf('0123456789'), refOf('y'), 'i', fc({ 'a.py': ['y', refOf('0123456789')] })), 'replacing a file frees its bytes')
  assertRelayed(t, h.commit('A', 'o5', 'b.py', refOf(''), refOf('x'), 'i', fc({ 'b.py': ['0123456789', null] })))
})

t.test('stale file_changes: nothing applied; a missing before-ref on an existing file is stale; a new path takes any ref', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['a.py', 'n.py'])
  assertRelayed(t, h.commit('A', 'o1', 'a.py', 'sha256:whatever', refOf('v1'), 'i', fc({ 'a.py': ['v1', 'sha256:anything'] })))
  const stale = assertRejected(t, h.commit('A', 'o2', 'a.py', refOf('v1'), refOf('v2'), 'i', fc({ 'n.py': ['n', null], 'a.py': ['v2', refOf('old')] })), 'STALE_STATE_REF')
  t.match(stale, { current_state_ref: refOf('v1') })
  t.equal(h.c.readFile('n.py'), undefined, 'atomic: the fresh file was not written either')
  t.equal(h.opState('o2'), undefined)
  // no entry before-ref: falls back to the op's state_ref_before for the target
  assertRelayed(t, h.commit('A', 'o3', 'a.py', refOf('v1'), refOf('v3'), 'i', { file_changes: { 'a.py': { content: 'v3' } } }))
  assertRelayed(t, h.commit('A', 'o4', 'a.py', refOf('v3'), refOf('v4'), 'i', fc({ 'n.py': ['n', null], 'a.py': ['v4', refOf('v3')] })))
  const noRef = assertRejected(t, h.commit('A', 'o5', 'n.py', null as unknown as string, refOf('n2'), 'i', { file_changes: { 'n.py': { content: 'n2' } } }), 'STALE_STATE_REF')
  t.match(noRef.description, /got none/, 'an existing file needs a before-ref')
})

t.test('file_sync: create, update, no-op, delete; the ref map follows', async t => {
  const h = new Harness()
  h.join('A')
  h.announce('A', 'i', ['d.py'])
  t.equal(h.fileSync('d.py', 'disk').changed, true)
  t.equal(h.fileSync('d.py', 'disk').changed, false, 'same content: no change')
  t.equal(h.fileSync('../bad', 'x').changed, false, 'an invalid path is ignored')
  assertRejected(t, h.commit('A', 'o1', 'd.py', refOf('other'), refOf('x'), 'i'), 'STALE_STATE_REF')
  assertRelayed(t, h.commit('A', 'o2', 'd.py', refOf('disk'), refOf('x'), 'i'))
  h.fileSync('d.py', 'changed on disk')
  t.same(h.c.listFiles(), [{ path: 'd.py', state_ref: refOf('changed on disk'), size: 15 }])
  t.equal(h.fileSync('d.py', null).changed, true)
  t.equal(h.fileSync('d.py', null).changed, false)
  t.same(h.c.listFiles(), [])
  assertRelayed(t, h.commit('A', 'o3', 'd.py', refOf('anything'), refOf('y'), 'i'), 'no known ref after delete')
})

t.test('pre_commit: files only on the completing commit', async t => {
  const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit' })
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  const first = h.commit('A', 'op1', 'a.py', refOf(''), refOf('x'), 'i', fc({ 'a.py': ['x', null] }))
  assertRelayed(t, first)
  t.same(first.fileWrites, [])
  t.same(outputsOfType(first, 'FILE_UPDATED'), [])
  t.equal(h.opState('op1'), 'PROPOSED')
  const done = h.commit('A', 'op1', 'a.py', refOf(''), refOf('x'), 'i', fc({ 'a.py': ['x', null] }))
  assertRelayed(t, done)
  t.same(done.fileWrites.map(w => w.path), ['a.py'])
  t.equal(h.opState('op1'), 'COMMITTED')
})

t.test('FILE_LIST size counts characters (code points, Python len), not UTF-16 units', async t => {
  const h = new Harness()
  const text = 'smile \u{1F600} caf\u00e9\n'
  t.equal(text.length, 14, 'the emoji is two UTF-16 units')
  h.fileSync('e.txt', text)
  h.fileSync('plain.txt', 'abc\n')
  t.same(h.c.listFiles().map(f => [f.path, f.size]), [['e.txt', 13], ['plain.txt', 4]])
  t.equal(charLength(''), 0)
  t.equal(charLength('\u{1F600}\u{1F600}'), 2)
  t.equal(charLength('a\uD800b'), 3, 'a lone high surrogate counts as one, as in Python')
  t.equal(charLength('\uDC00\uD800'), 2, 'lone surrogates in the wrong order count one each')
  t.equal(charLength('x\uD83D'), 2, 'a high surrogate at the end counts as one')
})
