/**
 * protocol.md §14 scenarios 9–21: intent announce, race lock and supersede.
 * Where §14 offers [PY] and [SPEC] variants, these tests pin the SPEC/TS-REC one.
 */
import t from 'tap'
import {
  Harness,
  assertNoOutput,
  assertRejected,
  assertRelayed,
  audienceIds,
  entitySet,
  fileSet,
  outputsOfType,
  payloadsOfType,
  show
} from '../helpers/mpac.js'
import type { Json, Sent, Tap } from '../helpers/mpac.js'

function activeSummaryIntents (h: Harness): string[] {
  const s = h.c.summary(h.now) as unknown as Json
  const session = (typeof s.session === 'object' && s.session !== null ? s.session : s) as Json
  const list = Array.isArray(session.active_intents) ? session.active_intents as Json[] : []
  return list.map(i => String(i.intent_id)).sort()
}

function staleIntent (t: Tap, s: Sent): Json {
  const p = assertRejected(t, s, 'STALE_INTENT')
  t.equal(s.outputs.length, 1, 'exactly one output: the STALE_INTENT error', { outputs: show(s) })
  t.same(payloadsOfType(s, 'CONFLICT_REPORT'), [], 'no CONFLICT_REPORT')
  return p
}

t.test('9. disjoint announces ⇐ no output; both are relayed to all', async t => {
  const h = new Harness()
  h.join('A', 'B')
  const a = h.announce('A', 'i-a', ['a.py'])
  assertNoOutput(t, a)
  const b = h.announce('B', 'i-b', ['b.py'])
  assertNoOutput(t, b)
  t.equal(h.intentState('i-a'), 'ACTIVE')
  t.equal(h.intentState('i-b'), 'ACTIVE')
  t.same(activeSummaryIntents(h), ['i-a', 'i-b'])
})

t.test('10. race lock: a second principal announcing a held file ⇐ STALE_INTENT', async t => {
  const h = new Harness()
  h.join('A', 'B')
  assertNoOutput(t, h.announce('A', 'i-a', ['db.py']))
  const s = h.announce('B', 'i-b', ['db.py'])
  const p = staleIntent(t, s)
  t.match(p.description, 'intent i-a (principal A)')
  t.match(p.description, 'db.py')
  t.equal(h.intent('i-b'), undefined, 'i-b is not registered')
  t.same(activeSummaryIntents(h), ['i-a'], 'i-b is absent from the summary')
  t.equal(h.intentState('i-a'), 'ACTIVE')
  t.same(h.snap().conflicts, [], 'no conflict')
})

t.test('11. lock release: after the holder withdraws, the file can be announced', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['db.py'])
  staleIntent(t, h.announce('B', 'i-b', ['db.py']))
  assertNoOutput(t, h.withdraw('A', 'i-a'))
  const s = h.announce('B', 'i-b2', ['db.py'])
  assertNoOutput(t, s)
  t.equal(h.intentState('i-b2'), 'ACTIVE')
  t.equal(h.intentState('i-a'), 'WITHDRAWN')
})

t.test('12. normalisation: ./x.py is the same file as x.py ⇐ STALE_INTENT', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', ['x.py'])
  const p = staleIntent(t, h.announce('B', 'i-b', ['./x.py']))
  t.match(p.description, 'intent i-a (principal A)')
  t.equal(h.intent('i-b'), undefined)
})

