/**
 * `mpac-mcp guard install | uninstall` and what `status` reads
 * (agent-hooks-and-dashboard.md §7.8): the git pre-commit (and pre-push)
 * hook scripts that run `mpac-mcp guard check`.
 *
 * Contract:
 * - The hooks directory is git's own answer (`git rev-parse --git-path
 *   hooks`: linked worktrees share the common one). A `core.hooksPath` set
 *   in global or system configuration is refused unless
 *   `allowGlobalHooksPath` (installing there would gate every repository of
 *   the machine).
 * - Our script is `#!/bin/sh`, marked with HOOK_MARKER, and runs the
 *   program that installed it by absolute path (node + script); it never
 *   depends on PATH. A foreign hook already there is chained: renamed to
 *   `<hook>.mpac-orig` and run after our check, with our stdin, its exit
 *   code becoming the hook's. With `chain: false` a foreign hook is left
 *   alone and the line to add to it is printed instead.
 * - Every write is a new file in the hooks directory (O_EXCL, so never
 *   through a planted symlink) renamed over the hook: a reader sees the old
 *   or the new script, never half of one. Installing twice changes nothing.
 * - Uninstall removes only our scripts and renames a chained original back.
 * - Never: touches a hook that is not ours except to rename it to
 *   `.mpac-orig` (install) and back (uninstall), or overwrites an existing
 *   `.mpac-orig`.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, constants, lstatSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { hooksDir, hooksPathOrigin } from './git.js'

export const HOOK_MARKER = '# mpac-mcp-guard: v1'
const MODE_LINE = '# mpac-mcp-guard-mode: '
export const GUARD_HOOKS = ['pre-commit', 'pre-push'] as const
export type GuardHook = typeof GUARD_HOOKS[number]
export const GUARD_MODES = ['block', 'warn'] as const
export type GuardMode = typeof GUARD_MODES[number]
export const ORIG_SUFFIX = '.mpac-orig'

export interface Outcome {
  readonly code: number
  /** Lines for stdout. */
  readonly out: string[]
  /** Lines for stderr. */
  readonly err: string[]
}

/** One argument quoted for sh. */
export function shQuote (arg: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`
}

/** The guard command line of a hook, as a user would add it to another hook manager. */
export function checkCommand (program: readonly string[], hook: GuardHook): string {
  const args = hook === 'pre-commit' ? ['guard', 'check', '--staged'] : ['guard', 'check', '--pre-push', '"$1"', '"$2"']
  return [...program.map(shQuote), ...args].join(' ')
}

/** The script we install as `hook`. */
export function hookScript (hook: GuardHook, program: readonly string[], mode: GuardMode): string {
  const cmd = `${checkCommand(program, hook)} --mode ${mode}`
  const orig = `"$(dirname "$0")/${hook}${ORIG_SUFFIX}"`
  const lines = [
    '#!/bin/sh',
    `${HOOK_MARKER} (${hook}; written by \`mpac-mcp guard install\`, removed by \`mpac-mcp guard uninstall\`)`,
    `${MODE_LINE}${mode}`,
    '# Bypass once: MPAC_GUARD_BYPASS=1 git ' + (hook === 'pre-commit' ? 'commit' : 'push') + ' …, or --no-verify.'
  ]
  if (hook === 'pre-commit') {
    lines.push(
      `${cmd} || exit $?`,
      `orig=${orig}`,
      'if [ -x "$orig" ]; then exec "$orig" "$@"; fi',
      'exit 0'
    )
  } else {
    // git gives pre-push the refs on stdin: read it once, give it to both.
    lines.push(
      'input=$(cat)',
      `printf '%s\\n' "$input" | ${cmd} || exit $?`,
      `orig=${orig}`,
      'if [ -x "$orig" ]; then printf \'%s\\n\' "$input" | "$orig" "$@"; exit $?; fi',
      'exit 0'
    )
  }
  return lines.join('\n') + '\n'
}

export type HookFile =
  | { readonly kind: 'absent' }
  | { readonly kind: 'ours', readonly mode: GuardMode | undefined, readonly text: string, readonly program: string | undefined }
  | { readonly kind: 'foreign', readonly symlink: boolean }

function exists (path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch {
    return false
  }
}

/** What is at a hook path. */
export function readHook (path: string): HookFile {
  let symlink: boolean
  try {
    symlink = lstatSync(path).isSymbolicLink()
  } catch {
    return { kind: 'absent' }
  }
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return { kind: 'foreign', symlink }
  }
  if (symlink || !text.includes(HOOK_MARKER)) return { kind: 'foreign', symlink }
  const modeLine = text.split('\n').find(l => l.startsWith(MODE_LINE))
  const mode = modeLine?.slice(MODE_LINE.length).trim()
  // The program is what precedes ` guard check ` on the command line (after the pipe in pre-push).
  const command = text.split('\n').find(l => l.includes(' guard check '))
  const before = command?.slice(0, command.indexOf(' guard check '))
  return {
    kind: 'ours',
    mode: (GUARD_MODES as readonly string[]).includes(mode ?? '') ? mode as GuardMode : undefined,
    text,
    program: before?.includes(' | ') === true ? before.slice(before.lastIndexOf(' | ') + 3) : before
  }
}

/** Writes `text` as `path`: a fresh file beside it (O_EXCL, so never through a symlink), then renamed over it. */
export function writeAtomic (path: string, text: string, mode = 0o755): void {
  const dir = join(path, '..')
  const tmp = join(dir, `.${path.slice(dir.length + 1)}.mpac-tmp-${process.pid}-${randomBytes(4).toString('hex')}`)
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0), mode)
  try {
    writeSync(fd, text)
  } finally {
    closeSync(fd)
  }
  try {
    renameSync(tmp, path)
  } catch (err) {
    try { unlinkSync(tmp) } catch { /* gone */ }
    throw err
  }
}

