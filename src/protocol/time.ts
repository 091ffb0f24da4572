/**
 * RFC 3339 timestamps as the Python runtime writes and checks them
 * (protocol.md §2.1 `ts`, §3 step 3b, §4.10 `expires_at`).
 *
 * Times inside the coordinator are epoch milliseconds; these helpers are the
 * only place that turns them into wire strings and back.
 */

/**
 * Python `datetime.isoformat()` of a UTC time with `+00:00` replaced by `Z`:
 * microsecond precision (`…T01:23:45.123000Z`), and no fraction at all when
 * the time falls on a whole second (`…T01:23:45Z`). `ms` is truncated to a
 * whole millisecond. Throws RangeError outside years 0001–9999 (or for NaN).
 */
export function formatTs (ms: number): string {
  return isoBody(ms) + 'Z'
}

/** As formatTs, with the `+00:00` suffix (PY's INTENT_DEFERRED `expires_at`, protocol.md §13.1 W4). */
export function formatTsOffset (ms: number): string {
  return isoBody(ms) + '+00:00'
}

// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z: Python's datetime range.
const MIN_MS = -62_135_596_800_000
const MAX_MS = 253_402_300_799_999

function isoBody (ms: number): string {
  if (!(ms >= MIN_MS && ms <= MAX_MS)) throw new RangeError(`time out of range: ${ms}`)
  // In this range toISOString is always `YYYY-MM-DDTHH:MM:SS.mmmZ`.
  const iso = new Date(Math.trunc(ms)).toISOString()
  const seconds = iso.slice(0, 19)
  const millis = iso.slice(20, 23)
  return millis === '000' ? seconds : `${seconds}.${millis}000`
}

// date 'T' time [fraction] ('Z' | ±hh:mm), the pattern PY's replay check uses.
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

/**
 * True when `ts` is a strict RFC 3339 date-time: `YYYY-MM-DD`, `T`, `hh:mm:ss`,
 * an optional fraction, then `Z` or `±hh:mm`, and every field is in range
 * (a real calendar day, hour ≤ 23, minute and second ≤ 59, offset < 24 h).
 * The leap second `:60` is refused, as Python's parser refuses it.
 */
export function isStrictRfc3339 (ts: string): boolean {
  return parseTs(ts) !== undefined
}

/** Epoch milliseconds of a strict RFC 3339 timestamp (fraction truncated to ms), else undefined. */
export function parseTs (ts: string): number | undefined {
  if (typeof ts !== 'string' || ts.length > 64) return undefined
  const m = RFC3339.exec(ts)
  if (m === null) return undefined
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  const hour = Number(m[4])
  const minute = Number(m[5])
  const second = Number(m[6])
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 59) return undefined
  let offsetMin = 0
  if (m[8] === undefined) {
    const oh = Number(m[10])
    const om = Number(m[11])
    if (oh > 23 || om > 59) return undefined
    offsetMin = (m[9] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const millis = m[7] === undefined ? 0 : Number(m[7].slice(0, 3).padEnd(3, '0'))
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 to 1900-1999.
  const date = new Date(0)
  date.setUTCFullYear(year, month - 1, day)
  date.setUTCHours(hour, minute, second, millis)
  return date.getTime() - offsetMin * 60_000
}

function daysInMonth (y: number, m: number): number {
  if (m === 2) return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28
  return m === 4 || m === 6 || m === 9 || m === 11 ? 30 : 31
}
