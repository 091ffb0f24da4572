import { randomBytes } from 'node:crypto'
import { chmod, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { TokenTable, tokenDigest } from './token-table.js'

/**
 * `mpac-mcp-sidecar token new …`: mints a bearer token for the authenticated
 * profile and either prints the token-table entry to merge into
 * `MPAC_TOKEN_TABLE`, or adds it to a table file in place (`--table FILE`).
 * Exit codes: 0 done, 1 the table file could not be read or written, 2 bad
 * arguments.
 */

export interface TokenCommandIo {
  readonly stdout: NodeJS.WritableStream
  readonly stderr: NodeJS.WritableStream
}

/** Same pattern the server accepts for a session id (config.ts), plus `*`. */
const SESSION_ID = /^[A-Za-z0-9._:-]{1,128}$/
const ROLE = /^[A-Za-z0-9._:-]{1,64}$/

const HELP = `Usage: mpac-mcp-sidecar token new --session <id> [--session <id2> …] [--role <role> …]
                                  [--principal <id>] [--table FILE] [--hash]

Mints a bearer token (32 random bytes, base64url, prefixed "mpac_") for the
authenticated profile.

  --session <id>     session the token may join; repeat for several, or '*' for every session (required)
  --role <role>      role granted to the holder; repeat for several (default: contributor)
  --principal <id>   the HELLO must come from exactly this principal id
  --table FILE       add the entry to this JSON token table file in place (created with mode 0600)
                     and print only the file and the token; without it, print the token and the
                     JSON entry to merge into MPAC_TOKEN_TABLE
  --hash             store the entry under "sha256:<hex>" so the table does not hold the token itself
  -h, --help         this help

Example:
  mpac-mcp-sidecar token new --session my-project --role owner --principal agent:alice
`

interface NewArgs {
  readonly sessions: string[]
  readonly roles: string[]
  readonly principal: string | undefined
  readonly table: string | undefined
  readonly hash: boolean
}

class UsageError extends Error {}

function parseNewArgs (argv: readonly string[]): NewArgs | 'help' {
  const sessions: string[] = []
  const roles: string[] = []
  let principal: string | undefined
  let table: string | undefined
  let hash = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string
    if (arg === '-h' || arg === '--help') return 'help'
    if (arg === '--hash') { hash = true; continue }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1
    const name = eq === -1 ? arg : arg.slice(0, eq)
    if (!['--session', '--role', '--principal', '--table'].includes(name)) {
      throw new UsageError(`unknown argument ${JSON.stringify(arg)} (see: mpac-mcp-sidecar token --help)`)
    }
    let value: string | undefined
    if (eq !== -1) {
      value = arg.slice(eq + 1)
    } else {
      value = argv[i + 1]
      i += 1
    }
    if (value === undefined || value === '') throw new UsageError(`${name} needs a value`)
    switch (name) {
      case '--session':
        if (value !== '*' && !SESSION_ID.test(value)) {
          throw new UsageError(`--session ${JSON.stringify(value)}: a session id is 1-128 of A-Z a-z 0-9 . _ : - (or '*')`)
        }
        if (!sessions.includes(value)) sessions.push(value)
        break
      case '--role':
        if (!ROLE.test(value)) throw new UsageError(`--role ${JSON.stringify(value)}: a role is 1-64 of A-Z a-z 0-9 . _ : -`)
        if (!roles.includes(value)) roles.push(value)
        break
      case '--principal':
        if (principal !== undefined) throw new UsageError('--principal given twice')
        principal = value
        break
      case '--table':
        if (table !== undefined) throw new UsageError('--table given twice')
        table = value
        break
    }
  }
  if (sessions.length === 0) throw new UsageError("--session is required (a session id, or '*' for every session)")
  if (sessions.includes('*') && sessions.length > 1) {
    throw new UsageError("--session '*' already means every session; do not combine it with session ids")
  }
  return { sessions, roles: roles.length === 0 ? ['contributor'] : roles, principal, table, hash }
}

/** 32 bytes from the CSPRNG, base64url (43 characters), with a recognisable prefix. */
export function newToken (): string {
  return `mpac_${randomBytes(32).toString('base64url')}`
}

function entryFor (args: NewArgs): Record<string, unknown> {
  const entry: Record<string, unknown> = { allowed_sessions: args.sessions, roles: args.roles }
  if (args.principal !== undefined) entry.principal = args.principal
  return entry
}

