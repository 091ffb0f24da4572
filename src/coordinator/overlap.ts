/**
 * The core's scope-overlap test: protocol `scopesOverlap` in strict mode,
 * whose glob decisions are linear-time matching and a bounded glob × glob
 * product search (see "Work bounds" in protocol/scope.ts). Kept as the
 * core's single entry point so call sites say which answer an undecidable
 * (over-budget) glob gets:
 *
 * - `undecided = true` ("potentially overlapping", SPEC §6.2) for conflict
 *   detection and frozen-scope checks;
 * - `undecided = false` where an overlap would grant something (a file write
 *   inside an intent's scope).
 */
import { scopesOverlap, type NormalizedScope } from '../protocol/scope.js'

export { GLOB_MATCH_BUDGET, GLOB_PRODUCT_BUDGET } from '../protocol/scope.js'

/** `scopesOverlap(a, b)` (strict); `undecided` is the answer when a glob budget is exceeded. */
export function overlaps (a: NormalizedScope, b: NormalizedScope, undecided = true): boolean {
  return scopesOverlap(a, b, 'strict', undecided)
}
