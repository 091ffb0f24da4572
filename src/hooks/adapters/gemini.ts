/**
 * Gemini CLI's hook dialect (agent-hooks-and-dashboard.md §3, §7.9). Input:
 * `session_id`, `cwd`, `hook_event_name`, and `tool_name`/`tool_input` for
 * tool events (`write_file` and `replace` take `file_path`). Output:
 * - BeforeTool (pre-edit) deny: `{"decision":"deny","reason":…}` (Gemini
 *   sends the reason to the agent as the tool's error); otherwise no output;
 * - SessionStart, BeforeAgent (user-prompt) and AfterTool (post-edit):
 *   `hookSpecificOutput.additionalContext`, nothing when nothing is new;
 * - `systemMessage` carries the shim's throttled `warn_user`.
 */
import type { HookReply, HookRequest } from '../protocol.js'
import { requestFor } from './claude.js'
import { SILENT, contextLines, denyReason, failClosedReason, json, record, str, toolInputPaths, type Adapter, type HookEventName, type HookOutput, type ParsedInput } from './common.js'

const EVENT_NAMES: Partial<Record<HookEventName, string>> = {
  'session-start': 'SessionStart',
  'user-prompt': 'BeforeAgent',
  'post-edit': 'AfterTool'
}

export const gemini: Adapter = {
  parse (event, input): ParsedInput | undefined {
    if (typeof input['session_id'] !== 'string' && typeof input['hook_event_name'] !== 'string') return undefined
    const cwd = str(input['cwd'])
    const paths = event === 'pre-edit' || event === 'post-edit' ? toolInputPaths(record(input['tool_input']), cwd) : []
    return { sessionId: str(input['session_id']), cwds: cwd !== null ? [cwd] : [], request: requestFor('gemini', event, input, paths), source: str(input['source']) }
  },
  render (event: HookEventName, request: HookRequest, reply: HookReply): HookOutput {
    const systemMessage = str(reply.warn_user)
    const extra = systemMessage !== null ? { systemMessage } : {}
    if (event === 'pre-edit' && reply.decision === 'deny') return json({ decision: 'deny', reason: denyReason(reply), ...extra })
    const hookEventName = EVENT_NAMES[event]
    const lines = hookEventName === undefined ? [] : event === 'session-start' ? [str(reply.context) ?? '', ...contextLines(request, reply)].filter(l => l !== '') : contextLines(request, reply)
    if (lines.length === 0) return systemMessage !== null ? json(extra) : SILENT
    return json({ hookSpecificOutput: { hookEventName, additionalContext: lines.join('\n') }, ...extra })
  },
  failClosed (event: HookEventName, message: string): HookOutput {
    return event === 'pre-edit' ? json({ decision: 'deny', reason: failClosedReason(message) }) : SILENT
  }
}
