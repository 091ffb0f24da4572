import { randomUUID } from 'node:crypto'
import { CORE_DEFAULTS } from '../coordinator/settings.js'
import { protocolErrorPayload, type ProtocolError } from '../protocol/protocol-error.js'

export interface ServerErrorFrame extends ProtocolError {
  readonly sessionId: string
  readonly coordinatorId: string
  /** The envelope `version` (default the core's, CORE_DEFAULTS.protocolVersion, unless configured otherwise). */
  readonly version?: string
  /** When it is sent (epoch ms). */
  readonly now: number
}

/**
 * A PROTOCOL_ERROR the server authors for an input the core never sees
 * (connection limits and framing, refusals before admission, the journal
 * budget, workspace writes): not sequenced by the core, so no watermark and
 * no coordinator_epoch, and not journaled. Its payload comes from the same
 * builder as the core's errors.
 */
export function serverErrorFrame (f: ServerErrorFrame): Record<string, unknown> {
  return {
    protocol: 'MPAC',
    version: f.version ?? CORE_DEFAULTS.protocolVersion,
    message_type: 'PROTOCOL_ERROR',
    message_id: randomUUID(),
    session_id: f.sessionId,
    sender: { principal_id: f.coordinatorId, principal_type: 'service', sender_instance_id: `${f.coordinatorId}:server` },
    ts: new Date(f.now).toISOString(),
    payload: protocolErrorPayload(f)
  }
}
