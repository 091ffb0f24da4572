import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { Scope } from '../../protocol/scope.js'
import { z } from 'zod'
import { toRepoFiles, scopeFiles } from '../session.js'
import { contextShape, describeRejection, recordList, rejection, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerBeginTaskTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('begin_task', {
    title: 'Begin a task (announce intent)',
    description: 'Announce what you are about to change before editing: the coordinator records an intent over these files so other agents see it. Returns status "ok" with your intent_id (keep it for submit_change and yield_task), or status "error" when refused: error_code STALE_INTENT means another agent is already editing one of the files (do not edit; tell the user, retry after they yield). Conflicts with other agents\' work (has_conflict, conflicts) are reported but do not block you; mention them to the user.',
    inputSchema: {
      objective: z.string().min(1).describe('One sentence: what you are going to do and why.'),
      files: z.array(z.string()).min(1).describe('Every file you intend to modify, as paths relative to the repository root (absolute paths inside the repository are converted).'),
      impact: z.array(z.string()).nullish().describe('Optional: other files that depend on the files you change (e.g. modules importing them). Agents editing those get a dependency_breakage conflict instead of silently breaking.'),
      repo_path: repoPathArg
    },
    outputSchema: {
      ...contextShape,
      intent_id: z.string().optional().describe('Your new intent id.'),
      principal_id: z.string().optional(),
      objective: z.string().optional(),
      files: z.array(z.string()).optional().describe('The files announced (normalised, deduplicated, sorted).'),
      has_conflict: z.boolean().optional(),
      conflicts: recordList.optional().describe('Conflicts this announcement raised (category scope_overlap or dependency_breakage).'),
      intent: z.record(z.string(), z.unknown()).nullable().optional().describe('The intent as the coordinator records it.'),
      superseded_intents: z.array(z.string()).optional().describe('Earlier intents of yours over overlapping files that this one replaced.'),
      warnings: recordList.optional().describe('Non-blocking PROTOCOL_ERRORs (e.g. part of the scope is frozen).')
    },
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true }
  }, async ({ objective, files, impact, repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const normalised = toRepoFiles(session.config.workspaceDir, files)
    if (normalised.length === 0) {
      return result({ status: 'error', ...session.context(), message: 'files must name at least one file' }, 'error: files must name at least one file', true)
    }
    const intentId = session.newId('intent')
    const ownedBefore = new Set(session.owned.keys())
    const scope: Scope = { kind: 'file_set', resources: normalised }
    const impacted = toRepoFiles(session.config.workspaceDir, impact ?? [])
    if (impacted.length > 0) scope.extensions = { impact: impacted }
    const reply = await session.client.request('INTENT_ANNOUNCE', { intent_id: intentId, objective, scope })
    const base = { ...session.context(), intent_id: intentId, principal_id: session.principalId, objective, files: normalised }
    if (!reply.accepted) {
      const structured = { status: 'error', ...base, has_conflict: false, conflicts: [], intent: null, ...rejection(reply.error), message: describeRejection(reply) }
      return result(structured, `begin_task refused: ${describeRejection(reply)}`)
    }
    // Everything the result needs arrived before the terminal relay: the CONFLICT_REPORTs
    // (sent to both principals) — no extra round trip.
    const conflicts = reply.seen
      .filter(e => e.message_type === 'CONFLICT_REPORT' && (e.payload['intent_a'] === intentId || e.payload['intent_b'] === intentId))
      .map(e => ({ ...e.payload }))
    const intent = { intent_id: intentId, principal_id: session.principalId, objective, state: 'ACTIVE', scope, claimed_by: null }
    // Same-principal auto-supersede (protocol.md §6.7): our earlier intents over these files were withdrawn.
    const mine = new Set(normalised)
    const superseded = [...ownedBefore].filter(id => {
      const files = scopeFiles(session.owned.get(id)?.scope)
      return files === undefined || files.some(f => mine.has(f))
    })
    for (const id of superseded) session.owned.delete(id)
    session.owned.set(intentId, intent)
    const structured = {
      status: 'ok',
      ...base,
      has_conflict: conflicts.length > 0,
      conflicts,
      intent,
      superseded_intents: superseded,
      warnings: reply.warnings.map(w => ({ ...w })),
      errors: []
    }
    const line = conflicts.length > 0
      ? `intent ${intentId} announced with ${conflicts.length} conflict(s): tell the user`
      : `intent ${intentId} announced on ${normalised.join(', ')}`
    return result(structured, line)
  }))
}