class TableFileError extends Error {}

async function readTable (file: string): Promise<{ table: Record<string, unknown>, mode: number | undefined }> {
  let text: string
  let mode: number | undefined
  try {
    text = await readFile(file, 'utf8')
    mode = (await stat(file)).mode & 0o777
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { table: {}, mode: undefined }
    throw new TableFileError(`cannot read ${file}: ${(err as Error).message}`)
  }
  if (text.trim() === '') return { table: {}, mode }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new TableFileError(`${file} is not valid JSON (${(err as Error).message}); not changed`)
  }
  const checked = TokenTable.fromObject(raw)
  if (!checked.ok) throw new TableFileError(`${file} is not a valid token table: ${checked.message}; not changed`)
  return { table: raw as Record<string, unknown>, mode }
}

/** Writes next to the target, flushes, then renames over it, so a reader sees the old or the new table, never half. */
async function writeAtomically (file: string, text: string, mode: number): Promise<void> {
  const temp = join(dirname(file), `.${basename(file)}.${randomBytes(6).toString('hex')}.tmp`)
  const handle = await open(temp, 'wx', mode)
  try {
    await handle.writeFile(text, 'utf8')
    await handle.sync()
  } catch (err) {
    await handle.close()
    await unlink(temp).catch(() => {})
    throw err
  }
  await handle.close()
  try {
    // open() applies the umask; set the intended mode explicitly.
    await chmod(temp, mode)
    await rename(temp, file)
  } catch (err) {
    await unlink(temp).catch(() => {})
    throw err
  }
}

async function addToTable (file: string, key: string, entry: Record<string, unknown>): Promise<number> {
  const { table, mode } = await readTable(file)
  if (Object.hasOwn(table, key)) throw new TableFileError(`${file} already holds this token; not changed`)
  const next = { ...table, [key]: entry }
  const checked = TokenTable.fromObject(next)
  if (!checked.ok) throw new TableFileError(`the new entry would make ${file} invalid: ${checked.message}; not changed`)
  try {
    await writeAtomically(file, `${JSON.stringify(next, null, 2)}\n`, mode ?? 0o600)
  } catch (err) {
    throw new TableFileError(`cannot write ${file}: ${(err as Error).message}`)
  }
  return Object.keys(next).length
}

/**
 * Runs `token …` (argv is what follows `token` on the command line) and
 * returns the exit code.
 */
export async function runTokenCommand (
  argv: string[],
  io: { stdout: NodeJS.WritableStream, stderr: NodeJS.WritableStream }
): Promise<number> {
  const args = argv[0] === 'token' ? argv.slice(1) : argv
  const sub = args[0]
  if (sub === undefined) {
    io.stderr.write('mpac-mcp-sidecar token: missing subcommand (expected: new; see --help)\n')
    return 2
  }
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    io.stdout.write(HELP)
    return 0
  }
  if (sub !== 'new') {
    io.stderr.write(`mpac-mcp-sidecar token: unknown subcommand ${JSON.stringify(sub)} (expected: new; see --help)\n`)
    return 2
  }
  let parsed: NewArgs | 'help'
  try {
    parsed = parseNewArgs(args.slice(1))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    io.stderr.write(`mpac-mcp-sidecar token new: ${err.message}\n`)
    return 2
  }
  if (parsed === 'help') {
    io.stdout.write(HELP)
    return 0
  }
  const token = newToken()
  const key = parsed.hash ? `sha256:${tokenDigest(token)}` : token
  const entry = entryFor(parsed)
  if (parsed.table === undefined) {
    io.stdout.write(`${token}\n\n`)
    io.stdout.write(`${JSON.stringify({ [key]: entry }, null, 2)}\n`)
    io.stderr.write('Merge the entry into the MPAC_TOKEN_TABLE JSON object (or a --token-table-file) and give the token to its holder as MPAC_COORDINATOR_TOKEN. It is shown only once.\n')
    return 0
  }
  const file = resolve(parsed.table)
  try {
    const count = await addToTable(file, key, entry)
    io.stdout.write(`added a token to ${file} (${count} ${count === 1 ? 'entry' : 'entries'})\n${token}\n`)
    return 0
  } catch (err) {
    if (!(err instanceof TableFileError)) throw err
    io.stderr.write(`mpac-mcp-sidecar token new: ${err.message}\n`)
    return 1
  }
}
