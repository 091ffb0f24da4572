import t from 'tap'
import {
  compareCodePoints,
  GLOB_MATCH_BUDGET,
  GLOB_PRODUCT_BUDGET,
  globMatch,
  globsOverlap,
  globWork,
  isIndexableKind,
  normalizePath,
  normalizeScope,
  scopeContains,
  scopesOverlap,
  sharedItems,
  type Scope
} from '../../src/protocol/scope.js'

const files = (...resources: string[]): Scope => ({ kind: 'file_set', resources })
const entities = (...e: string[]): Scope => ({ kind: 'entity_set', entities: e })
const tasks = (...ids: string[]): Scope => ({ kind: 'task_set', task_ids: ids })
const glob = (pattern: string): Scope => ({ kind: 'resource_path', pattern })
const overlap = (a: Scope, b: Scope): boolean => scopesOverlap(normalizeScope(a), normalizeScope(b))

t.test('normalizePath', async t => {
  const cases: Array<[string, string]> = [
    ['x.py', 'x.py'],
    ['./x.py', 'x.py'],
    ['././x.py', './x.py'], // only ONE leading ./
    ['a//b///c.py', 'a/b/c.py'],
    ['src/', 'src'],
    ['src///', 'src'],
    ['/', '/'],
    ['//', '/'],
    ['///', '/'],
    ['./', ''],
    ['.//a', '/a'],
    ['/abs/path/', '/abs/path'],
    ['a\\b.py', 'a\\b.py'], // no backslash conversion
    ['a/../b.py', 'a/../b.py'], // no .. resolution
    ['a/./b.py', 'a/./b.py'],
    ['', '']
  ]
  for (const [input, want] of cases) t.equal(normalizePath(input), want, JSON.stringify(input))
})

t.test('isIndexableKind', async t => {
  for (const k of ['file_set', 'entity_set', 'task_set']) t.ok(isIndexableKind(k), k)
  for (const k of ['resource_path', 'query', 'custom', 'weird', '']) t.notOk(isIndexableKind(k), k)
})

t.test('normalizeScope precomputes items per kind', async t => {
  const f = normalizeScope({ kind: 'file_set', resources: ['./a.py', 'a.py', 'b//c.py', 7 as unknown as string] })
  t.strictSame([...f.items], ['a.py', 'b/c.py'])
  t.equal(f.canonicalUris, undefined)
  t.equal(f.pattern, undefined)
  t.ok(Object.isFrozen(f))

  const e = normalizeScope(entities('./users', 'orders'))
  t.strictSame([...e.items], ['./users', 'orders'], 'entities are not path-normalised')
  t.strictSame([...normalizeScope(tasks('t1', 't2')).items], ['t1', 't2'])

  const g = normalizeScope({ kind: 'resource_path', pattern: './src//**/' })
  t.equal(g.pattern, 'src/**')
  t.equal(g.items.size, 0)

  const q = normalizeScope({ kind: 'query', expression: 'select 1', language: 'sql', canonical_uris: ['resource://db/users'] })
  t.equal(q.items.size, 0)
  t.strictSame([...(q.canonicalUris ?? [])], ['resource://db/users'])
  t.equal(q.raw.expression, 'select 1', 'raw scope keeps every field')

  t.equal(normalizeScope({ kind: 'file_set', resources: ['a'], canonical_uris: [] }).canonicalUris, undefined, 'empty canonical_uris are absent')
  t.equal(normalizeScope({ kind: 'file_set' }).items.size, 0, 'missing resources')
  t.equal(normalizeScope({ kind: 'resource_path' }).pattern, undefined, 'missing pattern')
})

