import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { toRepoFiles, scopeFiles } from '../session.js'
import { contextShape, recordList, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerCheckOverlapTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('check_overlap', {
    title: 'Check overlap',
    description: 'Before announcing or editing, check whether other agents\' intents cover any of these files. Read-only: announces nothing. An overlap with blocking=true (an ACTIVE intent on the same file) means begin_task would be refused with STALE_INTENT.',
    inputSchema: {
      files: z.array(z.string()).min(1).describe('Files you plan to modify, relative to the repository root.'),
      repo_path: repoPathArg
    },
    outputSchema: {
      ...contextShape,
      proposed_files: z.array(z.string()).optional(),
      has_overlap: z.boolean().optional(),
      overlaps: recordList.optional().describe('{intent_id, principal_id, objective, state, scope, shared_files, blocking} for each other agent\'s intent that overlaps.')
    },
    annotations: { readOnlyHint: true, openWorldHint: true }
  }, async ({ files, repo_path: repoPath }) => runTool(deps, repoPath, async session => {
    const proposed = toRepoFiles(session.config.workspaceDir, files)
    const summary = await session.summary()
    const wanted = new Set(proposed)
    const overlaps = []
    for (const intent of summary.active_intents) {
      if (intent.principal_id === session.principalId) continue
      const theirs = scopeFiles(intent.scope)
      // A scope of another kind (no resources) counts as overlapping (protocol.md §6.2).
      const shared = theirs === undefined ? [] : theirs.filter(f => wanted.has(f))
      if (theirs !== undefined && shared.length === 0) continue
      overlaps.push({
        intent_id: intent.intent_id,
        principal_id: intent.principal_id,
        objective: intent.objective,
        state: intent.state,
        scope: intent.scope,
        shared_files: shared,
        blocking: intent.state === 'ACTIVE' && shared.length > 0
      })
    }
    const structured = { status: 'ok', ...session.context(), proposed_files: proposed, has_overlap: overlaps.length > 0, overlaps }
    const line = overlaps.length === 0
      ? 'no overlap with other agents'
      : `overlap with ${overlaps.map(o => `${o.intent_id} (${o.principal_id}, ${o.state}${o.blocking ? ', blocking' : ''})`).join('; ')}`
    return result(structured, line)
  }))
}
