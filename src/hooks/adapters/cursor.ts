/**
 * Cursor's hook dialect (agent-hooks-and-dashboard.md §3, §7.9). Input:
 * `conversation_id`, `generation_id`, `hook_event_name`, `workspace_roots`,
 * and `tool_name`/`tool_input` for tool events. Output:
 * - preToolUse deny: `{"permission":"deny","agent_message":<reason>,"user_message":<short>}`;
 *   never `ask` (reported broken in Cursor 2.4.21–3.2.16) and never `allow`:
 *   anything else is no output;
 * - sessionStart and postToolUse: `{"additional_context":…}`;
 * - beforeSubmitPrompt cannot inject context: it asks nothing, so the
 *   events stay queued for the next postToolUse.
 * Rendezvous uses `workspace_roots` (whether Cursor's MCP server and its hooks
 * share a parent process is unverified).
 */
import type { HookReply, HookRequest } from '../protocol.js'
import { sanitizeText } from '../protocol.js'
import { SILENT, base, contextLines, denyReason, failClosedReason, json, record, str, toolInputPaths, type Adapter, type HookEventName, type HookOutput, type ParsedInput } from './common.js'

function shortDeny (reply: HookReply): string {
  const held = reply.holders.map(h => `${h.files.map(f => sanitizeText(f, 200)).join(', ')} (held by ${sanitizeText(h.display_name || h.principal_id, 60)})`)
  const frozen = reply.frozen.map(c => `${c.files.map(f => sanitizeText(f, 200)).join(', ')} (frozen by conflict ${sanitizeText(c.conflict_id, 80)})`)
  const what = [...held, ...frozen]
  return what.length > 0 ? `mpac refused an edit of ${what.join('; ')}` : 'mpac refused this edit'
}

export const cursor: Adapter = {
  parse (event, input): ParsedInput | undefined {
    const sessionId = str(input['conversation_id']) ?? str(input['session_id'])
    if (sessionId === null && typeof input['hook_event_name'] !== 'string') return undefined
    const roots = Array.isArray(input['workspace_roots']) ? (input['workspace_roots'] as unknown[]).filter((r): r is string => typeof r === 'string' && r !== '') : []
    const cwd = str(input['cwd']) ?? roots[0] ?? null
    const common = base('cursor', sessionId, null)
    const tool = str(input['tool_name']) ?? undefined
    const toolFields = { ...(tool !== undefined ? { tool } : {}), tool_use_id: str(input['tool_use_id']) ?? str(input['generation_id']) }
    let request: HookRequest | null = null
    const paths = toolInputPaths(record(input['tool_input']), cwd)
    if (paths.length === 0 && str(input['file_path']) !== null) paths.push(str(input['file_path']) as string) // afterFileEdit
    switch (event) {
      case 'pre-edit': request = paths.length === 0 ? null : { ...common, op: 'check_edit', paths, ...toolFields }; break
      case 'post-edit': request = { ...common, op: 'post_edit', paths, ...toolFields }; break
      case 'session-start': request = { ...common, op: 'context' }; break
      case 'session-end': request = { ...common, op: 'session_end' }; break
      case 'user-prompt': case 'stop': request = null
    }
    return { sessionId, cwds: cwd !== null ? [...new Set([cwd, ...roots])] : roots, request }
  },
  render (event: HookEventName, request: HookRequest, reply: HookReply): HookOutput {
    if (event === 'pre-edit') {
      return reply.decision === 'deny' ? json({ permission: 'deny', agent_message: denyReason(reply), user_message: shortDeny(reply) }) : SILENT
    }
    if (event !== 'session-start' && event !== 'post-edit') return SILENT
    const lines = event === 'session-start' ? [str(reply.context) ?? '', ...contextLines(request, reply)].filter(l => l !== '') : contextLines(request, reply)
    return lines.length === 0 ? SILENT : json({ additional_context: lines.join('\n') })
  },
  failClosed (event: HookEventName, message: string): HookOutput {
    if (event !== 'pre-edit') return SILENT
    return json({ permission: 'deny', agent_message: failClosedReason(message), user_message: 'mpac could not check this edit (MPAC_HOOK_FAIL=closed); run mpac-mcp hook doctor' })
  }
}
