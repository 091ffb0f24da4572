import t from 'tap'
import { duplicateCandidate, objectiveSymbolHints, pythonModules, type IntentLike } from '../../src/protocol/semantics.js'
import type { Scope } from '../../src/protocol/scope.js'

function intent (id: string, principal: string, objective: string, extensions?: Record<string, unknown>, resources = ['notes_app/db.py']): IntentLike {
  const scope: Scope = { kind: 'file_set', resources }
  if (extensions !== undefined) scope.extensions = extensions
  return { intent_id: id, principal_id: principal, objective, scope }
}

const SHARED = ['notes_app/db.py']

t.test('scenario 15: same structured symbol and action → high', async t => {
  const sem = {
    intent_semantics: {
      action: 'add_symbol',
      targets: [{ file: 'notes_app/db.py', symbol: 'notes_app.db.sort_by_recent' }],
      postconditions: [{ kind: 'behavior', text: 'returns notes sorted by created_at descending' }]
    }
  }
  const holder = intent('intent-alice', 'alice', 'add sort_by_recent', sem)
  const rejected = intent('intent-bob', 'bob', 'add recent sorter', sem)
  const c = duplicateCandidate(rejected, holder, SHARED)
  t.strictSame(c, {
    candidate: true,
    confidence: 'high',
    reason: 'same_symbol_and_action',
    other_intent_id: 'intent-alice',
    other_principal_id: 'alice',
    shared_files: ['notes_app/db.py'],
    matched_symbols: ['notes_app.db.sort_by_recent'],
    matched_postconditions: [],
    current: {
      action: 'add_symbol',
      symbols: ['notes_app.db.sort_by_recent'],
      postconditions: ['returns notes sorted by created_at descending']
    },
    other: {
      action: 'add_symbol',
      symbols: ['notes_app.db.sort_by_recent'],
      postconditions: ['returns notes sorted by created_at descending']
    },
    verification_required: true,
    guidance: c?.guidance
  })
  t.strictSame(Object.keys(c ?? {}), [
    'candidate', 'confidence', 'reason', 'other_intent_id', 'other_principal_id', 'shared_files',
    'matched_symbols', 'matched_postconditions', 'current', 'other', 'verification_required', 'guidance'
  ], 'key order as in §6.6')
  t.type(c?.guidance, 'string')
  t.ok((c?.guidance as string).length > 40, 'guidance is a sentence')
  t.not(c?.shared_files, SHARED, 'shared_files is a copy')
})

t.test('scenario 15: different symbols → no candidate', async t => {
  const a = intent('ia', 'A', 'add sorter', { intent_semantics: { action: 'add_symbol', targets: [{ symbol: 'notes_app.db.sort_by_recent' }] } })
  const b = intent('ib', 'B', 'add finder', { intent_semantics: { action: 'add_symbol', targets: [{ symbol: 'notes_app.db.find_by_title' }] } })
  t.equal(duplicateCandidate(b, a, SHARED), undefined)
})

t.test('scenario 15: only affects_symbols equal → medium / same_symbol', async t => {
  const ext = { affects_symbols: ['notes_app.db.sort_by_recent'] }
  const c = duplicateCandidate(intent('ib', 'B', 'add sorter', ext), intent('ia', 'A', 'add sorter', ext), SHARED)
  t.equal(c?.confidence, 'medium')
  t.equal(c?.reason, 'same_symbol')
  t.strictSame(c?.matched_symbols, ['notes_app.db.sort_by_recent'])
  t.strictSame(c?.current, { action: null, symbols: ['notes_app.db.sort_by_recent'], postconditions: [] })
})

t.test('scenario 15: symbol hints mined from the objectives → same_symbol', async t => {
  const a = intent('ia', 'A', 'add sort_by_recent() function')
  const b = intent('ib', 'B', 'add sort_by_recent function to db.py')
  const c = duplicateCandidate(b, a, SHARED)
  t.equal(c?.reason, 'same_symbol')
  t.equal(c?.confidence, 'medium')
  t.strictSame(c?.matched_symbols, ['notes_app.db.sort_by_recent'])
  t.strictSame((c?.current as { symbols: string[] }).symbols, ['notes_app.db.sort_by_recent'], 'the bare name is replaced by its qualified forms; db.py is skipped')
})

