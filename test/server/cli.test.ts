import { mkdtempSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { Env, Teardown } from '../helpers/process.js'
import { startSidecar, type SidecarProcess } from '../helpers/sidecar.js'
import { announce, envelope, isType, joined, TestClient, type Frame } from '../helpers/ws.js'

/** A fresh HOME, so the sidecar's default data directory is never the user's. */
const freshHome = (): Env => ({ HOME: mkdtempSync(join(tmpdir(), 'mpac-home-')), LOG_LEVEL: 'warn' })

/** Starts the CLI (test/helpers/sidecar.ts) and resolves once its banner names the port it listens on. */
async function start (t: Teardown, args: string[], env: Env = freshHome()): Promise<SidecarProcess & { readonly banner: string }> {
  const sidecar = await startSidecar(t, args, env)
  return { ...sidecar, banner: sidecar.lines.join('\n') }
}

t.test('the CLI serves a full flow with two clients and a conflict, survives a restart, and stops on SIGTERM', async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'mpac-cli-data-'))
  const first = await start(t, ['--data-dir', dataDir])
  t.match(first.banner, /multi-session/)
  t.match(first.banner, new RegExp(`ws://127\\.0\\.0\\.1:${first.port}/session/<id>`), 'the banner prints the real port')
  const url = `ws://127.0.0.1:${first.port}/session/demo`
  const { client: a } = await joined(url, 'agent:a')
  const { client: b } = await joined(url, 'agent:b')
  await a.request(announce('agent:a', 'i-a', ['shared.py'], 'demo'))
  await b.request(announce('agent:b', 'i-b', ['other.py'], 'demo'))
  const lock = await b.request(announce('agent:b', 'i-b2', ['shared.py'], 'demo'))
  t.equal((lock.payload as Frame).error_code, 'STALE_INTENT', 'overlapping announce hits the race lock')
  const report = envelope('CONFLICT_REPORT', 'agent:b', {
    conflict_id: 'c-1', related_intents: ['i-a', 'i-b'], category: 'semantic_goal_conflict', severity: 'medium',
    basis: { kind: 'human_report' }, based_on_watermark: { kind: 'lamport_clock', value: 1 }, description: 'we disagree'
  }, 'demo')
  t.equal((await b.request(report)).message_type, 'CONFLICT_REPORT')
  const atA = await a.next(f => f.message_type === 'CONFLICT_REPORT')
  t.equal((atA.payload as Frame).conflict_id, 'c-1', 'the other party sees the conflict')

  first.child.kill('SIGTERM')
  t.same(await a.waitForClose(5000), { code: 1012, reason: 'service restart' })
  t.equal((await b.waitForClose(5000)).code, 1012)
  t.equal(await first.exited, 0, 'exit 0 after a graceful shutdown')

  const second = await start(t, ['--data-dir', dataDir])
  const probe = await TestClient.connect(`ws://127.0.0.1:${second.port}/session/demo`)
  probe.send({ type: 'SESSION_SUMMARY' })
  const s = (await probe.next(isType('SESSION_SUMMARY_RESPONSE'))).session as Frame
  t.equal(s.active_intent_count, 2, 'intents restored')
  t.equal(s.open_conflict_count, 1, 'the conflict restored')
  probe.close()
  const { client: again, info } = await joined(`ws://127.0.0.1:${second.port}/session/demo`, 'agent:a')
  t.equal(info.coordinator_epoch, 2)
  again.close()
  second.child.kill('SIGINT')
  t.equal(await second.exited, 0)
})

t.test('token table file: an edit revokes a token, SIGHUP reloads too', async t => {
  const dir = mkdtempSync(join(tmpdir(), 'mpac-cli-tokens-'))
  const file = join(dir, 'tokens.json')
  writeFileSync(file, JSON.stringify({ 'tok-a': { allowed_sessions: ['s'] }, 'tok-b': { allowed_sessions: ['s'] } }))
  const sidecar = await start(t, ['--store', 'memory'], { ...freshHome(), MPAC_TOKEN_TABLE_FILE: file })
  t.match(sidecar.banner, /authenticated \(2 tokens/)
  t.notOk(sidecar.banner.includes('tok-a'), 'the banner never shows tokens')
  const url = `ws://127.0.0.1:${sidecar.port}/session/s`
  const { client: a } = await joined(url, 'agent:a', { token: 'tok-a' })
  const { client: b } = await joined(url, 'agent:b', { token: 'tok-b' })
  writeFileSync(file, JSON.stringify({ 'tok-b': { allowed_sessions: ['s'] } }))
  t.same(await a.waitForClose(5000), { code: 4401, reason: 'token revoked' })
  const hb = envelope('HEARTBEAT', 'agent:b', { status: 'idle' }, 's')
  t.equal((await b.request(hb)).message_id, hb.message_id, 'b undisturbed')

  // Without a file event (e.g. an editor that the watcher misses), SIGHUP reloads.
  writeFileSync(file, JSON.stringify({ 'tok-c': { allowed_sessions: ['s'] }, 'tok-d': { allowed_sessions: ['s'] }, 'tok-e': { allowed_sessions: ['s'] } }))
  sidecar.child.kill('SIGHUP')
  t.equal((await b.waitForClose(5000)).code, 4401)

  // Atomic replacements (temp file + rename, as editors and `token new --table` do), twice in a row:
  // the watcher must survive the first one.
  const { client: d } = await joined(url, 'agent:d', { token: 'tok-d' })
  const { client: e } = await joined(url, 'agent:e', { token: 'tok-e' })
  const replace = (table: Record<string, unknown>): void => {
    writeFileSync(`${file}.tmp`, JSON.stringify(table))
    renameSync(`${file}.tmp`, file)
  }
  replace({ 'tok-c': { allowed_sessions: ['s'] }, 'tok-e': { allowed_sessions: ['s'] } })
  t.equal((await d.waitForClose(5000)).code, 4401, 'first atomic replace revokes tok-d')
  replace({ 'tok-c': { allowed_sessions: ['s'] } })
  t.equal((await e.waitForClose(5000)).code, 4401, 'second atomic replace revokes tok-e')
  sidecar.child.kill('SIGTERM')
  t.equal(await sidecar.exited, 0)
})

t.test('single-session mode with --idle-exit stops by itself', async t => {
  const ws = mkdtempSync(join(tmpdir(), 'mpac-cli-ws-'))
  writeFileSync(join(ws, 'README.md'), '# hi\n')
  const sidecar = await start(t, ['--workspace', ws, '--store', 'memory', '--idle-exit', '0.5'])
  t.match(sidecar.banner, /single-session \(mpac-local-mpac-cli-ws-/)
  const c = await TestClient.connect(`ws://127.0.0.1:${sidecar.port}/`)
  c.send({ type: 'FILE_READ', path: 'README.md' })
  t.equal((await c.next()).content, '# hi\n')
  c.close()
  t.equal(await sidecar.exited, 0, 'exited after being idle')
})