t.test('file_set, entity_set, task_set overlap by exact intersection', async t => {
  t.ok(overlap(files('db.py'), files('db.py')))
  t.ok(overlap(files('./x.py'), files('x.py')), 'normalisation closes the ./ bypass (§14 scenario 12)')
  t.ok(overlap(files('a//b.py'), files('a/b.py/')))
  t.notOk(overlap(files('a.py'), files('b.py')))
  t.notOk(overlap(files('A.py'), files('a.py')), 'case-sensitive')
  t.notOk(overlap(files('a\\b.py'), files('a/b.py')), 'no backslash conversion')
  t.notOk(overlap(files(), files('a.py')), 'empty set never overlaps')
  t.ok(overlap(files('a.py', 'b.py', 'c.py'), files('z.py', 'c.py')))

  t.ok(overlap(entities('e1'), entities('e1', 'e2')))
  t.notOk(overlap(entities('e1'), entities('e2')))
  t.notOk(overlap(entities('./e1'), entities('e1')), 'entities are compared raw')
  t.ok(overlap(tasks('t1'), tasks('t1')))
  t.notOk(overlap(tasks('t1'), tasks('t2')))
})

t.test('canonical URIs decide first when both sides carry them', async t => {
  const a: Scope = { kind: 'file_set', resources: ['db.py'], canonical_uris: ['resource://repo/db.py'] }
  const b: Scope = { kind: 'entity_set', entities: ['users'], canonical_uris: ['resource://repo/db.py'] }
  const c: Scope = { kind: 'file_set', resources: ['db.py'], canonical_uris: ['resource://repo/other.py'] }
  t.ok(overlap(a, b), 'different kinds, shared URI')
  t.notOk(overlap(a, c), 'same resources but disjoint URIs: URIs decide')
  t.notOk(overlap({ kind: 'query', canonical_uris: ['u1'] }, { kind: 'custom', canonical_uris: ['u2'] }), 'opaque kinds made comparable')
  t.ok(overlap({ kind: 'query', canonical_uris: ['u1'] }, files('x')), 'one side only: kind rules (cross-kind → true)')
  t.notOk(overlap({ ...files('a.py'), canonical_uris: ['u1'] }, files('b.py')), 'one side only: kind rules')
  t.notOk(overlap({ kind: 'x', canonical_uris: ['resource://a/B'] }, { kind: 'x', canonical_uris: ['resource://a/b'] }), 'case-sensitive')
})

t.test('query, custom, unknown and cross-kind pairs potentially overlap', async t => {
  t.ok(overlap({ kind: 'query', expression: 'a' }, { kind: 'query', expression: 'b' }))
  t.ok(overlap({ kind: 'custom' }, { kind: 'custom' }))
  t.ok(overlap({ kind: 'mystery' }, { kind: 'mystery' }))
  t.ok(overlap(files('a.py'), entities('a.py')))
  t.ok(overlap(entities('x'), tasks('y')))
  t.ok(overlap(glob('src/*'), entities('x')))
  t.ok(overlap(tasks('t'), glob('src/*')))
  t.ok(overlap({ kind: 'query' }, files('a.py')))
})

t.test('resource_path pairs use glob intersection', async t => {
  t.ok(overlap(glob('src/*.ts'), glob('src/a*')))
  t.ok(overlap(glob('src/**'), glob('src/deep/er/x.ts')))
  t.ok(overlap(glob('**/*.md'), glob('docs/**')))
  t.ok(overlap(glob('./src//a.ts'), glob('src/a.ts')), 'patterns are path-normalised')
  t.notOk(overlap(glob('src/*.ts'), glob('lib/*.ts')))
  t.notOk(overlap(glob('src/*'), glob('src/*/x')), '* stays within one segment')
  t.notOk(overlap(glob('a/?'), glob('a/bc')))
  t.ok(overlap({ kind: 'resource_path' }, glob('a')), 'missing pattern is conservative')
  t.ok(overlap(glob('a'), { kind: 'resource_path' }), 'missing pattern is conservative (other side)')
})

t.test('resource_path × file_set: the pattern must match one of the files', async t => {
  t.ok(overlap(glob('src/**/*.ts'), files('README.md', 'src/x/y.ts')))
  t.ok(overlap(files('./src/a.ts'), glob('src/*.ts')), 'either order; files normalised')
  t.notOk(overlap(glob('src/*.ts'), files('src/x/y.ts', 'lib/a.ts')))
  t.notOk(overlap(files(), glob('**')), 'no files, nothing to match')
  t.ok(overlap({ kind: 'resource_path' }, files('a.py')), 'missing pattern is conservative')
})

