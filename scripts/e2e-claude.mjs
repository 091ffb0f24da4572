#!/usr/bin/env node
// `npm run e2e:claude`: the real Claude Code CLI, our hooks and our shim,
// with no model (agent-hooks-and-dashboard.md §2.5, §7.10 item 4). Not part
// of `npm test`, and Claude Code is not in package.json (it is proprietary
// and large): it is installed on demand, pinned, into a cache directory
// (MPAC_E2E_CACHE, default ~/.cache/mpac-mcp/e2e-claude/<version>) with
// `npm install --no-save`, and its platform binary is run directly (npm may
// block the package's postinstall).
//
// The scene: a real coordinator serving a temp repository; agent Alice (our
// shim, driven by the MCP SDK client) holds `held.txt`; Claude Code runs
// `claude -p` with our shim as its MCP server and the hooks written by
// `mpac-mcp setup claude --hooks`, against a mock Anthropic Messages API on
// 127.0.0.1 that first asks for a Write of held.txt, then answers text.
// Checks: held.txt was not written; the JSON result lists the Write under
// permission_denials; the tool_result the mock received carries the mpac
// deny reason naming Alice; the first agent request carried the SessionStart
// context. Prints one line per check; exit 0 only when all hold.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const CLAUDE_CODE_VERSION = '2.1.332'
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const CACHE = process.env.MPAC_E2E_CACHE || join(homedir(), '.cache', 'mpac-mcp', 'e2e-claude', CLAUDE_CODE_VERSION)
const KEEP = process.env.MPAC_E2E_KEEP === '1'

const log = (s) => process.stdout.write(`e2e:claude: ${s}\n`)

function platformPackage () {
  const musl = process.platform === 'linux' && !existsSync('/lib/ld-linux-x86-64.so.2') && !existsSync('/lib/ld-linux-aarch64.so.1') && !existsSync('/lib64/ld-linux-x86-64.so.2')
  return `claude-code-${process.platform}-${process.arch}${musl ? '-musl' : ''}`
}

/** The Claude Code binary, installed into the cache on first use. */
function claudeBinary () {
  const candidates = [
    join(CACHE, 'node_modules', '@anthropic-ai', platformPackage(), process.platform === 'win32' ? 'claude.exe' : 'claude'),
    join(CACHE, 'node_modules', '@anthropic-ai', 'claude-code', 'bin', 'claude.exe')
  ]
  let found = candidates.find(p => existsSync(p))
  if (found === undefined) {
    log(`installing @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION} into ${CACHE} (about 400 MB, once)`)
    mkdirSync(CACHE, { recursive: true })
    if (!existsSync(join(CACHE, 'package.json'))) writeFileSync(join(CACHE, 'package.json'), '{"name":"mpac-e2e-claude","private":true}\n')
    const r = spawnSync('npm', ['install', '--no-save', '--no-audit', '--no-fund', `@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}`], { cwd: CACHE, stdio: 'inherit' })
    if (r.status !== 0) throw new Error(`npm install failed (exit ${r.status})`)
    found = candidates.find(p => existsSync(p))
    if (found === undefined) throw new Error(`no Claude Code binary for ${process.platform}-${process.arch} under ${CACHE}`)
  }
  return found
}

