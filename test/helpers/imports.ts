/**
 * What a real `mpac-mcp` process loads: runs `src/mcp/cli.ts` (through the
 * test loader) with a module-resolution hook that records every URL the
 * process resolves, and returns them repository-relative (`src/hooks/cli.ts`,
 * `node_modules/pino/…`) or as they are (`node:fs`). Used by the tests that
 * keep the hook and guard entry points free of heavy imports.
 */
import { spawn } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { tempDir, type Env, type Teardown } from './process.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const REGISTER = join(ROOT, 'scripts', 'ts-register.mjs')
const CLI = join(ROOT, 'src', 'mcp', 'cli.ts')

/** The packages an entry point that must start fast may not load. */
export const HEAVY_PACKAGES = ['@modelcontextprotocol/sdk', 'pino', 'zod', 'undici']

/** The loaded URLs that are inside one of the heavy packages. */
export function heavyIn (loaded: readonly string[]): string[] {
  return loaded.filter(u => HEAVY_PACKAGES.some(h => u.includes(`node_modules/${h}/`)))
}

export async function loadedBy (t: Teardown, o: { args: readonly string[], env: Env, cwd?: string, stdin?: string }): Promise<{ code: number | null, stderr: string, loaded: string[] }> {
  const dir = tempDir(t, 'mpac-imports-')
  const log = join(dir, 'resolved.txt')
  writeFileSync(join(dir, 'hooks.mjs'), `import { appendFileSync } from 'node:fs'
export async function resolve (specifier, context, next) {
  const r = await next(specifier, context)
  appendFileSync(${JSON.stringify(log)}, r.url + '\\n')
  return r
}\n`)
  writeFileSync(join(dir, 'record.mjs'), `import { register } from 'node:module'\nregister(${JSON.stringify(pathToFileURL(join(dir, 'hooks.mjs')).href)})\n`)
  writeFileSync(log, '')
  const child = spawn(process.execPath, ['--import', REGISTER, '--import', join(dir, 'record.mjs'), CLI, ...o.args], { cwd: o.cwd ?? ROOT, env: o.env, stdio: ['pipe', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8') })
  child.stdin.end(o.stdin ?? '')
  const code = await new Promise<number | null>(resolve => child.once('close', resolve))
  const loaded = readFileSync(log, 'utf8').split('\n').filter(l => l !== '').map(u => u.startsWith('file:') ? relative(ROOT, fileURLToPath(u)) : u)
  return { code, stderr, loaded }
}