t.test('py mode reproduces the Python runtime', async t => {
  const n = normalizeScope
  t.ok(scopesOverlap(n(glob('src/*.ts')), n(glob('lib/*.ts')), 'py'), 'resource_path always overlaps')
  t.ok(scopesOverlap(n(glob('src/*.ts')), n(files('lib/a.ts')), 'py'), 'cross-kind always overlaps')
  const a: Scope = { ...files('db.py'), canonical_uris: ['u1'] }
  const b: Scope = { ...files('db.py'), canonical_uris: ['u2'] }
  t.ok(scopesOverlap(n(a), n(b), 'py'), 'canonical URIs are ignored')
  t.notOk(scopesOverlap(n(a), n(b)), 'strict mode lets the URIs decide')
  t.notOk(scopesOverlap(n(files('a.py')), n(files('b.py')), 'py'))
  t.ok(scopesOverlap(n(files('./a.py')), n(files('a.py')), 'py'), 'PY normalises in overlap detection too')
  t.ok(scopesOverlap(n({ kind: 'query' }), n({ kind: 'query' }), 'py'))
})

t.test('scopeContains', async t => {
  const n = normalizeScope
  t.ok(scopeContains(n(files('a.py', 'b.py')), n(files('./a.py'))))
  t.ok(scopeContains(n(files('a.py')), n(files('a.py'))))
  t.notOk(scopeContains(n(files('a.py')), n(files('a.py', 'c.py'))), 'partial overlap is not containment')
  t.notOk(scopeContains(n(files('a.py', 'b.py')), n(files('c.py'))))
  t.ok(scopeContains(n(files('a.py')), n(files())), 'empty set is contained')
  t.ok(scopeContains(n(entities('e1', 'e2')), n(entities('e1'))))
  t.notOk(scopeContains(n(entities('e1')), n(entities('e1', 'e3'))))
  t.ok(scopeContains(n(tasks('t1', 't2')), n(tasks('t2'))))
  t.notOk(scopeContains(n(tasks('t1')), n(tasks('t2'))))
  t.ok(scopeContains(n(entities('e1')), n(files('a.py'))), 'different kinds: conservative true')
  t.ok(scopeContains(n(glob('a/*')), n(glob('b/*'))), 'resource_path: conservative true')
  t.ok(scopeContains(n({ kind: 'query' }), n({ kind: 'query' })))
})

t.test('sharedItems', async t => {
  const n = normalizeScope
  t.strictSame(sharedItems(n(files('z.py', './b.py', 'a.py')), n(files('a.py', 'b.py', 'z.py', 'q.py'))), ['a.py', 'b.py', 'z.py'])
  t.strictSame(sharedItems(n(files('a.py')), n(files('b.py'))), [])
  t.strictSame(sharedItems(n(entities('e2', 'e1')), n(entities('e1', 'e2'))), ['e1', 'e2'])
  t.strictSame(sharedItems(n(files('a')), n(entities('a'))), [], 'different kinds')
  t.strictSame(sharedItems(n(glob('a')), n(glob('a'))), [], 'not indexable')
  // Python sorts by code point: U+FF5E (BMP) before U+1F600 (astral), unlike UTF-16 order.
  t.strictSame(sharedItems(n(files('\u{1F600}.py', '\uFF5E.py')), n(files('\uFF5E.py', '\u{1F600}.py'))), ['\uFF5E.py', '\u{1F600}.py'])
})

t.test('compareCodePoints', async t => {
  t.equal(compareCodePoints('a', 'a'), 0)
  t.ok(compareCodePoints('a', 'b') < 0)
  t.ok(compareCodePoints('b', 'a') > 0)
  t.ok(compareCodePoints('a', 'ab') < 0)
  t.ok(compareCodePoints('\uFF5E', '\u{1F600}') < 0)
  t.ok(compareCodePoints('\u{1F600}a', '\u{1F600}b') < 0, 'continues after an astral char')
  t.ok(compareCodePoints('\u{1F601}', '\u{1F600}') > 0)
})

