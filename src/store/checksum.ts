import { crc32 } from 'node:zlib'

/**
 * The checksum of one stored row (SQLite and PostgreSQL stores alike):
 * CRC-32 (IEEE, as zlib computes it) of the UTF-8 text
 * `<session id> NUL <seq> NUL <body>`, an unsigned 32-bit integer. Binding
 * the session id and the sequence number into it also catches a row moved to
 * the wrong place.
 */
export function rowChecksum (sessionId: string, seq: number, body: string): number {
  return crc32(body, crc32(`${sessionId}\u0000${seq}\u0000`))
}
