import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { z } from 'zod'
import { charLength } from '../../protocol/text.js'
import { toRepoPath } from '../session.js'
import { contextShape, repoPathArg, result, runTool, type ToolDeps } from './common.js'

export function registerGetFileStateTool (server: McpServer, deps: ToolDeps): void {
  server.registerTool('get_file_state', {
    title: 'Get file state',
    description: 'Read a file as the coordinator sees it, with its state_ref. Pass that state_ref as state_ref_before to submit_change: the commit is refused as stale if the file changed meanwhile. Status "ok" or "missing" (the file does not exist yet: commit with state_ref_before of the empty text).',
    inputSchema: {
      path: z.string().min(1).describe('File path relative to the repository root.'),
      repo_path: repoPathArg,
      include_content: z.boolean().default(true).describe('Return the content too (default true). False returns only state_ref and size.')
    },
    outputSchema: {
      ...contextShape,
      path: z.string().optional(),
      state_ref: z.string().optional().describe('sha256:<16 hex> of the current content.'),
      size: z.number().optional().describe('Length of the content in characters (code points, as Python\'s len).'),
      content: z.string().optional()
    },
    annotations: { readOnlyHint: true, openWorldHint: true }
  }, async ({ path, repo_path: repoPath, include_content: includeContent }) => runTool(deps, repoPath, async session => {
    const target = toRepoPath(session.config.workspaceDir, path)
    const reply = await session.readFile(target)
    if (reply['type'] === 'FILE_CONTENT' && typeof reply['content'] === 'string') {
      const content = reply['content']
      const size = charLength(content)
      const structured: Record<string, unknown> = {
        status: 'ok',
        path: target,
        state_ref: reply['state_ref'],
        size,
        ...session.context()
      }
      if (includeContent !== false) structured['content'] = content
      return result(structured, `${target}: ${String(reply['state_ref'])}, ${size} characters`)
    }
    const structured = { status: 'missing', path: target, message: 'File not found in shared workspace', ...session.context() }
    return result(structured, `${target}: not found in the shared workspace`)
  }))
}