t.test('globMatch', async t => {
  const yes: Array<[string, string]> = [
    ['a.py', 'a.py'],
    ['*.py', 'a.py'],
    ['*', 'anything'],
    ['*', ''],
    ['src/*.ts', 'src/a.ts'],
    ['src/*', 'src/a'],
    ['a?c', 'abc'],
    ['??', 'ab'],
    ['**', 'a/b/c'],
    ['**', 'x'],
    ['src/**', 'src'],
    ['src/**', 'src/a'],
    ['src/**', 'src/a/b/c.ts'],
    ['**/x.ts', 'x.ts'],
    ['**/x.ts', 'a/b/x.ts'],
    ['a/**/b', 'a/b'],
    ['a/**/b', 'a/x/b'],
    ['a/**/b', 'a/x/y/b'],
    ['a/**/**/b', 'a/b'],
    ['a/**/**', 'a'],
    ['**/**', 'a/b'],
    ['a/***', 'a/b/c'],
    ['a**b', 'a/x/b'],
    ['a**b', 'ab'],
    ['x**', 'x/y/z'],
    ['src/**/*.ts', 'src/a.ts'],
    ['src/**/*.ts', 'src/a/b.ts'],
    ['/abs/*', '/abs/x'],
    ['/**', '/etc/passwd'],
    ['./src//*.ts', './src/a.ts'],
    ['a.b', 'a.b'],
    ['(x)+[y]{z}|^$', '(x)+[y]{z}|^$'],
    ['a\\b', 'a\\b'],
    ['?', '\u{1F600}'],
    ['\u{1F600}?', '\u{1F600}\u{1F601}'],
    ['line*', 'line\nbreak']
  ]
  for (const [p, s] of yes) t.ok(globMatch(p, s), `${p} ~ ${JSON.stringify(s)}`)
  const no: Array<[string, string]> = [
    ['*.py', 'a/b.py'],
    ['*', 'a/b'],
    ['a?c', 'a/c'],
    ['a?c', 'ac'],
    ['?', ''],
    ['src/*', 'src'],
    ['src/*', 'src/a/b'],
    ['src/**', 'srcx'],
    ['src/**', 'lib/src/a'],
    ['**/x.ts', 'ax.ts'],
    ['a/**/b', 'ab'],
    ['a/**/b', 'a/xb'],
    ['a.b', 'axb'],
    ['a\\b', 'a/b'],
    ['abc', 'ab'],
    ['[ab]', 'a'],
    ['{a,b}', 'a'],
    ['a', 'A']
  ]
  for (const [p, s] of no) t.notOk(globMatch(p, s), `${p} !~ ${JSON.stringify(s)}`)
})

t.test('globsOverlap: hand-picked pairs', async t => {
  const yes: Array<[string, string]> = [
    ['src/*.ts', 'src/a*'],
    ['**/*.md', 'docs/**'],
    ['*/b', 'a/*'],
    ['x*', '*y'],
    ['a/??', 'a/*c'],
    ['a/**', 'a'],
    ['**', '**'],
    ['**', 'a/b'],
    ['a**', '*/b'],
    ['a/**/z', 'a/b/**'],
    ['a/*/c', 'a/**'],
    ['/**', '/x'],
    ['a.py', 'a.py'],
    ['*', '?']
  ]
  for (const [p, q] of yes) {
    t.ok(globsOverlap(p, q), `${p} ∩ ${q}`)
    t.ok(globsOverlap(q, p), `${q} ∩ ${p}`)
  }
  const no: Array<[string, string]> = [
    ['src/*.ts', 'lib/*.ts'],
    ['a/*', 'a/*/b'],
    ['*', '*/*'],
    ['a/**', 'b/**'],
    ['a/?', 'a/bc'],
    ['**/a', '**/b'],
    ['a/*.ts', 'a/*.js'],
    ['a.py', 'b.py'],
    ['?', ''],
    ['*/', '/'],
    ['a/*/b', 'a/b'] // `*` can neither swallow a `/` nor vanish together with one
  ]
  for (const [p, q] of no) {
    t.notOk(globsOverlap(p, q), `${p} ∩ ${q} = ∅`)
    t.notOk(globsOverlap(q, p), `${q} ∩ ${p} = ∅`)
  }
  t.ok(globsOverlap('/', '/'), 'the root path is a valid witness')
  t.ok(globsOverlap('/*', '/'), '`/*` matches the root with an empty `*`')
  t.notOk(globsOverlap('*', '/**'), 'the empty path is not a witness')
  t.notOk(globsOverlap('', ''), 'the empty path is not a witness (even for empty patterns)')
})

