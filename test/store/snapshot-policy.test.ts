import t from 'tap'
import { SnapshotPolicy } from '../../src/store/index.js'

t.test('defaults: every 5000 entries or 4 MiB', async t => {
  const policy = new SnapshotPolicy()
  t.equal(policy.due({ entriesSinceSnapshot: 4999, bytesSinceSnapshot: 4 * 1024 * 1024 - 1 }), false)
  t.equal(policy.due({ entriesSinceSnapshot: 5000, bytesSinceSnapshot: 0 }), true)
  t.equal(policy.due({ entriesSinceSnapshot: 1, bytesSinceSnapshot: 4 * 1024 * 1024 }), true)
})

t.test('configured thresholds', async t => {
  const policy = new SnapshotPolicy({ everyEntries: 3, everyBytes: 100 })
  t.equal(policy.due({ entriesSinceSnapshot: 2, bytesSinceSnapshot: 99 }), false)
  t.equal(policy.due({ entriesSinceSnapshot: 3, bytesSinceSnapshot: 0 }), true)
  t.equal(policy.due({ entriesSinceSnapshot: 0, bytesSinceSnapshot: 100 }), true)
  t.equal(policy.due({ entriesSinceSnapshot: 0, bytesSinceSnapshot: 0 }), false)
})

t.test('rejects thresholds that are not positive integers', async t => {
  t.throws(() => new SnapshotPolicy({ everyEntries: 0 }), RangeError)
  t.throws(() => new SnapshotPolicy({ everyBytes: -1 }), RangeError)
  t.throws(() => new SnapshotPolicy({ everyEntries: 1.5 }), RangeError)
})
