/**
 * Dependency-breakage detection between two file_set scopes
 * (protocol.md §6.5, a Python-runtime extension of SPEC §17.5).
 *
 * Clients put the inputs in `scope.extensions`:
 *   impact             string[]                    files importing from this scope's files
 *   impact_symbols     {file: string[] | null}     per importer, the qualified symbols it uses
 *   affects_symbols    string[]                    symbols this edit changes (absent/empty: all)
 *   depends_on_symbols string[]                    symbols of other files this scope will start using
 *
 * The caller runs this only for pairs that do not overlap directly.
 */
import { compareCodePoints, normalizePath, type Scope } from './scope.js'
import { charLength } from './text.js'

export interface DependencyDetail {
  ab?: Array<{ file: string; symbols: string[] | null }>
  ba?: Array<{ file: string; symbols: string[] | null }>
}

interface DepInfo {
  resources: Set<string>
  impact: Set<string>
  /** null: undeclared or empty, meaning "assume every symbol". */
  affects: string[] | null
  /** keyed by normalised importer path; null value: wildcard. */
  impactSymbols: Map<string, string[] | null> | null
  dependsOn: string[]
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function pathSet (v: unknown): Set<string> {
  const out = new Set<string>()
  if (Array.isArray(v)) for (const x of v) if (typeof x === 'string') out.add(normalizePath(x))
  return out
}

/** Distinct non-empty strings, first occurrence order. */
function nonEmptyStrings (v: unknown): string[] {
  const out = new Set<string>()
  if (Array.isArray(v)) for (const x of v) if (typeof x === 'string' && x !== '') out.add(x)
  return [...out]
}

function depInfo (scope: Scope): DepInfo {
  const ext = isRecord(scope.extensions) ? scope.extensions : {}
  const affects = nonEmptyStrings(ext.affects_symbols)
  let impactSymbols: Map<string, string[] | null> | null = null
  if (isRecord(ext.impact_symbols)) {
    impactSymbols = new Map()
    for (const [key, value] of Object.entries(ext.impact_symbols)) {
      const norm = normalizePath(key)
      // An exactly normalised key wins over a spelling that merely normalises to it.
      if (impactSymbols.has(norm) && key !== norm) continue
      impactSymbols.set(norm, Array.isArray(value) ? value.filter((s): s is string => typeof s === 'string') : null)
    }
  }
  return {
    resources: pathSet(scope.resources),
    impact: pathSet(ext.impact),
    affects: affects.length > 0 ? affects : null,
    impactSymbols,
    dependsOn: nonEmptyStrings(ext.depends_on_symbols)
  }
}

function tail (s: string): string {
  const i = s.lastIndexOf('.')
  return i < 0 ? s : s.slice(i + 1)
}

const UPPER_START = /^\p{Lu}/u

/** Everything before the last segment, when the second-to-last segment looks like a class name. */
function classOwner (s: string): string | undefined {
  const i = s.lastIndexOf('.')
  if (i < 0) return undefined
  const owner = s.slice(0, i)
  return UPPER_START.test(tail(owner)) ? owner : undefined
}


/**
 * Per key, the shortest member (by code points) and the shortest length
 * among the other members: enough to ask "is there a member other than `x`
 * no longer than L?" in O(1).
 */
interface Shortest { v: string, len: number, other: number }

function addShortest (m: Map<string, Shortest>, key: string, v: string, len: number): void {
  const e = m.get(key)
  if (e === undefined) m.set(key, { v, len, other: Infinity })
  else if (len < e.len) { e.other = e.len; e.v = v; e.len = len } else if (len < e.other) e.other = len
}

/** The shortest length among the members of `e` other than `x` (members are distinct). */
function shortestBesides (e: Shortest | undefined, x: string): number {
  if (e === undefined) return Infinity
  return e.v === x ? e.other : e.len
}

interface Side {
  names: Set<string>
  /** last segment → shortest names with that last segment */
  byTail: Map<string, Shortest>
  /** last segment of the class owner → shortest names with such an owner */
  byOwnerTail: Map<string, Shortest>
  /** the same groupings with every member and its length */
  tailGroups: Map<string, Array<[string, number]>>
  ownerTailGroups: Map<string, Array<[string, number]>>
}

function addToGroup (m: Map<string, Array<[string, number]>>, key: string, v: string, len: number): void {
  const g = m.get(key)
  if (g === undefined) m.set(key, [[v, len]])
  else g.push([v, len])
}

function side (names: readonly string[]): Side {
  const set = new Set(names)
  const s: Side = { names: set, byTail: new Map(), byOwnerTail: new Map(), tailGroups: new Map(), ownerTailGroups: new Map() }
  for (const x of set) {
    const len = charLength(x)
    const t = tail(x)
    addShortest(s.byTail, t, x, len)
    addToGroup(s.tailGroups, t, x, len)
    const owner = classOwner(x)
    if (owner !== undefined) {
      const ot = tail(owner)
      addShortest(s.byOwnerTail, ot, x, len)
      addToGroup(s.ownerTailGroups, ot, x, len)
    }
  }
  return s
}

/**
 * Symbols shared by an editor's `affects` (`a`) and an importer's used
 * symbols (`b`), sorted by code point. Three layers (§6.5):
 *   1. exact equality;
 *   2. tail tolerance: equal last dotted segments match (`Note` ~ `models.Note`),
 *      reported as the longer name;
 *   3. class-owner tolerance: `Note.archived` has owner `Note` (its
 *      second-to-last segment is capitalised); an owner matches a symbol that
 *      equals it or shares its last segment, so `Note.archived` matches
 *      `notes_app.models.Note` and is reported as `Note.archived`. When both
 *      sides have matching owners (`Note.a` ~ `models.Note.b`) the longer
 *      name is reported. Lowercase owners (`utils.foo` ~ `utils.bar`) never
 *      collapse.
 * "Longer" counts code points; on a tie the `a` name is reported.
 *
 * Every layer is a rule on one pair (x from `a`, y from `b`), decided here
 * without enumerating the pairs: names are indexed by last segment and by
 * the last segment of their class owner, and "x is reported as the longer
 * of some partner" only needs the shortest partner. O((|a| + |b|) · name
 * length) plus the final sort; the result is a union over the elements of
 * `b`, so symbolMatch(a, b ∪ c) = symbolMatch(a, b) ∪ symbolMatch(a, c).
 */
export function symbolMatch (a: readonly string[], b: readonly string[]): string[] {
  if (a.length === 0 || b.length === 0) return []
  return matchSides(side(a), side(b))
}

function matchSides (A: Side, B: Side): string[] {
  const out = new Set<string>()
  // Names of `a`: only those sharing a key with some name of `b` can match,
  // so walk b's keys and a's groups (`a` may be indexed once and matched
  // against many small `b`s).
  for (const [t, shortest] of B.byTail) {
    for (const [x, len] of A.tailGroups.get(t) ?? []) {
      // 1. exact, or 2. x is the longer of a tail pair
      if (B.names.has(x) || shortestBesides(shortest, x) <= len) out.add(x)
    }
    // 3. x's owner matches some y (y equal to it or sharing its last segment)
    for (const [x] of A.ownerTailGroups.get(t) ?? []) out.add(x)
  }
  for (const [ot, shortest] of B.byOwnerTail) {
    // 3. both owners match and x is the longer name
    for (const [x, len] of A.ownerTailGroups.get(ot) ?? []) if (shortest.len <= len) out.add(x)
  }
  // Names of `b`.
  for (const y of B.names) {
    if (out.has(y)) continue
    const len = charLength(y)
    if (shortestBesides(A.byTail.get(tail(y)), y) < len) { out.add(y); continue } // 2. y is strictly longer
    const owner = classOwner(y)
    if (owner === undefined) continue
    const ot = tail(owner)
    if (A.byTail.has(ot)) out.add(y) // 3. y's owner matches some x
    else if ((A.byOwnerTail.get(ot)?.len ?? Infinity) < len) out.add(y) // 3. both owners, y strictly longer
  }
  return [...out].sort(compareCodePoints)
}

/**
 * One direction of the §6.5 test: `editor`'s edit against the files of
 * `importer` it reaches. The editor's affected symbols are indexed once.
 * The importer owner's planned uses (depends_on) are matched once too and
 * merged into every file's result: symbolMatch distributes over unions of
 * its second argument, so this equals matching each file's used symbols
 * plus the planned uses.
 */
class Direction {
  private readonly affects: Side | null
  private planned: string[] | undefined

