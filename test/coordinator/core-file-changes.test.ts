/**
 * file_changes in OP_COMMIT and OP_BATCH_COMMIT: the workspace layout (a
 * path is a file or a directory, never both), stale entries, the workspace
 * size limit across a batch, frozen scopes, pre_commit proposals, and path
 * spellings.
 */
import t from 'tap'
import { Coordinator } from '../../src/coordinator/index.js'
import type { CoordinatorSnapshot } from '../../src/coordinator/types.js'
import { Harness, assertRejected, assertRelayed, conflictIdsOf, errorsOf, payloadsOfType, refOf, show, terminalOf, type Json } from '../helpers/mpac.js'

const QUIET = { unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 }

function restoredCopy (h: Harness): Coordinator {
  return Coordinator.restore(JSON.parse(JSON.stringify(h.snap())) as CoordinatorSnapshot, h.config)
}

t.test('file_changes never make a path both a file and a directory (the disk mirror could not hold it)', async t => {
  const h = new Harness(QUIET)
  h.join('A')
  h.announce('A', 'i', { kind: 'resource_path', pattern: '**' })
  const fc = (paths: string[]): Json => ({ file_changes: Object.fromEntries(paths.map(p => [p, { content: p }])) })
  assertRelayed(t, h.commit('A', 'o1', 'a.py', 'r0', 'r1', 'i', fc(['a.py', 'pkg/m.py'])))
  const under = assertRejected(t, h.commit('A', 'o2', 'a.py/x', 'r0', 'r1', 'i', fc(['a.py/x'])), 'MALFORMED_MESSAGE')
  t.match(under.description, /a\.py is a file/)
  const over = assertRejected(t, h.commit('A', 'o3', 'pkg', 'r0', 'r1', 'i', fc(['pkg'])), 'MALFORMED_MESSAGE')
  t.match(over.description, /pkg is a directory/)
  assertRejected(t, h.commit('A', 'o4', 'n', 'r0', 'r1', 'i', fc(['n/deep/f.py', 'n/deep'])), 'MALFORMED_MESSAGE', 'within one message')
  t.same(h.c.listFiles().map(f => f.path), ['a.py', 'pkg/m.py'], 'nothing written by the refused commits')
  h.fileSync('a.py', null)
  assertRelayed(t, h.commit('A', 'o5', 'a.py/x', 'r0', 'r1', 'i', fc(['a.py/x'])), 'after the file is gone the directory may exist')
  h.fileSync('pkg/m.py', null)
  h.fileSync('a.py/x', null)
  assertRelayed(t, h.commit('A', 'o6', 'pkg', 'r0', 'r1', 'i', fc(['pkg', 'a.py'])), 'emptied directories are gone')
  const restored = restoredCopy(h)
  const env = h.env.make('OP_COMMIT', 'A', { op_id: 'o7', target: 'pkg/z', op_kind: 'replace', state_ref_before: 'r0', state_ref_after: 'r1', intent_id: 'i', ...fc(['pkg/z']) })
  t.equal(restored.handle(env, h.now).accepted, false, 'a restored coordinator knows the layout')
})

t.test('best_effort batch: an entry whose file is stale is rejected alone', async t => {
  const h = new Harness(QUIET)
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  h.fileSync('a.py', 'disk a')
  const s = h.batch('A', 'bt', [
    { op_id: 'o1', target: 'a.py', state_ref_before: refOf('old a'), state_ref_after: refOf('A'), file_changes: { 'a.py': { content: 'A' } } },
    { op_id: 'o2', target: 'b.py', state_ref_before: refOf(''), state_ref_after: refOf('B'), file_changes: { 'b.py': { content: 'B' } } }
  ], 'best_effort', 'i')
  t.equal(s.accepted, true, 'accepted', { outputs: show(s) })
  t.match(terminalOf(s), { audience: { kind: 'sender' }, frame: { message_id: s.id } })
  t.same(s.outputs.slice(s.outputs.indexOf(terminalOf(s)!) + 1).map(o => o.frame.type), ['FILE_UPDATED'], 'only the FILE_UPDATED push follows the terminal relay')
  t.match(payloadsOfType(s, 'OP_REJECT'), [{ op_id: 'o1', reason: 'stale_state_ref', batch_id: 'bt' }])
  t.equal(h.opState('o2'), 'COMMITTED')
  t.equal(h.opState('o1'), undefined)
  t.same(s.fileWrites.map(w => w.path), ['b.py'])
  t.equal(h.c.readFile('a.py')?.content, 'disk a')
  const all = h.batch('A', 'bt2', [
    { op_id: 'o3', target: 'a.py', state_ref_before: refOf('old a'), state_ref_after: refOf('A'), file_changes: { 'a.py': { content: 'A' } } },
    { op_id: 'o4', target: 'b.py', state_ref_before: refOf('B'), state_ref_after: refOf('C'), file_changes: { 'b.py': { content: 'C' } } }
  ], 'all_or_nothing', 'i')
  const p = assertRejected(t, all, 'STALE_STATE_REF')
  t.same(p.rejected_ops, ['o3'])
  t.match(payloadsOfType(all, 'OP_REJECT'), [{ op_id: 'bt2', reason: 'batch_validation_failed', rejected_ops: ['o3'] }], 'as for a stale op ref')
})

