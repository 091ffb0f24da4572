import t from 'tap'
import { dependencyConflict, dependencyDetail, symbolMatch } from '../../src/protocol/dependency.js'
import type { Scope } from '../../src/protocol/scope.js'

interface Ext {
  impact?: unknown
  impact_symbols?: unknown
  affects_symbols?: unknown
  depends_on_symbols?: unknown
}

function fs (resources: string[], ext?: Ext): Scope {
  return ext === undefined
    ? { kind: 'file_set', resources }
    : { kind: 'file_set', resources, extensions: ext as Record<string, unknown> }
}

t.test('symbolMatch', async t => {
  t.strictSame(symbolMatch(['utils.foo'], ['utils.foo', 'utils.bar']), ['utils.foo'], 'exact')
  t.strictSame(symbolMatch([], ['utils.foo']), [])
  t.strictSame(symbolMatch(['utils.foo'], []), [])
  t.strictSame(symbolMatch(['utils.foo'], ['utils.bar']), [], 'lowercase module pairs stay disjoint')
  t.strictSame(symbolMatch(['utils.foo.bar'], ['utils.foo']), [], 'lowercase owner never collapses')

  t.strictSame(symbolMatch(['Note'], ['models.Note']), ['models.Note'], 'tail: bare vs qualified, reports the longer')
  t.strictSame(symbolMatch(['models.Note'], ['Note']), ['models.Note'], 'tail: qualified vs bare')
  t.strictSame(symbolMatch(['Note'], ['models.User']), [], 'different tails')
  t.strictSame(symbolMatch(['a.foo'], ['b.foo']), ['a.foo'], 'equal-length tie reports the first side')
  t.strictSame(symbolMatch(['pkg.a.foo'], ['b.foo']), ['pkg.a.foo'])
  t.strictSame(symbolMatch(['foo'], ['x.foo', 'yy.foo']), ['x.foo', 'yy.foo'], 'every tail partner is reported')

  t.strictSame(symbolMatch(['Note.archived'], ['notes_app.models.Note']), ['Note.archived'], 'class owner on the editor side')
  t.strictSame(symbolMatch(['notes_app.models.Note'], ['Note.archived']), ['Note.archived'], 'class owner on the importer side')
  t.strictSame(symbolMatch(['Note.archived'], ['Note']), ['Note.archived'], 'owner equal to the symbol')
  t.strictSame(symbolMatch(['Note.archived'], ['models.Note.title']), ['models.Note.title'], 'both owners match: the longer name')
  t.strictSame(symbolMatch(['Note.archived'], ['models.User']), [], 'owner with another tail')
  t.strictSame(symbolMatch(['Été.x'], ['m.Été']), ['Été.x'], 'non-ASCII capitals count as class names')
  t.strictSame(symbolMatch(['a..x'], ['a.']), [], 'an empty owner segment is not a class')

  t.strictSame(symbolMatch(['b.Z', 'a.Y', 'b.Z'], ['a.Y', 'b.Z']), ['a.Y', 'b.Z'], 'sorted and deduplicated')
  t.strictSame(symbolMatch(['m.\u{1F600}', 'm.\uFF5E'], ['m.\u{1F600}', 'm.\uFF5E']), ['m.\uFF5E', 'm.\u{1F600}'], 'code point order')
  t.strictSame(symbolMatch(['x.\u{1F600}'], ['\u{1F600}']), ['x.\u{1F600}'], 'longer by code points')
})

t.test('scenario 17: dependency breakage across files', async t => {
  // A (the holder) edits utils.py, which main.py imports; B (the new side) edits main.py.
  const a = fs(['utils.py'], { impact: ['main.py'] })
  const b = fs(['main.py'])
  t.ok(dependencyConflict(b, a))
  t.ok(dependencyConflict(a, b), 'symmetric')
  t.strictSame(dependencyDetail(b, a), { ba: [{ file: 'main.py', symbols: null }] }, 'A reaches B: the ba direction, file level')

  const aSym = fs(['utils.py'], {
    impact: ['main.py'],
    impact_symbols: { 'main.py': ['utils.foo', 'utils.bar'] },
    affects_symbols: ['utils.foo']
  })
  t.ok(dependencyConflict(b, aSym))
  t.strictSame(dependencyDetail(b, aSym), { ba: [{ file: 'main.py', symbols: ['utils.foo'] }] })
  t.strictSame(dependencyDetail(aSym, b), { ab: [{ file: 'main.py', symbols: ['utils.foo'] }] }, 'seen from the other side it is ab')

  const aDisjoint = fs(['utils.py'], {
    impact: ['main.py'],
    impact_symbols: { 'main.py': ['utils.foo', 'utils.bar'] },
    affects_symbols: ['utils.baz']
  })
  t.notOk(dependencyConflict(b, aDisjoint), 'disjoint symbols: no conflict')
})

