import { Coordinator } from '../coordinator/index.js'
import type { CoordinatorConfig, CoordinatorSnapshot, CoreInput, Output } from '../coordinator/types.js'
import type { SessionStore } from './types.js'

export interface RecoveredSession {
  readonly coordinator: Coordinator
  /** The outputs of the `recovered` input (COORDINATOR_STATUS{event:'recovered'} …), to send once clients are back. */
  readonly outputs: readonly Output[]
}

/**
 * Rebuilds a session after a restart (or after it was unloaded): its latest
 * snapshot, or a fresh coordinator when there is only a journal, then every
 * journal entry replayed through `apply` (their outputs went out before and
 * are dropped). Then a new epoch starts: the `recovered` input (epoch + 1,
 * reconnect grace) is applied and journaled, and a fresh snapshot is saved so
 * that a journal never spans two epochs.
 *
 * Returns undefined when nothing is stored for the session. Throws
 * `StoreDamagedError` (from `load`) when the stored state is damaged.
 */
export function recoverSession (
  store: SessionStore,
  sessionId: string,
  config: CoordinatorConfig,
  now: number,
  graceSec: number
): RecoveredSession | undefined {
  const stored = store.load(sessionId)
  if (stored === undefined || (stored.snapshot === undefined && stored.journal.length === 0)) return undefined
  const coordinator = stored.snapshot === undefined
    ? new Coordinator(config)
    : Coordinator.restore(stored.snapshot as CoordinatorSnapshot, config)
  for (const input of stored.journal) coordinator.apply(input)
  const recovered: CoreInput = { kind: 'recovered', now, graceSec }
  const { outputs } = coordinator.apply(recovered)
  store.append(sessionId, [recovered])
  store.saveSnapshot(sessionId, coordinator.snapshot(now))
  return { coordinator, outputs }
}
