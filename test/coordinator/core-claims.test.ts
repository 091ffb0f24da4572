/**
 * INTENT_CLAIM validation: a pending claim reserves its new_intent_id, and
 * the claimed scope must equal or narrow the original (never wider, never
 * another kind).
 */
import t from 'tap'
import { Harness, assertRejected, assertRelayed, conflictIdsOf, errorsOf, payloadsOfType } from '../helpers/mpac.js'

const QUIET = { unavailabilityTimeoutSec: 1e6, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 }

t.test('a pending claim reserves its new_intent_id', async t => {
  const h = new Harness({ ...QUIET, intentClaimGraceSec: 30 })
  h.join('A', 'B', 'C')
  h.announce('A', 'i', ['a.py'])
  h.announce('A', 'k', ['k.py'])
  h.goodbye('A', { intent_disposition: 'transfer' })
  assertRelayed(t, h.claim('B', 'c1', 'i', 'A', 'x', ['a.py']), 'claim c1')
  const taken = h.announce('C', 'x', ['c.py'])
  assertRejected(t, taken, 'INVALID_REFERENCE', 'an announce re-using the reserved id')
  t.equal(h.intentState('x'), undefined, 'nothing registered under the reserved id')
  assertRejected(t, h.claim('C', 'c2', 'k', 'A', 'x', ['k.py']), 'INVALID_REFERENCE', 'a second claim naming the same new id')
  h.clock.advance(31)
  const sweep = h.tick()
  t.match(payloadsOfType(sweep, 'INTENT_CLAIM_STATUS'), [{ claim_id: 'c1', decision: 'approved', new_intent_id: 'x' }])
  t.match(h.intent('x'), { principal_id: 'B', state: 'ACTIVE' })
  // The index is consistent: C may now announce c.py without a conflict, and B holds a.py.
  t.same(conflictIdsOf(h.announce('C', 'y', ['c.py'])), [])
  const stale = h.announce('C', 'z', ['a.py'])
  t.match(errorsOf(stale, 'STALE_INTENT'), [{ holder_intent_id: 'x', holder_principal_id: 'B' }])
})

t.test('a claim cannot widen the scope by changing its kind', async t => {
  const h = new Harness({ unavailabilityTimeoutSec: 10, heartbeatIntervalSec: 1e6, resolutionTimeoutSec: 0 })
  h.join('A', 'B')
  h.announce('A', 'i', ['src/a.py', 'src/b.py'])
  h.announce('A', 'g', { kind: 'resource_path', pattern: 'lib/**' })
  h.clock.advance(6)
  h.heartbeat('B')
  h.tick(5)
  t.equal(h.intentState('i'), 'SUSPENDED')
  assertRejected(t, h.claim('B', 'c1', 'i', 'A', 'j1', { kind: 'resource_path', pattern: '**' }), 'INVALID_REFERENCE', 'a glob over everything is not narrower than two files')
  assertRejected(t, h.claim('B', 'c2', 'i', 'A', 'j2', { kind: 'entity_set', entities: ['db'] }), 'INVALID_REFERENCE', 'another kind is not narrower')
  assertRejected(t, h.claim('B', 'c3', 'g', 'A', 'j3', { kind: 'resource_path', pattern: '**' }), 'INVALID_REFERENCE', 'a wider glob')
  assertRejected(t, h.claim('B', 'c4', 'g', 'A', 'j4', ['src/x.py']), 'INVALID_REFERENCE', 'files outside the glob')
  const ok = h.claim('B', 'c5', 'g', 'A', 'j5', ['lib/x/y.py'])
  t.match(payloadsOfType(ok, 'INTENT_CLAIM_STATUS'), [{ decision: 'approved', new_intent_id: 'j5' }], 'files inside the glob narrow it')
  const same = h.claim('B', 'c6', 'i', 'A', 'j6', ['./src/a.py', 'src/b.py'])
  t.match(payloadsOfType(same, 'INTENT_CLAIM_STATUS'), [{ decision: 'approved', new_intent_id: 'j6' }], 'the same files')
})
