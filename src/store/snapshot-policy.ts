import type { JournalStats } from './types.js'

export interface SnapshotPolicyOptions {
  /** Take a snapshot once the journal holds this many entries. Default 5000 (a snapshot rewrites the whole session state, up to ~0.5 MB with the default history bound, so taking one every 1000 entries cost ~12% of server CPU under load). */
  readonly everyEntries?: number
  /** Take a snapshot once the journal holds this many bytes (UTF-8 JSON). Default 4 MiB. */
  readonly everyBytes?: number
}

export const DEFAULT_SNAPSHOT_EVERY_ENTRIES = 5000
export const DEFAULT_SNAPSHOT_EVERY_BYTES = 4 * 1024 * 1024

/**
 * When to compact: after `append`, the runtime asks `due(stats)` and, when it
 * says yes, saves a snapshot (which drops the journal it covers). This bounds
 * both the replay work of a recovery and the journal's share of the disk.
 */
export class SnapshotPolicy {
  readonly everyEntries: number
  readonly everyBytes: number

  constructor (opts: SnapshotPolicyOptions = {}) {
    this.everyEntries = positive('everyEntries', opts.everyEntries ?? DEFAULT_SNAPSHOT_EVERY_ENTRIES)
    this.everyBytes = positive('everyBytes', opts.everyBytes ?? DEFAULT_SNAPSHOT_EVERY_BYTES)
  }

  due (stats: JournalStats): boolean {
    return stats.entriesSinceSnapshot >= this.everyEntries || stats.bytesSinceSnapshot >= this.everyBytes
  }
}

function positive (name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`SnapshotPolicy: ${name} must be a positive integer, got ${value}`)
  }
  return value
}
