import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Payload } from '../../protocol/schemas.js'
import type { Scope } from '../../protocol/scope.js'
import { z } from 'zod'
import { toRepoFiles } from '../session.js'
import { contextShape, describeRejection, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerTakeOverTaskTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('take_over_task', {
    title: 'Take over a task',
    description: 'Claim the SUSPENDED intent of an agent that went offline (see who_is_working: state SUSPENDED) and continue its work under a new intent of yours. Status "ok" (decision approved; new_intent_id is yours, use it with submit_change), the decision itself ("rejected", "withdrawn": the owner came back), "timeout" (no decision yet) or "error" (e.g. INVALID_REFERENCE: the intent is not suspended; CLAIM_CONFLICT: someone else claimed it first).',
    inputSchema: {
      original_intent_id: z.string().min(1).describe('The suspended intent to take over.'),
      repo_path: repoPathArg,
      new_objective: z.string().nullish().describe('Your objective (default: the original one).'),
      files: z.array(z.string()).nullish().describe('Files to keep (default: the original scope); must stay within the original.'),
      original_principal_id: z.string().nullish().describe('Owner of the original intent (default: from the coordinator).'),
      justification: z.string().nullish().describe('Why you take it over.')
    },
    outputSchema: {
      ...contextShape,
      decision: z.string().optional(),
      claim_id: z.string().optional(),
      original_intent_id: z.string().optional(),
      new_intent_id: z.string().optional()
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
  }, async (args) => runTool(deps, args.repo_path, async session => {
    const originalId = args.original_intent_id
    const summary = await session.summary()
    const original = summary.active_intents.find(i => i.intent_id === originalId)
    if (original === undefined) {
      const message = 'Original intent not found among the coordinator\'s active intents'
      return result({ status: 'error', ...session.context(), original_intent_id: originalId, message }, `error: ${message}`)
    }
    const originalScope = (original.scope !== null && typeof original.scope === 'object' ? original.scope : {}) as Record<string, unknown>
    const scope: Record<string, unknown> = { kind: originalScope['kind'] ?? 'file_set' }
    for (const key of ['resources', 'entities', 'task_ids'] as const) {
      if (originalScope[key] !== undefined) scope[key] = originalScope[key]
    }
    if (args.files !== undefined && args.files !== null && args.files.length > 0) scope['resources'] = toRepoFiles(session.config.workspaceDir, args.files)
    const { claimId, newIntentId } = session.newClaimIds()
    const payload: Payload<'INTENT_CLAIM'> = {
      claim_id: claimId,
      original_intent_id: originalId,
      original_principal_id: args.original_principal_id ?? original.principal_id,
      new_intent_id: newIntentId,
      objective: args.new_objective ?? (original.objective !== '' ? original.objective : 'Continue claimed work'),
      // The original intent's scope as the coordinator reported it (its SESSION_SUMMARY entry is not schema-typed).
      scope: scope as unknown as Scope
    }
    if (args.justification !== undefined && args.justification !== null) payload.justification = args.justification
    const base = { ...session.context(), claim_id: claimId, original_intent_id: originalId, new_intent_id: newIntentId }
    session.trackClaim(claimId, { intent_id: newIntentId, principal_id: session.principalId, objective: payload.objective, state: 'ACTIVE', scope, claimed_by: null })
    const reply = await session.client.request('INTENT_CLAIM', payload)
    if (!reply.accepted) {
      return result({ status: 'error', ...base, ...rejection(reply.error), message: describeRejection(reply) }, `claim refused: ${describeRejection(reply)}`)
    }
    // The decision is the INTENT_CLAIM_STATUS with our claim_id (never another claim's).
    const status = await session.client.waitForClaimStatus(claimId, session.config.claimWaitMs)
    if (status === undefined) {
      const message = `The coordinator accepted the claim but has not decided within ${session.config.claimWaitMs} ms (a grace period for the owner to return may apply); check who_is_working later`
      return result({ status: 'timeout', ...base, decision: 'pending', message }, `claim pending: ${message}`)
    }
    const decision = typeof status['decision'] === 'string' ? status['decision'] : 'unknown'
    const message = typeof status['reason'] === 'string' ? status['reason'] : `Claim decision: ${decision}`
    // Approved: the session already made new_intent_id ours when the status arrived (trackClaim).
    return result({ status: decision === 'approved' ? 'ok' : decision, ...base, decision, message }, `claim ${decision}${decision === 'approved' ? `: continue under ${newIntentId}` : ''}`)
  }))
}
