/**
 * The reference docs and the code's registries say the same thing, in both
 * directions: every coordinator setting (SETTINGS) has its flag and variable
 * in docs/coordinator.md and every variable documented there is a setting;
 * every close code the server uses is in the close-code table and every row
 * of it is used; every MPAC_ERR_* code (src/errors.ts) is in the docs table
 * of its kind — shim codes in docs/agents.md with their retryability, HTTP
 * refusals in docs/coordinator.md with their status, store errors in
 * docs/data.md — and every documented code is defined, of that kind.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { CLOSE, PEER_CLOSE } from '../src/protocol/close-codes.js'
import { SETTINGS } from '../src/server/config.js'
import { MPAC_ERRORS, type MpacErrorKind } from '../src/errors.js'
import { SHIM_VARIABLES } from '../src/mcp/config.js'
import { HTTP_ERRORS } from '../src/server/http-errors.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const read = (p: string): string => readFileSync(join(ROOT, p), 'utf8')

/** The rows of the first markdown table after `heading` (cells trimmed). */
function table (doc: string, heading: string): string[][] {
  const start = doc.indexOf(`\n${heading}\n`)
  if (start < 0) throw new Error(`no heading ${heading}`)
  const lines = doc.slice(start).split('\n')
  const first = lines.findIndex(l => l.startsWith('|'))
  const rows: string[][] = []
  for (let i = first + 2; i < lines.length && (lines[i] as string).startsWith('|'); i++) {
    // Cells split on unescaped pipes (`a\|b` inside a cell is one cell).
    rows.push((lines[i] as string).split(/(?<!\\)\|/).slice(1, -1).map(c => c.trim()))
  }
  return rows
}

const tick = (s: string): string[] => [...s.matchAll(/`([^`]+)`/g)].map(m => m[1] as string)

t.test('coordinator settings: SETTINGS and docs/coordinator.md agree', async t => {
  const doc = read('docs/coordinator.md')
  const rows = [...table(doc, '## Settings'), ...table(doc, '### Coordination policies'), ...table(doc, '### Limits')]
  const documentedEnv = new Set(rows.flatMap(r => tick(r[1] ?? '')).filter(v => /^[A-Z_]+$/.test(v)))
  const documentedFlags = new Set(rows.flatMap(r => tick(r[0] ?? '')).map(v => /^--([a-z-]+)/.exec(v)?.[1]).filter((f): f is string => f !== undefined))
  for (const s of SETTINGS) {
    t.ok(documentedEnv.has(s.env), `${s.env} is documented`)
    t.ok(documentedFlags.has(s.flag), `--${s.flag} is documented`)
  }
  const known = new Set([...SETTINGS.map(s => s.env), 'MPAC_TOKEN_TABLE', 'MPAC_METRICS_TOKEN'])
  for (const env of documentedEnv) t.ok(known.has(env), `documented ${env} is a setting`)
  const flags = new Set([...SETTINGS.map(s => s.flag), 'help', 'version'])
  for (const f of documentedFlags) t.ok(flags.has(f), `documented --${f} is a flag`)
})

t.test('close codes: CLOSE and the close-code table agree', async t => {
  const rows = table(read('docs/coordinator.md'), '## Close codes')
  const documented = new Set(rows.map(r => `${r[0]} ${r[1]}`))
  const used = new Set(Object.values(CLOSE).map(c => `${c.code} ${c.reason}`))
  for (const c of used) t.ok(documented.has(c), `close ${c} is documented`)
  for (const d of documented) t.ok(used.has(d), `documented close ${d} is used`)
  // The codes only the shim meets or sends are named in the paragraph on how it treats closes.
  const doc = read('docs/coordinator.md')
  const shimParagraph = doc.slice(doc.indexOf('How `mpac-mcp` treats them'), doc.indexOf('A close code is used only where'))
  for (const c of Object.values(PEER_CLOSE)) t.ok(shimParagraph.includes(String(c.code)) && !documented.has(`${c.code} ${c.reason}`), `peer close ${c.code} is documented for the shim, not as a code of this coordinator`)
})

const codesOf = (kind: MpacErrorKind): Set<string> => new Set([...MPAC_ERRORS.values()].filter(e => e.kind === kind).map(e => e.code))

t.test('MPAC_ERRORS: every code has a kind whose docs table the tests below read', async t => {
  t.ok(MPAC_ERRORS.size >= 20, `${MPAC_ERRORS.size} codes defined`)
  const kinds = new Set([...MPAC_ERRORS.values()].map(e => e.kind))
  t.same([...kinds].sort(), ['http', 'shim', 'store'])
})

t.test('shim errors: MPAC_ERRORS (shim) and docs/agents.md agree, retryability included', async t => {
  const rows = table(read('docs/agents.md'), '## Tools').filter(r => tick(r[0] ?? '')[0]?.startsWith('MPAC_ERR_') === true)
  const documented = new Map(rows.map(r => [tick(r[0] ?? '')[0] as string, r[2] ?? '']))
  const codes = codesOf('shim')
  for (const c of codes) t.ok(documented.has(c), `${c} is documented`)
  for (const [d, retryable] of documented) {
    const spec = MPAC_ERRORS.get(d as `MPAC_ERR_${string}`)
    t.ok(spec !== undefined && codes.has(d), `documented ${d} exists`)
    // "yes…" and "no" state the default; "sometimes" leaves it to each failure.
    if (spec !== undefined && retryable !== 'sometimes') t.equal(spec.retryable, retryable.startsWith('yes'), `${d}: retryable is ${retryable}`)
  }
})

t.test('store errors: MPAC_ERRORS (store) and docs/data.md agree', async t => {
  const rows = table(read('docs/data.md'), '### Store errors')
  const documented = new Set(rows.map(r => tick(r[0] ?? '')[0]))
  const codes = codesOf('store')
  for (const c of codes) t.ok(documented.has(c), `${c} is documented`)
  for (const d of documented) t.ok(d !== undefined && codes.has(d), `documented ${d} exists`)
})

t.test('HTTP refusals: HTTP_ERRORS and docs/coordinator.md agree, status included', async t => {
  const rows = table(read('docs/coordinator.md'), '### HTTP refusals')
  const documented = new Map(rows.map(r => [tick(r[0] ?? '')[0], Number(r[1])]))
  for (const spec of Object.values(HTTP_ERRORS)) t.equal(documented.get(spec.code), spec.status, `${spec.code} is documented with ${spec.status}`)
  const codes = new Set<string>(Object.values(HTTP_ERRORS).map(s => s.code))
  for (const code of documented.keys()) t.ok(code !== undefined && codes.has(code), `documented ${code} exists`)
  t.same([...codes].sort(), [...codesOf('http')].sort(), 'HTTP_ERRORS gives a status to every http code of MPAC_ERRORS')
})

t.test('shim variables: every SHIM_VARIABLES entry has a row in docs/agents.md', async t => {
  const rows = table(read('docs/agents.md'), '## Environment variables')
  const documented = new Set(rows.map(r => tick(r[0] ?? '')[0]).filter((c): c is string => c !== undefined))
  for (const name of Object.keys(SHIM_VARIABLES)) t.ok(documented.has(name), `${name} is documented`)
})
