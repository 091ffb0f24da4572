/**
 * `mpac-mcp smoke`: the original's six end-to-end flows, run by the real CLI
 * on a scratch copy of one file (each flow starts and stops its own
 * coordinator).
 */
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, TSX, cleanEnv, stateHome, tempDir } from './harness.js'

function run (args: string[], env: Record<string, string>): Promise<{ code: number | null, out: string }> {
  const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'src', 'mcp', 'cli.ts'), ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8') })
  child.stderr.on('data', (c: Buffer) => { out += c.toString('utf8') })
  return new Promise(resolve => child.once('close', code => resolve({ code, out })))
}

t.test('smoke all passes on a scratch copy and leaves the source untouched', async t => {
  const source = tempDir(t, 'mpac-smoke-src-')
  writeFileSync(join(source, 'README.md'), '# a project\n')
  const state = stateHome(t)
  const { code, out } = await run(['smoke', 'all', '--workspace', source], cleanEnv({ XDG_STATE_HOME: state }))
  t.equal(code, 0, out)
  for (const flow of ['milestone0', 'tools', 'commit', 'governance', 'takeover', 'remote']) t.match(out, new RegExp(`^${flow}: PASS$`, 'm'))
  t.match(out, /smoke: all flows passed/)
  t.match(out, /session mpac-local-mpac-smoke-commit-\S+: \d+ participant/, 'a summary of the final session state is printed')
  t.equal(readFileSync(join(source, 'README.md'), 'utf8'), '# a project\n', 'the commit went to the scratch copy only')
})

t.test('smoke refuses a scratch directory inside a git repository', async t => {
  const repo = tempDir(t, 'mpac-smoke-repo-')
  mkdirSync(join(repo, '.git'))
  const { code, out } = await run(['smoke', 'commit', '--workspace', repo], cleanEnv({ TMPDIR: repo, XDG_STATE_HOME: stateHome(t) }))
  t.equal(code, 1)
  t.match(out, /inside a git repository/)
})

t.test('an unknown flow is a usage error', async t => {
  const { code, out } = await run(['smoke', 'nope'], cleanEnv())
  t.equal(code, 2)
  t.match(out, /usage: mpac-mcp smoke/)
})
