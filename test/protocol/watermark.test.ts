import t from 'tap'
import { lamportOf, lamportWatermark, type Watermark } from '../../src/protocol/watermark.js'

t.test('lamportOf reads lamport_clock values', async t => {
  t.equal(lamportOf({ kind: 'lamport_clock', value: 0 }), 0)
  t.equal(lamportOf({ kind: 'lamport_clock', value: 42 }), 42)
  t.equal(lamportOf({ kind: 'lamport_clock', value: 42, lamport_value: 7 }), 42, 'value wins for lamport_clock')
  t.equal(lamportOf({ kind: 'lamport_clock', value: Number.MAX_SAFE_INTEGER }), Number.MAX_SAFE_INTEGER)
})

t.test('lamportOf falls back to lamport_value for other kinds', async t => {
  t.equal(lamportOf({ kind: 'vector_clock', value: { a: 3 }, lamport_value: 9 }), 9)
  t.equal(lamportOf({ kind: 'opaque', value: 'abc', lamport_value: 0 }), 0)
  t.equal(lamportOf({ kind: 'causal_frontier', value: 'x' }), undefined)
  t.equal(lamportOf({ kind: 'opaque', value: 5 }), undefined, 'value of a non-lamport kind is ignored')
})

t.test('lamportOf ignores values that are not non-negative safe integers', async t => {
  const bad: unknown[] = [-1, 1.5, '5', null, undefined, {}, NaN, Number.MAX_SAFE_INTEGER + 1]
  for (const v of bad) {
    t.equal(lamportOf({ kind: 'lamport_clock', value: v }), undefined, String(v))
    t.equal(lamportOf({ kind: 'opaque', value: 'x', lamport_value: v as number }), undefined, `lamport_value ${String(v)}`)
  }
  t.equal(lamportOf(undefined), undefined)
})

t.test('lamportWatermark', async t => {
  const w: Watermark = lamportWatermark(17)
  t.strictSame(w, { kind: 'lamport_clock', value: 17 })
  t.equal(lamportOf(w), 17)
})