t.test('13. same-principal retry', async t => {
  await t.test('re-announcing the same file supersedes the old intent and rejects its proposals', async t => {
    const h = new Harness()
    h.join('A')
    const old = h.announce('A', 'old', ['db.py'])
    h.propose('A', 'op-old', 'db.py', 'old')
    t.equal(h.opState('op-old'), 'PROPOSED')
    const s = h.announce('A', 'new', ['db.py'])
    assertRelayed(t, s)
    t.same(payloadsOfType(s, 'PROTOCOL_ERROR'), [], 'no error')
    t.same(payloadsOfType(s, 'CONFLICT_REPORT'), [], 'no CONFLICT_REPORT')
    t.equal(h.intentState('old'), 'SUPERSEDED', 'strict: SUPERSEDED, not WITHDRAWN')
    t.equal(h.intentState('new'), 'ACTIVE')
    const rejects = outputsOfType(s, 'OP_REJECT')
    t.equal(rejects.length, 1, 'one OP_REJECT', { outputs: show(s) })
    t.match(rejects[0]?.frame.payload, { op_id: 'op-old', reason: 'intent_terminated', refers_to: old.id })
    t.same(rejects[0]?.audience, { kind: 'all' })
    t.equal(h.opState('op-old'), 'REJECTED')
  })
  await t.test('control: disjoint files do not supersede', async t => {
    const h = new Harness()
    h.join('A')
    assertNoOutput(t, h.announce('A', 'i-1', ['a.py']))
    assertNoOutput(t, h.announce('A', 'i-2', ['b.py']))
    t.equal(h.intentState('i-1'), 'ACTIVE')
    t.equal(h.intentState('i-2'), 'ACTIVE')
  })
})

t.test('14. anti-stale reference: STALE_INTENT names the live holder, not the superseded one', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-orphan', ['db.py'])
  h.announce('A', 'i-retry', ['db.py'])
  const p = staleIntent(t, h.announce('B', 'i-b', ['db.py']))
  t.match(p.description, 'intent i-retry (principal A)')
  t.notMatch(p.description, 'i-orphan')
})

t.test('15. duplicate candidate on STALE_INTENT', async t => {
  const FILE = 'notes_app/db.py'
  const SYM = 'notes_app.db.sort_by_recent'
  function run (a: Json, b: Json): Json {
    const h = new Harness()
    h.join('A', 'B')
    const sa = { ...fileSet(FILE), ...(a.extensions === undefined ? {} : { extensions: a.extensions }) }
    const sb = { ...fileSet(FILE), ...(b.extensions === undefined ? {} : { extensions: b.extensions }) }
    const ra = h.announce('A', 'i-a', sa, { objective: a.objective ?? 'improve the notes list' })
    if (!ra.accepted) throw new Error('first announce refused')
    const rb = h.announce('B', 'i-b', sb, { objective: b.objective ?? 'tidy the storage layer' })
    const errs = payloadsOfType(rb, 'PROTOCOL_ERROR')
    if (errs.length !== 1 || errs[0]?.error_code !== 'STALE_INTENT') throw new Error(`expected STALE_INTENT, got ${show(rb)}`)
    return errs[0]
  }
  const sem = (s: Json): Json => ({ extensions: { intent_semantics: s } })

  await t.test('identical intent_semantics ⇐ high / same_symbol_and_action', async t => {
    const s = sem({ action: 'add_symbol', targets: [{ symbol: SYM }] })
    const p = run(s, s)
    t.match(p.duplicate_candidate, {
      candidate: true,
      confidence: 'high',
      reason: 'same_symbol_and_action',
      matched_symbols: [SYM],
      verification_required: true,
      other_intent_id: 'i-a',
      other_principal_id: 'A'
    })
    t.same((p.duplicate_candidate as Json).matched_symbols, [SYM])
  })
  await t.test('different symbols ⇐ no duplicate_candidate', async t => {
    const p = run(sem({ action: 'add_symbol', targets: [{ symbol: SYM }] }), sem({ action: 'add_symbol', targets: [{ symbol: 'notes_app.db.purge' }] }))
    t.notOk('duplicate_candidate' in p)
  })
  await t.test('only affects_symbols equal ⇐ medium / same_symbol', async t => {
    const e = { extensions: { affects_symbols: [SYM] } }
    const p = run(e, e)
    t.match(p.duplicate_candidate, { confidence: 'medium', reason: 'same_symbol' })
  })
  await t.test('symbols mined from the objectives ⇐ same_symbol', async t => {
    const p = run({ objective: 'add sort_by_recent() function' }, { objective: 'add sort_by_recent function to db.py' })
    t.match(p.duplicate_candidate, { reason: 'same_symbol', confidence: 'medium' })
    t.match((p.duplicate_candidate as Json).matched_symbols, [SYM])
  })
  await t.test('no shared symbol, equal postconditions and actions ⇐ high / same_postcondition_and_action', async t => {
    const p = run(
      sem({ action: 'fix_bug', symbol: 'notes_app.db.a', postconditions: ['Notes are sorted  by recency'] }),
      sem({ action: 'fix_bug', symbol: 'notes_app.db.b', postconditions: ['notes are SORTED by recency'] })
    )
    t.match(p.duplicate_candidate, { confidence: 'high', reason: 'same_postcondition_and_action', matched_symbols: [] })
    const dc = p.duplicate_candidate as Json
    t.same(dc.matched_symbols, [])
    t.ok(Array.isArray(dc.matched_postconditions) && dc.matched_postconditions.length === 1, 'the matched postcondition is listed')
    t.match(String((dc.matched_postconditions as unknown[])[0]).toLowerCase(), 'sorted by recency')
  })
  await t.test('equal postconditions with one or both actions missing ⇐ medium / same_postcondition', async t => {
    const pc = ['notes are sorted by recency']
    const one = run(sem({ action: 'fix_bug', postconditions: pc }), sem({ postconditions: pc }))
    t.match(one.duplicate_candidate, { confidence: 'medium', reason: 'same_postcondition' })
    const both = run(sem({ postconditions: pc }), sem({ postconditions: pc }))
    t.match(both.duplicate_candidate, { confidence: 'medium', reason: 'same_postcondition' })
  })
  await t.test('equal postconditions or symbols with different actions ⇐ no duplicate_candidate', async t => {
    const pc = ['notes are sorted by recency']
    const p1 = run(sem({ action: 'fix_bug', postconditions: pc }), sem({ action: 'refactor', postconditions: pc }))
    t.notOk('duplicate_candidate' in p1)
    const p2 = run(sem({ action: 'add_symbol', symbol: SYM }), sem({ action: 'remove_symbol', symbol: SYM }))
    t.notOk('duplicate_candidate' in p2)
  })
})

