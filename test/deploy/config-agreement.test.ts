/**
 * The deploy files must agree with the server: the Dockerfile's runtime
 * stage and fly.toml are read and fed to the real `loadServerConfig`, and
 * the health path is requested from the real app. Numbers come from
 * src/server/config.ts, not from this file.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { buildApp } from '../../src/server/app.js'
import { DEFAULT_PORT, loadServerConfig } from '../../src/server/config.js'
import { createLogger } from '../../src/server/logger.js'
import { openStore } from '../../src/store/index.js'
import { dockerStages, parseDockerfile, parseToml, ROOT, stageEnv, type Env, type Instruction, type TomlTable } from './helpers.js'

const read = (file: string): string => readFileSync(join(ROOT, file), 'utf8')
const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string>, engines: { node: string } }
const instructions = parseDockerfile(read('Dockerfile'))
const stages = dockerStages(instructions)
const runtime = stages[stages.length - 1]
if (runtime === undefined) throw new Error('Dockerfile has no stage')
const inStage = (stage: number, keyword: string): Instruction[] => instructions.filter(i => i.stage === stage && i.keyword === keyword)
const only = (stage: number, keyword: string): string => {
  const found = inStage(stage, keyword)
  if (found.length !== 1) throw new Error(`expected one ${keyword} in stage ${stage}, found ${found.length}`)
  return (found[0] as Instruction).args
}
const stageNamed = (name: string): number => {
  const s = stages.find(st => st.name === name)
  if (s === undefined) throw new Error(`no stage ${name}`)
  return s.index
}
const imageEnv = stageEnv(instructions, runtime.index)
const entrypoint = JSON.parse(only(runtime.index, 'ENTRYPOINT')) as string[]
const cmd = JSON.parse(only(runtime.index, 'CMD')) as string[]
const tokenTable = JSON.stringify({ 'tok-test': { allowed_sessions: ['*'] } })

const fly = parseToml(read('fly.toml'))
const httpService = fly.http_service as TomlTable
const flyEnv = fly.env as Env
const mounts = fly.mounts as TomlTable[]

/** Seconds in a fly duration ("30s", "2m") or a bare number of seconds. */
function seconds (v: unknown): number {
  if (typeof v === 'number') return v
  const m = /^(\d+)(s|m)$/.exec(String(v))
  if (m === null) throw new Error(`not a duration: ${String(v)}`)
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1)
}

t.test('the image builds with dev dependencies and runs with production ones', async t => {
  const build = stageNamed('build')
  const prodDeps = stageNamed('prod-deps')
  const runs = (stage: number): string => inStage(stage, 'RUN').map(i => i.args).join('\n')
  t.match(runs(build), /(^|\s)npm ci(\s|$)/, 'build: npm ci (with dev dependencies)')
  t.match(runs(build), /npm run build/, 'build: npm run build')
  t.match(runs(prodDeps), /npm ci --omit=dev/, 'prod-deps: production dependencies only')
  const copies = inStage(runtime.index, 'COPY').map(i => i.args)
  t.ok(copies.includes('--from=prod-deps /app/node_modules ./node_modules'), 'runtime takes node_modules from prod-deps')
  const outDir = (JSON.parse(read('tsconfig.build.json')) as { compilerOptions: { outDir: string } }).compilerOptions.outDir
  t.ok(copies.includes(`--from=build /app/${outDir} ./${outDir}`), 'runtime takes the tsc output dir from build')
  t.ok(copies.some(c => /^package\.json\b/.test(c)), 'runtime has package.json ("type": "module" for dist/)')
  t.match(runs(stages[prodDeps]?.parent ?? prodDeps), /python3 make g\+\+/, 'native build tools where better-sqlite3 may compile')
  t.match(runs(build), /npm ci --ignore-scripts/, 'the build stage only needs the compiler: no addon build there')
  t.notMatch(runs(runtime.index), /g\+\+|python3/, 'no compiler in the runtime image')

  const from = stages[0]?.from ?? ''
  t.match(from, /^node:\$\{NODE_VERSION\}-\$\{DEBIAN_RELEASE\}-slim$/, 'official slim Node image')
  const nodeVersion = Number(/^ARG NODE_VERSION=(\d+)$/m.exec(read('Dockerfile'))?.[1])
  const minimum = Number(/(\d+)/.exec(pkg.engines.node)?.[1])
  t.ok(nodeVersion % 2 === 0 && nodeVersion >= minimum, `Node ${nodeVersion} is an LTS line within engines ${pkg.engines.node}`)
  t.ok(stages.every(s => s.parent !== undefined || s.index === 0), 'every stage builds on the same base')
})

