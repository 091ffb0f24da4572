import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t, { type Test } from 'tap'
import { runTokenCommand } from '../../src/server/token-command.js'
import { TokenTable, tokenDigest } from '../../src/server/token-table.js'
import { cleanEnv, SERVER_CLI, TS_LOADER } from './helpers.js'

const TOKEN = /^mpac_[A-Za-z0-9_-]{43}$/

async function run (argv: string[]): Promise<{ code: number, out: string, err: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  let out = ''
  let err = ''
  stdout.on('data', (chunk: Buffer) => { out += chunk.toString('utf8') })
  stderr.on('data', (chunk: Buffer) => { err += chunk.toString('utf8') })
  const code = await runTokenCommand(argv, { stdout, stderr })
  return { code, out, err }
}

async function tempDir (t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mpac-token-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

t.test('token new prints a fresh token and an entry the server accepts', async t => {
  const r = await run(['new', '--session', 'proj-a', '--session', 'proj-b', '--role', 'owner', '--role', 'reviewer', '--principal', 'agent:alice'])
  t.equal(r.code, 0)
  const [first, ...rest] = r.out.split('\n')
  t.match(first, TOKEN, 'first line is the token')
  const entry = JSON.parse(rest.join('\n')) as Record<string, unknown>
  t.same(Object.keys(entry), [first], 'entry keyed by the token')
  t.same(entry[first as string], { allowed_sessions: ['proj-a', 'proj-b'], roles: ['owner', 'reviewer'], principal: 'agent:alice' })

  const parsed = TokenTable.fromObject(entry)
  if (!parsed.ok) throw new Error(parsed.message)
  const table = parsed.table
  t.same(table.verify({ type: 'bearer_token', value: first as string }, 'proj-b', 'agent:alice'),
    { accepted: true, grantedRoles: ['owner', 'reviewer'], principalId: 'agent:alice' })
  t.equal(table.verify({ type: 'bearer_token', value: first as string }, 'proj-c', 'agent:alice').accepted, false)

  const again = await run(['new', '--session', 'proj-a'])
  t.not(again.out.split('\n')[0], first, 'every call mints a different token')
  t.same(Object.values(JSON.parse(again.out.split('\n').slice(1).join('\n')) as object)[0],
    { allowed_sessions: ['proj-a'], roles: ['contributor'] }, 'roles default to contributor, stated explicitly')
})

t.test("--session '*' and --session=value forms", async t => {
  const r = await run(['new', '--session=*', '--role=owner'])
  t.equal(r.code, 0)
  const entry = JSON.parse(r.out.split('\n').slice(1).join('\n')) as Record<string, unknown>
  t.same(Object.values(entry)[0], { allowed_sessions: ['*'], roles: ['owner'] })
})

t.test('bad arguments: one line on stderr, exit code 2, nothing on stdout', async t => {
  const cases: string[][] = [
    [],
    ['old'],
    ['new'],
    ['new', '--role', 'owner'],
    ['new', '--session'],
    ['new', '--session', ''],
    ['new', '--session', 'has space'],
    ['new', '--session', '*', '--session', 'proj-a'],
    ['new', '--session', 'a', '--role', 'bad role'],
    ['new', '--session', 'a', '--principal', 'x', '--principal', 'y'],
    ['new', '--session', 'a', '--frobnicate']
  ]
  for (const argv of cases) {
    const r = await run(argv)
    t.equal(r.code, 2, `exit 2 for ${JSON.stringify(argv)}`)
    t.equal(r.out, '', `no stdout for ${JSON.stringify(argv)}`)
    t.match(r.err, /^mpac-mcp-sidecar token[^\n]*\n$/, `one line for ${JSON.stringify(argv)}`)
  }
})

t.test('--help', async t => {
  for (const argv of [['--help'], ['-h'], ['help'], ['new', '--help'], ['token', '--help']]) {
    const r = await run(argv)
    t.equal(r.code, 0)
    t.match(r.out, /Usage: mpac-mcp-sidecar token new --session/)
    t.equal(r.err, '')
  }
})

t.test('--table creates a 0600 file, then adds to it in place', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'tokens.json')
  const first = await run(['new', '--session', 'proj-a', '--table', file])
  t.equal(first.code, 0, first.err)
  const lines = first.out.trimEnd().split('\n')
  t.equal(lines.length, 2, 'where it wrote, then the token')
  t.match(lines[0], file)
  t.match(lines[1], TOKEN)
  t.equal(first.out.split(lines[1] as string).length, 2, 'token printed exactly once')
  t.equal((await stat(file)).mode & 0o777, 0o600, 'new table file is private')

  const second = await run(['new', '--session', '*', '--role', 'owner', '--table', file])
  t.equal(second.code, 0, second.err)
  const token2 = second.out.trimEnd().split('\n')[1] as string
  const text = await readFile(file, 'utf8')
  t.match(text, /^\{\n {2}"/, 'pretty-printed')
  const raw = JSON.parse(text) as Record<string, unknown>
  t.same(Object.keys(raw), [lines[1], token2], 'existing entry kept, new one added')
  t.ok(TokenTable.parse(text).ok, 'still a valid token table')
  t.same(await readdir(dir), ['tokens.json'], 'no temp file left behind')
})

t.test('--table keeps the mode of an existing file and its other entries', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'table.json')
  await writeFile(file, JSON.stringify({ 'tok-old': { allowed_sessions: ['x'], comment: 'kept' } }), { mode: 0o640 })
  const r = await run(['new', '--session', 'x', '--table', file, '--hash'])
  t.equal(r.code, 0, r.err)
  const token = r.out.trimEnd().split('\n')[1] as string
  const text = await readFile(file, 'utf8')
  t.notMatch(text, token, '--hash keeps the token itself out of the file')
  const raw = JSON.parse(text) as Record<string, unknown>
  t.same(raw['tok-old'], { allowed_sessions: ['x'], comment: 'kept' })
  t.same(raw[`sha256:${tokenDigest(token)}`], { allowed_sessions: ['x'], roles: ['contributor'] })
  t.equal((await stat(file)).mode & 0o777, 0o640)
  const parsed = TokenTable.parse(text)
  if (!parsed.ok) throw new Error(parsed.message)
  t.equal(parsed.table.verify({ type: 'bearer_token', value: token }, 'x', 'agent:any').accepted, true)
})

