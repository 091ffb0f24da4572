/**
 * Text measures shared with the Python runtime: protocol.md §11.3 gives
 * FILE_LIST `size` as the length in characters, which Python's `len` counts
 * in code points (a JavaScript string's `length` counts UTF-16 units).
 */

const SURROGATE = /[\uD800-\uDFFF]/

/** Code points in `s` (a lone surrogate counts as one, as in Python). `length` when there is no surrogate. */
export function charLength (s: string): number {
  if (!SURROGATE.test(s)) return s.length
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1)
      if (d >= 0xdc00 && d <= 0xdfff) i++
    }
    n++
  }
  return n
}
