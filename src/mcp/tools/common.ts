/**
 * What every tool shares: the `repo_path` argument, the result context
 * (`workspace_dir`, `session_id`), the error result, and the wrapper that
 * turns failures into `isError` results with a stable `code`.
 */
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { z } from 'zod'
import type { ErrorPayload, Reply } from '../client.js'
import { MpacError, ToolFailed } from '../../errors.js'
import type { SessionPool, ShimSession, Summary } from '../session.js'

export interface ToolDeps {
  readonly pool: SessionPool
}

export const repoPathArg = z.string().nullish().describe(
  'Optional path inside the repository to coordinate on. Defaults to MPAC_WORKSPACE_DIR, else the repository around the current directory. When given, it wins over MPAC_WORKSPACE_DIR.'
)

/** Fields present in every result, success or error. */
export const contextShape = {
  status: z.string().describe('Outcome of the call; see each tool for its values. "error" on any failure.'),
  workspace_dir: z.string().optional().describe('The local workspace this call worked on.'),
  session_id: z.string().optional().describe('The coordinator session.'),
  message: z.string().optional().describe('Human-readable explanation.'),
  code: z.string().optional().describe('On failures of the shim itself: a stable MPAC_ERR_* code.'),
  retryable: z.boolean().optional().describe('On failures: true when the same call may succeed if retried shortly.'),
  hint: z.string().optional().describe('On failures: what to do about it.'),
  error_code: z.string().optional().describe('When the coordinator rejected the message: its PROTOCOL_ERROR code (STALE_INTENT, STALE_STATE_REF, AUTHORIZATION_FAILED, …).'),
  errors: z.array(z.record(z.string(), z.unknown())).optional().describe('PROTOCOL_ERROR payloads that refer to this call (only this call).')
}

export const recordList = z.array(z.record(z.string(), z.unknown()))

type Structured = Record<string, unknown>

/** A result with `structuredContent` and a short text: one summary line, then the JSON. */
export function result (structured: Structured, line: string, isError = false): CallToolResult {
  const text = `${line}\n${JSON.stringify(structured)}`
  return isError
    ? { content: [{ type: 'text', text }], structuredContent: structured, isError: true }
    : { content: [{ type: 'text', text }], structuredContent: structured }
}

/** The coordinator rejected the message: fields shared by the tools' "error" results. */
export function rejection (error: ErrorPayload | undefined): Structured {
  if (error === undefined) return {}
  return { error_code: error.error_code, errors: [{ ...error }] }
}

export function describeRejection (reply: Reply): string {
  const e = reply.error
  return e === undefined ? 'rejected' : `${e.error_code}${e.description !== undefined ? ': ' + e.description : ''}`
}

/** Runs a tool body against the session of `repoPath`; failures become `isError` results naming an MPAC_ERR_* code. */
export async function runTool (
  deps: ToolDeps,
  repoPath: string | null | undefined,
  body: (session: ShimSession) => Promise<CallToolResult>
): Promise<CallToolResult> {
  let session: ShimSession | undefined
  try {
    session = deps.pool.get(repoPath)
    await session.ready()
    return await body(session)
  } catch (err) {
    return errorResult(session, err)
  }
}

export function errorResult (session: ShimSession | undefined, err: unknown): CallToolResult {
  const context = session !== undefined ? session.context() : {}
  if (err instanceof MpacError) {
    const structured: Structured = {
      status: 'error',
      ...context,
      code: err.code,
      retryable: err.retryable,
      message: err.message
    }
    if (err.hint !== undefined) structured['hint'] = err.hint
    if (err.detail !== undefined && typeof err.detail['error_code'] === 'string') {
      structured['error_code'] = err.detail['error_code']
      structured['errors'] = [{ ...err.detail }]
    }
    return result(structured, `error ${err.code}: ${err.message}${err.hint !== undefined ? ` (${err.hint})` : ''}`, true)
  }
  const message = err instanceof Error ? err.message : String(err)
  return result({ status: 'error', ...context, code: ToolFailed.code, retryable: ToolFailed.retryable, message }, `error: ${message}`, true)
}

export function openConflicts (summary: Summary): Array<Record<string, unknown>> {
  return summary.open_conflicts.map(c => ({ ...c }))
}