  constructor (private readonly editor: DepInfo, private readonly importer: DepInfo) {
    this.affects = editor.affects === null ? null : side(editor.affects)
  }

  private plannedClash (): string[] {
    if (this.planned === undefined) {
      const deps = this.importer.dependsOn
      this.planned = this.affects === null || deps.length === 0 ? [] : matchSides(this.affects, side(deps))
    }
    return this.planned
  }

  /** The clashing symbols for one reached file; null for file-level precision (wildcard or unknown use). */
  clash (file: string): string[] | null {
    if (this.affects === null) return null
    const used = this.editor.impactSymbols?.get(file)
    if (used === undefined || used === null) return null
    const direct = used.length === 0 ? [] : matchSides(this.affects, side(used))
    const planned = this.plannedClash()
    if (planned.length === 0) return direct
    if (direct.length === 0) return [...planned]
    return [...new Set([...direct, ...planned])].sort(compareCodePoints)
  }

  /** Files of `importer` that the edit reaches, sorted. */
  reached (): string[] {
    const out: string[] = []
    for (const f of this.editor.impact) if (this.importer.resources.has(f)) out.push(f)
    return out.sort(compareCodePoints)
  }

  hits (): boolean {
    for (const f of this.editor.impact) {
      if (!this.importer.resources.has(f)) continue
      const c = this.clash(f)
      if (c === null || c.length > 0) return true
    }
    return false
  }

  detail (): Array<{ file: string; symbols: string[] | null }> {
    return this.reached().map(file => {
      const c = this.clash(file)
      return { file, symbols: c !== null && c.length > 0 ? c : null }
    })
  }
}

/** The §6.5 verdict (symmetric). Non-file_set scopes never conflict. */
export function dependencyConflict (a: Scope, b: Scope): boolean {
  if (a.kind !== 'file_set' || b.kind !== 'file_set') return false
  const da = depInfo(a)
  const db = depInfo(b)
  return new Direction(da, db).hits() || new Direction(db, da).hits()
}

/**
 * `dependency_detail` for a CONFLICT_REPORT. `a` is the new (announcing)
 * side: `ab` lists what a's edits reach among b's files, `ba` the reverse.
 * Every impacted file is listed, also those that did not clash; `symbols`
 * is null for file-level precision (wildcard, undeclared, or no symbol
 * match). Empty directions are omitted.
 */
export function dependencyDetail (a: Scope, b: Scope): DependencyDetail {
  const out: DependencyDetail = {}
  if (a.kind !== 'file_set' || b.kind !== 'file_set') return out
  const da = depInfo(a)
  const db = depInfo(b)
  const ab = new Direction(da, db).detail()
  const ba = new Direction(db, da).detail()
  if (ab.length > 0) out.ab = ab
  if (ba.length > 0) out.ba = ba
  return out
}