/** A mock of POST /v1/messages: a Write of `target` first, text once a tool_result came back. */
function startMockApi (target) {
  const requests = []
  const server = createServer((req, res) => {
    let body = ''
    req.on('data', c => { body += c })
    req.on('end', () => {
      const url = req.url ?? ''
      if (req.method !== 'POST' || !url.startsWith('/v1/messages')) { res.writeHead(404).end('{}'); return }
      let msg = {}
      try { msg = JSON.parse(body) } catch { /* keep {} */ }
      if (url.startsWith('/v1/messages/count_tokens')) { res.writeHead(200, { 'content-type': 'application/json' }).end('{"input_tokens":10}'); return }
      requests.push({ raw: body, msg })
      const hasTools = Array.isArray(msg.tools) && msg.tools.some(t => t.name === 'Write')
      const last = Array.isArray(msg.messages) ? msg.messages[msg.messages.length - 1] : undefined
      const sawResult = Array.isArray(last?.content) && last.content.some(c => c.type === 'tool_result')
      const block = hasTools && !sawResult
        ? { type: 'tool_use', id: `toolu_e2e_${requests.length}`, name: 'Write', input: { file_path: target, content: 'hello from agent B\n' } }
        : { type: 'text', text: 'The file is being edited by another agent, so I did not write it.' }
      const message = { id: `msg_e2e_${requests.length}`, type: 'message', role: 'assistant', model: msg.model ?? 'mock', content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 10, output_tokens: 1 } }
      if (msg.stream !== true) {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ ...message, content: [block], stop_reason: block.type === 'tool_use' ? 'tool_use' : 'end_turn' }))
        return
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      const send = (event, data) => res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`)
      send('message_start', { message })
      if (block.type === 'tool_use') {
        send('content_block_start', { index: 0, content_block: { ...block, input: {} } })
        send('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: JSON.stringify(block.input) } })
      } else {
        send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
        send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: block.text } })
      }
      send('content_block_stop', { index: 0 })
      send('message_delta', { delta: { stop_reason: block.type === 'tool_use' ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: 5 } })
      send('message_stop', {})
      res.end()
    })
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve({ server, requests, port: server.address().port })))
}

function waitForOutput (child, pattern, timeoutMs) {
  return new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; output:\n${out}`)), timeoutMs)
    const onData = c => {
      out += c.toString('utf8')
      const m = pattern.exec(out)
      if (m !== null) { clearTimeout(timer); resolve(m) }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`exited with ${code}; output:\n${out}`)) })
  })
}

