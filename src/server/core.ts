import { Coordinator } from '../coordinator/index.js'
import type { ApplyResult, CoordinatorConfig, CoreInput, FileEntry, Verdict } from '../coordinator/types.js'
import type { ErrorCode } from '../protocol/error-codes.js'

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
  nextDeadline (): number | undefined | null
}

export function createCore (config: CoordinatorConfig): SessionCore {
  return new Coordinator(config)
}
