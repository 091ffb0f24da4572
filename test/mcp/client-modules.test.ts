/**
 * The layout of the coordinator client (issue 13): src/mcp/client.ts is a
 * thin CoordinatorClient composing the modules of src/mcp/client/, each of
 * which opens with its contract, depends only downwards, and leaves the
 * socket to the transport. client.ts keeps exporting every public name.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import * as client from '../../src/mcp/client.js'

const dir = join(import.meta.dirname, '../../src/mcp/client')
const modules = readdirSync(dir).filter(f => f.endsWith('.ts')).sort()
const source = (file: string): string => readFileSync(join(dir, file), 'utf8')
const imports = (text: string): string[] => [...text.matchAll(/^(?:import|export)\b[^'\n]*(?:\n[^'\n]*)*? from '([^']+)'/gm)].map(m => m[1]!)

t.test('every module of src/mcp/client/ opens with its contract', async t => {
  t.same(modules, ['claims.ts', 'correlation.ts', 'diagnosis.ts', 'probe.ts', 'transport.ts', 'types.ts'])
  for (const file of modules) {
    const head = /^\/\*\*[\s\S]*?\*\//.exec(source(file))?.[0] ?? ''
    t.match(head, /Contract:[\s\S]*- Owns:[\s\S]*- Promises:[\s\S]*- Never:/, `${file}: what it owns, promises and never does`)
  }
})

t.test('the parts never reach back into the client, and only the transport and the probe hold a WebSocket', async t => {
  for (const file of modules) {
    const text = source(file)
    const deps = imports(text)
    t.notOk(deps.some(d => d === '../client.js' || d.startsWith('../session') || d.startsWith('./tools')), `${file} does not import the client or its users (${deps.join(', ')})`)
    if (!['transport.ts', 'probe.ts'].includes(file)) t.notMatch(text, /^import [^\n]*\bWebSocket\b[^\n]* from 'undici'/m, `${file} opens no WebSocket`)
  }
  const facade = readFileSync(join(dir, '../client.ts'), 'utf8')
  t.notOk(imports(facade).includes('undici'), 'client.ts opens no socket itself')
})

t.test('client.ts still exports the public names importers use', async t => {
  t.same(
    { CoordinatorClient: typeof client.CoordinatorClient, diagnoseHandshake: typeof client.diagnoseHandshake, helloHint: typeof client.helloHint, unreachableError: typeof client.unreachableError, probeCoordinator: typeof client.probeCoordinator, systemTimers: typeof client.systemTimers, PROTOCOL_VERSION: client.PROTOCOL_VERSION },
    { CoordinatorClient: 'function', diagnoseHandshake: 'function', helloHint: 'function', unreachableError: 'function', probeCoordinator: 'function', systemTimers: 'object', PROTOCOL_VERSION: '0.1.13' }
  )
})
