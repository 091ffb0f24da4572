/**
 * Validation of workspace file paths: the keys of `payload.file_changes`,
 * FILE_READ paths and anything the runtime mirrors to disk (protocol.md
 * §11.4 TS-REC, §13.6). A path that passes stays inside the workspace
 * directory when joined to it.
 */
import { normalizePath } from './scope.js'

export type PathCheck = { ok: true; path: string } | { ok: false; reason: string }

export const MAX_PATH_LENGTH = 1024
/** Bytes of UTF-8 per path segment: the file-name limit of common file systems. */
export const MAX_SEGMENT_BYTES = 255

// C0 controls (NUL included), DEL and C1 controls
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/
const DRIVE = /^[A-Za-z]:/

/**
 * Check a workspace path and return it normalised (normalizePath rules:
 * one leading `./` stripped, runs of `/` collapsed, trailing `/` stripped).
 * Refused: empty, longer than 1024 characters, control characters, lone
 * surrogates, backslashes, absolute paths, drive letters, `.` or `..`
 * segments, segments longer than 255 UTF-8 bytes.
 */
export function checkWorkspacePath (p: string): PathCheck {
  if (typeof p !== 'string' || p.length === 0) return refuse('empty path')
  if (p.length > MAX_PATH_LENGTH) return refuse(`longer than ${MAX_PATH_LENGTH} characters`)
  if (CONTROL.test(p)) return refuse('control character')
  if (LONE_SURROGATE.test(p)) return refuse('not valid Unicode')
  if (p.includes('\\')) return refuse('backslash')
  if (p.startsWith('/')) return refuse('absolute path')
  if (DRIVE.test(p)) return refuse('drive letter')
  const path = normalizePath(p)
  if (path.length === 0) return refuse('empty path')
  for (const segment of path.split('/')) {
    if (segment === '.' || segment === '..') return refuse(`segment ${JSON.stringify(segment)}`)
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) return refuse(`segment longer than ${MAX_SEGMENT_BYTES} bytes`)
  }
  return { ok: true, path }
}

function refuse (reason: string): PathCheck {
  return { ok: false, reason }
}
