// A minimal TypeScript loader for the test suite (Node module customization
// hooks). Why not tsx: tsx minifies whitespace, so every module becomes one
// generated line and V8 line coverage reports 100% for any file a test loads.
// esbuild without minification keeps the line structure, and the inline
// source map maps coverage back to the .ts lines.
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { transform } from 'esbuild'

const TS = /\.(?:ts|mts|cts)$/

export async function resolve (specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (err) {
    // NodeNext style: `./x.js` in a .ts file refers to `./x.ts`.
    const parent = context.parentURL ?? ''
    if (err?.code === 'ERR_MODULE_NOT_FOUND' && /\.m?js$/.test(specifier) && TS.test(parent)) {
      return next(specifier.replace(/\.(m?)js$/, '.$1ts'), context)
    }
    throw err
  }
}

export async function load (url, context, next) {
  if (!url.startsWith('file:') || !TS.test(url)) return next(url, context)
  const path = fileURLToPath(url)
  const source = await readFile(path, 'utf8')
  const out = await transform(source, {
    loader: 'ts',
    format: url.endsWith('.cts') ? 'cjs' : 'esm',
    target: 'node20',
    sourcemap: 'inline',
    sourcefile: path,
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true } }
  })
  return { format: url.endsWith('.cts') ? 'commonjs' : 'module', source: out.code, shortCircuit: true }
}
