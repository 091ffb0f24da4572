// Coverage gate: line coverage of the pure core (src/protocol, src/coordinator)
// by its own tests (test/protocol, test/coordinator) must stay at or above 95%
// (issue 2). `npm run coverage` runs those tests with coverage and then this
// script, which reads the json-summary report tap writes to .tap/report/. The
// whole suite runs without coverage: processes it spawns load the same sources
// through other loaders, and merging their coverage maps garbles the figures.
import { readFileSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(fileURLToPath(new URL('.', import.meta.url)), '..')
const GATED = ['src/protocol/', 'src/coordinator/']
const MIN_LINES_PCT = 95

const summary = JSON.parse(readFileSync(join(root, '.tap', 'report', 'coverage-summary.json'), 'utf8'))
let failed = false
for (const prefix of GATED) {
  let total = 0
  let covered = 0
  for (const [file, entry] of Object.entries(summary)) {
    if (file === 'total') continue
    const rel = relative(root, file).split(sep).join('/')
    if (!rel.startsWith(prefix)) continue
    total += entry.lines.total
    covered += entry.lines.covered
  }
  const pct = total === 0 ? 0 : (covered / total) * 100
  const ok = total > 0 && pct >= MIN_LINES_PCT
  if (!ok) failed = true
  console.log(`coverage ${prefix}: ${pct.toFixed(2)}% of ${total} lines (minimum ${MIN_LINES_PCT}%) ${ok ? 'ok' : 'TOO LOW'}`)
}
process.exit(failed ? 1 : 0)
