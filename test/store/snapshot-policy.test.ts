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

t.test('amortised: waits until the journal since the last snapshot is as large as that snapshot', async t => {
  const policy = new SnapshotPolicy({ everyEntries: 5000, everyBytes: 100 })
  t.equal(policy.stateFactor, 1)
  // A 1000-byte state: 100 bytes of journal is not enough any more, 1000 is.
  t.equal(policy.due({ entriesSinceSnapshot: 10, bytesSinceSnapshot: 999, snapshotBytes: 1000 }), false)
  t.equal(policy.due({ entriesSinceSnapshot: 10, bytesSinceSnapshot: 1000, snapshotBytes: 1000 }), true)
  t.equal(policy.due({ entriesSinceSnapshot: 6000, bytesSinceSnapshot: 500, snapshotBytes: 1000 }), false, 'the entry count alone does not override it')
  // A small state keeps the fixed thresholds.
  t.equal(policy.due({ entriesSinceSnapshot: 10, bytesSinceSnapshot: 100, snapshotBytes: 10 }), true)
  t.equal(policy.due({ entriesSinceSnapshot: 10, bytesSinceSnapshot: 99, snapshotBytes: 10 }), false)
  const eager = new SnapshotPolicy({ everyBytes: 100, stateFactor: 0 })
  t.equal(eager.due({ entriesSinceSnapshot: 1, bytesSinceSnapshot: 100, snapshotBytes: 1e9 }), true, 'factor 0: the fixed thresholds only')
  t.throws(() => new SnapshotPolicy({ stateFactor: -1 }), RangeError)
  t.throws(() => new SnapshotPolicy({ stateFactor: Number.NaN }), RangeError)
})

t.test('total snapshot bytes stay linear in the journal bytes while the state grows', async t => {
  // Every journal entry of 1 KiB also grows the state by 1 KiB (file uploads),
  // up to 64 MiB of state: the snapshots written must not exceed the journal
  // written (factor 1) plus one snapshot's worth. The fixed 4 MiB policy
  // would write about 64 MiB × 16 / 2 ≈ 512 MiB of snapshots here.
  const policy = new SnapshotPolicy()
  const entry = 1024
  let state = 0
  let sinceBytes = 0
  let sinceEntries = 0
  let snapshotBytes = 0
  let journalTotal = 0
  let snapshotTotal = 0
  let snapshots = 0
  for (let i = 0; i < 64 * 1024; i++) {
    state += entry
    sinceBytes += entry
    sinceEntries++
    journalTotal += entry
    if (policy.due({ entriesSinceSnapshot: sinceEntries, bytesSinceSnapshot: sinceBytes, snapshotBytes })) {
      snapshotTotal += state
      snapshotBytes = state
      sinceBytes = 0
      sinceEntries = 0
      snapshots++
    }
  }
  t.ok(snapshots > 0 && snapshots < 20, `${snapshots} snapshots (geometric spacing)`)
  t.ok(snapshotTotal <= 2 * journalTotal + state, `snapshots wrote ${snapshotTotal} bytes for ${journalTotal} bytes of journal`)
  const fixed = new SnapshotPolicy({ stateFactor: 0 })
  let fixedTotal = 0
  state = 0; sinceBytes = 0; sinceEntries = 0
  for (let i = 0; i < 64 * 1024; i++) {
    state += entry; sinceBytes += entry; sinceEntries++
    if (fixed.due({ entriesSinceSnapshot: sinceEntries, bytesSinceSnapshot: sinceBytes })) { fixedTotal += state; sinceBytes = 0; sinceEntries = 0 }
  }
  t.ok(fixedTotal > 4 * snapshotTotal, `the fixed policy writes ${fixedTotal} bytes (quadratic)`)
})