t.test('16. entity_set overlap is advisory: CONFLICT_REPORT to the two parties', async t => {
  const h = new Harness()
  h.join('A', 'B', 'C')
  const a = h.announce('A', 'i-a', entitySet('e1'))
  assertNoOutput(t, a)
  const b = h.announce('B', 'i-b', entitySet('e1'))
  assertRelayed(t, b)
  t.same(payloadsOfType(b, 'PROTOCOL_ERROR'), [], 'no error')
  const reports = outputsOfType(b, 'CONFLICT_REPORT')
  t.equal(reports.length, 1, 'one CONFLICT_REPORT', { outputs: show(b) })
  const r = reports[0]!
  t.match(r.frame.payload, {
    category: 'scope_overlap',
    severity: 'medium',
    principal_a: 'B',
    principal_b: 'A',
    intent_a: 'i-b',
    intent_b: 'i-a',
    basis: { kind: 'rule' },
    based_on_watermark: { kind: 'lamport_clock', value: Number },
    description: String
  })
  const p = r.frame.payload as Json
  t.same([...(p.related_intents as string[])].sort(), ['i-a', 'i-b'])
  t.type(p.conflict_id, 'string')
  t.same(audienceIds(r.audience), ['A', 'B'], 'sent only to A and B (no owner or arbiter present)')
  t.equal(h.intentState('i-b'), 'ACTIVE')
  t.equal(h.conflictState(String(p.conflict_id)), 'OPEN')
})

