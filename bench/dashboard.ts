/**
 * What open dashboards cost the coordinator.
 *
 *   npm run bench:dashboard -- [--dashboards 20] [--rounds 2] [--seconds 10] [--sessions 20] [--agents 5] [--store memory|sqlite] [--dist]
 *
 * The load benchmark (bench/load.ts: S sessions × A agents looping announce →
 * commit → withdraw, closed loop) against the real server in the
 * authenticated profile with `--dashboard`, run with no dashboard open and
 * with `--dashboards` N open: N viewers, each with its own observer token,
 * sign in through the login form (each from its own loopback address, as N
 * browsers would, so the per-address login limit is not what is measured)
 * and keep one SSE stream on the busiest session (`bench-0`, whose agents
 * never stop) for the whole run. The two configurations alternate for
 * `--rounds` rounds, each on a fresh server. Prints one JSON line per run,
 * then a summary: the medians, the throughput cost (the median over rounds
 * of 1 − with/without, the two runs of a round being adjacent in time;
 * goal: under 10 %), the server's CPU time per 1,000 requests both ways (read
 * from /proc: steadier than throughput on a machine shared with other work),
 * and what the streams delivered. `--prof DIR` profiles every server run.
 */
import { request, type IncomingMessage } from 'node:http'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { arg } from './agent.js'
import { readFileSync } from 'node:fs'
import { runLoad, startServer, stopServer, summariseProfiles, type LoadResult } from './load.js'

interface Stream {
  events: number
  deltas: number
  bytes: number
  close (): void
}

const AGENT_TOKEN = 'bench-agents-token'
const viewerToken = (i: number): string => `bench-viewer-${i}`

function tokenTable (viewers: number): string {
  const table: Record<string, unknown> = { [AGENT_TOKEN]: { allowed_sessions: ['*'], roles: ['contributor'] } }
  for (let i = 0; i < viewers; i++) table[viewerToken(i)] = { allowed_sessions: ['*'], roles: ['observer'] }
  const dir = mkdtempSync(join(tmpdir(), 'mpac-bench-dash-'))
  const file = join(dir, 'tokens.json')
  writeFileSync(file, JSON.stringify(table))
  return file
}

/** The loopback address viewer `i` connects from (127.0.1.x; all of 127/8 is local on Linux). */
const viewerAddress = (i: number): string => `127.0.1.${1 + (i % 250)}`

/** Posts the login form; resolves with the `name=value` of the session cookie. */
function login (port: number, i: number): Promise<string> {
  const body = new URLSearchParams({ token: viewerToken(i) }).toString()
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      localAddress: viewerAddress(i),
      method: 'POST',
      path: '/dashboard/login',
      agent: false,
      headers: {
        host: `127.0.0.1:${port}`,
        origin: `http://127.0.0.1:${port}`,
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body)
      }
    }, res => {
      res.resume()
      const cookie = (res.headers['set-cookie'] ?? [])[0]?.split(';')[0]
      if (res.statusCode !== 303 || cookie === undefined) reject(new Error(`login ${i} answered ${String(res.statusCode)} without a cookie`))
      else resolve(cookie)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Opens the session's SSE stream with the cookie and counts what arrives. */
function openStream (port: number, i: number, cookie: string, sessionId: string): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      localAddress: viewerAddress(i),
      path: `/dashboard/s/${encodeURIComponent(sessionId)}/events`,
      agent: false,
      headers: { host: `127.0.0.1:${port}`, cookie, accept: 'text/event-stream' }
    }, (res: IncomingMessage) => {
      if (res.statusCode !== 200) {
        res.resume()
        reject(new Error(`SSE ${i} answered ${String(res.statusCode)}`))
        return
      }
      const stream: Stream = { events: 0, deltas: 0, bytes: 0, close: () => { req.destroy() } }
      let pending = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        stream.bytes += Buffer.byteLength(chunk)
        pending += chunk
        let end: number
        while ((end = pending.indexOf('\n\n')) !== -1) {
          const block = pending.slice(0, end)
          pending = pending.slice(end + 2)
          if (block.split('\n').some(line => line.startsWith('data:'))) stream.events++
          if (block.split('\n').includes('event: delta')) stream.deltas++
        }
      })
      res.on('error', () => {})
      resolve(stream)
    })
    req.on('error', reject)
    req.end()
  })
}

