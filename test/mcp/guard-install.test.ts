/**
 * `mpac-mcp guard install | uninstall | status` in real git repositories
 * (temp dirs, private git config), through the real CLI and real `git
 * commit`: where the hook goes (worktrees share the common hooks dir),
 * idempotence, chaining a foreign hook (it still runs, its failure still
 * fails the commit, uninstall restores it), --no-chain, a planted symlink,
 * a global core.hooksPath refused, and a repository no coordinator knows
 * (the installed guard lets commits through silently).
 */
import { existsSync, lstatSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { must, sandbox } from '../helpers/git.js'

const FOREIGN = (marker: string, code: number): string => `#!/bin/sh\necho "foreign hook ran" >> "${marker}"\nexit ${code}\n`

t.test('install writes an executable sh hook that runs this program by absolute path; twice changes nothing', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('repo', { 'a.txt': 'a\n' })
  const first = await must(sb.mpac(repo, ['guard', 'install']))
  t.match(first.stdout, /pre-commit: installed in .*\.git\/hooks \(mode block\)/)
  const hook = join(repo, '.git', 'hooks', 'pre-commit')
  const text = readFileSync(hook, 'utf8')
  t.ok(text.startsWith('#!/bin/sh\n'), 'a POSIX sh script')
  t.ok((statSync(hook).mode & 0o111) !== 0, 'executable')
  t.match(text, `${process.execPath} `, 'node by absolute path')
  t.match(text, /\/src\/mcp\/cli\.ts guard check --staged --mode block/, 'the CLI script by absolute path')
  t.notOk(existsSync(join(repo, '.git', 'hooks', 'pre-push')), 'no pre-push without --pre-push')

  const second = await must(sb.mpac(repo, ['guard', 'install']))
  t.match(second.stdout, /pre-commit: already installed/)
  t.equal(readFileSync(hook, 'utf8'), text, 'unchanged')

  const warn = await must(sb.mpac(repo, ['guard', 'install', '--mode', 'warn', '--pre-push']))
  t.match(warn.stdout, /pre-commit: updated .*\(mode warn\)/)
  t.match(warn.stdout, /pre-push: installed/)
  t.match(readFileSync(hook, 'utf8'), /--mode warn/)
  const status = await must(sb.mpac(repo, ['guard', 'status']))
  t.match(status.stdout, /pre-commit: installed, mode warn/)
  t.match(status.stdout, /pre-push: installed, mode warn/)
  t.match(status.stdout, /coordinator: none knows this repository/)
  t.notMatch(status.stdout, /MISSING/)

  const bad = await sb.mpac(repo, ['guard', 'install', '--mode', 'loud'])
  t.equal(bad.code, 2)
  t.match(bad.stderr, /--mode must be block or warn/)

  // No coordinator, no URL, no local sidecar: the commit goes through without a word from the guard.
  writeFileSync(join(repo, 'a.txt'), 'changed\n')
  await must(sb.git(repo, ['add', 'a.txt']))
  const commit = await sb.git(repo, ['commit', '-m', 'change'])
  t.equal(commit.code, 0, commit.stderr)
  t.notMatch(commit.stderr, /mpac/, 'silent in a repository no coordinator knows')

  const gone = await must(sb.mpac(repo, ['guard', 'uninstall']))
  t.match(gone.stdout, /pre-commit: removed/)
  t.match(gone.stdout, /pre-push: removed/)
  t.notOk(existsSync(hook))
  t.match((await must(sb.mpac(repo, ['guard', 'uninstall']))).stdout, /not installed/)
})

t.test('a linked worktree installs into the common hooks dir, which its commits run', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('main-wt', { 'a.txt': 'a\n' })
  const wt = join(sb.root, 'linked')
  await must(sb.git(repo, ['worktree', 'add', '-q', '-b', 'side', wt]))
  const out = await must(sb.mpac(wt, ['guard', 'install']))
  t.match(out.stdout, `installed in ${join(repo, '.git', 'hooks')} `)
  t.ok(existsSync(join(repo, '.git', 'hooks', 'pre-commit')))
  const fromWt = await must(sb.mpac(wt, ['guard', 'status']))
  t.match(fromWt.stdout, /pre-commit: installed, mode block/)
  // A chained hook proves the worktree's commit runs the installed script.
  const marker = join(sb.root, 'ran')
  writeFileSync(join(repo, '.git', 'hooks', 'pre-commit.mpac-orig'), FOREIGN(marker, 0), { mode: 0o755 })
  writeFileSync(join(wt, 'a.txt'), 'b\n')
  await must(sb.git(wt, ['commit', '-qam', 'in the worktree']))
  t.equal(readFileSync(marker, 'utf8'), 'foreign hook ran\n')
})

