/**
 * The INTENT_CLAIM_STATUS frames received, by claim id, for callers that
 * learn a claim id before or after its status arrives (take_over_task).
 *
 * Contract:
 * - Owns: the most recent statuses (the newest 500 claim ids) and the
 *   callers waiting for one.
 * - Promises: `waitFor()` resolves with the status already received or the
 *   next one to arrive, or with undefined after its timeout; it never
 *   rejects.
 * - Never: sends anything or decides what a status means.
 */
import type { Frame, Timers } from './types.js'

const MAX_CLAIM_STATUSES = 500

export class ClaimStatuses {
  readonly #timers: Timers
  readonly #statuses = new Map<string, Frame>()
  readonly #waiters = new Map<string, Array<(payload: Frame) => void>>()

  constructor (timers: Timers) {
    this.#timers = timers
  }

  /** The status for `claimId`, from what was already received or the next one to arrive; undefined after `timeoutMs`. */
  waitFor (claimId: string, timeoutMs: number): Promise<Frame | undefined> {
    const known = this.#statuses.get(claimId)
    if (known !== undefined) return Promise.resolve(known)
    return new Promise(resolve => {
      const waiters = this.#waiters.get(claimId) ?? []
      const timer = this.#timers.setTimeout(() => {
        const list = this.#waiters.get(claimId)
        if (list !== undefined) {
          const i = list.indexOf(done)
          if (i >= 0) list.splice(i, 1)
          if (list.length === 0) this.#waiters.delete(claimId)
        }
        resolve(undefined)
      }, timeoutMs)
      const done = (status: Frame): void => {
        this.#timers.clearTimeout(timer)
        resolve(status)
      }
      waiters.push(done)
      this.#waiters.set(claimId, waiters)
    })
  }

  /** An INTENT_CLAIM_STATUS payload arrived for `claimId`. */
  record (claimId: string, payload: Frame): void {
    this.#statuses.set(claimId, payload)
    if (this.#statuses.size > MAX_CLAIM_STATUSES) {
      const oldest = this.#statuses.keys().next().value
      if (oldest !== undefined) this.#statuses.delete(oldest)
    }
    const waiters = this.#waiters.get(claimId)
    if (waiters !== undefined) {
      this.#waiters.delete(claimId)
      for (const w of waiters) w(payload)
    }
  }
}
