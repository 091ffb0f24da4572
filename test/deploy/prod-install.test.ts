/**
 * The runtime image without Docker: the prod-deps stage's files and
 * `npm ci --omit=dev` (offline, from the npm cache), the build stage's
 * `npm run build`, assembled as the runtime stage copies them; then the
 * server starts from there with no dev dependency present, stores a session
 * in SQLite, and the image's own HEALTHCHECK command probes it.
 *
 * One shortcut: the install runs with --ignore-scripts and takes the
 * better-sqlite3 addon already compiled for this Node from the project's
 * node_modules (compiling it takes minutes; the image's toolchain stage does
 * that). The test checks that better-sqlite3 is the only production package
 * with an install script, so nothing else is skipped, and runs our own
 * postinstall script by hand.
 */
import { spawnSync } from 'node:child_process'
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { fetch, WebSocket } from 'undici'
import { hello } from '../helpers/ws.js'
import { cleanEnv, dockerStages, freePort, parseDockerfile, ROOT, startChild, tempDir, type Env, type Instruction } from './helpers.js'

const instructions = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const stages = dockerStages(instructions)
const stageIndex = (name: string): number => {
  const s = stages.find(st => st.name === name)
  if (s === undefined) throw new Error(`Dockerfile has no stage ${name}`)
  return s.index
}
const stageOf = (name: string, keyword: string): Instruction[] => instructions.filter(i => i.stage === stageIndex(name) && i.keyword === keyword)
const runtimeStage = stages[stages.length - 1]?.name ?? 'runtime'

/** npm and node without the parent's npm_* / MPAC_* settings. */
function env (extra: Env = {}): Env {
  const e = cleanEnv(extra)
  for (const k of Object.keys(e)) if (k.toLowerCase().startsWith('npm_')) delete e[k]
  return e
}

/**
 * Runs `command` as the image would: tap's process-info hook puts itself into
 * NODE_OPTIONS of every child it spawns (and breaks the native tsc bin), so
 * children start through `env -u NODE_OPTIONS`, loading nothing from the
 * project's dev dependencies.
 */
function bare (command: string, args: string[]): [string, string[]] {
  return ['env', ['-u', 'NODE_OPTIONS', command, ...args]]
}