async function main () {
  const claude = claudeBinary()
  log(`Claude Code ${spawnSync(claude, ['--version'], { encoding: 'utf8', env: { ...process.env, DISABLE_AUTOUPDATER: '1' } }).stdout.trim()} at ${claude}`)
  log('building dist/ (npm run build)')
  if (spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, stdio: 'inherit' }).status !== 0) throw new Error('npm run build failed')

  const base = realpathSync(mkdtempSync(join(tmpdir(), 'mpac-e2e-claude-')))
  const ws = join(base, 'ws')
  const home = join(base, 'home')
  const state = join(base, 'state')
  const runtime = join(base, 'run')
  for (const d of [ws, home, state, runtime]) mkdirSync(d, { recursive: true, mode: 0o700 })
  spawnSync('git', ['init', '-q', ws])
  writeFileSync(join(ws, 'README.md'), '# e2e\n')
  const target = join(ws, 'held.txt')
  const children = []
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    if (!KEEP) rmSync(base, { recursive: true, force: true })
    else log(`kept ${base}`)
  }
  try {
    const baseEnv = { PATH: process.env.PATH ?? '', HOME: home, XDG_STATE_HOME: state, XDG_RUNTIME_DIR: runtime, LANG: 'C.UTF-8' }
    const coordinator = spawn(process.execPath, [join(ROOT, 'dist', 'server', 'cli.js'), '--host', '127.0.0.1', '--port', '0', '--workspace', ws, '--session-id', 'e2e-claude', '--data-dir', join(state, 'data')], { env: baseEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(coordinator)
    const [, port] = await waitForOutput(coordinator, /listening:\s+\S+:(\d+)/, 20_000)
    const url = `ws://127.0.0.1:${port}/session/e2e-claude`
    log(`coordinator on ${url}`)

    // Alice: our shim driven by the MCP SDK client, holding held.txt.
    const { Client } = await import('@modelcontextprotocol/sdk/client/index.js')
    const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js')
    const aliceTransport = new StdioClientTransport({ command: process.execPath, args: [join(ROOT, 'dist', 'mcp', 'cli.js')], env: { ...baseEnv, MPAC_COORDINATOR_URL: url, MPAC_WORKSPACE_DIR: ws, MPAC_AGENT_NAME: 'Alice', MPAC_HOOKS: 'off' }, cwd: ws, stderr: 'ignore' })
    const alice = new Client({ name: 'alice', version: '0' })
    await alice.connect(aliceTransport)
    const begin = await alice.callTool({ name: 'begin_task', arguments: { objective: 'rename the users table', files: ['held.txt'] } })
    if (begin.structuredContent?.status !== 'ok') throw new Error(`Alice's begin_task failed: ${JSON.stringify(begin)}`)
    log(`Alice holds held.txt (intent ${begin.structuredContent.intent_id})`)

    // Claude Code's configuration: our shim as its MCP server, our hooks from `setup claude --hooks`.
    const bobEnv = { ...baseEnv, MPAC_COORDINATOR_URL: url, MPAC_AGENT_NAME: 'Bob' }
    const setup = spawnSync(process.execPath, [join(ROOT, 'dist', 'mcp', 'cli.js'), 'setup', 'claude', '--hooks', '--scope', 'project', '--format', 'json'], { cwd: ws, env: bobEnv, encoding: 'utf8' })
    if (setup.status !== 0) throw new Error(`setup claude --hooks failed: ${setup.stderr}`)
    const mcpConfig = join(base, 'mcp.json')
    writeFileSync(mcpConfig, setup.stdout)
    log(`setup claude --hooks: ${setup.stderr.trim().split('\n').find(l => l.startsWith('wrote')) ?? setup.stderr.trim()}`)

    const mock = await startMockApi(target)
    const claudeEnv = {
      ...bobEnv,
      ANTHROPIC_BASE_URL: `http://127.0.0.1:${mock.port}`,
      ANTHROPIC_API_KEY: 'sk-ant-test',
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_TELEMETRY: '1',
      DISABLE_AUTOUPDATER: '1',
      MCP_CONNECTION_BLOCKING: '1'
    }
    const started = Date.now()
    const run = spawn(claude, ['-p', 'Create held.txt containing a greeting.', '--output-format', 'json', '--permission-mode', 'acceptEdits', '--mcp-config', mcpConfig, '--strict-mcp-config'], { cwd: ws, env: claudeEnv, stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(run)
    let stdout = ''
    let stderr = ''
    run.stdout.on('data', c => { stdout += c })
    run.stderr.on('data', c => { stderr += c })
    const code = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { run.kill('SIGKILL'); reject(new Error(`claude did not finish within 120 s; stderr:\n${stderr}`)) }, 120_000)
      run.once('exit', c => { clearTimeout(timer); resolve(c) })
    })
    log(`claude -p exited ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s; the mock saw ${mock.requests.length} request(s)`)
    mock.server.close()
    await alice.close()
    if (KEEP) writeFileSync(join(base, 'requests.json'), JSON.stringify(mock.requests.map(r => r.msg), null, 2))

    let result = {}
    try { result = JSON.parse(stdout) } catch { throw new Error(`claude printed no JSON result (exit ${code}); stdout:\n${stdout}\nstderr:\n${stderr}`) }
    const agentRequests = mock.requests.filter(r => Array.isArray(r.msg.tools) && r.msg.tools.some(t => t.name === 'Write'))
    const toolResults = agentRequests.flatMap(r => (r.msg.messages ?? []).flatMap(m => Array.isArray(m.content) ? m.content.filter(c => c.type === 'tool_result') : []))
    const resultText = toolResults.map(c => typeof c.content === 'string' ? c.content : JSON.stringify(c.content)).join('\n')
    const checks = [
      ['held.txt was not written', !existsSync(target)],
      ['permission_denials[0].tool_name is Write', result.permission_denials?.[0]?.tool_name === 'Write'],
      ['the model got the mpac deny reason naming Alice in an is_error tool_result', toolResults.some(c => c.is_error === true) && /hook error: mpac: held\.txt is being edited by "Alice"/.test(resultText)],
      ['the first agent request carried the SessionStart context', agentRequests[0] !== undefined && /SessionStart hook additional context: mpac: this repository is coordinated/.test(agentRequests[0].raw)],
      ['our shim was Claude Code\'s MCP server (its tools were offered)', agentRequests[0] !== undefined && agentRequests[0].raw.includes('mcp__mpac-coding__who_is_working')]
    ]
    for (const [what, ok] of checks) log(`${ok ? 'ok    ' : 'FAILED'} ${what}`)
    const failed = checks.filter(([, ok]) => !ok).length
    if (failed > 0) {
      log(`tool_result: ${resultText.slice(0, 800)}`)
      log(`result: ${stdout.slice(0, 1500)}`)
      if (stderr.trim() !== '') log(`claude stderr: ${stderr.slice(0, 1500)}`)
      process.exitCode = 1
    } else {
      log(`all ${checks.length} checks passed (deny reason: ${resultText.slice(0, 300)})`)
    }
  } finally {
    cleanup()
  }
}

main().catch(err => {
  process.stderr.write(`e2e:claude: ${err.stack ?? err}\n`)
  process.exit(1)
})