t.test('the workspace size limit counts every entry of a batch together', async t => {
  const h = new Harness({ ...QUIET, maxWorkspaceBytes: 16 })
  h.join('A')
  h.announce('A', 'i', ['a.py', 'b.py'])
  const r = h.batch('A', 'bt', [
    { op_id: 'o1', target: 'a.py', state_ref_before: null, state_ref_after: 'r1', file_changes: { 'a.py': { content: '0123456789' } } },
    { op_id: 'o2', target: 'b.py', state_ref_before: null, state_ref_after: 'r2', file_changes: { 'b.py': { content: '0123456789' } } }
  ] as never, 'best_effort', 'i')
  const p = assertRejected(t, r, 'MALFORMED_MESSAGE')
  t.match(p.description, /workspace limit/)
  t.same(h.c.listFiles(), [])
})

t.test('file_changes into a frozen scope are refused even when the target is not frozen', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 100 })
  h.join('A', 'B')
  h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py', 'other.py'], extensions: { impact: ['main.py'] } })
  const cid = conflictIdsOf(h.announce('B', 'i-b', ['main.py']))[0] as string
  t.ok(cid !== undefined, 'dependency_breakage conflict')
  t.equal(errorsOf(h.tick(101), 'RESOLUTION_TIMEOUT').length, 1)
  t.equal(h.conflict(cid)?.scope_frozen, true)
  const fc = (p: string): Json => ({ file_changes: { [p]: { content: 'sneaky' } } })
  assertRejected(t, h.commit('A', 'o1', 'free.py', 'r0', 'r1', 'i-a', fc('utils.py')), 'SCOPE_FROZEN')
  assertRejected(t, h.batch('A', 'b1', [{ op_id: 'o2', target: 'free.py', ...fc('utils.py') }], 'best_effort', 'i-a'), 'SCOPE_FROZEN')
  t.equal(h.c.readFile('utils.py'), undefined, 'nothing written')
  assertRelayed(t, h.commit('A', 'o3', 'free.py', 'r0', 'r1', 'i-a', fc('free.py')), 'a file outside the freeze is fine')
  const p = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit', unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 100 })
  p.join('A', 'B')
  p.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'] } })
  p.announce('B', 'i-b', ['main.py'])
  p.propose('A', 'o1', 'free.py', 'i-a')
  p.tick(101)
  assertRejected(t, p.commit('A', 'o1', 'free.py', 'r0', 'r1', 'i-a', fc('utils.py')), 'SCOPE_FROZEN', 'pre_commit completion')
})

t.test('pre_commit: the file_changes of an initial OP_COMMIT (the proposal) are validated, then written by the completion', async t => {
  const h = new Harness({ complianceProfile: 'governance', executionModel: 'pre_commit' })
  h.join('A')
  h.announce('A', 'i', ['a.py'])
  const bad = h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', { file_changes: { '../etc/passwd': { content: 'x' } } })
  const p = assertRejected(t, bad, 'MALFORMED_MESSAGE')
  t.match(p.description, /invalid path/)
  t.equal(h.opState('o1'), undefined, 'not registered')
  const prop = h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', { file_changes: { 'a.py': { content: 'x' } } })
  t.match(payloadsOfType(prop, 'COORDINATOR_STATUS'), [{ event: 'authorization', authorized_op_id: 'o1' }], 'the proposal')
  t.same(prop.fileWrites, [])
  assertRelayed(t, h.commit('A', 'o1', 'a.py', refOf(''), refOf('x'), 'i', { file_changes: { 'a.py': { content: 'x' } } }), 'the completion writes the files')
  t.equal(h.c.readFile('a.py')?.content, 'x')
})

t.test('a file is readable by the same path spelling it was written with', async t => {
  const h = new Harness(QUIET)
  h.join('A')
  h.announce('A', 'i', ['src/a.py'])
  assertRelayed(t, h.commit('A', 'o1', './src/a.py', 'r0', 'r1', 'i', { file_changes: { './src//a.py': { content: 'x' } } }))
  for (const p of ['src/a.py', './src/a.py', 'src//a.py', 'src/a.py/']) t.same(h.c.readFile(p), { content: 'x', state_ref: refOf('x') }, p)
  for (const p of ['../src/a.py', '/src/a.py', '', 'src\\a.py']) t.equal(h.c.readFile(p), undefined, JSON.stringify(p))
})
