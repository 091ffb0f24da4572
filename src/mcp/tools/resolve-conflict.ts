import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Payload } from '../../protocol/schemas.js'
import { z } from 'zod'
import { contextShape, describeRejection, openConflicts, recordList, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerResolveConflictTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('resolve_conflict', {
    title: 'Resolve a conflict',
    description: 'Settle a conflict (owners and arbiters only; after an escalation, the principal it was escalated to or any arbiter). Status "ok" when the coordinator accepted the resolution (remaining_conflict is then null), "error" otherwise: AUTHORIZATION_FAILED (you lack the role), INVALID_REFERENCE (unknown conflict), RESOLUTION_CONFLICT (already resolved).',
    inputSchema: {
      conflict_id: z.string().min(1).describe('The conflict id.'),
      decision: z.string().min(1).describe('approved, rejected, dismissed, merged, human_override or policy_override. "dismissed" closes it as not a real conflict.'),
      repo_path: repoPathArg,
      rationale: z.string().nullish().describe('Why this decision (recorded with the resolution).'),
      outcome: z.record(z.string(), z.unknown()).nullish().describe('Optional {accepted?: [ids], rejected?: [ids], merged?: [ids], rollback?: op id or "not_required"}; rejecting a committed operation needs rollback.')
    },
    outputSchema: {
      ...contextShape,
      conflict_id: z.string().optional(),
      decision: z.string().optional(),
      remaining_conflict: z.record(z.string(), z.unknown()).nullable().optional(),
      open_conflicts: recordList.optional()
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
  }, async ({ conflict_id: conflictId, decision, repo_path: repoPath, rationale, outcome }) => runTool(deps, repoPath, async session => {
    const payload: Payload<'RESOLUTION'> = {
      resolution_id: session.newId('resolution'),
      conflict_id: conflictId,
      decision,
      rationale: rationale ?? `resolved by ${session.config.identity.displayName}`
    }
    if (outcome !== undefined && outcome !== null) payload.outcome = outcome
    const reply = await session.client.request('RESOLUTION', payload)
    const summary = await session.summary()
    const base = { ...session.context(), conflict_id: conflictId, decision, open_conflicts: openConflicts(summary) }
    if (!reply.accepted) {
      const message = reply.error?.description ?? 'Resolution rejected'
      return result({ status: 'error', ...base, ...rejection(reply.error), message }, `resolution refused: ${describeRejection(reply)}`)
    }
    const remaining = summary.open_conflicts.find(c => c.conflict_id === conflictId) ?? null
    return result({ status: 'ok', ...base, remaining_conflict: remaining, message: 'Conflict resolution submitted' }, `conflict ${conflictId} resolved (${decision})`)
  }))
}
