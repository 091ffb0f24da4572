import t from 'tap'
import { formatTs, formatTsOffset, isStrictRfc3339, parseTs } from '../../src/protocol/time.js'

// Expected strings come from Python: datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
t.test('formatTs writes Python isoformat with Z', async t => {
  t.equal(formatTs(1777425825123), '2026-04-29T01:23:45.123000Z')
  t.equal(formatTs(1777425825000), '2026-04-29T01:23:45Z', 'no fraction on a whole second')
  t.equal(formatTs(0), '1970-01-01T00:00:00Z')
  t.equal(formatTs(1), '1970-01-01T00:00:00.001000Z')
  t.equal(formatTs(999), '1970-01-01T00:00:00.999000Z')
  t.equal(formatTs(1777425825123.9), '2026-04-29T01:23:45.123000Z', 'fractional ms truncated')
  t.equal(formatTs(-62135596800000), '0001-01-01T00:00:00Z')
  t.equal(formatTs(253402300799999), '9999-12-31T23:59:59.999000Z')
})

t.test('formatTsOffset uses +00:00', async t => {
  t.equal(formatTsOffset(1777425825123), '2026-04-29T01:23:45.123000+00:00')
  t.equal(formatTsOffset(1777425825000), '2026-04-29T01:23:45+00:00')
})

t.test('format refuses times Python cannot represent', async t => {
  t.throws(() => formatTs(NaN), RangeError)
  t.throws(() => formatTs(Infinity), RangeError)
  t.throws(() => formatTs(253402300800000), RangeError)
  t.throws(() => formatTsOffset(-62135596800001), RangeError)
})

t.test('parseTs reads strict RFC 3339', async t => {
  t.equal(parseTs('2026-04-29T01:23:45.123456Z'), 1777425825123)
  t.equal(parseTs('2026-04-29T01:23:45Z'), 1777425825000)
  t.equal(parseTs('2026-04-29t01:23:45z'), 1777425825000, 'lower-case t and z')
  t.equal(parseTs('2026-04-29T01:23:45.9Z'), 1777425825900)
  t.equal(parseTs('2026-04-29T01:23:45+02:30'), 1777416825000)
  t.equal(parseTs('2024-02-29T00:00:00-05:00'), 1709182800000, 'leap day, negative offset')
  t.equal(parseTs('0001-01-01T00:00:00Z'), -62135596800000, 'year 1 is not mapped to 1901')
  t.equal(parseTs('0099-06-01T00:00:00Z'), Date.parse('0099-06-01T00:00:00Z'))
  for (const ms of [0, 1, 1777425825123, 1777425825000]) {
    t.equal(parseTs(formatTs(ms)), ms, `round trip ${ms}`)
    t.equal(parseTs(formatTsOffset(ms)), ms, `round trip offset ${ms}`)
  }
})

t.test('parseTs and isStrictRfc3339 refuse everything else', async t => {
  const bad = [
    '', 'now', '2026-04-29', '2026-04-29T01:23:45', '2026-04-29 01:23:45Z', '2026-04-29T01:23Z',
    '2026-4-29T01:23:45Z', '2026-04-29T01:23:45.Z', '2026-04-29T01:23:45+0200', '2026-04-29T01:23:45+02',
    '0000-01-01T00:00:00Z', '2026-13-01T00:00:00Z', '2026-00-01T00:00:00Z', '2026-02-29T00:00:00Z',
    '1900-02-29T00:00:00Z', '2026-04-31T00:00:00Z', '2026-04-00T00:00:00Z', '2026-04-29T24:00:00Z',
    '2026-04-29T23:60:00Z', '2026-04-29T23:59:60Z', '2026-04-29T01:23:45+24:00', '2026-04-29T01:23:45-01:60',
    ' 2026-04-29T01:23:45Z', '2026-04-29T01:23:45Z\n', '2026-04-29T01:23:45.' + '1'.repeat(60) + 'Z'
  ]
  for (const s of bad) {
    t.equal(parseTs(s), undefined, JSON.stringify(s))
    t.equal(isStrictRfc3339(s), false, JSON.stringify(s))
  }
  t.equal(parseTs(12 as unknown as string), undefined, 'non-string input')
  t.equal(isStrictRfc3339('2000-02-29T12:00:00.5-00:00'), true, 'leap year 2000')
  t.equal(isStrictRfc3339('2026-04-29T01:23:45.123456Z'), true)
})