t.test('scenario 15: equal postconditions and equal actions → high / same_postcondition_and_action', async t => {
  const semA = { intent_semantics: { action: 'add_behavior', postconditions: [{ kind: 'behavior', text: 'Returns notes sorted by  created_at\tdescending' }] } }
  const semB = { intent_semantics: { action: ' ADD_BEHAVIOR ', postconditions: [{ kind: 'behavior', text: 'returns notes sorted by created_at descending ' }] } }
  const c = duplicateCandidate(intent('ib', 'B', 'make notes sort newest first', semB), intent('ia', 'A', 'add recent sorting behavior', semA), SHARED)
  t.equal(c?.confidence, 'high')
  t.equal(c?.reason, 'same_postcondition_and_action')
  t.strictSame(c?.matched_symbols, [])
  t.strictSame(c?.matched_postconditions, ['returns notes sorted by created_at descending'], "the current intent's wording, trimmed")
  t.strictSame(c?.other, { action: 'add_behavior', symbols: [], postconditions: ['Returns notes sorted by  created_at\tdescending'] })
})

t.test('scenario 15: equal postconditions with one or both actions missing → medium / same_postcondition', async t => {
  const post = { postconditions: ['returns notes sorted by created_at descending'] }
  const withAction = intent('ia', 'A', 'x', { intent_semantics: { action: 'add_behavior', ...post } })
  const noAction = intent('ib', 'B', 'y', { intent_semantics: post })
  for (const [cur, oth, label] of [[noAction, withAction, 'current missing'], [withAction, noAction, 'other missing'], [noAction, noAction, 'both missing']] as const) {
    const c = duplicateCandidate(cur, oth, SHARED)
    t.equal(c?.confidence, 'medium', label)
    t.equal(c?.reason, 'same_postcondition', label)
  }
})

t.test('scenario 15: different actions → no candidate, for postconditions or symbols', async t => {
  const post = ['returns notes sorted by created_at descending']
  const a = intent('ia', 'A', 'x', { intent_semantics: { action: 'add_behavior', postconditions: post } })
  const b = intent('ib', 'B', 'y', { intent_semantics: { action: 'fix_bug', postconditions: post } })
  t.equal(duplicateCandidate(b, a, SHARED), undefined, 'postconditions')
  const c = intent('ic', 'C', 'x', { intent_semantics: { action: 'add_symbol', symbol: 'm.f' } })
  const d = intent('id', 'D', 'y', { intent_semantics: { action: 'remove_symbol', symbol: 'm.f' } })
  t.equal(duplicateCandidate(d, c, SHARED), undefined, 'symbols')
})

t.test('symbols win over postconditions', async t => {
  const a = intent('ia', 'A', 'x', { intent_semantics: { symbols: ['m.f'], postconditions: ['p'] } })
  const b = intent('ib', 'B', 'y', { intent_semantics: { symbols: ['m.f'], postconditions: ['p'] } })
  const c = duplicateCandidate(b, a, SHARED)
  t.equal(c?.reason, 'same_symbol')
  t.strictSame(c?.matched_postconditions, [], 'postconditions are only reported by the postcondition rule')
})

t.test('no shared hints → no candidate', async t => {
  t.equal(duplicateCandidate(intent('ib', 'B', 'fix the bug'), intent('ia', 'A', 'tidy up'), SHARED), undefined)
  const a = intent('ia', 'A', 'x', { intent_semantics: { action: 'edit', postconditions: ['one thing'] } })
  const b = intent('ib', 'B', 'y', { intent_semantics: { action: 'edit', postconditions: ['another thing'] } })
  t.equal(duplicateCandidate(b, a, SHARED), undefined)
})

