import t from 'tap'
import { MAX_PATH_LENGTH, MAX_SEGMENT_BYTES, checkWorkspacePath } from '../../src/protocol/workspace-path.js'

t.test('accepted paths come back normalised', async t => {
  const cases: Array<[string, string]> = [
    ['a.txt', 'a.txt'],
    ['src/db.py', 'src/db.py'],
    ['./src/db.py', 'src/db.py'],
    ['src//db.py', 'src/db.py'],
    ['src///x//y.py', 'src/x/y.py'],
    ['src/', 'src'],
    ['src/lib//', 'src/lib'],
    ['.github/workflows/ci.yml', '.github/workflows/ci.yml'],
    ['..hidden/x', '..hidden/x'],
    ['a/.../b', 'a/.../b'],
    ['dir with space/ü日本.md', 'dir with space/ü日本.md'],
    ['emoji/😀.txt', 'emoji/😀.txt'],
    ['~/x', '~/x'],
    ['dir/x:y', 'dir/x:y'],
    ['1:2', '1:2']
  ]
  for (const [input, path] of cases) t.strictSame(checkWorkspacePath(input), { ok: true, path }, JSON.stringify(input))
})

t.test('refused paths say why', async t => {
  const cases: Array<[string, string]> = [
    ['', 'empty path'],
    ['./', 'empty path'],
    ['/', 'absolute path'],
    ['/etc/passwd', 'absolute path'],
    ['../x', 'segment ".."'],
    ['a/../../x', 'segment ".."'],
    ['a/..', 'segment ".."'],
    ['./../x', 'segment ".."'],
    ['.', 'segment "."'],
    ['a/./b', 'segment "."'],
    ['././a', 'segment "."'],
    ['..', 'segment ".."'],
    ['a\\b', 'backslash'],
    ['..\\..\\x', 'backslash'],
    ['C:/Windows', 'drive letter'],
    ['c:x', 'drive letter'],
    ['a\u0000b', 'control character'],
    ['a\nb', 'control character'],
    ['a\u007fb', 'control character'],
    ['a\u0085b', 'control character'],
    ['a\uD800b', 'not valid Unicode'],
    ['a\uDC00', 'not valid Unicode'],
    ['x'.repeat(MAX_PATH_LENGTH + 1), `longer than ${MAX_PATH_LENGTH} characters`],
    ['d/' + 'n'.repeat(MAX_SEGMENT_BYTES + 1), `segment longer than ${MAX_SEGMENT_BYTES} bytes`],
    ['é'.repeat(128), `segment longer than ${MAX_SEGMENT_BYTES} bytes`]
  ]
  for (const [input, reason] of cases) t.strictSame(checkWorkspacePath(input), { ok: false, reason }, JSON.stringify(input))
  t.strictSame(checkWorkspacePath(undefined as unknown as string), { ok: false, reason: 'empty path' }, 'non-string')
})

t.test('limits are inclusive', async t => {
  const longest = 'a/'.repeat(511) + 'bb'
  t.equal(longest.length, MAX_PATH_LENGTH)
  t.strictSame(checkWorkspacePath(longest), { ok: true, path: longest })
  const segment = 'n'.repeat(MAX_SEGMENT_BYTES)
  t.strictSame(checkWorkspacePath(segment), { ok: true, path: segment })
  t.strictSame(checkWorkspacePath('é'.repeat(127) + 'x'), { ok: true, path: 'é'.repeat(127) + 'x' }, '255 bytes of UTF-8')
})