/** CPU time (user + system) the process used so far, in ms, from /proc (NaN elsewhere). */
function cpuMs (pid: number | undefined): number {
  try {
    const fields = readFileSync(`/proc/${String(pid)}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after "pid (comm) ".
    return (Number(fields[11]) + Number(fields[12])) * 10 // clock ticks of 10 ms (USER_HZ 100)
  } catch {
    return NaN
  }
}

interface Run extends LoadResult {
  readonly dashboards: number
  /** Server CPU per 1,000 requests: robust to a machine shared with other work, unlike wall-clock throughput. */
  readonly serverCpuMsPer1kRequests: number
  readonly sseEvents: number
  readonly sseDeltas: number
  readonly sseBytes: number
}

async function once (dashboards: number, viewers: number): Promise<Run> {
  const sessions = Number(arg('sessions', '20'))
  const agents = Number(arg('agents', '5'))
  const { child, port } = await startServer(arg('store', 'memory'), [
    '--dashboard',
    '--token-table-file', tokenTable(viewers),
    '--store-sync', arg('sync', 'full'),
    '--max-msgs-per-sec-per-token', '10000000',
    '--max-connections-per-token', '100000',
    '--max-connections-per-address', '100000',
    '--max-sessions-per-token', '100000',
    '--max-sessions-per-address', '100000'
  ])
  const streams: Stream[] = []
  let cpuStart = NaN
  let cpuEnd = NaN
  try {
    const result = await runLoad(port, {
      sessions,
      agents,
      seconds: Number(arg('seconds', '10')),
      files: Number(arg('files', String(agents * 2))),
      rate: 0,
      token: AGENT_TOKEN,
      // The sessions exist once the agents joined (a dashboard never creates one).
      beforeRun: async () => {
        for (let i = 0; i < dashboards; i++) streams.push(await openStream(port, i, await login(port, i), 'bench-0'))
        cpuStart = cpuMs(child.pid)
      },
      beforeClose: async () => {
        cpuEnd = cpuMs(child.pid)
        for (const s of streams) s.close()
      }
    })
    const run: Run = {
      ...result,
      dashboards,
      serverCpuMsPer1kRequests: Number(((cpuEnd - cpuStart) / (result.requests / 1000)).toFixed(1)),
      sseEvents: streams.reduce((n, s) => n + s.events, 0),
      sseDeltas: streams.reduce((n, s) => n + s.deltas, 0),
      sseBytes: streams.reduce((n, s) => n + s.bytes, 0)
    }
    console.log(JSON.stringify({ mode: 'dashboard-load', ...run }))
    return run
  } finally {
    await stopServer(child)
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid] as number : ((s[mid - 1] as number) + (s[mid] as number)) / 2
}

const dashboards = Number(arg('dashboards', '20'))
const rounds = Number(arg('rounds', '2'))
const without: Run[] = []
const withDash: Run[] = []
for (let r = 0; r < rounds; r++) {
  // Alternate the order so that a machine getting busier or quieter biases neither side.
  if (r % 2 === 0) {
    without.push(await once(0, dashboards))
    withDash.push(await once(dashboards, dashboards))
  } else {
    withDash.push(await once(dashboards, dashboards))
    without.push(await once(0, dashboards))
  }
}
const base = median(without.map(r => r.requestsPerSec))
const loaded = median(withDash.map(r => r.requestsPerSec))
// Each round's two runs are adjacent in time: their ratio is less affected by a machine
// whose load drifts than the ratio of the medians.
const pairCost = median(without.map((w, i) => 100 * (1 - (withDash[i] as Run).requestsPerSec / w.requestsPerSec)))
const pairCpuCost = median(without.map((w, i) => 100 * ((withDash[i] as Run).serverCpuMsPer1kRequests / w.serverCpuMsPer1kRequests - 1)))
console.log(JSON.stringify({
  mode: 'dashboard-summary',
  dashboards,
  rounds,
  requestsPerSecWithout: Math.round(base),
  requestsPerSecWith: Math.round(loaded),
  throughputCostPercent: Number(pairCost.toFixed(1)),
  goalPercent: 10,
  serverCpuMsPer1kWithout: median(without.map(r => r.serverCpuMsPer1kRequests)),
  serverCpuMsPer1kWith: median(withDash.map(r => r.serverCpuMsPer1kRequests)),
  serverCpuCostPercent: Number(pairCpuCost.toFixed(1)),
  p99msWithout: median(without.map(r => r.p99ms)),
  p99msWith: median(withDash.map(r => r.p99ms)),
  sseDeltasPerStreamPerSec: Number(median(withDash.map(r => r.sseDeltas / Math.max(1, dashboards) / r.seconds)).toFixed(2)),
  sseKiBPerStreamPerSec: Number(median(withDash.map(r => r.sseBytes / 1024 / Math.max(1, dashboards) / r.seconds)).toFixed(1))
}))
const profDir = arg('prof', '')
if (profDir !== '') summariseProfiles(profDir)
if (withDash.some(r => r.sseDeltas === 0)) {
  console.error('the dashboards received no delta: the measurement does not show their cost')
  process.exitCode = 1
}
