/**
 * The MCP server of the shim: name `mpac-coding`, the ten tools, and the
 * instructions that teach an agent the coordination workflow.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import { VERSION } from '../version.js'
import type { SessionPool } from './session.js'
import { registerTools } from './tools/index.js'

export const SERVER_NAME = 'mpac-coding'

/**
 * What the agent is taught. Claude Code keeps only the first 2 KB of a
 * server's instructions: this stays under 1,800 characters (a test checks it
 * on the real initialize result), with the rules that prevent damage first.
 */
export const INSTRUCTIONS = `Coordinate with the other AI agents editing this repository (MPAC).

Rules, for every change:
1. begin_task(objective, files) before the first edit; keep the intent_id. status "error" with error_code STALE_INTENT: another agent holds a file. Do not edit it; tell the user who holds it; retry later or do other work.
2. get_file_state(path) gives content and state_ref.
3. submit_change(intent_id, target, full new content, state_ref_before = that state_ref). "success": the file holds your content. "stale": someone changed it since you read it: read again, merge, resubmit. "conflict": the file is frozen by an unresolved conflict.
4. yield_task(intent_id) as soon as you are done or step back.
Before starting: who_is_working shows who edits which files and open conflicts; check_overlap(files) tells whether your files overlap (blocking = being edited now).

Errors: retryable=true (MPAC_ERR_REMOTE_UNAVAILABLE, MPAC_ERR_REMOTE_CLOSED, MPAC_ERR_REMOTE_TIMEOUT) is temporary: retry shortly. After MPAC_ERR_REMOTE_CLOSED the call may have taken effect: check who_is_working before repeating it. retryable=false (MPAC_ERR_AUTH_REJECTED, MPAC_ERR_CONFIG_INVALID, MPAC_ERR_REPLACED, MPAC_ERR_SIDECAR_FAILED, …) needs the user: show them the message and hint; do not retry.

Conflicts: begin_task reports has_conflict; tell the user. ack_conflict acknowledges, escalate_conflict hands it to an arbiter, resolve_conflict settles it (owner/arbiter only).

Takeover: an intent in state SUSPENDED (its agent went offline) can be claimed with take_over_task(original_intent_id); on "ok" continue under new_intent_id; "timeout": still pending, check who_is_working later.

Your intents survive restarts of the coordinator and of this server.`

export function createMcpServer (pool: SessionPool): McpServer {
  const server = new McpServer({ name: SERVER_NAME, version: VERSION }, { instructions: INSTRUCTIONS })
  registerTools(server, { pool })
  return server
}
