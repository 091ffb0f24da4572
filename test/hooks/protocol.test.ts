// The builtins-only helpers of the local hook protocol: text sanitising and the socket/registry paths.
import { mkdtempSync, statSync, chmodSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { ensurePrivateDir, hookStateDir, quoteText, registryDir, sanitizeText, socketDir, socketPath } from '../../src/hooks/protocol.js'

t.test('sanitizeText strips controls and newlines, collapses spaces, cuts at max', async t => {
  t.equal(sanitizeText('a\nb\r\n\tc\u0000d\u001b[31m'), 'a b c d [31m')
  t.equal(sanitizeText('x\u202eevil\u2066\u200by'), 'x evil y')
  t.equal(sanitizeText('  many    spaces  '), 'many spaces')
  const long = 'é'.repeat(500)
  const cut = sanitizeText(long, 120)
  t.equal(Array.from(cut).length, 120)
  t.ok(cut.endsWith('…'))
  t.equal(sanitizeText('😀'.repeat(10), 5), '😀😀😀😀…', 'cuts by code point, never inside a surrogate pair')
  t.equal(sanitizeText(undefined), '')
  t.equal(quoteText('say "hi"\nnow'), '"say \'hi\' now"')
})

t.test('paths: state dir as the shim computes it, socket dir under XDG_RUNTIME_DIR or /tmp', async t => {
  t.equal(hookStateDir({ XDG_STATE_HOME: '/s', HOME: '/h' }), '/s/mpac-mcp')
  t.equal(hookStateDir({ HOME: '/h' }), '/h/.local/state/mpac-mcp')
  t.equal(hookStateDir({ XDG_STATE_HOME: '~/st', HOME: '/h' }), '/h/st/mpac-mcp')
  t.equal(registryDir({ XDG_STATE_HOME: '/s' }), '/s/mpac-mcp/hooks')
  t.equal(socketDir({ XDG_RUNTIME_DIR: '/run/user/1000' }), '/run/user/1000/mpac-mcp')
  t.match(socketDir({ XDG_RUNTIME_DIR: 'relative' }), /^\/tmp\/mpac-mcp-/)
  t.match(socketDir({ XDG_RUNTIME_DIR: `/${'d'.repeat(90)}` }), /^\/tmp\/mpac-mcp-/, 'too long for a socket path: /tmp')
  t.equal(socketPath('/d', 42, 'linux'), '/d/42.sock')
  t.match(socketPath('/d', 42, 'win32'), /^\\\\\.\\pipe\\mpac-mcp-.+-42$/)
})

t.test('ensurePrivateDir makes a 0700 directory, tightens a wider one, refuses a symlink', async t => {
  const root = mkdtempSync(join(tmpdir(), 'mpac-hookdir-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dir = join(root, 'a', 'b')
  ensurePrivateDir(dir)
  t.equal(statSync(dir).mode & 0o777, 0o700)
  chmodSync(dir, 0o755)
  ensurePrivateDir(dir)
  t.equal(statSync(dir).mode & 0o777, 0o700)
  symlinkSync(dir, join(root, 'link'))
  t.throws(() => ensurePrivateDir(join(root, 'link')), /not a directory/)
})
