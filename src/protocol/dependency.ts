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

function nonEmptyStrings (v: unknown): string[] {
  const out: string[] = []
  if (Array.isArray(v)) for (const x of v) if (typeof x === 'string' && x !== '' && !out.includes(x)) out.push(x)
  return out
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

function sameOrTail (x: string, y: string): boolean {
  return x === y || tail(x) === tail(y)
}

/** Length in code points, as Python's len(). */
function cpLength (s: string): number {
  return Array.from(s).length
}

/** The more qualified (longer) of two names; `x` on a tie. */
function longer (x: string, y: string): string {
  return cpLength(x) >= cpLength(y) ? x : y
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
 */
export function symbolMatch (a: readonly string[], b: readonly string[]): string[] {
  const out = new Set<string>()
  const bSet = new Set(b)
  const bByTail = new Map<string, string[]>()
  for (const y of b) {
    const t = tail(y)
    const list = bByTail.get(t)
    if (list === undefined) bByTail.set(t, [y])
    else list.push(y)
  }
  for (const x of a) {
    if (bSet.has(x)) out.add(x)
    for (const y of bByTail.get(tail(x)) ?? []) if (y !== x) out.add(longer(x, y))
  }
  const bOwners = b.map(classOwner)
  for (const x of a) {
    const xOwner = classOwner(x)
    for (let j = 0; j < b.length; j++) {
      const y = b[j] as string
      const yOwner = bOwners[j]
      if (xOwner !== undefined && sameOrTail(xOwner, y)) out.add(x)
      if (yOwner !== undefined && sameOrTail(x, yOwner)) out.add(y)
      if (xOwner !== undefined && yOwner !== undefined && sameOrTail(xOwner, yOwner)) out.add(longer(x, y))
    }
  }
  return [...out].sort(compareCodePoints)
}

/**
 * The symbols the importer `file` uses from the editor, plus the symbols the
 * importer's owner plans to start using; null when the importer's use is a
 * wildcard or unknown.
 */
function usedSymbols (editor: DepInfo, file: string, importer: DepInfo): string[] | null {
  const used = editor.impactSymbols?.get(file)
  if (used === undefined || used === null) return null
  if (importer.dependsOn.length === 0) return used
  const all = [...used]
  for (const s of importer.dependsOn) if (!all.includes(s)) all.push(s)
  return all
}

/** Files of `importer` that `editor`'s edit reaches, sorted. */
function reachedFiles (editor: DepInfo, importer: DepInfo): string[] {
  const out: string[] = []
  for (const f of editor.impact) if (importer.resources.has(f)) out.push(f)
  return out.sort(compareCodePoints)
}

function hits (editor: DepInfo, file: string, importer: DepInfo): boolean {
  if (editor.affects === null) return true
  const used = usedSymbols(editor, file, importer)
  if (used === null) return true
  return symbolMatch(editor.affects, used).length > 0
}

function directionHits (editor: DepInfo, importer: DepInfo): boolean {
  for (const f of editor.impact) {
    if (importer.resources.has(f) && hits(editor, f, importer)) return true
  }
  return false
}

/** The §6.5 verdict (symmetric). Non-file_set scopes never conflict. */
export function dependencyConflict (a: Scope, b: Scope): boolean {
  if (a.kind !== 'file_set' || b.kind !== 'file_set') return false
  const da = depInfo(a)
  const db = depInfo(b)
  return directionHits(da, db) || directionHits(db, da)
}

function directionDetail (editor: DepInfo, importer: DepInfo): Array<{ file: string; symbols: string[] | null }> {
  return reachedFiles(editor, importer).map(file => {
    if (editor.affects === null) return { file, symbols: null }
    const used = usedSymbols(editor, file, importer)
    if (used === null) return { file, symbols: null }
    const clash = symbolMatch(editor.affects, used)
    return { file, symbols: clash.length > 0 ? clash : null }
  })
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
  const ab = directionDetail(da, db)
  const ba = directionDetail(db, da)
  if (ab.length > 0) out.ab = ab
  if (ba.length > 0) out.ba = ba
  return out
}
