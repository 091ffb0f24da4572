import type { JournalStats } from './types.js'

export interface SnapshotPolicyOptions {
  /** Take a snapshot once the journal holds this many entries. Default 5000 (a snapshot rewrites the whole session state, up to ~0.5 MB with the default history bound, so taking one every 1000 entries cost ~12% of server CPU under load). */
  readonly everyEntries?: number
  /** Take a snapshot once the journal holds this many bytes (UTF-8 JSON). Default 4 MiB. */
  readonly everyBytes?: number
  /**
   * Amortisation: never snapshot before the journal since the last snapshot
   * holds at least this many times the last snapshot's size. Default 1.
   */
  readonly stateFactor?: number
}

export const DEFAULT_SNAPSHOT_EVERY_ENTRIES = 5000
export const DEFAULT_SNAPSHOT_EVERY_BYTES = 4 * 1024 * 1024
export const DEFAULT_SNAPSHOT_STATE_FACTOR = 1

/**
 * When to compact: after `append`, the runtime asks `due(stats)` and, when it
 * says yes, saves a snapshot (which drops the journal it covers). This bounds
 * both the replay work of a recovery and the journal's share of the disk.
 *
 * Amortised against the state size: a snapshot rewrites the whole state, so
 * taking one every few MiB of journal would cost O(state) per few MiB, and a
 * session that grows to S bytes would have written O(S²) bytes of snapshots.
 * The policy therefore also waits until the journal since the last snapshot
 * holds at least `stateFactor` × that snapshot's size: snapshots then cost at
 * most 1/stateFactor of the journal bytes written (linear in total), and a
 * recovery replays at most max(everyBytes, stateFactor × state) of journal.
 */
export class SnapshotPolicy {
  readonly everyEntries: number
  readonly everyBytes: number
  readonly stateFactor: number

  constructor (opts: SnapshotPolicyOptions = {}) {
    this.everyEntries = positive('everyEntries', opts.everyEntries ?? DEFAULT_SNAPSHOT_EVERY_ENTRIES)
    this.everyBytes = positive('everyBytes', opts.everyBytes ?? DEFAULT_SNAPSHOT_EVERY_BYTES)
    const factor = opts.stateFactor ?? DEFAULT_SNAPSHOT_STATE_FACTOR
    if (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 0) {
      throw new RangeError(`SnapshotPolicy: stateFactor must be a non-negative number, got ${factor}`)
    }
    this.stateFactor = factor
  }

  due (stats: JournalStats): boolean {
    if (stats.entriesSinceSnapshot < this.everyEntries && stats.bytesSinceSnapshot < this.everyBytes) return false
    return stats.bytesSinceSnapshot >= this.stateFactor * (stats.snapshotBytes ?? 0)
  }
}

function positive (name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`SnapshotPolicy: ${name} must be a positive integer, got ${value}`)
  }
  return value
}