t.test('semantic summary sources', async t => {
  const ext = {
    affects_symbols: ['m.aff', '  ', 'm.sym'],
    intent_semantics: {
      action: 'Add_Symbol',
      symbol: '  m.sym  ',
      symbols: ['m.list1', 5, 'm.list2', ''],
      targets: [{ symbol: 'm.t1' }, { symbols: ['m.t2', 'm.t3'] }, 'junk', null, { symbol: 42 }],
      postconditions: [
        'plain text',
        { text: 'from text', behavior: 'from behavior', expected: ['from expected'], description: 'from description', other: 'ignored' },
        'PLAIN   TEXT',
        7
      ]
    }
  }
  const c = duplicateCandidate(intent('ib', 'B', 'x', ext), intent('ia', 'A', 'y', ext), [])
  t.strictSame(c?.current, {
    action: 'add_symbol',
    symbols: ['m.sym', 'm.list1', 'm.list2', 'm.t1', 'm.t2', 'm.t3', 'm.aff'],
    postconditions: ['plain text', 'from text', 'from behavior', 'from expected', 'from description']
  }, 'order: symbol, symbols, targets, affects_symbols; duplicates dropped (postconditions by normalised text)')
  t.strictSame(c?.matched_symbols, ['m.aff', 'm.list1', 'm.list2', 'm.sym', 'm.t1', 'm.t2', 'm.t3'], 'sorted')
  t.strictSame(c?.shared_files, [])

  const single = { intent_semantics: { postcondition: 'Only One' } }
  const s = duplicateCandidate(intent('ib', 'B', 'x', single), intent('ia', 'A', 'y', { intent_semantics: { postconditions: ['only one'] } }), SHARED)
  t.equal(s?.reason, 'same_postcondition', 'postcondition: a single value')
  t.strictSame(s?.matched_postconditions, ['Only One'])

  const singleObj = { intent_semantics: { postcondition: { expected: 'ok' } } }
  t.equal(duplicateCandidate(intent('ib', 'B', 'x', singleObj), intent('ia', 'A', 'y', singleObj), SHARED)?.reason, 'same_postcondition', 'postcondition: an object')

  const both = { intent_semantics: { postconditions: ['listed'], postcondition: 'single' } }
  const bc = duplicateCandidate(intent('ib', 'B', 'x', both), intent('ia', 'A', 'y', both), SHARED)
  t.strictSame((bc?.current as { postconditions: string[] }).postconditions, ['listed'], 'postconditions wins over postcondition')

  const bare = { intent_semantics: { postconditions: 'a lone string' } }
  t.equal(duplicateCandidate(intent('ib', 'B', 'x', bare), intent('ia', 'A', 'y', bare), SHARED)?.reason, 'same_postcondition', 'postconditions given as one string is accepted')

  const blankSymbol = { intent_semantics: { symbol: '   ', postconditions: 'p' } }
  t.strictSame((duplicateCandidate(intent('ib', 'B', 'x', blankSymbol), intent('ia', 'A', 'y', blankSymbol), SHARED)?.current as { symbols: string[] }).symbols, [], 'a blank symbol string is dropped')

  const blankAction = { intent_semantics: { action: '   ', symbol: 'm.f' } }
  const withAction = { intent_semantics: { action: 'edit', symbol: 'm.f' } }
  const ba = duplicateCandidate(intent('ib', 'B', 'x', blankAction), intent('ia', 'A', 'y', withAction), SHARED)
  t.equal(ba?.confidence, 'medium', 'a blank action counts as missing')
  t.equal((ba?.current as { action: unknown }).action, null)
  const numAction = { intent_semantics: { action: 3, symbol: 'm.f' } }
  t.equal(duplicateCandidate(intent('ib', 'B', 'x', numAction), intent('ia', 'A', 'y', withAction), SHARED)?.confidence, 'medium', 'a non-string action counts as missing')
})

t.test('symbols are compared case-sensitively', async t => {
  const a = intent('ia', 'A', 'x', { affects_symbols: ['m.Sort'] })
  const b = intent('ib', 'B', 'y', { affects_symbols: ['m.sort'] })
  t.equal(duplicateCandidate(b, a, SHARED), undefined)
})

t.test('malformed extensions degrade to an empty summary', async t => {
  const weird = [
    { intent_semantics: 'add_symbol' },
    { intent_semantics: ['x'] },
    { intent_semantics: null },
    { intent_semantics: { targets: 'm.f', postconditions: 5 } }
  ]
  for (const ext of weird) {
    t.equal(duplicateCandidate(intent('ib', 'B', 'x', ext), intent('ia', 'A', 'y', ext), SHARED), undefined, JSON.stringify(ext))
  }
  const noExt: IntentLike = { intent_id: 'i', principal_id: 'p', objective: 'x', scope: { kind: 'file_set', resources: ['a.py'], extensions: 'nope' as unknown as Record<string, unknown> } }
  t.equal(duplicateCandidate(noExt, noExt, SHARED), undefined)
  const noScope = { intent_id: 'i', principal_id: 'p', objective: 'do f()', scope: undefined } as unknown as IntentLike
  const c = duplicateCandidate(noScope, noScope, [])
  t.strictSame(c?.matched_symbols, ['f'], 'no scope: hints stay bare')
  const noObjective = { intent_id: 'i', principal_id: 'p', objective: undefined, scope: { kind: 'file_set' } } as unknown as IntentLike
  t.equal(duplicateCandidate(noObjective, noObjective, []), undefined)
})

