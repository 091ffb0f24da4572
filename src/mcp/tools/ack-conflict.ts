import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { contextShape, describeRejection, openConflicts, recordList, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerAckConflictTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('ack_conflict', {
    title: 'Acknowledge a conflict',
    description: 'Tell the coordinator you have seen a conflict that involves you (from begin_task or who_is_working). ack_type "seen" or "accepted" acknowledges it; "disputed" says you disagree. Status "ok" when the coordinator accepted the acknowledgement, else "error" (e.g. unknown conflict).',
    inputSchema: {
      conflict_id: z.string().min(1).describe('The conflict id.'),
      ack_type: z.enum(['seen', 'accepted', 'disputed', 'dispute']).default('seen').describe('seen (default), accepted or disputed ("dispute" is accepted as an alias).'),
      repo_path: repoPathArg
    },
    outputSchema: {
      ...contextShape,
      conflict_id: z.string().optional(),
      ack_type: z.string().optional(),
      conflict: z.record(z.string(), z.unknown()).nullable().optional().describe('The conflict after the call, null when it is no longer open.'),
      open_conflicts: recordList.optional()
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true }
  }, async ({ conflict_id: conflictId, ack_type: ackTypeArg, repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const ackType = ackTypeArg === 'dispute' ? 'disputed' : (ackTypeArg ?? 'seen')
    const reply = await session.client.request('CONFLICT_ACK', { conflict_id: conflictId, ack_type: ackType })
    const summary = await session.summary()
    const base = { ...session.context(), conflict_id: conflictId, ack_type: ackType, open_conflicts: openConflicts(summary) }
    if (!reply.accepted) {
      return result({ status: 'error', ...base, ...rejection(reply.error), message: describeRejection(reply) }, `ack refused: ${describeRejection(reply)}`)
    }
    const conflict = summary.open_conflicts.find(c => c.conflict_id === conflictId) ?? null
    return result({ status: 'ok', ...base, conflict }, `conflict ${conflictId} acknowledged (${ackType})`)
  }))
}