t.test('17. dependency breakage', async t => {
  function setup (t: Tap, aExt: Json, bExt: Json = {}): { h: Harness, b: Sent } {
    const h = new Harness()
    h.join('A', 'B')
    const a = h.announce('A', 'i-a', { kind: 'file_set', resources: ['utils.py'], extensions: { impact: ['main.py'], ...aExt } })
    assertNoOutput(t, a)
    const scope: Json = { kind: 'file_set', resources: ['main.py'] }
    if (Object.keys(bExt).length > 0) scope.extensions = bExt
    const b = h.announce('B', 'i-b', scope)
    return { h, b }
  }
  await t.test('an impacted importer ⇐ CONFLICT_REPORT dependency_breakage, no error', async t => {
    const { b } = setup(t, {})
    assertRelayed(t, b)
    const reports = payloadsOfType(b, 'CONFLICT_REPORT')
    t.equal(reports.length, 1, 'one report', { outputs: show(b) })
    t.match(reports[0], { category: 'dependency_breakage' })
    t.same([reports[0]?.principal_a, reports[0]?.principal_b].sort(), ['A', 'B'])
  })
  await t.test('declared symbols ⇐ dependency_detail names the used symbol', async t => {
    const { b } = setup(t, { impact_symbols: { 'main.py': ['utils.foo', 'utils.bar'] }, affects_symbols: ['utils.foo'] })
    const reports = payloadsOfType(b, 'CONFLICT_REPORT')
    t.equal(reports.length, 1, { outputs: show(b) })
    t.same(reports[0]?.dependency_detail, { ba: [{ file: 'main.py', symbols: ['utils.foo'] }] })
  })
  await t.test('disjoint symbols ⇐ no conflict', async t => {
    const { h, b } = setup(t, { impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] })
    assertNoOutput(t, b)
    t.same(h.snap().conflicts, [])
  })
})

t.test('18. dependency precision table (through the coordinator)', async t => {
  // A edits `file` and declares extensions; B announces `other`. Returns B's reports.
  function pair (aScope: Json, bScope: Json): Json[] {
    const h = new Harness()
    h.join('A', 'B')
    const a = h.announce('A', 'i-a', aScope)
    if (!a.accepted) throw new Error('A refused')
    const b = h.announce('B', 'i-b', bScope)
    if (!b.accepted) throw new Error(`B refused: ${show(b)}`)
    return payloadsOfType(b, 'CONFLICT_REPORT')
  }
  const A = (ext: Json, file = 'utils.py'): Json => ({ kind: 'file_set', resources: [file], extensions: ext })
  const depCount = (rs: Json[]): number => rs.filter(r => r.category === 'dependency_breakage').length

  t.equal(depCount(pair(A({ impact: ['main.py'], impact_symbols: { 'main.py': null }, affects_symbols: ['utils.foo'] }), fileSet('main.py'))), 1, 'wildcard importer → conflict')
  t.equal(depCount(pair(A({ impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] } }), fileSet('main.py'))), 1, 'missing affects_symbols → conflict')
  t.equal(depCount(pair(A({ impact: ['main.py'], affects_symbols: ['utils.foo'] }), fileSet('main.py'))), 1, 'missing impact_symbols → conflict')
  const bare = pair(A({ impact: ['views.py'], impact_symbols: { 'views.py': ['models.Note'] }, affects_symbols: ['Note'] }, 'models.py'), fileSet('views.py'))
  t.equal(depCount(bare), 1, 'bare Note vs models.Note → conflict')
  t.same(bare[0]?.dependency_detail, { ba: [{ file: 'views.py', symbols: ['models.Note'] }] }, 'reported with the longer name')
  t.equal(depCount(pair(A({ impact: ['views.py'], impact_symbols: { 'views.py': ['models.User'] }, affects_symbols: ['Note'] }, 'models.py'), fileSet('views.py'))), 0, 'Note vs models.User → none')
  const owner = pair(A({ impact: ['views.py'], impact_symbols: { 'views.py': ['notes_app.models.Note'] }, affects_symbols: ['Note.archived'] }, 'notes_app/models.py'), fileSet('views.py'))
  t.equal(depCount(owner), 1, 'Note.archived vs notes_app.models.Note → conflict')
  t.same(owner[0]?.dependency_detail, { ba: [{ file: 'views.py', symbols: ['Note.archived'] }] }, 'reported as Note.archived')
  t.equal(depCount(pair(A({ impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] }), fileSet('main.py'))), 0, 'disjoint symbols → none')
  t.equal(depCount(pair(
    A({ impact: ['main.py'], impact_symbols: { 'main.py': ['utils.bar'] }, affects_symbols: ['utils.foo'] }),
    { kind: 'file_set', resources: ['main.py'], extensions: { depends_on_symbols: ['utils.foo'] } }
  )), 1, 'depends_on_symbols restores a future-use conflict')

  // one safe importer plus one wildcard importer, chosen per claimed file
  const h = new Harness()
  h.join('A', 'B', 'C')
  h.announce('A', 'i-a', A({ impact: ['main.py', 'cli.py'], impact_symbols: { 'main.py': ['utils.bar'], 'cli.py': null }, affects_symbols: ['utils.foo'] }))
  const safe = h.announce('B', 'i-b', fileSet('main.py'))
  t.equal(payloadsOfType(safe, 'CONFLICT_REPORT').length, 0, 'the safe importer → none')
  const wild = h.announce('C', 'i-c', fileSet('cli.py'))
  t.equal(depCount(payloadsOfType(wild, 'CONFLICT_REPORT')), 1, 'the wildcard importer → conflict')

  t.same(pair(
    { kind: 'entity_set', entities: ['e1'], extensions: { impact: ['e2'] } },
    entitySet('e2')
  ), [], 'non-file_set kinds → never a dependency conflict')
})

