/**
 * A small binary min-heap of (time, id) pairs with lazy deletion: callers
 * push a new pair whenever a deadline changes and skip pairs that no longer
 * match the record when they pop. Used for intent TTLs so that `tick` and
 * `nextDeadline` never scan all intents.
 */
export class DeadlineHeap {
  #t: number[] = []
  #id: string[] = []
  #limit = 1024

  get size (): number { return this.#t.length }

  push (t: number, id: string): void {
    const ts = this.#t
    const ids = this.#id
    let i = ts.length
    ts.push(t)
    ids.push(id)
    while (i > 0) {
      const p = (i - 1) >> 1
      if ((ts[p] as number) <= t) break
      ts[i] = ts[p] as number
      ids[i] = ids[p] as string
      i = p
    }
    ts[i] = t
    ids[i] = id
  }

  /**
   * `push`, then, when stale pairs may dominate (the heap doubled since the
   * last compaction), rebuild it from the pairs `current` accepts, one per id.
   * Amortised O(1) per push; keeps a heap whose records keep changing
   * deadlines (repeated TTL updates) from growing without bound.
   */
  pushCompacting (t: number, id: string, current: (t: number, id: string) => boolean): void {
    this.push(t, id)
    if (this.#t.length <= this.#limit) return
    const ts = this.#t
    const ids = this.#id
    this.clear()
    const kept = new Set<string>()
    for (let i = 0; i < ts.length; i++) {
      const pid = ids[i] as string
      const pt = ts[i] as number
      if (!kept.has(pid) && current(pt, pid)) {
        kept.add(pid)
        this.push(pt, pid)
      }
    }
    this.#limit = 2 * this.#t.length + 1024
  }

  peekTime (): number | undefined { return this.#t[0] }
  peekId (): string | undefined { return this.#id[0] }

  pop (): void {
    const ts = this.#t
    const ids = this.#id
    const lastT = ts.pop() as number
    const lastId = ids.pop() as string
    const n = ts.length
    if (n === 0) return
    let i = 0
    for (;;) {
      const l = 2 * i + 1
      if (l >= n) break
      const r = l + 1
      const c = r < n && (ts[r] as number) < (ts[l] as number) ? r : l
      if ((ts[c] as number) >= lastT) break
      ts[i] = ts[c] as number
      ids[i] = ids[c] as string
      i = c
    }
    ts[i] = lastT
    ids[i] = lastId
  }

  clear (): void {
    this.#t = []
    this.#id = []
  }
}
