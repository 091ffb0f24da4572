// The hook's socket client against real Unix-socket servers: one line out, one
// line in, a hard deadline, a bounded reply, and a named reason for every failure.
import { createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { HookSocketError, socketRequest } from '../../src/hooks/socket-client.js'
import { tempDir, type Teardown } from '../helpers/process.js'

/** A server on a fresh socket path; `onLine` gets each request line and the socket. */
async function serve (t: Teardown, onLine: (line: string, socket: Socket) => void): Promise<string> {
  const path = join(tempDir(t, 'mpac-sock-'), 's.sock')
  const server: Server = createServer(socket => {
    let buf = ''
    socket.on('data', c => {
      buf += c.toString('utf8')
      const nl = buf.indexOf('\n')
      if (nl !== -1) onLine(buf.slice(0, nl), socket)
    })
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(path, resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  return path
}

async function failure (p: Promise<unknown>): Promise<HookSocketError> {
  try {
    await p
  } catch (err) {
    if (err instanceof HookSocketError) return err
    throw err
  }
  throw new Error('resolved, expected a HookSocketError')
}

t.test('sends one JSON line and resolves with the reply object (even split across chunks)', async t => {
  let seen = ''
  const path = await serve(t, (line, socket) => {
    seen = line
    socket.write('{"v":1,"deci')
    setImmediate(() => socket.write('sion":"deny"}\n'))
  })
  const reply = await socketRequest(path, { v: 1, op: 'ping' })
  t.same(JSON.parse(seen), { v: 1, op: 'ping' })
  t.same(reply, { v: 1, decision: 'deny' })
})

t.test('a server that never answers: rejects with timeout at the deadline', async t => {
  const path = await serve(t, () => {})
  const started = Date.now()
  const err = await failure(socketRequest(path, { v: 1, op: 'ping' }, { deadlineMs: 300 }))
  const took = Date.now() - started
  t.equal(err.reason, 'timeout')
  t.ok(took >= 290 && took < 1000, `gave up after ${took} ms`)
})

t.test('malformed, non-object, oversized and cut-off replies, and no server', async t => {
  const bad = await serve(t, (_l, s) => s.write('not json\n'))
  t.equal((await failure(socketRequest(bad, {}))).reason, 'malformed')
  const arr = await serve(t, (_l, s) => s.write('[1,2]\n'))
  t.equal((await failure(socketRequest(arr, {}))).reason, 'malformed')
  const big = await serve(t, (_l, s) => s.write('{"x":"' + 'a'.repeat(5000) + '"}\n'))
  t.equal((await failure(socketRequest(big, {}, { maxReplyBytes: 1000 }))).reason, 'too_large')
  t.same(Object.keys(await socketRequest(big, {})), ['x'], 'the same reply within the default bound')
  const cut = await serve(t, (_l, s) => s.end('{"v":1'))
  t.equal((await failure(socketRequest(cut, {}))).reason, 'closed')
  const missing = join(tempDir(t, 'mpac-sock-'), 'none.sock')
  const err = await failure(socketRequest(missing, {}))
  t.equal(err.reason, 'unreachable')
  t.match(err.message, /ENOENT/)
})
