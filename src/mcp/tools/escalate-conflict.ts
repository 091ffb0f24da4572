import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Payload } from '../../protocol/schemas.js'
import { z } from 'zod'
import { contextShape, describeRejection, openConflicts, recordList, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerEscalateConflictTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('escalate_conflict', {
    title: 'Escalate a conflict',
    description: 'Hand a conflict you cannot settle with the other agent to an arbiter (a participant with the arbiter role), who then resolves it. Without escalate_to, the only available arbiter in the session is chosen; with none or several, you must name one. Status "ok" when the coordinator accepted the escalation, else "error".',
    inputSchema: {
      conflict_id: z.string().min(1).describe('The conflict id.'),
      reason: z.string().min(1).describe('Why it needs an arbiter.'),
      repo_path: repoPathArg,
      escalate_to: z.string().nullish().describe('Principal id of the arbiter or owner to escalate to (see who_is_working).'),
      context: z.string().nullish().describe('Extra context for the arbiter.')
    },
    outputSchema: {
      ...contextShape,
      conflict_id: z.string().optional(),
      escalate_to: z.string().optional(),
      conflict: z.record(z.string(), z.unknown()).nullable().optional(),
      open_conflicts: recordList.optional()
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
  }, async ({ conflict_id: conflictId, reason, repo_path: repoPath, escalate_to: escalateTo, context }) => runTool(deps, repoPath, async session => {
    let target = escalateTo ?? undefined
    if (target === undefined || target === '') {
      const summary = await session.summary()
      const arbiters = summary.participants.filter(p => (p.roles ?? []).includes('arbiter') && p.is_available === true && p.principal_id !== session.principalId)
      if (arbiters.length !== 1) {
        const message = 'No unique available arbiter found; pass escalate_to explicitly'
        return result({ status: 'error', ...session.context(), conflict_id: conflictId, message, open_conflicts: openConflicts(summary) }, `error: ${message}`)
      }
      target = arbiters[0]!.principal_id
    }
    const payload: Payload<'CONFLICT_ESCALATE'> = { conflict_id: conflictId, escalate_to: target, reason }
    if (context !== undefined && context !== null) payload.context = context
    const reply = await session.client.request('CONFLICT_ESCALATE', payload)
    const summary = await session.summary()
    const base = { ...session.context(), conflict_id: conflictId, escalate_to: target, open_conflicts: openConflicts(summary) }
    if (!reply.accepted) {
      return result({ status: 'error', ...base, ...rejection(reply.error), message: describeRejection(reply) }, `escalation refused: ${describeRejection(reply)}`)
    }
    const conflict = summary.open_conflicts.find(c => c.conflict_id === conflictId) ?? null
    return result({ status: 'ok', ...base, conflict }, `conflict ${conflictId} escalated to ${target}`)
  }))
}
