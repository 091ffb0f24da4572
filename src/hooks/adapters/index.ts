/** The client adapters by name (`mpac-mcp hook <event> --client NAME`). */
import { claude } from './claude.js'
import { codex } from './codex.js'
import type { Adapter, ClientName } from './common.js'
import { cursor } from './cursor.js'
import { gemini } from './gemini.js'

export const ADAPTERS: Readonly<Record<ClientName, Adapter>> = { claude, codex, cursor, gemini }
