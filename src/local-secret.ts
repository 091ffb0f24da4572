/**
 * The local-mode secret shared by `mpac-mcp` and the coordinator it
 * auto-starts (docs/security.md, "Local trust model"). One random secret per user,
 * `<state dir>/sidecars/local-secret`: the directory is 0700, the file 0600,
 * both owned by the user; a secret file that is group/world-accessible, is
 * a symlink or belongs to another user is refused, never used.
 *
 * Both ends prove themselves with it:
 * - the shim presents it as the HELLO credential (`bearer_token`); the
 *   coordinator refuses a HELLO without it (unless --allow-without-secret)
 *   and any sideband query before such a HELLO;
 * - before it presents the secret, the shim checks that what answers on the
 *   derived port knows it: it sends `{type: "LOCAL_PROOF", nonce}` (32 random
 *   bytes, hex) and expects `{type: "LOCAL_PROOF_RESPONSE", session_id,
 *   proof}` with proof = hex HMAC-SHA256(secret, "mpac-local-proof/1\n" +
 *   nonce + "\n" + session id + "\n" + host:port). The session id and the
 *   address bind the answer to this coordinator: a process of another user
 *   that took the port cannot compute it, nor relay the challenge to a
 *   coordinator of ours on another port or for another session. The shim
 *   asks on its probe connection and again on every connection it opens,
 *   before its HELLO carries the secret (CoordinatorClient
 *   `verifyConnection`).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { chmodSync, closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs'
import { join } from 'node:path'

export const LOCAL_SECRET_FILE = 'local-secret'

export class LocalSecretError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'LocalSecretError'
  }
}

const uid = (): number | undefined => typeof process.getuid === 'function' ? process.getuid() : undefined

/** Reads and checks an open secret file: ours, not a symlink (O_NOFOLLOW), 0600 or stricter, 64 hex characters. */
function readChecked (fd: number, file: string): string {
  const st = fstatSync(fd)
  const me = uid()
  if (!st.isFile()) throw new LocalSecretError(`${file} is not a regular file`)
  if (me !== undefined && st.uid !== me) throw new LocalSecretError(`${file} belongs to uid ${st.uid}, not to you (uid ${me}); refusing to use it`)
  if ((st.mode & 0o077) !== 0) {
    throw new LocalSecretError(`${file} is readable or writable by other users (mode ${(st.mode & 0o777).toString(8)}); refusing to use it: remove it (a new one is made) or chmod 600 it`)
  }
  const buf = Buffer.alloc(256)
  const n = readSync(fd, buf, 0, buf.length, 0)
  const text = buf.subarray(0, n).toString('utf8').trim()
  if (!/^[0-9a-f]{64}$/.test(text)) throw new LocalSecretError(`${file} does not hold a secret (64 hex characters); remove it and a new one is made`)
  return text
}

function openNoFollow (file: string, flags: number, mode?: number): number {
  return openSync(file, flags | (constants.O_NOFOLLOW ?? 0), mode)
}

/** Reads the secret file (the coordinator side: --local-secret-file). Throws LocalSecretError when it may not be used. */
export function readLocalSecret (file: string): string {
  let fd: number
  try {
    fd = openNoFollow(file, constants.O_RDONLY)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new LocalSecretError(code === 'ELOOP' ? `${file} is a symlink; refusing to use it` : `cannot read ${file}: ${code ?? (err as Error).message}`)
  }
  try {
    return readChecked(fd, file)
  } finally {
    closeSync(fd)
  }
}

/**
 * The shim side: makes `dir` (0700, ours; a wider mode left by an older
 * version is tightened) and the secret file in it (0600) if missing, and
 * returns the path and the secret. Throws LocalSecretError.
 */
export function ensureLocalSecret (dir: string): { file: string, secret: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const st = lstatSync(dir)
  const me = uid()
  if (!st.isDirectory()) throw new LocalSecretError(`${dir} is not a directory`)
  if (me !== undefined && st.uid !== me) throw new LocalSecretError(`${dir} belongs to uid ${st.uid}, not to you (uid ${me}); refusing to keep the local secret there`)
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700)
  const file = join(dir, LOCAL_SECRET_FILE)
  try {
    const fd = openNoFollow(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
    try {
      writeSync(fd, `${randomBytes(32).toString('hex')}\n`)
    } finally {
      closeSync(fd)
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new LocalSecretError(`cannot create ${file}: ${(err as Error).message}`)
  }
  return { file, secret: readLocalSecret(file) }
}

/** The proof a coordinator gives for a nonce (see the module comment). */
export function localProof (secret: string, nonce: string, sessionId: string, hostPort: string): string {
  return createHmac('sha256', secret).update(`mpac-local-proof/1\n${nonce}\n${sessionId}\n${hostPort}`, 'utf8').digest('hex')
}

/** Constant-time comparison of two hex strings (false when the lengths differ). */
export function sameHex (a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8')
  const y = Buffer.from(b, 'utf8')
  return x.length === y.length && timingSafeEqual(x, y)
}

export function newNonce (): string {
  return randomBytes(32).toString('hex')
}
