/**
 * Identity slots: every Claude Code session of one repository runs the shim
 * with the same configuration (the `setup claude` line), so the default
 * principal id, derived from the workspace and the agent name, would be the
 * same for all of them and each HELLO would replace the other's connection.
 * A shim therefore holds a slot: slot 1 is the plain default identity, slot
 * k ≥ 2 appends `-k` to the agent name. A slot is a pid file in the per-user
 * state directory (`agents/<name>@<digest>.<k>.pid`), created exclusively; a
 * slot whose process is gone is free again. So concurrent agents get distinct
 * identities, and an agent restarted after its previous process exited gets
 * the lowest free slot, i.e. its previous identity, and the coordinator gives
 * it back its intents. Only used when MPAC_PRINCIPAL_ID is not set.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { defaultPrincipalId, type Identity } from './config.js'
import { isProcessAlive } from '../process-alive.js'

export const MAX_SLOTS = 64

export interface AgentSlot {
  readonly slot: number
  readonly identity: Identity
  /** Frees the slot (only if this process still holds it). */
  release (): void
}

function slotIdentity (base: Identity, workspaceDir: string, slot: number): Identity {
  if (slot === 1) return base
  const name = `${base.displayName}-${slot}`
  return Object.freeze({ ...base, principalId: defaultPrincipalId(workspaceDir, base.displayName, slot), displayName: name })
}

/**
 * Takes the lowest free slot for the default identity `base` (whose principal
 * id is `defaultPrincipalId(workspaceDir, base.displayName)`). Slots already
 * held by this same process (another session of it) count as taken.
 */
export function claimAgentSlot (stateDir: string, workspaceDir: string, base: Identity, pid: number = process.pid): AgentSlot {
  const dir = join(stateDir, 'agents')
  mkdirSync(dir, { recursive: true })
  const stem = base.principalId.replace(/^agent:/, '').replace(/[^A-Za-z0-9._@-]/g, '_')
  for (let slot = 1; slot <= MAX_SLOTS; slot++) {
    const file = join(dir, `${stem}.${slot}.pid`)
    if (!take(file, pid)) continue
    return {
      slot,
      identity: slotIdentity(base, workspaceDir, slot),
      release () {
        try {
          if (readFileSync(file, 'utf8').trim() === String(pid)) unlinkSync(file)
        } catch {
          // already gone
        }
      }
    }
  }
  // Every slot is held by a live process: share the default identity (the coordinator then
  // keeps only the newest connection of it, and the others report MPAC_ERR_REPLACED).
  return { slot: 1, identity: base, release () {} }
}

/** Creates `file` holding `pid`, exclusively; takes over a file whose process is gone. */
function take (file: string, pid: number): boolean {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      try {
        writeFileSync(fd, `${pid}\n`)
      } finally {
        closeSync(fd)
      }
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
    let holder: number
    try {
      holder = Number(readFileSync(file, 'utf8').trim())
    } catch {
      continue // removed meanwhile: try again
    }
    // An empty file is one being written right now by its creator: taken.
    if (!Number.isInteger(holder) || holder <= 0 || isProcessAlive(holder)) return false
    try {
      unlinkSync(file)
    } catch {
      // another process took it over first
    }
  }
  return false
}
