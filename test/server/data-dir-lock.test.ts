/**
 * Issue 11 item 6: only one coordinator process uses a data directory at a
 * time. Real sidecar processes: the second is refused (exit 1, naming the
 * directory and the holder's pid); after the holder crashes (SIGKILL, its pid
 * file left behind), the next one takes the directory over.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { tempDir } from '../helpers/process.js'
import { runSidecarCli, startSidecar } from '../helpers/sidecar.js'
import { joined } from '../helpers/ws.js'

t.test('a second sidecar on the same data directory exits 1 naming it and the holder; a crashed holder is taken over', async t => {
  const dir = tempDir(t, 'mpac-lock-')
  const env = { HOME: tempDir(t, 'mpac-lock-home-'), LOG_LEVEL: 'warn' }
  const holder = await startSidecar(t, ['--data-dir', dir], env)
  const { client } = await joined(`${holder.url}/session/s1`, 'agent:a')
  client.close()

  const second = await runSidecarCli(['--port', '0', '--data-dir', dir], env)
  t.equal(second.code, 1, 'refused with exit 1')
  t.match(second.stderr, `the data directory ${dir} is in use by another coordinator (pid ${holder.pid})`, 'names the directory and the live holder')
  t.equal(second.stdout, '', 'it never started (no banner)')
  t.equal(holder.child.exitCode, null, 'the holder keeps running')
  const { client: still } = await joined(`${holder.url}/session/s1`, 'agent:a')
  still.close()

  const byEnv = await runSidecarCli(['--port', '0'], { ...env, MPAC_DATA_DIR: dir })
  t.equal(byEnv.code, 1, 'the same through MPAC_DATA_DIR')
  t.match(byEnv.stderr, /MPAC_DATA_DIR/)

  holder.child.kill('SIGKILL')
  await holder.exited
  t.equal(readFileSync(join(dir, 'mpac.pid'), 'utf8').trim(), String(holder.pid), 'the crashed holder left its pid behind')
  const next = await startSidecar(t, ['--data-dir', dir], env)
  t.equal(readFileSync(join(dir, 'mpac.pid'), 'utf8').trim(), String(next.pid), 'the stale lock is taken over')
  const { client: back } = await joined(`${next.url}/session/s1`, 'agent:a')
  back.close()
  t.equal(await next.stop(), 0)

  const after = await startSidecar(t, ['--data-dir', dir], env)
  t.pass('a cleanly stopped holder releases the directory too')
  t.equal(await after.stop(), 0)
})

t.test('a pid file naming a live process does not hold the directory without the lock', async t => {
  const dir = tempDir(t, 'mpac-lock-pid-')
  const env = { HOME: tempDir(t, 'mpac-lock-home-'), LOG_LEVEL: 'warn' }
  // This test process is alive, but it holds no lock (a reused pid, a copied directory).
  writeFileSync(join(dir, 'mpac.pid'), `${process.pid}\n`)
  const srv = await startSidecar(t, ['--data-dir', dir], env)
  t.equal(readFileSync(join(dir, 'mpac.pid'), 'utf8').trim(), String(srv.pid))
  t.equal(await srv.stop(), 0)
})

t.test('single-session sidecars share a data directory, one per session; a multi-session one needs it whole', async t => {
  const dir = tempDir(t, 'mpac-lock-shared-')
  const env = { HOME: tempDir(t, 'mpac-lock-home-'), LOG_LEVEL: 'warn' }
  const a = await startSidecar(t, ['--data-dir', dir, '--session-id', 'proj-a'], env)
  const b = await startSidecar(t, ['--data-dir', dir, '--session-id', 'proj-b'], env)
  t.pass('two sessions, two sidecars, one directory (the local sidecars of two projects)')

  const twin = await runSidecarCli(['--port', '0', '--data-dir', dir, '--session-id', 'proj-a'], env)
  t.equal(twin.code, 1, 'a second sidecar for the same session is refused')
  t.match(twin.stderr, `the data directory ${dir} is in use by another coordinator for session proj-a (pid ${a.pid})`)

  const multi = await runSidecarCli(['--port', '0', '--data-dir', dir], env)
  t.equal(multi.code, 1, 'a multi-session sidecar is refused while single-session ones run')
  t.match(multi.stderr, `the data directory ${dir} is in use by another coordinator (pids `)
  t.match(multi.stderr, String(a.pid))
  t.match(multi.stderr, String(b.pid))

  t.equal(await a.stop(), 0)
  t.equal(await b.stop(), 0)
  const whole = await startSidecar(t, ['--data-dir', dir], env)
  const single = await runSidecarCli(['--port', '0', '--data-dir', dir, '--session-id', 'proj-a'], env)
  t.equal(single.code, 1, 'and a single-session one while a multi-session one runs')
  t.match(single.stderr, `(pid ${whole.pid})`)
  t.equal(await whole.stop(), 0)
})