t.test('scenario 18: precision table', async t => {
  const bob = fs(['main.py'])

  t.test('wildcard importer → conflict', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': null }, affects_symbols: ['utils.foo'] })
    t.ok(dependencyConflict(alice, bob))
    t.strictSame(dependencyDetail(alice, bob), { ab: [{ file: 'main.py', symbols: null }] })
  })

  t.test('missing affects_symbols → conflict', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] } })
    t.ok(dependencyConflict(alice, bob))
    t.strictSame(dependencyDetail(alice, bob), { ab: [{ file: 'main.py', symbols: null }] })
  })

  t.test('empty affects_symbols means "assume all" → conflict', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: [] })
    t.ok(dependencyConflict(alice, bob))
    const junk = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['', 3, null] })
    t.ok(dependencyConflict(junk, bob), 'no usable entries is the same as none')
    const notList = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: 'utils.foo' })
    t.ok(dependencyConflict(notList, bob), 'a non-list is undeclared')
  })

  t.test('missing impact_symbols → conflict', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], affects_symbols: ['utils.foo'] })
    t.ok(dependencyConflict(alice, bob))
    t.strictSame(dependencyDetail(alice, bob), { ab: [{ file: 'main.py', symbols: null }] })
    const otherFile = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'api.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] })
    t.ok(dependencyConflict(otherFile, bob), 'no entry for this importer is a wildcard')
    const notMap = fs(['utils.py'], { impact: ['main.py'], impact_symbols: [['main.py', ['utils.bar']]], affects_symbols: ['utils.foo'] })
    t.ok(dependencyConflict(notMap, bob), 'impact_symbols that is not an object is ignored')
    const notList = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': 'utils.bar' }, affects_symbols: ['utils.foo'] })
    t.ok(dependencyConflict(notList, bob), 'a non-list entry is a wildcard')
  })

  t.test('bare Note vs models.Note → conflict, reported qualified', async t => {
    const alice = fs(['models.py'], { impact: ['db.py'], impact_symbols: { 'db.py': ['models.Note'] }, affects_symbols: ['Note'] })
    const dbEditor = fs(['db.py'])
    t.ok(dependencyConflict(alice, dbEditor))
    t.strictSame(dependencyDetail(alice, dbEditor), { ab: [{ file: 'db.py', symbols: ['models.Note'] }] })
  })

  t.test('Note vs models.User → none', async t => {
    const alice = fs(['models.py'], { impact: ['db.py'], impact_symbols: { 'db.py': ['models.User'] }, affects_symbols: ['Note'] })
    t.notOk(dependencyConflict(alice, fs(['db.py'])))
    t.strictSame(dependencyDetail(alice, fs(['db.py'])), { ab: [{ file: 'db.py', symbols: null }] }, 'detail still lists the impacted file, symbols null')
  })

  t.test('Note.archived vs notes_app.models.Note → conflict, reported as Note.archived', async t => {
    const alice = fs(['notes_app/models.py'], {
      impact: ['notes_app/views.py'],
      impact_symbols: { 'notes_app/views.py': ['notes_app.models.Note'] },
      affects_symbols: ['Note.archived']
    })
    const views = fs(['notes_app/views.py'])
    t.ok(dependencyConflict(views, alice))
    t.strictSame(dependencyDetail(views, alice), { ba: [{ file: 'notes_app/views.py', symbols: ['Note.archived'] }] })
  })

  t.test('lowercase module pairs utils.foo / utils.bar stay disjoint', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] })
    t.notOk(dependencyConflict(alice, bob))
    t.notOk(dependencyConflict(bob, alice), 'either argument order')
  })

  t.test('depends_on_symbols restores a future-use conflict', async t => {
    const alice = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.foo'] }, affects_symbols: ['utils.baz'] })
    t.notOk(dependencyConflict(alice, bob), 'main.py does not use utils.baz today')
    const bobPlans = fs(['main.py'], { depends_on_symbols: ['utils.baz'] })
    t.ok(dependencyConflict(alice, bobPlans), 'but Bob plans to start using it')
    t.ok(dependencyConflict(bobPlans, alice), 'symmetric')
    t.strictSame(dependencyDetail(bobPlans, alice), { ba: [{ file: 'main.py', symbols: ['utils.baz'] }] })
    const bobBare = fs(['main.py'], { depends_on_symbols: ['baz', 'baz', 7] })
    t.ok(dependencyConflict(alice, bobBare), 'tail tolerance applies to planned uses too')
    t.strictSame(dependencyDetail(alice, bobBare), { ab: [{ file: 'main.py', symbols: ['utils.baz'] }] })
    const bobOther = fs(['main.py'], { depends_on_symbols: ['utils.qux'] })
    t.notOk(dependencyConflict(alice, bobOther), 'planned uses of other symbols do not conflict')
    const bobOwn = fs(['main.py'], { depends_on_symbols: ['utils.foo'] })
    t.notOk(dependencyConflict(alice, bobOwn), 'a planned use already in the list changes nothing')
    const aliceSelf = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.foo'] }, affects_symbols: ['utils.baz'], depends_on_symbols: ['utils.baz'] })
    t.notOk(dependencyConflict(aliceSelf, bob), "the editor's own planned uses do not count for its importers")
    const notInImpact = fs(['utils.py'], { impact: ['other.py'], affects_symbols: ['utils.baz'] })
    t.notOk(dependencyConflict(notInImpact, bobPlans), 'only files in the impact list are checked')
  })

  t.test('one safe importer plus one wildcard importer, chosen per claimed file', async t => {
    const alice = fs(['utils.py'], {
      impact: ['api.py', 'docs.py'],
      impact_symbols: { 'api.py': ['utils.bar'], 'docs.py': null },
      affects_symbols: ['utils.foo']
    })
    t.ok(dependencyConflict(alice, fs(['docs.py'])), 'claims the wildcard importer')
    t.notOk(dependencyConflict(alice, fs(['api.py'])), 'claims only the safe importer')
    const both = fs(['api.py', 'docs.py'])
    t.ok(dependencyConflict(alice, both))
    t.strictSame(dependencyDetail(alice, both), {
      ab: [{ file: 'api.py', symbols: null }, { file: 'docs.py', symbols: null }]
    }, 'every impacted file is listed, also the one that did not clash')
  })

  t.test('non-file_set kinds never conflict', async t => {
    const ent: Scope = { kind: 'entity_set', entities: ['a.b'], extensions: { impact: ['a.c'] } }
    const ent2: Scope = { kind: 'entity_set', entities: ['a.c'] }
    t.notOk(dependencyConflict(ent, ent2))
    t.strictSame(dependencyDetail(ent, ent2), {})
    const rp: Scope = { kind: 'resource_path', pattern: 'main.py' }
    t.notOk(dependencyConflict(fs(['utils.py'], { impact: ['main.py'] }), rp))
    t.notOk(dependencyConflict(rp, fs(['utils.py'], { impact: ['main.py'] })))
    t.strictSame(dependencyDetail(fs(['utils.py'], { impact: ['main.py'] }), rp), {})
  })
})