export interface InstallOptions {
  readonly prePush: boolean
  readonly mode: GuardMode
  readonly chain: boolean
  readonly allowGlobalHooksPath: boolean
  /** How the hook runs this program: node and the absolute script path (plus loader flags). */
  readonly program: readonly string[]
}

/** Refuses a global/system core.hooksPath unless allowed; undefined when fine. */
function globalHooksPathRefusal (cwd: string, env: NodeJS.ProcessEnv, allow: boolean, verb: string): string | undefined {
  const origin = hooksPathOrigin(cwd, env)
  if (origin === undefined || allow || (origin.scope !== 'global' && origin.scope !== 'system')) return undefined
  return `mpac guard: core.hooksPath is set to ${JSON.stringify(origin.value)} in your ${origin.scope} git configuration (${origin.origin}): ` +
    `hooks ${verb} there would apply to every repository on this machine, not just this one. ` +
    'Unset it for this repository (git config --local core.hooksPath .git/hooks), or pass --allow-global-hooks-path if a machine-wide guard is what you want.'
}

export function installGuard (cwd: string, env: NodeJS.ProcessEnv, opts: InstallOptions): Outcome {
  const out: string[] = []
  const err: string[] = []
  const refusal = globalHooksPathRefusal(cwd, env, opts.allowGlobalHooksPath, 'installed')
  if (refusal !== undefined) return { code: 1, out, err: [refusal] }
  const dir = hooksDir(cwd, env)
  mkdirSync(dir, { recursive: true })
  const hooks: GuardHook[] = opts.prePush ? ['pre-commit', 'pre-push'] : ['pre-commit']
  let code = 0
  for (const hook of hooks) {
    const path = join(dir, hook)
    const orig = path + ORIG_SUFFIX
    const script = hookScript(hook, opts.program, opts.mode)
    const current = readHook(path)
    if (current.kind === 'ours') {
      if (current.text === script) {
        out.push(`${hook}: already installed in ${dir} (mode ${opts.mode})`)
        continue
      }
      writeAtomic(path, script)
      out.push(`${hook}: updated in ${dir} (mode ${opts.mode})${exists(orig) ? `; still chains ${hook}${ORIG_SUFFIX}` : ''}`)
      continue
    }
    if (current.kind === 'foreign') {
      if (!opts.chain) {
        out.push(`${hook}: ${path} is not mpac's; left unchanged (--no-chain). Add this line to it, or to your hook manager's ${hook} step (husky: .husky/${hook}; lefthook: ${hook}.commands.mpac.run; pre-commit: a local hook's entry):`)
        out.push(`  ${checkCommand(opts.program, hook)}`)
        continue
      }
      if (exists(orig)) {
        err.push(`mpac guard: ${hook}: both ${path} (not mpac's) and ${orig} exist; refusing to overwrite either. Move one of them away, or pass --no-chain and add the guard line to ${path} yourself.`)
        code = 1
        continue
      }
      renameSync(path, orig)
      writeAtomic(path, script)
      out.push(`${hook}: installed in ${dir} (mode ${opts.mode}); your previous ${hook} was moved to ${hook}${ORIG_SUFFIX} and runs after the guard`)
      continue
    }
    writeAtomic(path, script)
    out.push(`${hook}: installed in ${dir} (mode ${opts.mode})`)
  }
  const origin = hooksPathOrigin(cwd, env)
  if (origin !== undefined && opts.chain) {
    out.push(`note: core.hooksPath is ${JSON.stringify(origin.value)} (${origin.scope}); if a hook manager regenerates that directory, reinstall with --no-chain and add the guard line to its configuration`)
  }
  return { code, out, err }
}

export function uninstallGuard (cwd: string, env: NodeJS.ProcessEnv, allowGlobalHooksPath: boolean): Outcome {
  const out: string[] = []
  const refusal = globalHooksPathRefusal(cwd, env, allowGlobalHooksPath, 'removed')
  if (refusal !== undefined) return { code: 1, out, err: [refusal] }
  const dir = hooksDir(cwd, env)
  for (const hook of GUARD_HOOKS) {
    const path = join(dir, hook)
    const orig = path + ORIG_SUFFIX
    const current = readHook(path)
    if (current.kind === 'ours') {
      if (exists(orig)) {
        renameSync(orig, path)
        out.push(`${hook}: removed; your previous ${hook} is back in place`)
      } else {
        unlinkSync(path)
        out.push(`${hook}: removed`)
      }
    } else if (current.kind === 'foreign') {
      out.push(`${hook}: ${path} is not mpac's; left unchanged${exists(orig) ? ` (${hook}${ORIG_SUFFIX} also left in place)` : ''}`)
    } else if (exists(orig)) {
      renameSync(orig, path)
      out.push(`${hook}: not installed; ${hook}${ORIG_SUFFIX} moved back to ${hook}`)
    }
  }
  if (out.length === 0) out.push(`mpac guard: not installed in ${dir}; nothing to do`)
  return { code: 0, out, err: [] }
}

export interface HookStatus {
  readonly hook: GuardHook
  readonly path: string
  readonly file: HookFile
  readonly chained: boolean
}

/** What `status` reports about the hook files. */
export function hookStatuses (cwd: string, env: NodeJS.ProcessEnv): { dir: string, hooks: HookStatus[] } {
  const dir = hooksDir(cwd, env)
  return {
    dir,
    hooks: GUARD_HOOKS.map(hook => {
      const path = join(dir, hook)
      return { hook, path, file: readHook(path), chained: exists(path + ORIG_SUFFIX) }
    })
  }
}
