import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { contextShape, recordList, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerWhoIsWorkingTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('who_is_working', {
    title: 'Who is working',
    description: 'Look before you start: lists the agents in this repository\'s coordination session, the intents they announced (who is editing which files) and the open conflicts. Call it first, and whenever you need the current picture.',
    inputSchema: { repo_path: repoPathArg },
    outputSchema: {
      ...contextShape,
      sidecar_uri: z.string().optional().describe('The coordinator URL.'),
      principal_id: z.string().optional().describe('Your own principal id: intents with this principal_id are yours.'),
      participant_count: z.number().optional(),
      active_intent_count: z.number().optional(),
      open_conflict_count: z.number().optional(),
      participants: recordList.optional().describe('{principal_id, display_name, roles, status, is_available, last_seen}'),
      active_intents: recordList.optional().describe('{intent_id, principal_id, objective, state (ACTIVE, SUSPENDED, …), scope {kind, resources}, claimed_by}'),
      open_conflicts: recordList.optional().describe('{conflict_id, category, severity, state, principal_a, principal_b, intent_a, intent_b}')
    },
    annotations: { readOnlyHint: true, openWorldHint: true }
  }, async ({ repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const s = await session.summary()
    const structured = {
      status: 'ok',
      ...session.context(),
      sidecar_uri: session.config.url,
      principal_id: session.principalId,
      participant_count: s.participant_count,
      active_intent_count: s.active_intent_count,
      open_conflict_count: s.open_conflict_count,
      participants: s.participants,
      active_intents: s.active_intents,
      open_conflicts: s.open_conflicts
    }
    return result(structured, `${s.participant_count} participant(s), ${s.active_intent_count} active intent(s), ${s.open_conflict_count} open conflict(s)`)
  }))
}
