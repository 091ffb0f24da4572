import { Coordinator } from '../coordinator/index.js'
import type { ApplyResult, CoordinatorConfig, CoordinatorSnapshot, CoreInput, FileEntry, Verdict } from '../coordinator/types.js'
import type { ErrorCode } from '../protocol/error-codes.js'
import type { DashboardView, ViewConflict } from '../coordinator/dashboard-view.js'

/**
 * The part of the coordinator core the server uses (docs/architecture.md).
 * Kept as an interface so the runtime's needs are written down in one place.
 */
export interface SessionCore {
  readonly coordinatorId: string
  readonly closed: boolean
  apply (input: CoreInput): ApplyResult
  /** Would `apply` refuse this HELLO? Read-only (nothing moves, nothing is journaled). */
  helloRefusal (raw: unknown, now: number, verdict?: Verdict): { readonly code: ErrorCode, readonly description: string } | undefined
  snapshot (): unknown
  summary (now: number, workspaceDir: string | null): unknown
  readFile (path: string): { readonly content: string, readonly state_ref: string } | undefined
  listFiles (): readonly FileEntry[]
  /** The dashboard's read-only projection (src/coordinator/dashboard-view.ts). */
  dashboardView (now: number): DashboardView
  dashboardConflict (conflictId: string): ViewConflict | undefined
  nextDeadline (): number | undefined | null
}

export function createCore (config: CoordinatorConfig): SessionCore {
  return new Coordinator(config)
}

/** A core rebuilt from a stored snapshot (or fresh without one) and the journal after it (fleet mode's load). */
export function restoreCore (config: CoordinatorConfig, snapshot: unknown, journal: readonly CoreInput[]): SessionCore {
  const c = snapshot === undefined ? new Coordinator(config) : Coordinator.restore(snapshot as CoordinatorSnapshot, config)
  for (const input of journal) c.apply(input)
  return c
}
