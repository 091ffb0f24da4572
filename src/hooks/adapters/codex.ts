/**
 * Codex CLI: the same hook JSON as Claude Code (`hookSpecificOutput`,
 * `permissionDecision:"deny"`, `additionalContext`), but its edit tool is
 * `apply_patch`, whose patch text (`tool_input.command`) names the files in
 * `*** Add File:`, `*** Update File:`, `*** Delete File:` and `*** Move to:`
 * headers, relative to the session's cwd. `Edit`/`Write` aliases with a
 * `file_path` are read as in Claude Code.
 */
import { failClosedClaude, renderClaude, requestFor } from './claude.js'
import { patchPaths, record, str, toolInputPaths, type Adapter, type ParsedInput } from './common.js'

export const codex: Adapter = {
  parse (event, input): ParsedInput | undefined {
    if (typeof input['session_id'] !== 'string' && typeof input['hook_event_name'] !== 'string') return undefined
    const cwd = str(input['cwd'])
    let paths: string[] = []
    if (event === 'pre-edit' || event === 'post-edit') {
      const toolInput = input['tool_input']
      const patch = typeof toolInput === 'string' ? toolInput : str(record(toolInput)['command']) ?? str(record(toolInput)['patch'])
      paths = patch !== null ? patchPaths(patch, cwd) : toolInputPaths(toolInput, cwd)
    }
    return { sessionId: str(input['session_id']), cwds: cwd !== null ? [cwd] : [], request: requestFor('codex', event, input, paths), source: str(input['source']) }
  },
  render: renderClaude,
  failClosed: failClosedClaude
}
