/**
 * The MCP server of the shim: name `mpac-coding`, the ten tools, and the
 * instructions that teach an agent the coordination workflow.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { VERSION } from '../version.js'
import type { SessionPool } from './session.js'
import { registerTools } from './tools/index.js'

export const SERVER_NAME = 'mpac-coding'

export const INSTRUCTIONS = `Coordinate with the other AI agents editing this repository through an MPAC coordinator.

Workflow for every change:
1. Look: who_is_working shows who is editing which files and the open conflicts.
2. Check: check_overlap(files) before you start. An overlap marked blocking means another agent is editing that file now.
3. Announce: begin_task(objective, files) before the first edit; keep the intent_id. If it returns status "error" with error_code STALE_INTENT, another agent holds a file: do not edit it, tell the user who holds it, and retry later (or work on something else).
4. Read: get_file_state(path) gives the content and its state_ref.
5. Edit, then commit: submit_change(intent_id, target, full new content, state_ref_before = the state_ref you read). Writing the file yourself first is fine. "success" means the file now holds your content. "stale" means someone else changed it since you read it: read it again, merge, resubmit. "conflict" means the file is frozen by an unresolved conflict.
6. Yield: yield_task(intent_id) as soon as you are done, or when you step back.

Conflicts: begin_task reports conflicts with other agents' work (has_conflict). Tell the user. ack_conflict acknowledges one; escalate_conflict hands it to an arbiter; resolve_conflict settles it (owner and arbiter roles only).

Takeover: when who_is_working shows an intent in state SUSPENDED (its agent went offline), take_over_task(original_intent_id) claims it; on status "ok" continue under new_intent_id. Status "timeout" means the claim is still pending: check who_is_working later.

Failures: a result with retryable=true (codes MPAC_ERR_REMOTE_UNAVAILABLE, MPAC_ERR_REMOTE_CLOSED, MPAC_ERR_REMOTE_TIMEOUT) is temporary, e.g. the coordinator is restarting: retry shortly. After MPAC_ERR_REMOTE_CLOSED the call may or may not have taken effect: look with who_is_working before repeating it. Other codes (MPAC_ERR_AUTH_REJECTED, MPAC_ERR_REPLACED, MPAC_ERR_CONFIG_INVALID, MPAC_ERR_SIDECAR_FAILED) need the user: show them the message and the hint. Your intents survive a restart of the coordinator and of this server.`

export function createMcpServer (pool: SessionPool): McpServer {
  const server = new McpServer({ name: SERVER_NAME, version: VERSION }, { instructions: INSTRUCTIONS })
  registerTools(server, { pool })
  return server
}
