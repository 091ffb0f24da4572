import { Coordinator } from '../coordinator/index.js'
import type { CoordinatorConfig, CoordinatorSnapshot, CoreInput, Output } from '../coordinator/types.js'
import type { ManagedSessionStore } from './managed.js'
import type { SessionStore } from './types.js'

export interface RecoveredSession {
  readonly coordinator: Coordinator
  /** The outputs of the `recovered` input (COORDINATOR_STATUS{event:'recovered'} …), to send once clients are back. */
  readonly outputs: readonly Output[]
}

/**
 * Rebuilds a session after a restart: its latest snapshot, or a fresh
 * coordinator when there is only a journal, then every journal entry
 * replayed through `apply` (their outputs went out before and are dropped).
 * Then a new epoch starts: the `recovered` input (epoch + 1, reconnect grace)
 * is applied and journaled, and a fresh snapshot is saved so that a journal
 * never spans two epochs.
 *
 * Returns undefined when nothing is stored for the session. Throws
 * `StoreDamagedError` when the stored state is damaged.
 */
export function recoverSession (
  store: SessionStore,
  sessionId: string,
  config: CoordinatorConfig,
  now: number,
  graceSec: number
): RecoveredSession | undefined {
  const coordinator = replaySession(store, sessionId, config)
  if (coordinator === undefined) return undefined
  const recovered: CoreInput = { kind: 'recovered', now, graceSec }
  const { outputs } = coordinator.apply(recovered)
  store.append(sessionId, [recovered])
  store.saveSnapshot(sessionId, coordinator.snapshot(now))
  return { coordinator, outputs }
}

/**
 * The stored state of a session as a coordinator: the snapshot plus the
 * journal replayed, with no new epoch (for a session that was unloaded, not
 * lost). Undefined when nothing is stored.
 */
export function replaySession (store: SessionStore, sessionId: string, config: CoordinatorConfig): Coordinator | undefined {
  const start = (snapshot: unknown): Coordinator => snapshot === undefined
    ? new Coordinator(config)
    : Coordinator.restore(snapshot as CoordinatorSnapshot, config)

  if (isReplayable(store)) {
    // Streams the journal into the core, so a long journal is never held in memory as a whole.
    let coordinator: Coordinator | undefined
    let hasSnapshot = false
    const entries = store.replay(sessionId, snapshot => {
      hasSnapshot = snapshot !== undefined
      const c = start(snapshot)
      coordinator = c
      return input => { c.apply(input) }
    })
    return entries === undefined || (entries === 0 && !hasSnapshot) ? undefined : coordinator
  }

  const stored = store.load(sessionId)
  if (stored === undefined || (stored.snapshot === undefined && stored.journal.length === 0)) return undefined
  const coordinator = start(stored.snapshot)
  for (const input of stored.journal) coordinator.apply(input)
  return coordinator
}

function isReplayable (store: SessionStore): store is SessionStore & Pick<ManagedSessionStore, 'replay'> {
  return typeof (store as Partial<ManagedSessionStore>).replay === 'function'
}
