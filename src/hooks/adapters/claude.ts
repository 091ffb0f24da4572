/**
 * Claude Code's hook dialect (agent-hooks-and-dashboard.md §2, §7.3). Input:
 * the common fields (`session_id`, `cwd`, `hook_event_name`, …) plus
 * `tool_name`/`tool_input` for tool events and `source` for SessionStart.
 * Output, always on exit 0:
 * - pre-edit deny: `hookSpecificOutput.permissionDecision:"deny"` with the
 *   reason (Claude reads it); otherwise never a decision (`allow` would skip
 *   the user's permission prompt), only `additionalContext` when there is
 *   something to say, else no output at all;
 * - session-start: the digest as `additionalContext`;
 * - user-prompt, post-edit: new events as `additionalContext`, nothing when
 *   nothing is new;
 * - `systemMessage` (shown to the user) carries the shim's throttled `warn_user`.
 * Codex CLI speaks the same JSON (`codex.ts` only reads paths differently).
 */
import type { HookReply, HookRequest } from '../protocol.js'
import { SILENT, base, contextLines, denyReason, failClosedReason, json, record, str, toolInputPaths, type Adapter, type ClientName, type HookEventName, type HookOutput, type ParsedInput } from './common.js'

const EVENT_NAMES: Record<HookEventName, string> = {
  'session-start': 'SessionStart',
  'user-prompt': 'UserPromptSubmit',
  'pre-edit': 'PreToolUse',
  'post-edit': 'PostToolUse',
  stop: 'Stop',
  'session-end': 'SessionEnd'
}

/** The request for `event`, given the paths the tool edits. */
export function requestFor (client: ClientName, event: HookEventName, input: Record<string, unknown>, paths: string[]): HookRequest | null {
  const common = base(client, str(input['session_id']), input['agent_id'])
  const tool = str(input['tool_name']) ?? undefined
  const toolUseId = str(input['tool_use_id'])
  switch (event) {
    case 'pre-edit':
      return paths.length === 0 ? null : { ...common, op: 'check_edit', paths, ...(tool !== undefined ? { tool } : {}), tool_use_id: toolUseId }
    case 'post-edit':
      return { ...common, op: 'post_edit', paths, ...(tool !== undefined ? { tool } : {}), tool_use_id: toolUseId }
    case 'session-start':
      // source "clear": the shim adopts this (new) client session id (see protocol.ts `context`).
      return { ...common, op: 'context', source: str(input['source']) }
    case 'user-prompt':
      return { ...common, op: 'events_since' }
    case 'session-end':
      return { ...common, op: 'session_end' }
    case 'stop':
      return null
  }
}

/** Claude-dialect output for a reply (shared with Codex). */
export function renderClaude (event: HookEventName, request: HookRequest, reply: HookReply): HookOutput {
  const hookEventName = EVENT_NAMES[event]
  const systemMessage = str(reply.warn_user)
  const extra = systemMessage !== null ? { systemMessage } : {}
  if (event === 'pre-edit' && reply.decision === 'deny') {
    return json({ hookSpecificOutput: { hookEventName, permissionDecision: 'deny', permissionDecisionReason: denyReason(reply) }, ...extra })
  }
  const lines = event === 'session-start' ? [str(reply.context) ?? '', ...contextLines(request, reply)].filter(l => l !== '') : contextLines(request, reply)
  if (event === 'session-end' || event === 'stop') lines.length = 0
  if (lines.length === 0) return systemMessage !== null ? json(extra) : SILENT
  return json({ hookSpecificOutput: { hookEventName, additionalContext: lines.join('\n') }, ...extra })
}

export function failClosedClaude (event: HookEventName, message: string): HookOutput {
  if (event !== 'pre-edit') return SILENT
  return json({ hookSpecificOutput: { hookEventName: 'PreToolUse', permissionDecision: 'deny', permissionDecisionReason: failClosedReason(message) } })
}

export const claude: Adapter = {
  parse (event, input): ParsedInput | undefined {
    if (typeof input['session_id'] !== 'string' && typeof input['hook_event_name'] !== 'string') return undefined
    const cwd = str(input['cwd'])
    const paths = event === 'pre-edit' || event === 'post-edit' ? toolInputPaths(record(input['tool_input']), cwd) : []
    return { sessionId: str(input['session_id']), cwds: cwd !== null ? [cwd] : [], request: requestFor('claude', event, input, paths), source: str(input['source']) }
  },
  render: renderClaude,
  failClosed: failClosedClaude
}
