// The import graph of src/: no cycles, and the pure core keeps to its folder
// rules (DESIGN.md §3: protocol imports nothing with I/O, the coordinator only
// protocol). Type-only imports count: a cycle through types still ties two
// files together. Imports are read with TypeScript's own pre-processor, so
// comments and strings that look like imports are not mistaken for them.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const SRC = join(ROOT, 'src')

type Graph = Map<string, string[]>

function sourceFiles (dir: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...sourceFiles(path))
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(path)
  }
  return out.sort()
}

/** Every module specifier of a file: static and type-only imports, re-exports, dynamic imports. */
function specifiers (path: string): string[] {
  return ts.preProcessFile(readFileSync(path, 'utf8'), true, true).importedFiles.map(f => f.fileName)
}

/** Files (relative to src/) → the src files they import; `bare` gets the package and node: imports. */
function importGraph (bare: Map<string, string[]>): Graph {
  const graph: Graph = new Map()
  for (const file of sourceFiles(SRC)) {
    const from = relative(SRC, file)
    const edges: string[] = []
    const packages: string[] = []
    for (const spec of specifiers(file)) {
      if (!spec.startsWith('.')) {
        packages.push(spec)
        continue
      }
      // NodeNext: `./x.js` in a .ts file is `./x.ts`.
      edges.push(relative(SRC, resolve(dirname(file), spec.replace(/\.js$/, '.ts'))))
    }
    graph.set(from, edges)
    bare.set(from, packages)
  }
  return graph
}

/** The import cycles of a graph: its strongly connected components with more than one file, and self-imports (Tarjan). */
function cycles (graph: Graph): string[][] {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const out: string[][] = []
  // Iterative, so a deep chain of imports cannot overflow the call stack.
  for (const root of graph.keys()) {
    if (index.has(root)) continue
    const work: Array<[string, number]> = [[root, 0]]
    index.set(root, next); low.set(root, next); next++
    stack.push(root); onStack.add(root)
    while (work.length > 0) {
      const top = work[work.length - 1] as [string, number]
      const [node, i] = top
      const edges = graph.get(node) ?? []
      if (i < edges.length) {
        top[1]++
        const to = edges[i] as string
        if (!graph.has(to)) continue
        if (!index.has(to)) {
          index.set(to, next); low.set(to, next); next++
          stack.push(to); onStack.add(to)
          work.push([to, 0])
        } else if (onStack.has(to)) {
          low.set(node, Math.min(low.get(node) as number, index.get(to) as number))
        }
        continue
      }
      work.pop()
      const parent = work[work.length - 1]
      if (parent !== undefined) low.set(parent[0], Math.min(low.get(parent[0]) as number, low.get(node) as number))
      if (low.get(node) !== index.get(node)) continue
      const component: string[] = []
      for (;;) {
        const member = stack.pop() as string
        onStack.delete(member)
        component.push(member)
        if (member === node) break
      }
      if (component.length > 1 || edges.includes(node)) out.push(component.sort())
    }
  }
  return out
}

t.test('the cycle finder finds cycles (so an empty answer below means something)', async t => {
  const graph: Graph = new Map([
    ['a.ts', ['b.ts']],
    ['b.ts', ['c.ts', 'd.ts']],
    ['c.ts', ['a.ts']],
    ['d.ts', ['e.ts']],
    ['e.ts', []],
    ['f.ts', ['f.ts']],
    ['g.ts', ['e.ts', 'missing.ts']]
  ])
  t.same(cycles(graph).sort(), [['a.ts', 'b.ts', 'c.ts'], ['f.ts']])
  t.same(cycles(new Map([['x.ts', ['y.ts']], ['y.ts', []]])), [])
})

t.test('no import cycle in src/', async t => {
  const graph = importGraph(new Map())
  t.ok(graph.size > 50, `read ${graph.size} source files`)
  t.ok((graph.get('server/app.ts') ?? []).includes('server/registry.ts'), 'relative imports are resolved to src files')
  t.same(cycles(graph), [], 'files that import each other, directly or through others')
})

