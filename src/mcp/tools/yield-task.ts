import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { contextShape, describeRejection, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerYieldTaskTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('yield_task', {
    title: 'Yield a task (withdraw intent)',
    description: 'Withdraw an intent of yours when you are done or when you step back, so others may work on those files. Always yield when you finish a task. Status "ok" once the coordinator accepted the withdrawal, else "error".',
    inputSchema: {
      intent_id: z.string().min(1).describe('The intent to withdraw (from begin_task or take_over_task).'),
      reason: z.string().default('yielded').describe('Why, e.g. "completed" or "yielded to agent X".'),
      repo_path: repoPathArg
    },
    outputSchema: {
      ...contextShape,
      intent_id: z.string().optional(),
      active_intent_count: z.number().optional().describe('Active intents in the whole session after the withdrawal.')
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true }
  }, async ({ intent_id: intentId, reason, repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const base = { ...session.context(), intent_id: intentId }
    if (!(await session.owns(intentId))) {
      const message = 'Intent is not owned by this agent (or is already withdrawn)'
      return result({ status: 'error', ...base, message }, `error: ${message}`)
    }
    const why = reason ?? 'yielded'
    const reply = await session.client.request('INTENT_WITHDRAW', { intent_id: intentId, reason: why })
    if (!reply.accepted) {
      return result({ status: 'error', ...base, ...rejection(reply.error), message: describeRejection(reply) }, `yield refused: ${describeRejection(reply)}`)
    }
    session.owned.delete(intentId)
    const summary = await session.summary()
    const structured = { status: 'ok', ...base, message: `Intent withdrawn: ${why}`, active_intent_count: summary.active_intent_count }
    return result(structured, `intent ${intentId} withdrawn`)
  }))
}
