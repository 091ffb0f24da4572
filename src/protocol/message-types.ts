/** The 22 MPAC message types, spelled as on the wire (protocol.md §0, §4). */
export const MESSAGE_TYPES = [
  'HELLO',
  'SESSION_INFO',
  'HEARTBEAT',
  'GOODBYE',
  'SESSION_CLOSE',
  'COORDINATOR_STATUS',
  'INTENT_ANNOUNCE',
  'INTENT_UPDATE',
  'INTENT_WITHDRAW',
  'INTENT_DEFERRED',
  'INTENT_CLAIM',
  'INTENT_CLAIM_STATUS',
  'OP_PROPOSE',
  'OP_COMMIT',
  'OP_BATCH_COMMIT',
  'OP_REJECT',
  'OP_SUPERSEDE',
  'CONFLICT_REPORT',
  'CONFLICT_ACK',
  'CONFLICT_ESCALATE',
  'RESOLUTION',
  'PROTOCOL_ERROR'
] as const

export type MessageType = typeof MESSAGE_TYPES[number]

/**
 * Types only the coordinator authors (their envelopes carry coordinator_epoch).
 * A participant's copy is echoed to it and changes nothing.
 */
export const COORDINATOR_AUTHORED_TYPES = ['SESSION_INFO', 'SESSION_CLOSE', 'COORDINATOR_STATUS', 'INTENT_CLAIM_STATUS'] as const satisfies readonly MessageType[]
export type CoordinatorAuthoredType = typeof COORDINATOR_AUTHORED_TYPES[number]

/** The types a participant may send: every type not listed as coordinator-authored (each needs a core handler). */
export type ParticipantMessageType = Exclude<MessageType, CoordinatorAuthoredType>

const MESSAGE_TYPE_SET: ReadonlySet<string> = new Set(MESSAGE_TYPES)

export function isMessageType (value: unknown): value is MessageType {
  return typeof value === 'string' && MESSAGE_TYPE_SET.has(value)
}

/** Sideband (non-MPAC) request frames, recognised by a `type` key (protocol.md §11.3). */
export const SIDEBAND_REQUESTS = ['SESSION_SUMMARY', 'FILE_READ', 'FILE_LIST'] as const
export type SidebandRequest = typeof SIDEBAND_REQUESTS[number]

/** Sideband reply and push frames. */
export const SIDEBAND_REPLIES = ['SESSION_SUMMARY_RESPONSE', 'FILE_CONTENT', 'FILE_ERROR', 'FILE_LIST_RESPONSE', 'FILE_UPDATED'] as const
export type SidebandReply = typeof SIDEBAND_REPLIES[number]