t.test('every folder keeps to its import rules (DESIGN.md §3)', async t => {
  const bare = new Map<string, string[]>()
  const graph = importGraph(bare)
  // Pure, no I/O: hashing, deep equality, path arithmetic and zod only.
  const CORE_PACKAGES = ['node:crypto', 'node:util', 'node:path', 'zod']
  // The modules at the root of src/ (errors.ts, local-secret.ts, …) are shared by every folder.
  const ROOT_FILES = /^[^/]+\.ts$/
  const NODE = /^node:/
  const rules: Array<{ folder: RegExp, name: string, mayImport: Array<string | RegExp>, packages: Array<string | RegExp> }> = [
    { folder: ROOT_FILES, name: 'src/*.ts', mayImport: [], packages: [NODE] },
    { folder: /^protocol\//, name: 'src/protocol/', mayImport: ['protocol/'], packages: CORE_PACKAGES },
    { folder: /^coordinator\//, name: 'src/coordinator/', mayImport: ['coordinator/', 'protocol/'], packages: CORE_PACKAGES },
    { folder: /^store\//, name: 'src/store/', mayImport: ['store/', 'coordinator/', 'protocol/', ROOT_FILES], packages: [NODE, 'better-sqlite3', 'pg', 'pino'] },
    // The shim talks to the coordinator over the wire only: the protocol, never the server, store or core.
    // …and the hook protocol it shares with the hook processes (src/hooks/).
    { folder: /^mcp\//, name: 'src/mcp/', mayImport: ['mcp/', 'protocol/', 'hooks/', ROOT_FILES], packages: [NODE, 'zod', 'pino', 'undici', /^@modelcontextprotocol\/sdk\//] }
  ]
  const matches = (value: string, allowed: Array<string | RegExp>): boolean =>
    allowed.some(a => typeof a === 'string' ? (a.endsWith('/') ? value.startsWith(a) : value === a) : a.test(value))
  for (const rule of rules) {
    const bad: string[] = []
    let files = 0
    for (const [file, edges] of graph) {
      if (!rule.folder.test(file)) continue
      files++
      for (const to of edges) if (!matches(to, rule.mayImport)) bad.push(`${file} → ${to}`)
      for (const pkg of bare.get(file) ?? []) if (!matches(pkg, rule.packages)) bad.push(`${file} → ${pkg}`)
    }
    t.ok(files > 0, `${rule.name}: ${files} files checked`)
    t.same(bad, [], `${rule.name} imports only what its rule allows`)
  }
})

t.test('src/hooks/ imports only node: builtins and itself (the hook process must start fast)', async t => {
  const bare = new Map<string, string[]>()
  const graph = importGraph(bare)
  const bad: string[] = []
  let files = 0
  for (const [file, edges] of graph) {
    if (!file.startsWith('hooks/')) continue
    files++
    for (const to of edges) if (!to.startsWith('hooks/') && to !== 'process-alive.ts') bad.push(`${file} → ${to}`)
    for (const pkg of bare.get(file) ?? []) if (!pkg.startsWith('node:')) bad.push(`${file} → ${pkg}`)
  }
  t.ok(files >= 1, `read ${files} files of src/hooks/`)
  t.same(bad, [], 'src/hooks/ imports only src/hooks/, src/process-alive.ts and node: builtins')
})

t.test('the graph holds the edges the rules are checked on (so an empty answer above means something)', async t => {
  const bare = new Map<string, string[]>()
  const graph = importGraph(bare)
  t.ok((graph.get('mcp/client.ts') ?? []).includes('errors.ts'), 'src/mcp imports the shared registry at the root')
  t.ok((bare.get('store/sqlite.ts') ?? []).includes('better-sqlite3'), 'package imports are collected')
})
