/**
 * Indexes over the live (ACTIVE or SUSPENDED) intents, so that overlap
 * detection, the race lock and dependency-breakage detection look only at
 * intents that can possibly match instead of scanning every intent:
 *   - normalised item → intent ids, per indexable kind (file_set, entity_set, task_set);
 *   - kind → intent ids (cross-kind pairs and non-indexable kinds always need an exact test);
 *   - canonical URI → intent ids;
 *   - normalised `extensions.impact` file → intent ids (dependency breakage).
 */
import { isIndexableKind, normalizePath, type NormalizedScope, type Scope } from '../protocol/scope.js'

function addTo (map: Map<string, Set<string>>, key: string, id: string): void {
  let set = map.get(key)
  if (set === undefined) {
    set = new Set()
    map.set(key, set)
  }
  set.add(id)
}

function removeFrom (map: Map<string, Set<string>>, key: string, id: string): void {
  const set = map.get(key)
  if (set === undefined) return
  set.delete(id)
  if (set.size === 0) map.delete(key)
}

/** The normalised `scope.extensions.impact` files of a file_set scope (protocol.md §6.5). */
export function impactFiles (scope: Scope): string[] {
  if (scope.kind !== 'file_set') return []
  const ext = scope.extensions
  const impact = ext !== undefined && ext !== null ? ext.impact : undefined
  if (!Array.isArray(impact)) return []
  const out: string[] = []
  for (const f of impact) if (typeof f === 'string') out.push(normalizePath(f))
  return out
}

export class ScopeIndex {
  readonly #items = new Map<string, Map<string, Set<string>>>()
  readonly #byKind = new Map<string, Set<string>>()
  readonly #uris = new Map<string, Set<string>>()
  readonly #impact = new Map<string, Set<string>>()

  add (id: string, norm: NormalizedScope, impact: readonly string[]): void {
    addTo(this.#byKind, norm.kind, id)
    if (isIndexableKind(norm.kind)) {
      let m = this.#items.get(norm.kind)
      if (m === undefined) {
        m = new Map()
        this.#items.set(norm.kind, m)
      }
      for (const item of norm.items) addTo(m, item, id)
    }
    if (norm.canonicalUris !== undefined) for (const u of norm.canonicalUris) addTo(this.#uris, u, id)
    for (const f of impact) addTo(this.#impact, f, id)
  }

  remove (id: string, norm: NormalizedScope, impact: readonly string[]): void {
    removeFrom(this.#byKind, norm.kind, id)
    const m = this.#items.get(norm.kind)
    if (m !== undefined) for (const item of norm.items) removeFrom(m, item, id)
    if (norm.canonicalUris !== undefined) for (const u of norm.canonicalUris) removeFrom(this.#uris, u, id)
    for (const f of impact) removeFrom(this.#impact, f, id)
  }

  /** Live intents whose scope of this indexable kind contains the item. */
  holders (kind: string, item: string): ReadonlySet<string> | undefined {
    return this.#items.get(kind)?.get(item)
  }

  /**
   * Every live intent that may overlap `norm` (a superset; the caller applies
   * `scopesOverlap`): same-kind item hits, canonical-URI hits, every intent of
   * another kind (cross-kind pairs are judged pairwise), and every intent of
   * the same kind when that kind is not indexable.
   */
  overlapCandidates (norm: NormalizedScope, out: Set<string>): void {
    for (const [kind, ids] of this.#byKind) {
      if (kind !== norm.kind || !isIndexableKind(kind)) for (const id of ids) out.add(id)
    }
    if (isIndexableKind(norm.kind)) {
      const m = this.#items.get(norm.kind)
      if (m !== undefined) {
        for (const item of norm.items) {
          const ids = m.get(item)
          if (ids !== undefined) for (const id of ids) out.add(id)
        }
      }
    }
    if (norm.canonicalUris !== undefined) {
      for (const u of norm.canonicalUris) {
        const ids = this.#uris.get(u)
        if (ids !== undefined) for (const id of ids) out.add(id)
      }
    }
  }

  /**
   * Live file_set intents that a dependency-breakage test can flag against
   * a file_set scope with these items and impact files: intents holding one
   * of `impact`, and intents whose impact names one of `items`.
   */
  dependencyCandidates (items: ReadonlySet<string>, impact: readonly string[], out: Set<string>): void {
    const m = this.#items.get('file_set')
    if (m !== undefined) {
      for (const f of impact) {
        const ids = m.get(f)
        if (ids !== undefined) for (const id of ids) out.add(id)
      }
    }
    for (const f of items) {
      const ids = this.#impact.get(f)
      if (ids !== undefined) for (const id of ids) out.add(id)
    }
  }
}