t.test('no impact, no conflict', async t => {
  t.notOk(dependencyConflict(fs(['utils.py']), fs(['main.py'])), 'neither side declares impact')
  t.strictSame(dependencyDetail(fs(['utils.py']), fs(['main.py'])), {})
  t.notOk(dependencyConflict(fs(['utils.py'], { impact: ['main.py'] }), fs(['unrelated.py'])), 'impact elsewhere')
  t.notOk(dependencyConflict(fs(['utils.py'], { impact: 'main.py' }), fs(['main.py'])), 'impact must be a list')
  t.notOk(dependencyConflict(fs(['utils.py'], { impact: [42, null] }), fs(['main.py'])), 'non-string entries ignored')
  const weird: Scope = { kind: 'file_set', resources: ['utils.py'], extensions: ['impact'] as unknown as Record<string, unknown> }
  t.notOk(dependencyConflict(weird, fs(['main.py'])), 'extensions that is not an object')
  t.notOk(dependencyConflict({ kind: 'file_set' }, fs(['main.py'], { impact: ['x.py'] })), 'missing resources')
})

t.test('paths are normalised on both sides, including impact_symbols keys', async t => {
  const alice = fs(['utils.py'], {
    impact: ['./src//main.py'],
    impact_symbols: { './src/main.py': ['utils.bar'] },
    affects_symbols: ['utils.foo']
  })
  t.notOk(dependencyConflict(alice, fs(['src/main.py/'])), 'the ./ key still pins the symbols')
  t.strictSame(dependencyDetail(fs(['src/main.py']), alice), { ba: [{ file: 'src/main.py', symbols: null }] })

  const exactWins = fs(['utils.py'], {
    impact: ['main.py'],
    impact_symbols: { 'main.py': ['utils.foo'], './main.py': ['utils.bar'] },
    affects_symbols: ['utils.foo']
  })
  t.ok(dependencyConflict(exactWins, fs(['main.py'])), 'an exactly normalised key wins over an alias')
  const exactWinsLater = fs(['utils.py'], {
    impact: ['main.py'],
    impact_symbols: { './main.py': ['utils.bar'], 'main.py': ['utils.foo'] },
    affects_symbols: ['utils.foo']
  })
  t.ok(dependencyConflict(exactWinsLater, fs(['main.py'])), '…whatever the key order')
})