t.test('the runtime stage runs the hosted multi-session server as the config code reads it', async t => {
  const user = only(runtime.index, 'USER')
  t.notMatch(user, /^(0|root)(:|$)/, 'non-root user')
  t.equal(only(runtime.index, 'STOPSIGNAL'), 'SIGTERM')
  t.equal(Number(only(runtime.index, 'EXPOSE')), DEFAULT_PORT, 'EXPOSE is the default port')
  t.same(JSON.parse(only(runtime.index, 'VOLUME')), [imageEnv.MPAC_DATA_DIR], 'the volume is the data dir')

  const workdir = inStage(0, 'WORKDIR')[0]?.args ?? ''
  t.same(entrypoint, ['node', join(workdir, pkg.bin['mpac-mcp-sidecar'] as string)], 'entrypoint is the package bin')
  t.equal(imageEnv.MPAC_SIDECAR_HOST, '0.0.0.0', 'listens on every interface in the container')

  const loaded = loadServerConfig(cmd, { ...imageEnv, MPAC_TOKEN_TABLE: tokenTable })
  if (!loaded.ok) throw new Error(`${loaded.error.setting}: ${loaded.error.message}`)
  t.match(loaded.value, { mode: 'multi', host: '0.0.0.0', port: DEFAULT_PORT, dataDir: '/data', store: 'sqlite', securityProfile: 'authenticated' })

  const open = loadServerConfig(cmd, imageEnv)
  t.equal(open.ok, false, 'without a token table the image refuses to serve 0.0.0.0 unauthenticated')
  if (!open.ok) t.match(open.error.message, /token table/)

  const health = only(runtime.index, 'HEALTHCHECK')
  t.match(health, /CMD \["node", "-e",/, 'the health check runs node (no curl in slim images)')
  t.notMatch(health, /curl|wget/)
  t.match(health, /\/healthz/)
  t.match(health, new RegExp(`process\\.env\\.MPAC_SIDECAR_PORT \\|\\| '${DEFAULT_PORT}'`), 'falls back to the default port')
})

t.test('fly.toml agrees with the server defaults and the image', async t => {
  t.equal(httpService.internal_port, DEFAULT_PORT)
  t.equal(Number(flyEnv.MPAC_SIDECAR_PORT), httpService.internal_port)
  t.equal(flyEnv.MPAC_SIDECAR_HOST, imageEnv.MPAC_SIDECAR_HOST)
  t.equal(mounts.length, 1, 'one volume')
  t.equal(mounts[0]?.destination, imageEnv.MPAC_DATA_DIR, 'the volume is mounted at the data dir')
  t.equal(flyEnv.MPAC_DATA_DIR, imageEnv.MPAC_DATA_DIR)
  t.same(JSON.parse(only(runtime.index, 'VOLUME')), [mounts[0]?.destination])

  const checks = httpService.checks as TomlTable[]
  t.equal(checks.length, 1)
  t.match(checks[0], { method: 'GET', path: '/healthz' })
  t.ok(only(runtime.index, 'HEALTHCHECK').includes(String(checks[0]?.path)), 'same health path as the image')

  t.equal(httpService.force_https, true)
  t.equal(httpService.auto_stop_machines, 'off', 'the coordinator never sleeps')
  t.ok(Number(httpService.min_machines_running) >= 1)
  const concurrency = httpService.concurrency as TomlTable
  t.equal(concurrency.type, 'connections', 'WebSockets count as connections')
  t.ok(Number(concurrency.hard_limit) >= Number(concurrency.soft_limit))

  t.equal(fly.kill_signal, only(runtime.index, 'STOPSIGNAL'), 'Fly stops with the signal the server handles')
  const kill = seconds(fly.kill_timeout)
  t.ok(kill >= 10 && kill <= 300, `kill_timeout ${kill}s within Fly's 300 s maximum and above the 5 s default`)

  for (const key of Object.keys(flyEnv)) t.notMatch(key, /TOKEN/, `no secret in [env]: ${key}`)
  t.notMatch(read('fly.toml'), /mpac_[A-Za-z0-9_-]{20,}/, 'no token anywhere in fly.toml')

  const loaded = loadServerConfig(cmd, { ...imageEnv, ...flyEnv, MPAC_TOKEN_TABLE: tokenTable })
  if (!loaded.ok) throw new Error(`${loaded.error.setting}: ${loaded.error.message}`)
  t.match(loaded.value, { mode: 'multi', port: DEFAULT_PORT, dataDir: '/data', tlsByProxy: true, trustProxy: true })
  t.ok(loaded.value.allowedHosts.includes(`${String(fly.app)}.fly.dev`), 'the app\'s public name is an allowed Host (upgrades under other names get 403)')
})

t.test('the health path answers on the app built from the image configuration', async t => {
  const loaded = loadServerConfig(cmd, { ...imageEnv, ...flyEnv, MPAC_TOKEN_TABLE: tokenTable, MPAC_STORE: 'memory' })
  if (!loaded.ok) throw new Error(loaded.error.message)
  const logger = createLogger('silent')
  const app = buildApp(loaded.value, { store: openStore({ store: 'memory', logger }), logger })
  t.teardown(() => app.close())
  const paths = new Set([String((httpService.checks as TomlTable[])[0]?.path), /\/healthz/.exec(only(runtime.index, 'HEALTHCHECK'))?.[0] ?? ''])
  for (const path of paths) {
    const res = await app.inject({ method: 'GET', url: path })
    t.equal(res.statusCode, 200, `GET ${path}`)
  }
  // Through Fly's proxy the Host header is <app>.fly.dev: the upgrade passes the Host guard (426: not a real WebSocket client).
  const upgrade = { connection: 'Upgrade', upgrade: 'websocket', authorization: 'Bearer tok-test' }
  const viaFly = await app.inject({ method: 'GET', url: '/session/p', headers: { ...upgrade, host: `${String(fly.app)}.fly.dev` } })
  t.not(viaFly.statusCode, 403, `Host ${String(fly.app)}.fly.dev is allowed`)
  const rebound = await app.inject({ method: 'GET', url: '/session/p', headers: { ...upgrade, host: 'evil.example' } })
  t.equal(rebound.statusCode, 403, 'another Host is refused')
})