t.test('a foreign pre-commit is chained: it still runs, its failure fails the commit, uninstall restores it', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('chain', { 'a.txt': 'a\n' })
  const hooks = join(repo, '.git', 'hooks')
  const marker = join(sb.root, 'ran')
  const foreign = FOREIGN(marker, 0)
  writeFileSync(join(hooks, 'pre-commit'), foreign, { mode: 0o755 })
  const out = await must(sb.mpac(repo, ['guard', 'install']))
  t.match(out.stdout, /your previous pre-commit was moved to pre-commit\.mpac-orig and runs after the guard/)
  t.equal(readFileSync(join(hooks, 'pre-commit.mpac-orig'), 'utf8'), foreign)
  t.match((await must(sb.mpac(repo, ['guard', 'install']))).stdout, /already installed/, 'idempotent: the original is not chained twice')
  t.match((await must(sb.mpac(repo, ['guard', 'status']))).stdout, /pre-commit: installed, mode block, then runs pre-commit\.mpac-orig/)

  writeFileSync(join(repo, 'a.txt'), 'b\n')
  await must(sb.git(repo, ['commit', '-qam', 'one']))
  t.equal(readFileSync(marker, 'utf8'), 'foreign hook ran\n', 'the chained hook ran')

  writeFileSync(join(hooks, 'pre-commit.mpac-orig'), FOREIGN(marker, 3), { mode: 0o755 })
  const head = (await must(sb.git(repo, ['rev-parse', 'HEAD']))).stdout
  writeFileSync(join(repo, 'a.txt'), 'c\n')
  const failed = await sb.git(repo, ['commit', '-qam', 'two'])
  t.not(failed.code, 0, 'the chained hook\'s failure fails the commit')
  t.equal((await must(sb.git(repo, ['rev-parse', 'HEAD']))).stdout, head, 'nothing was committed')

  writeFileSync(join(hooks, 'pre-commit.mpac-orig'), foreign, { mode: 0o755 })
  const gone = await must(sb.mpac(repo, ['guard', 'uninstall']))
  t.match(gone.stdout, /pre-commit: removed; your previous pre-commit is back in place/)
  t.equal(readFileSync(join(hooks, 'pre-commit'), 'utf8'), foreign, 'the original is back')
  t.notOk(existsSync(join(hooks, 'pre-commit.mpac-orig')))
})

t.test('--no-chain leaves a foreign hook alone and prints the line to add', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('nochain', { 'a.txt': 'a\n' })
  const hook = join(repo, '.git', 'hooks', 'pre-commit')
  const foreign = FOREIGN(join(sb.root, 'ran'), 0)
  writeFileSync(hook, foreign, { mode: 0o755 })
  const out = await must(sb.mpac(repo, ['guard', 'install', '--no-chain']))
  t.match(out.stdout, /is not mpac's; left unchanged \(--no-chain\)/)
  t.match(out.stdout, /husky/)
  t.match(out.stdout, /\/src\/mcp\/cli\.ts guard check --staged\n/, 'the line to add')
  t.equal(readFileSync(hook, 'utf8'), foreign)
  t.notOk(existsSync(hook + '.mpac-orig'))

  // A foreign hook plus a leftover .mpac-orig: neither is overwritten.
  writeFileSync(hook + '.mpac-orig', 'older\n', { mode: 0o755 })
  const refused = await sb.mpac(repo, ['guard', 'install'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /refusing to overwrite either/)
  t.equal(readFileSync(hook, 'utf8'), foreign)
  t.equal(readFileSync(hook + '.mpac-orig', 'utf8'), 'older\n')
})

t.test('a planted symlink is never written through', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('symlink', { 'a.txt': 'a\n' })
  const hook = join(repo, '.git', 'hooks', 'pre-commit')
  const victim = join(sb.root, 'victim.sh')
  writeFileSync(victim, '#!/bin/sh\nexit 0\n', { mode: 0o755 })
  symlinkSync(victim, hook)
  await must(sb.mpac(repo, ['guard', 'install']))
  t.equal(readFileSync(victim, 'utf8'), '#!/bin/sh\nexit 0\n', 'the link target is untouched')
  t.notOk(lstatSync(hook).isSymbolicLink(), 'the hook is our own regular file')
  t.ok(lstatSync(hook + '.mpac-orig').isSymbolicLink(), 'the link was moved aside, as a link')
})

t.test('a core.hooksPath from the global config is refused unless --allow-global-hooks-path', async t => {
  const sb = sandbox(t)
  const repo = await sb.repo('global', { 'a.txt': 'a\n' })
  const shared = join(sb.root, 'shared-hooks')
  await must(sb.git(repo, ['config', '--global', 'core.hooksPath', shared]))
  const refused = await sb.mpac(repo, ['guard', 'install'])
  t.equal(refused.code, 1)
  t.match(refused.stderr, /core\.hooksPath is set to .*shared-hooks.* in your global git configuration/)
  t.match(refused.stderr, /--allow-global-hooks-path/)
  t.notOk(existsSync(join(shared, 'pre-commit')), 'nothing written')
  t.equal((await sb.mpac(repo, ['guard', 'uninstall'])).code, 1, 'uninstall refuses too')

  const allowed = await must(sb.mpac(repo, ['guard', 'install', '--allow-global-hooks-path']))
  t.match(allowed.stdout, `installed in ${shared} `)
  t.ok(existsSync(join(shared, 'pre-commit')))

  // A repository-local core.hooksPath is this repository's own business.
  await must(sb.git(repo, ['config', '--global', '--unset', 'core.hooksPath']))
  await must(sb.git(repo, ['config', 'core.hooksPath', '.githooks']))
  const local = await must(sb.mpac(repo, ['guard', 'install']))
  t.match(local.stdout, `installed in ${join(repo, '.githooks')} `)
})

t.test('outside a repository: one clear line, exit 2', async t => {
  const sb = sandbox(t)
  const r = await sb.mpac(sb.root, ['guard', 'install'])
  t.equal(r.code, 2)
  t.match(r.stderr, /mpac-mcp guard: .*not a git repository/)
  const usage = await sb.mpac(sb.root, ['guard', 'frobnicate'])
  t.equal(usage.code, 2)
  t.match(usage.stderr, /unknown guard command/)
})