t.test('both directions, sorted files', async t => {
  const alice = fs(['utils.py'], {
    impact: ['shared.py'],
    impact_symbols: { 'shared.py': ['utils.foo'] },
    affects_symbols: ['utils.foo']
  })
  const bob = fs(['shared.py'], {
    impact: ['utils.py'],
    impact_symbols: { 'utils.py': ['shared.helper'] },
    affects_symbols: ['shared.helper']
  })
  t.strictSame(dependencyDetail(alice, bob), {
    ab: [{ file: 'shared.py', symbols: ['utils.foo'] }],
    ba: [{ file: 'utils.py', symbols: ['shared.helper'] }]
  })
  t.ok(dependencyConflict(alice, bob))

  const many = fs(['lib.py'], { impact: ['z.py', 'a.py', 'm/x.py'] })
  t.strictSame(dependencyDetail(fs(['m/x.py', 'z.py', 'a.py', 'q.py']), many), {
    ba: [{ file: 'a.py', symbols: null }, { file: 'm/x.py', symbols: null }, { file: 'z.py', symbols: null }]
  })

  const onlyBa = fs(['utils.py'], { impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] })
  t.notOk(dependencyConflict(fs(['main.py']), onlyBa), 'direction b→a checked and found safe')
})

// A test-local reference: the three layers of §6.5 applied to every pair,
// literally (quadratic; fine for the small random inputs below).
function referenceMatch (a: readonly string[], b: readonly string[]): string[] {
  const tailOf = (s: string): string => s.slice(s.lastIndexOf('.') + 1)
  const ownerOf = (s: string): string | undefined => {
    const i = s.lastIndexOf('.')
    if (i < 0) return undefined
    const owner = s.slice(0, i)
    return /^\p{Lu}/u.test(tailOf(owner)) ? owner : undefined
  }
  const cps = (s: string): number => [...s].length
  const longer = (x: string, y: string): string => cps(x) >= cps(y) ? x : y
  const out = new Set<string>()
  for (const x of a) {
    for (const y of b) {
      if (x === y) out.add(x)
      else if (tailOf(x) === tailOf(y)) out.add(longer(x, y))
      const xo = ownerOf(x)
      const yo = ownerOf(y)
      if (xo !== undefined && tailOf(xo) === tailOf(y)) out.add(x)
      if (yo !== undefined && tailOf(x) === tailOf(yo)) out.add(y)
      if (xo !== undefined && yo !== undefined && tailOf(xo) === tailOf(yo)) out.add(longer(x, y))
    }
  }
  return [...out].sort((p, q) => {
    const [cp, cq] = [[...p].map(c => c.codePointAt(0) as number), [...q].map(c => c.codePointAt(0) as number)]
    for (let i = 0; i < Math.min(cp.length, cq.length); i++) if (cp[i] !== cq[i]) return (cp[i] as number) - (cq[i] as number)
    return cp.length - cq.length
  })
}