t.test('objectiveSymbolHints', async t => {
  t.strictSame(objectiveSymbolHints('add sort_by_recent() function'), ['sort_by_recent'])
  t.strictSame(objectiveSymbolHints('add sort_by_recent function to db.py'), ['sort_by_recent'])
  t.strictSame(objectiveSymbolHints('fix parse_args(argv) and load_config()'), ['parse_args', 'load_config'])
  t.strictSame(objectiveSymbolHints('call db.connect() then Note.save()'), ['db.connect', 'Note.save'], 'one dotted level')
  t.strictSame(objectiveSymbolHints('call a.b.c() now'), [], 'deeper dotted names are not hints')
  for (const w of ['function', 'func', 'method', 'handler', 'endpoint', 'symbol']) {
    t.strictSame(objectiveSymbolHints(`update the login_user ${w} today`), ['login_user'], w)
  }
  t.strictSame(objectiveSymbolHints('rename the FETCH   Method'), ['FETCH'], 'marker words are case-insensitive, any whitespace')
  t.strictSame(objectiveSymbolHints('添加 sort_by_recent 函数'), ['sort_by_recent'])
  t.strictSame(objectiveSymbolHints('添加sort_by_recent函数'), ['sort_by_recent'], '函数 without spaces')
  t.strictSame(objectiveSymbolHints('edit db.py (tests) and utils.py function'), [], '*.py tokens are skipped')
  t.strictSame(objectiveSymbolHints('x functions and y functional'), [], 'marker words must be whole words')
  t.strictSame(objectiveSymbolHints('fix bug (urgent)'), [], '`(` must follow the name directly')
  t.strictSame(objectiveSymbolHints('f() and f() again'), ['f'], 'deduplicated')
  t.strictSame(objectiveSymbolHints('9lives() _private() $x()'), ['_private', 'x'], 'identifiers start with a letter or underscore')
  t.strictSame(objectiveSymbolHints(''), [])
})

t.test('pythonModules', async t => {
  t.strictSame(pythonModules({ kind: 'file_set', resources: ['notes_app/db.py'] }), ['notes_app.db'])
  t.strictSame(pythonModules({ kind: 'file_set', resources: ['pkg/__init__.py'] }), ['pkg'])
  t.strictSame(pythonModules({ kind: 'file_set', resources: ['./a//b/c.py', 'a/b/c.py', 'README.md', '__init__.py', '/abs/x.py', 'd.py', 7 as unknown as string] }), ['a.b.c', 'd'],
    'normalised, deduplicated; non-.py, top-level __init__ and absolute paths give no module')
  t.strictSame(pythonModules({ kind: 'entity_set', entities: ['x.py'] }), [])
})

t.test('hints are qualified with every module of the scope', async t => {
  const a = intent('ia', 'A', 'add sort_by_recent() function', undefined, ['notes_app/db.py', 'notes_app/api/__init__.py', 'README.md'])
  const c = duplicateCandidate(a, a, SHARED)
  t.strictSame((c?.current as { symbols: string[] }).symbols, ['notes_app.db.sort_by_recent', 'notes_app.api.sort_by_recent'])
  const dotted = intent('ib', 'B', 'call db.connect() now')
  t.strictSame((duplicateCandidate(dotted, dotted, SHARED)?.current as { symbols: string[] }).symbols, ['db.connect'], 'dotted hints are kept as written')
  const noPy = intent('ic', 'C', 'add render() function', undefined, ['web/app.ts'])
  t.strictSame((duplicateCandidate(noPy, noPy, [])?.current as { symbols: string[] }).symbols, ['render'], 'no .py resources: bare name kept')
  const hint = intent('id', 'D', 'add sort_by_recent() function')
  const declared = intent('ie', 'E', 'whatever', { affects_symbols: ['notes_app.db.sort_by_recent'] })
  t.equal(duplicateCandidate(hint, declared, SHARED)?.reason, 'same_symbol', 'a mined hint matches a declared symbol')
})

t.test('large hint lists: deduplicated in first-occurrence order, in near-linear time', async t => {
  // Quadratic list scans took ~4 s for 10,000 postconditions; 50,000 would take ~100 s.
  const n = 50000
  const posts = Array.from({ length: n }, (_, i) => `Post  condition ${i % (n / 2)}`) // each twice
  const symbols = Array.from({ length: n }, (_, i) => `mod.sym${i % (n / 2)}`)
  const objective = Array.from({ length: n }, (_, i) => `f${i % (n / 2)}()`).join(' ')
  const ext = { affects_symbols: symbols, intent_semantics: { postconditions: posts } }
  const start = process.hrtime.bigint()
  const c = duplicateCandidate(intent('ib', 'B', objective, ext, ['pkg/m.py']), intent('ia', 'A', 'x', ext), SHARED)
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  const cur = c?.current as { symbols: string[], postconditions: string[] }
  t.equal(cur.postconditions.length, n / 2, 'normalised duplicates dropped')
  t.equal(cur.postconditions[0], 'Post  condition 0', 'the first spelling is kept')
  t.equal(cur.symbols.length, n / 2 + n / 2, 'affects symbols plus module-qualified objective hints, deduplicated')
  t.equal(cur.symbols[n / 2], 'pkg.m.f0')
  t.equal((c?.matched_symbols as string[]).length, n / 2)
  t.equal(objectiveSymbolHints(objective).length, n / 2)
  t.strictSame(pythonModules({ kind: 'file_set', resources: Array.from({ length: n }, (_, i) => `p/m${i % 3}.py`) }), ['p.m0', 'p.m1', 'p.m2'])
  t.ok(ms < 10000, `took ${ms.toFixed(0)} ms`)
})