t.test('19. INTENT_UPDATE expansion reports the new overlap once', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-a', entitySet('e1'))
  assertNoOutput(t, h.announce('B', 'i-b', entitySet('e2')))
  const u = h.update('B', 'i-b', { scope: entitySet('e1', 'e2') })
  assertRelayed(t, u)
  const reports = payloadsOfType(u, 'CONFLICT_REPORT')
  t.equal(reports.length, 1, 'one CONFLICT_REPORT', { outputs: show(u) })
  t.match(reports[0], { category: 'scope_overlap', principal_a: 'B', intent_a: 'i-b', principal_b: 'A', intent_b: 'i-a' })
  const again = h.update('B', 'i-b', { scope: entitySet('e1', 'e2') })
  assertNoOutput(t, again)
  t.equal(h.snap().conflicts.length, 1, 'no duplicate conflict')
})

t.test('20. update or withdraw by a non-owner ⇐ AUTHORIZATION_FAILED, nothing relayed', async t => {
  await t.test('INTENT_UPDATE', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['a.py'])
    const before = h.intent('i-a')
    const s = h.update('B', 'i-a', { objective: 'hijack', scope: fileSet('a.py', 'z.py') })
    assertRejected(t, s, 'AUTHORIZATION_FAILED')
    t.same(h.intent('i-a'), before, 'the intent is unchanged')
  })
  await t.test('INTENT_WITHDRAW', async t => {
    const h = new Harness()
    h.join('A', 'B')
    h.announce('A', 'i-a', ['a.py'])
    const s = h.withdraw('B', 'i-a')
    assertRejected(t, s, 'AUTHORIZATION_FAILED')
    t.equal(h.intentState('i-a'), 'ACTIVE')
  })
})

t.test('21. duplicate intent id from another principal ⇐ INVALID_REFERENCE', async t => {
  const h = new Harness()
  h.join('A', 'B')
  h.announce('A', 'i-1', ['a.py'])
  const s = h.announce('B', 'i-1', ['z.py'])
  assertRejected(t, s, 'INVALID_REFERENCE')
  const i = h.intent('i-1')
  t.equal(i?.principal_id, 'A', 'i-1 stays A\'s')
  t.same(i?.scope, fileSet('a.py'))
  t.equal(i?.state, 'ACTIVE')
})