t.test('symbolMatch equals the pairwise reference on random inputs', async t => {
  let s = 12345
  const r = (): number => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 2 ** 32 }
  const segs = ['a', 'b', 'Note', 'N', 'x', 'Été', '\u{1F600}', 'utils', '']
  const name = (): string => Array.from({ length: 1 + Math.floor(r() * 3) }, () => segs[Math.floor(r() * segs.length)]).join('.')
  let nonEmpty = 0
  for (let k = 0; k < 3000; k++) {
    const a = Array.from({ length: Math.floor(r() * 6) }, name)
    const b = Array.from({ length: Math.floor(r() * 6) }, name)
    const want = referenceMatch(a, b)
    if (want.length > 0) nonEmpty++
    const got = symbolMatch(a, b)
    if (JSON.stringify(got) !== JSON.stringify(want)) t.fail('differs from the reference', { a, b, got, want })
  }
  t.ok(nonEmpty > 500 && nonEmpty < 2900, `both outcomes occur (${nonEmpty} non-empty)`)
})

t.test('symbolMatch and dependency analysis scale near-linearly', async t => {
  // 20,000 × 20,000 names sharing tails and owners: 4·10^8 pairs for a pairwise
  // matcher (the old one took 16 s for 5,000 × 5,000); exact answers expected.
  const n = 20000
  const a = Array.from({ length: n }, (_, i) => `pkg${i}.mod.Cls${i % 50}.attr${i}`)
  const b = Array.from({ length: n }, (_, i) => `other${i}.Cls${i % 70}.meth${i % 300}`)
  const same = Array.from({ length: n }, (_, i) => `m${i}.foo`)
  const start = process.hrtime.bigint()
  const got = symbolMatch(a, b)
  // Every a-name has owner Cls<k> (k < 50) and every b-name owner Cls<j> (j < 70):
  // both-owners layer; the longer name is reported, a-names win ties.
  t.equal(got.length, referenceCount(a, b))
  t.equal(symbolMatch(same, same.map(x => 'q' + x)).length, 2 * n - 10, 'tail pairs: every name but m0.foo … m9.foo is the longer of some pair')
  const editor: Scope = { kind: 'file_set', resources: ['u.py'], extensions: { impact: Array.from({ length: 200 }, (_, i) => `f${i}.py`), impact_symbols: Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f${i}.py`, ['x.none']])), affects_symbols: a } }
  const importer: Scope = { kind: 'file_set', resources: Array.from({ length: 200 }, (_, i) => `f${i}.py`), extensions: { depends_on_symbols: b } }
  const d = dependencyDetail(editor, importer)
  t.equal(d.ab?.length, 200)
  t.equal(d.ab?.[0]?.symbols?.length, got.length, 'planned uses are matched once and merged per file')
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  t.ok(ms < 10000, `took ${ms.toFixed(0)} ms`)
})

// The expected size for the structured input above, from its construction.
function referenceCount (a: readonly string[], b: readonly string[]): number {
  const cps = (s: string): number => [...s].length
  const minB = new Map<string, number>()
  for (const y of b) { const k = y.split('.')[1] as string; minB.set(k, Math.min(minB.get(k) ?? Infinity, cps(y))) }
  const minA = new Map<string, number>()
  for (const x of a) { const k = x.split('.')[2] as string; minA.set(k, Math.min(minA.get(k) ?? Infinity, cps(x))) }
  let count = 0
  for (const x of a) if ((minB.get(x.split('.')[2] as string) ?? Infinity) <= cps(x)) count++
  for (const y of b) if ((minA.get(y.split('.')[1] as string) ?? Infinity) < cps(y)) count++
  return count
}
