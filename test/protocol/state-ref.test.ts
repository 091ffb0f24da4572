import t from 'tap'
import { stateRef } from '../../src/protocol/state-ref.js'

// Vectors computed with Python: 'sha256:' + hashlib.sha256(s.encode()).hexdigest()[:16]
t.test('stateRef matches the Python derivation', async t => {
  t.equal(stateRef(''), 'sha256:e3b0c44298fc1c14')
  t.equal(stateRef('hello'), 'sha256:2cf24dba5fb0a30e')
  t.equal(stateRef('héllo ✓ 日本\n'), 'sha256:bccd28e6d6d757a6')
  t.equal(stateRef('def f():\n    return 1\n'), 'sha256:5b76d0962c09ab4e')
  t.equal(stateRef('😀'), 'sha256:f0443a342c5ef547')
})

t.test('stateRef shape', async t => {
  t.match(stateRef('x'.repeat(100_000)), /^sha256:[0-9a-f]{16}$/)
  t.not(stateRef('a'), stateRef('b'))
})
