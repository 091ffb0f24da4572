import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { registerAckConflictTool } from './ack-conflict.js'
import { registerBeginTaskTool } from './begin-task.js'
import { registerCheckOverlapTool } from './check-overlap.js'
import type { ToolDeps } from './common.js'
import { registerEscalateConflictTool } from './escalate-conflict.js'
import { registerGetFileStateTool } from './get-file-state.js'
import { registerResolveConflictTool } from './resolve-conflict.js'
import { registerSubmitChangeTool } from './submit-change.js'
import { registerTakeOverTaskTool } from './take-over-task.js'
import { registerWhoIsWorkingTool } from './who-is-working.js'
import { registerYieldTaskTool } from './yield-task.js'

export type { ToolDeps } from './common.js'

export const TOOL_NAMES = [
  'who_is_working',
  'begin_task',
  'check_overlap',
  'get_file_state',
  'submit_change',
  'yield_task',
  'ack_conflict',
  'escalate_conflict',
  'resolve_conflict',
  'take_over_task'
] as const

export function registerTools (server: McpServer, deps: ToolDeps): void {
  registerWhoIsWorkingTool(server, deps)
  registerBeginTaskTool(server, deps)
  registerCheckOverlapTool(server, deps)
  registerGetFileStateTool(server, deps)
  registerSubmitChangeTool(server, deps)
  registerYieldTaskTool(server, deps)
  registerAckConflictTool(server, deps)
  registerEscalateConflictTool(server, deps)
  registerResolveConflictTool(server, deps)
  registerTakeOverTaskTool(server, deps)
}