// ---------------------------------------------------------------------------
// Exhaustive cross-check against an independent reference: a test-local
// translation of the glob grammar into a (backtracking) RegExp, segment by
// segment, which is fine for the short inputs used here. Random short
// patterns over {a, b, /, *, ?, **}, and every normalised path up to length 7
// over {a, b, c, /}: globMatch must agree with the reference on every
// (pattern, path) pair, and for every pair of patterns globsOverlap must be
// true exactly when some enumerated path matches both (the patterns are
// short enough that a witness, if any, is short too).
// ---------------------------------------------------------------------------

function referenceRegex (pattern: string): RegExp {
  const segs: string[] = []
  for (const seg of normalizePath(pattern).split('/')) {
    const globstar = /^\*{2,}$/.test(seg)
    if (globstar && segs.at(-1) === '**') continue
    segs.push(globstar ? '**' : seg)
  }
  const last = segs.length - 1
  let src = ''
  segs.forEach((seg, k) => {
    if (seg === '**') {
      if (segs.length === 1) src += '.*' // the whole pattern
      else if (k === last) src += '(?:/.*)?' // `a/**`: includes the slash before it
      else if (k === 0) src += '(?:.*/)?' // `**/b`: includes the slash after it
      else src += '/(?:.*/)?' // `a/**/b`: the slash before, then the optional segments with theirs
      return
    }
    if (k > 0 && segs[k - 1] !== '**') src += '/'
    for (const piece of seg.match(/\*{2,}|\*|\?|[^*?]+/gu) ?? []) {
      if (piece.startsWith('**')) src += '.*'
      else if (piece === '*') src += '[^/]*'
      else if (piece === '?') src += '[^/]'
      else src += piece.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
    }
  })
  return new RegExp('^' + src + '$', 'su')
}

const referenceMatch = (pattern: string, path: string): boolean => referenceRegex(pattern).test(normalizePath(path))

t.test('the reference matcher itself agrees with the hand-picked globMatch cases', async t => {
  const cases: Array<[string, string, boolean]> = [
    ['**/x.ts', 'x.ts', true], ['a/**/b', 'a/b', true], ['a/**', 'a', true], ['a**b', 'a/x/b', true],
    ['/**', '/etc/passwd', true], ['*', 'a/b', false], ['a/**/b', 'ab', false], ['src/**', 'srcx', false]
  ]
  for (const [p, s, want] of cases) {
    t.equal(referenceMatch(p, s), want, `reference ${p} ~ ${s}`)
    t.equal(globMatch(p, s), want, `globMatch ${p} ~ ${s}`)
  }
})

