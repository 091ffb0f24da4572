import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { toRepoPath } from '../session.js'
import { stateRef } from '../../protocol/state-ref.js'
import type { Reply } from '../client.js'
import { contextShape, describeRejection, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

const STATUS_BY_CODE: Readonly<Record<string, string>> = {
  STALE_STATE_REF: 'stale',
  SCOPE_FROZEN: 'conflict'
}

const DEFAULT_MESSAGE: Readonly<Record<string, string>> = {
  stale: 'State ref is stale; refresh and retry',
  conflict: 'Scope is frozen',
  error: 'Commit rejected'
}

export function registerSubmitChangeTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('submit_change', {
    title: 'Submit a change (commit a file)',
    description: 'Commit the full new content of one file under an intent you own (from begin_task). The coordinator checks state_ref_before against the file\'s current ref; having already written the same content to the file yourself is fine. Status "success": the file now holds your content (state_ref_after). "stale": the file changed since you read it: call get_file_state, merge, retry. "conflict": the file is frozen by an unresolved conflict: resolve or escalate it first. "error": refused (e.g. the intent is not yours).',
    inputSchema: {
      intent_id: z.string().min(1).describe('An intent you announced with begin_task (or took over) that covers this file.'),
      target: z.string().min(1).describe('The file path, relative to the repository root.'),
      content: z.string().describe('The entire new content of the file (not a diff).'),
      state_ref_before: z.string().min(1).describe('The state_ref get_file_state returned before you edited (for a new file: the ref of the empty text, sha256:e3b0c44298fc1c14).'),
      repo_path: repoPathArg
    },
    outputSchema: {
      ...contextShape,
      intent_id: z.string().optional(),
      target: z.string().optional(),
      op_id: z.string().optional(),
      state_ref_after: z.string().optional().describe('The ref of the content you submitted.'),
      current_state_ref: z.string().nullable().optional().describe('The file\'s ref on the coordinator after the call (null when missing).'),
      conflicting_files: z.array(z.string()).optional()
    },
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: true }
  }, async ({ intent_id: intentId, target, content, state_ref_before: before, repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const path = toRepoPath(session.config.workspaceDir, target)
    const base = { ...session.context(), intent_id: intentId, target: path }
    if (!(await session.owns(intentId))) {
      const message = 'Intent is not owned by this agent (announce it with begin_task, or take it over)'
      return result({ status: 'error', ...base, conflicting_files: [path], message }, `error: ${message}`)
    }
    const after = stateRef(content)
    let opId = session.newId('op')
    const commit = (from: string): Promise<Reply> => {
      session.fileUpdates.delete(path)
      return session.client.request('OP_COMMIT', {
        op_id: opId,
        intent_id: intentId,
        target: path,
        op_kind: 'replace',
        state_ref_before: from,
        state_ref_after: after,
        file_changes: { [path]: { content, state_ref_before: from } }
      })
    }
    let reply = await commit(before)
    let note = ''
    if (!reply.accepted) {
      const code = reply.error?.error_code ?? ''
      const status = STATUS_BY_CODE[code] ?? 'error'
      const read = await session.readFile(path)
      const current = typeof read['state_ref'] === 'string' ? read['state_ref'] : null
      if (status === 'stale' && current === after) {
        // The file already holds exactly this content: in local mode the agent usually
        // wrote it with its own editor before committing. Record the commit from there.
        opId = session.newId('op')
        reply = await commit(after)
        note = ' (the file already held this content)'
      }
      if (!reply.accepted) {
        const finalStatus = STATUS_BY_CODE[reply.error?.error_code ?? ''] ?? 'error'
        const structured = {
          status: finalStatus,
          ...base,
          op_id: opId,
          state_ref_after: after,
          current_state_ref: current,
          conflicting_files: [path],
          ...rejection(reply.error),
          message: reply.error?.description ?? DEFAULT_MESSAGE[finalStatus] ?? 'Commit rejected'
        }
        return result(structured, `commit ${finalStatus}: ${describeRejection(reply)}`)
      }
    }
    // Accepted: confirm the file now holds our content (FILE_UPDATED follows the terminal
    // relay, docs/architecture.md "Frame order"; when it is not here yet, read the file back).
    let current: string | null = null
    const pushed = session.fileUpdates.get(path)
    if (pushed !== undefined && pushed['state_ref'] === after) {
      current = after
    } else {
      const read = await session.readFile(path)
      current = typeof read['state_ref'] === 'string' ? read['state_ref'] : null
    }
    if (current !== after) {
      const message = `The coordinator accepted the commit but the file's ref is ${String(current)}, not ${after}: someone else changed it right after, or the write failed. Read it again with get_file_state.`
      return result({ status: 'error', ...base, op_id: opId, state_ref_after: after, current_state_ref: current, conflicting_files: [path], message }, `commit not confirmed: ${message}`)
    }
    const structured = { status: 'success', ...base, op_id: opId, state_ref_after: after, current_state_ref: current, conflicting_files: [], message: `Commit accepted${note}` }
    return result(structured, `committed ${path} (${after})`)
  }))
}
