// The MPAC_ERR_* registry (src/errors.ts): constructors in the style of
// Fastify's createError, instanceof per code and for the base class, the
// message template, the default retryability and its per-instance override.
import t from 'tap'
import { ConfigError } from '../src/mcp/config.js'
import { DataDirLockedError, StoreDamagedError } from '../src/store/index.js'
import { ConfigInvalid, defineError, MPAC_ERRORS, MpacError, RemoteClosed, RemoteTimeout, RemoteUnavailable, StoreDamaged } from '../src/errors.js'

t.test('a constructor formats its template, keeps the code and the default retryability', async t => {
  const err = new RemoteTimeout('OP_COMMIT', 5000)
  t.equal(err.message, 'no reply from the coordinator to OP_COMMIT within 5000 ms')
  t.equal(err.code, 'MPAC_ERR_REMOTE_TIMEOUT')
  t.equal(err.retryable, true)
  t.equal(err.hint, undefined)
  t.equal(err.detail, undefined)
  t.ok(err instanceof RemoteTimeout && err instanceof MpacError && err instanceof Error)
  t.notOk(err instanceof RemoteClosed, 'instanceof tells the codes apart')
  t.equal(RemoteTimeout.code, 'MPAC_ERR_REMOTE_TIMEOUT')
  t.equal(RemoteTimeout.retryable, true)
  t.match(err.stack, /no reply from the coordinator/)
  t.throws(() => { throw new RemoteTimeout('HEARTBEAT', 1) }, RemoteTimeout, 'tap matches a thrown error against its class')
  t.throws(() => { throw new RemoteTimeout('HEARTBEAT', 1) }, MpacError)
})

t.test('options come last: hint, detail, cause, and retryable overriding the default', async t => {
  const cause = new Error('ECONNREFUSED')
  const err = new RemoteUnavailable('cannot reach the coordinator at %s', { hint: 'start it', detail: { errno: 'ECONNREFUSED' }, cause, retryable: false })
  t.equal(err.message, 'cannot reach the coordinator at %s', 'a %s inside an argument is not a placeholder')
  t.equal(err.hint, 'start it')
  t.same(err.detail, { errno: 'ECONNREFUSED' })
  t.equal(err.cause, cause)
  t.equal(err.retryable, false)
  t.equal(new RemoteClosed('gone', {}).retryable, true)
  t.equal(new RemoteClosed('gone').cause, undefined)
})

t.test('a code is defined once; the registry lists every code with its spec', async t => {
  t.throws(() => defineError('MPAC_ERR_REMOTE_TIMEOUT', '%s', { kind: 'shim' }), /MPAC_ERR_REMOTE_TIMEOUT is defined twice/)
  t.same(MPAC_ERRORS.get('MPAC_ERR_REMOTE_TIMEOUT'), { code: 'MPAC_ERR_REMOTE_TIMEOUT', retryable: true, template: 'no reply from the coordinator to %s within %d ms', kind: 'shim' })
  for (const [code, spec] of MPAC_ERRORS) t.equal(spec.code, code)
})

t.test('the errors of the store and the shim config are codes of the registry', async t => {
  const damaged = new StoreDamagedError('s1', 'journal entry 3: checksum mismatch', { seq: 3 })
  t.ok(damaged instanceof StoreDamaged && damaged instanceof MpacError)
  t.equal(damaged.code, 'MPAC_ERR_STORE_DAMAGED')
  t.equal(damaged.message, 'session s1: stored state is damaged (journal entry 3: checksum mismatch)')
  t.equal(damaged.name, 'StoreDamagedError')
  t.equal(damaged.seq, 3)
  const locked = new DataDirLockedError('/data', [42])
  t.equal(locked.code, 'MPAC_ERR_DATA_DIR_LOCKED')
  t.ok(locked instanceof MpacError)
  t.match(locked.message, 'the data directory /data is in use by another coordinator (pid 42)')
  const config = new ConfigError('MPAC_LOG_LEVEL must be one of …')
  t.ok(config instanceof ConfigInvalid)
  t.equal(config.code, 'MPAC_ERR_CONFIG_INVALID')
  t.equal(config.retryable, false)
})
