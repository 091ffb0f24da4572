import t from 'tap'
import { protocolErrorPayload } from '../../src/protocol/protocol-error.js'
import { ProtocolErrorPayloadSchema } from '../../src/protocol/schemas.js'

t.test('payload keys in PY order: error_code, refers_to, description, extras, extensions', async t => {
  const p = protocolErrorPayload({
    code: 'STALE_INTENT',
    refersTo: 'm-1',
    description: 'held',
    extra: { holder_intent_id: 'i-a', shared_files: ['a.py'] },
    extensions: { retry_after_sec: 1 }
  })
  t.equal(JSON.stringify(p), '{"error_code":"STALE_INTENT","refers_to":"m-1","description":"held","holder_intent_id":"i-a","shared_files":["a.py"],"extensions":{"retry_after_sec":1}}')
  t.ok(ProtocolErrorPayloadSchema.safeParse(p).success, 'a valid PROTOCOL_ERROR payload')
})

t.test('refers_to only when it is a string; nothing else is added', async t => {
  for (const refersTo of [undefined, null, 7, { id: 'm' }]) {
    t.equal(JSON.stringify(protocolErrorPayload({ code: 'MALFORMED_MESSAGE', description: 'bad', refersTo })), '{"error_code":"MALFORMED_MESSAGE","description":"bad"}', `refersTo ${JSON.stringify(refersTo)}`)
  }
  t.same(protocolErrorPayload({ code: 'INVALID_REFERENCE', description: 'd', refersTo: '' }), { error_code: 'INVALID_REFERENCE', refers_to: '', description: 'd' }, 'an empty id is still an id')
})

t.test('extras are copied, not shared', async t => {
  const extra = { conflict_id: 'c-1' }
  const p = protocolErrorPayload({ code: 'RESOLUTION_TIMEOUT', description: 'd', extra })
  p.conflict_id = 'changed'
  t.equal(extra.conflict_id, 'c-1')
})