t.test('--table refuses to touch a file that is not a token table', async t => {
  const dir = await tempDir(t)
  const cases: Array<[string, RegExp]> = [
    ['[1, 2]', /not a valid token table/],
    ['{"a": ', /not valid JSON/],
    ['{"tok": {"roles": ["owner"]}}', /allowed_sessions is required/]
  ]
  for (const [content, message] of cases) {
    const file = join(dir, 'bad.json')
    await writeFile(file, content)
    const r = await run(['new', '--session', 'x', '--table', file])
    t.equal(r.code, 1)
    t.equal(r.out, '')
    t.match(r.err, message)
    t.notMatch(r.err, /mpac_/, 'no token is printed when nothing was written')
    t.equal(await readFile(file, 'utf8'), content, 'file unchanged')
  }
  const missingDir = join(dir, 'nope', 'tokens.json')
  const r = await run(['new', '--session', 'x', '--table', missingDir])
  t.equal(r.code, 1)
  t.match(r.err, /cannot write/)
})

t.test('as a child process: mpac-mcp-sidecar token … through src/server/cli.ts', async t => {
  const dir = await tempDir(t)
  const file = join(dir, 'tokens.json')
  const cli = (args: string[]): { status: number | null, stdout: string, stderr: string } => {
    const r = spawnSync(process.execPath, ['--import', TS_LOADER, SERVER_CLI, ...args], { cwd: dir, env: cleanEnv(), encoding: 'utf8', timeout: 30_000 })
    return { status: r.status, stdout: r.stdout, stderr: r.stderr }
  }
  const made = cli(['token', 'new', '--session', 'proj-a', '--role', 'owner', '--table', file])
  t.equal(made.status, 0, made.stderr)
  const token = made.stdout.trimEnd().split('\n')[1] as string
  t.match(token, TOKEN)
  t.same(JSON.parse(await readFile(file, 'utf8')), { [token]: { allowed_sessions: ['proj-a'], roles: ['owner'] } })

  const bad = cli(['token', 'new', '--role', 'owner'])
  t.equal(bad.status, 2)
  t.equal(bad.stdout, '')
  t.match(bad.stderr, /^mpac-mcp-sidecar token new: --session is required[^\n]*\n$/)

  const help = cli(['token', '--help'])
  t.equal(help.status, 0)
  t.match(help.stdout, /Usage: mpac-mcp-sidecar token new/)
})
