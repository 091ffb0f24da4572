/**
 * A small binary min-heap of (time, id) pairs with lazy deletion: callers
 * push a new pair whenever a deadline changes and skip pairs that no longer
 * match the record when they pop. Used for intent TTLs so that `tick` and
 * `nextDeadline` never scan all intents.
 */
export class DeadlineHeap {
  #t: number[] = []
  #id: string[] = []

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