function run (command: string, args: string[], cwd: string, extra: Env = {}): string {
  const r = spawnSync(...bare(command, args), { cwd, env: env(extra), encoding: 'utf8', timeout: 120_000 })
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status}:\n${r.stdout}\n${r.stderr}`)
  return `${r.stdout}${r.stderr}`
}

/** Copies `COPY <src…> <dest>` instructions without --from into `dir` (dest relative to WORKDIR). */
function copyFromContext (copies: Instruction[], dir: string): void {
  for (const ins of copies) {
    const parts = ins.args.split(/\s+/)
    if (parts[0]?.startsWith('--')) continue
    const dest = parts.pop() as string
    for (const src of parts) {
      const target = dest.endsWith('/') || parts.length > 1 ? join(dir, dest, src.split('/').pop() as string) : join(dir, dest)
      mkdirSync(join(target, '..'), { recursive: true })
      cpSync(join(ROOT, src), target, { recursive: true })
    }
  }
}

const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean, hasInstallScript?: boolean }> }
const devPackages = Object.entries(lock.packages).filter(([k, v]) => k !== '' && v.dev === true).map(([k]) => k)

t.test('production install from the lockfile, offline, has no dev dependency', async t => {
  const withScripts = Object.entries(lock.packages).filter(([k, v]) => k !== '' && v.hasInstallScript === true && v.dev !== true).map(([k]) => k)
  t.same(withScripts, ['node_modules/better-sqlite3'], 'the only production package with an install script')
})

const work = tempDir(t, 'mpac-prod-install-')
const depsDir = join(work, 'prod-deps')
const appDir = join(work, 'app')
mkdirSync(depsDir)
mkdirSync(appDir)

t.test('prod-deps stage: its COPY files, npm ci --omit=dev', async t => {
  copyFromContext(stageOf('prod-deps', 'COPY'), depsDir)
  t.ok(existsSync(join(depsDir, 'package-lock.json')))
  const runs = stageOf('prod-deps', 'RUN').map(i => i.args).join(' && ')
  t.match(runs, /npm ci --omit=dev/)
  run('npm', ['ci', '--omit=dev', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], depsDir)
  const addon = join('node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node')
  mkdirSync(join(depsDir, addon, '..'), { recursive: true })
  copyFileSync(join(ROOT, addon), join(depsDir, addon))
  const post = run(process.execPath, ['scripts/postinstall.mjs'], depsDir)
  t.equal(post, '', 'our postinstall does nothing without tap')
  for (const dev of devPackages) {
    if (existsSync(join(depsDir, dev))) t.fail(`dev dependency installed: ${dev}`)
  }
  t.ok(existsSync(join(depsDir, 'node_modules', 'fastify')), 'production dependencies are there')
})

t.test('build stage: npm run build; runtime stage: node_modules + dist + package.json', async t => {
  const build = stageOf('build', 'RUN').map(i => i.args).join(' && ')
  t.match(build, /npm run build/)
  const distOut = join(work, 'build', 'dist')
  run('npm', ['run', 'build', '--', '--outDir', distOut], ROOT)
  t.ok(existsSync(join(distOut, 'server', 'cli.js')))
  const copies = stageOf(runtimeStage, 'COPY').map(i => i.args)
  t.ok(copies.includes('--from=prod-deps /app/node_modules ./node_modules'))
  t.ok(copies.includes('--from=build /app/dist ./dist'))
  renameSync(join(depsDir, 'node_modules'), join(appDir, 'node_modules'))
  renameSync(distOut, join(appDir, 'dist'))
  copyFromContext(stageOf(runtimeStage, 'COPY'), appDir)
  t.ok(existsSync(join(appDir, 'package.json')), 'package.json (ESM) is in the runtime image')
})

t.test('the server runs from the production tree: health, a session in SQLite, the image HEALTHCHECK, clean SIGTERM', async t => {
  const dataDir = join(work, 'data')
  const token = 'tok-prod-install-test'
  const sidecar = startChild(t, ...bare(process.execPath, ['dist/server/cli.js', '--multi-session']), {
    cwd: appDir,
    env: env({
      MPAC_SIDECAR_HOST: '127.0.0.1',
      MPAC_SIDECAR_PORT: '0',
      MPAC_DATA_DIR: dataDir,
      MPAC_TOKEN_TABLE: JSON.stringify({ [token]: { allowed_sessions: ['prod'] } })
    })
  })
  const port = Number((await sidecar.waitFor(/listening:\s+\S+:(\d+)/))[1])
  t.match(sidecar.output(), new RegExp(`store:\\s+sqlite in ${dataDir}`))

  const health = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.status, 200)
  t.same(await health.json(), { status: 'ok' })

  const ws = new WebSocket(`ws://127.0.0.1:${port}/session/prod`)
  t.teardown(() => ws.close())
  const first = new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no SESSION_INFO within 5 s')), 5000)
    ws.addEventListener('message', ev => { clearTimeout(timer); resolve(JSON.parse(String(ev.data)) as Record<string, unknown>) }, { once: true })
  })
  await new Promise((resolve, reject) => { ws.addEventListener('open', resolve, { once: true }); ws.addEventListener('error', reject, { once: true }) })
  ws.send(JSON.stringify(hello('agent:prod', { token, sessionId: 'prod' })))
  const info = await first
  t.equal(info.message_type, 'SESSION_INFO', 'better-sqlite3 loads; the session is admitted')
  t.ok(existsSync(join(dataDir, 'mpac.db')), 'the session store is on disk')

  // The Dockerfile's HEALTHCHECK, run as Docker would run it (exec form), against this server and a closed port.
  const health0 = instructions.find(i => i.stage === stageIndex(runtimeStage) && i.keyword === 'HEALTHCHECK')?.args ?? ''
  const argv = JSON.parse(health0.slice(health0.indexOf('CMD ') + 4)) as string[]
  const probe = (p: number): number | null => spawnSync(...bare(argv[0] === 'node' ? process.execPath : argv[0] as string, argv.slice(1)), {
    cwd: appDir, env: env({ MPAC_SIDECAR_PORT: String(p) }), timeout: 10_000
  }).status
  t.equal(probe(port), 0, 'HEALTHCHECK passes against the running server')
  t.equal(probe(await freePort()), 1, 'HEALTHCHECK fails when nothing listens')

  ws.close()
  t.equal(await sidecar.stop('SIGTERM'), 0, 'SIGTERM: clean exit')
})

t.test('the CLIs work without dev dependencies: token new, the shim --version', async t => {
  const out = run(process.execPath, ['dist/server/cli.js', 'token', 'new', '--session', 'prod'], appDir)
  t.match(out, /^mpac_[A-Za-z0-9_-]{43}\n/)
  const version = (JSON.parse(readFileSync(join(appDir, 'package.json'), 'utf8')) as { version: string }).version
  t.equal(run(process.execPath, ['dist/mcp/cli.js', '--version'], appDir).trim(), version)
})
