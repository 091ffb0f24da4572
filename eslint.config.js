import js from '@eslint/js'
import { defineConfig, globalIgnores } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

/** I/O modules and packages the pure core (src/protocol, src/coordinator) may not import. */
const IO = ['node:fs', 'node:fs/promises', 'node:net', 'node:http', 'node:https', 'node:child_process', 'node:os', 'node:dgram', 'node:tls', 'fastify', '@fastify/websocket', 'undici', 'better-sqlite3', 'pino']

export default defineConfig(
  globalIgnores(['dist/', 'coverage/', '.tap/']),
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'module',
      globals: globals.node
    }
  },
  // Typed rules for the TypeScript sources (tsconfig.json covers src, test and bench).
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true, allowNullish: true }],
      // Fastify plugins and handlers are async by contract, awaited or not.
      '@typescript-eslint/require-await': 'off'
    }
  },
  {
    // tap: `t.test(...)` returns a promise tap itself awaits, and test bodies are async by convention.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      // Assertion messages stringify loose JSON on purpose.
      '@typescript-eslint/no-base-to-string': 'off',
      // Tests read replies as untyped JSON on purpose (hook output, HTTP bodies, SQL rows): the
      // assertions are what check their shape, so typing every JSON.parse would only repeat them.
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off'
    }
  },
  {
    // Only the CLIs talk to the terminal; everything else logs through pino or returns errors.
    files: ['src/**/*.ts'],
    ignores: ['src/server/cli.ts', 'src/mcp/cli.ts'],
    rules: { 'no-console': 'error' }
  },
  // The layering (docs/architecture.md; test/architecture.test.ts checks the whole graph).
  {
    files: ['src/protocol/**/*.ts', 'src/coordinator/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: IO.map(name => ({ name, message: 'the core is pure: no I/O (DESIGN.md §3)' })),
        patterns: [{ group: ['../server/*', '../../server/*', '../store/*', '../../store/*', '../mcp/*', '../../mcp/*', '../*.js', '../../*.js'], message: 'the core imports only src/protocol (and src/coordinator inside it)' }]
      }]
    }
  },
  {
    files: ['src/mcp/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', {
        paths: ['fastify', '@fastify/websocket', 'better-sqlite3'].map(name => ({ name, message: 'the shim talks to the coordinator over the wire only' })),
        patterns: [{ group: ['../server/*', '../../server/*', '../store/*', '../../store/*', '../coordinator/*', '../../coordinator/*'], message: 'the shim imports the protocol only and talks to the coordinator over the wire' }]
      }]
    }
  }
)