function rng (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function isNormalised (p: string): boolean {
  return normalizePath(p) === p && !p.includes('//') && !p.startsWith('./')
}

function allPaths (maxLen: number): string[] {
  const alphabet = ['a', 'b', 'c', '/']
  const out: string[] = []
  let level = ['']
  for (let len = 1; len <= maxLen; len++) {
    const next: string[] = []
    for (const p of level) for (const c of alphabet) next.push(p + c)
    for (const p of next) if (isNormalised(p)) out.push(p)
    level = next
  }
  return out
}

t.test('globsOverlap agrees with brute force over enumerated paths', async t => {
  const rand = rng(20260501)
  const pieces = ['a', 'b', '/', '*', '?', '**', '/**', '**/']
  const patterns = new Set<string>(['**', '*', '/', 'a/**', '**/a', 'a/**/b', '*/*', '?/?'])
  while (patterns.size < 160) {
    const n = 1 + Math.floor(rand() * 4)
    let p = ''
    for (let i = 0; i < n; i++) p += pieces[Math.floor(rand() * pieces.length)]
    patterns.add(normalizePath(p))
  }
  const paths = allPaths(7)
  const pats = [...patterns]
  let matchMismatches = 0
  const matchSets = pats.map(p => {
    const re = referenceRegex(p)
    const bits = new Uint8Array(paths.length)
    paths.forEach((s, i) => {
      bits[i] = re.test(s) ? 1 : 0
      if (globMatch(p, s) !== (bits[i] === 1)) {
        matchMismatches++
        if (matchMismatches < 10) t.fail(`globMatch(${p}, ${s}) disagrees with the reference`)
      }
    })
    return bits
  })
  t.equal(matchMismatches, 0, `globMatch ≡ reference on ${pats.length} × ${paths.length} pairs`)
  let mismatches = 0
  let positives = 0
  for (let i = 0; i < pats.length; i++) {
    for (let j = i; j < pats.length; j++) {
      const a = matchSets[i] as Uint8Array
      const b = matchSets[j] as Uint8Array
      let witness = false
      for (let k = 0; k < paths.length && !witness; k++) witness = a[k] === 1 && b[k] === 1
      const got = globsOverlap(pats[i] as string, pats[j] as string)
      if (got) positives++
      if (got !== witness) {
        mismatches++
        if (mismatches < 10) t.fail(`${pats[i]} ∩ ${pats[j]}: automaton ${got}, brute force ${witness}`)
      }
      if (got !== globsOverlap(pats[j] as string, pats[i] as string)) t.fail(`asymmetric: ${pats[i]} / ${pats[j]}`)
    }
  }
  t.equal(mismatches, 0, `${pats.length} patterns, ${paths.length} paths`)
  t.ok(positives > 100, 'the sample contains many overlapping pairs')

  // Literal paths as patterns: intersection ≡ matching.
  let checked = 0
  for (const p of pats) {
    for (let k = 0; k < paths.length; k += 37) {
      const s = paths[k] as string
      if (globsOverlap(p, s) !== globMatch(p, s)) t.fail(`literal ${s} vs ${p}`)
      checked++
    }
  }
  t.ok(checked > 1000)
})

t.test('scopesOverlap on hot kinds does not depend on set order and is fast', async t => {
  const many = Array.from({ length: 200 }, (_, i) => `src/mod${i}/file${i}.ts`)
  const a = normalizeScope(files(...many))
  const b = normalizeScope(files('zzz.ts', 'src/mod199/file199.ts'))
  const c = normalizeScope(files('zzz.ts'))
  const start = process.hrtime.bigint()
  let hits = 0
  for (let i = 0; i < 20000; i++) {
    if (scopesOverlap(a, b)) hits++
    if (scopesOverlap(c, a)) hits++
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.equal(hits, 20000)
  t.ok(ms < 2000, `40k comparisons took ${ms.toFixed(1)} ms`)
})

// ---------------------------------------------------------------------------
// Complexity. Work is counted through the exported `globWork` counters, not
// timed: matching is O(pattern × path) steps, and the glob × glob search
// never visits more than GLOB_PRODUCT_BUDGET product states.
// ---------------------------------------------------------------------------

function stepsOf (f: () => unknown): number {
  const before = globWork.matchSteps
  f()
  return globWork.matchSteps - before
}

t.test('globMatch is O(pattern × path) on patterns that make a RegExp backtrack', async t => {
  // `*a*a…*a*b*` against a^n: a backtracking matcher tries every split (the
  // old RegExp took 12 s for `*a*a…*ab`, 21 characters, against a^40). The
  // pattern has no literal prefix or suffix, so the NFA does all the work.
  for (const [k, n] of [[10, 40], [20, 40], [200, 400], [1000, 1000], [2000, 4000]] as const) {
    const pattern = '*a'.repeat(k) + '*b*'
    const path = 'a'.repeat(n)
    const hit = 'a'.repeat(n) + 'b'
    const bound = 8 * (pattern.length + 2) * (n + 2)
    let result = true
    const steps = stepsOf(() => { result = globMatch(pattern, path) })
    t.equal(result, false, `${pattern.length}-char pattern, ${n}-char path: no match`)
    t.ok(steps <= bound, `${steps} steps ≤ ${bound}`)
    const stepsHit = stepsOf(() => { result = globMatch(pattern, hit) })
    t.equal(result, n >= k, `…and ${n + 1}-char a^${n}b`)
    t.ok(stepsHit <= bound, `${stepsHit} steps ≤ ${bound}`)
  }
  // Doubling both sizes at most quadruples the work (no exponential growth).
  const w = (k: number): number => stepsOf(() => globMatch('*a'.repeat(k) + '*b*', 'a'.repeat(2 * k)))
  const [w1, w2] = [w(100), w(200)]
  t.ok(w2 <= 4.5 * w1, `work ${w1} → ${w2} when doubling`)
  // Sanity: the counter moves, so the bounds above can fail.
  t.ok(w1 > 1000, 'the counter counts NFA steps')
})

t.test('glob × file_set: bounded by GLOB_MATCH_BUDGET, then `undecided`', async t => {
  const huge = normalizeScope(glob('*a'.repeat(2048)))
  const many = normalizeScope(files(...Array.from({ length: 20 }, (_, k) => 'a'.repeat(1000 + k))))
  const steps = stepsOf(() => {
    t.equal(scopesOverlap(huge, many), true, 'over budget: potentially overlapping')
    t.equal(scopesOverlap(many, huge, 'strict', false), false, 'over budget, undecided = false')
  })
  t.ok(steps <= 2 * (GLOB_MATCH_BUDGET + 10 * 4097), `two decisions took ${steps} steps`)
  const few = normalizeScope(files('a'.repeat(1000), 'b/' + 'a'.repeat(3000)))
  t.equal(scopesOverlap(huge, few, 'strict', true), false, 'within budget: exact whatever `undecided` says')
  const small = normalizeScope(glob('*a'.repeat(200)))
  const enough = normalizeScope(files('b', 'a'.repeat(300)))
  t.equal(scopesOverlap(small, enough, 'strict', false), true, 'within budget: exact match')

  // The literal prefix/suffix filter keeps ordinary globs cheap over big file sets.
  const ts = normalizeScope(glob('src/**/*.ts'))
  const js = normalizeScope(files(...Array.from({ length: 20000 }, (_, k) => `src/module${k}/deep/file${k}.js`)))
  const cheap = stepsOf(() => t.equal(scopesOverlap(ts, js, 'strict', true), false, 'decided exactly'))
  t.ok(cheap < GLOB_MATCH_BUDGET / 4, `${cheap} steps for 20000 files`)
})

t.test('glob × glob: at most GLOB_PRODUCT_BUDGET product states, then `undecided`', async t => {
  const a = '*a'.repeat(2048)
  const b = '*b'.repeat(2048)
  let before = globWork.productStates
  t.equal(globsOverlap(a, b), true, 'over budget: potentially overlapping (exactly: disjoint, different last letters)')
  t.ok(globWork.productStates - before <= GLOB_PRODUCT_BUDGET, `${globWork.productStates - before} states visited`)
  t.equal(globsOverlap(a, b, false), false, 'undecided = false')
  const na = normalizeScope(glob(a))
  const nb = normalizeScope(glob(b))
  t.equal(scopesOverlap(na, nb), true)
  t.equal(scopesOverlap(na, nb, 'strict', false), false)
  t.equal(scopesOverlap(na, nb, 'py', false), true, 'py mode never looks at globs')

  // Big but cheap: the search visits few states, so the answer is exact.
  before = globWork.productStates
  t.equal(globsOverlap('src/' + 'x'.repeat(5000), 'lib/' + 'x'.repeat(5000), true), false, 'disjoint at the first letter')
  t.equal(globsOverlap('src/' + 'x'.repeat(5000) + '/*', 'src/' + 'x'.repeat(5000) + '/*/y', false), false, 'decided: one more segment')
  t.ok(globWork.productStates - before < 4 * 5010, `${globWork.productStates - before} states visited`)
  t.equal(globsOverlap('*a'.repeat(300), '*a'.repeat(200) + '*b', false), false, 'decided within budget: different last letters')
  t.equal(globsOverlap('*a'.repeat(30), '*a'.repeat(20) + '*a', false), true, 'decided within budget: overlap')
})
