/**
 * The contract between the pure coordinator core and everything around it
 * (the server runtime, the store, the tests). See docs/architecture.md.
 *
 * The core is deterministic: the same sequence of `CoreInput`s applied to the
 * same starting state (a fresh coordinator built from a config, or one restored
 * from a snapshot) yields exactly the same outputs and the same state. Time and
 * ids are inputs; nothing in the core awaits, sets timers or does I/O.
 */

/** Who receives an output. The server maps this to connections. */
export type Audience =
  /** Only the connection the inbound message arrived on. */
  | { readonly kind: 'sender' }
  /** Every admitted connection of the session (one per principal). */
  | { readonly kind: 'all' }
  /** Every admitted connection of the session except the one the inbound message arrived on (the peers' copy of a relay). */
  | { readonly kind: 'others' }
  /** The admitted connections of these principals (unknown or absent principals are skipped). */
  | { readonly kind: 'principals'; readonly ids: readonly string[] }

/** One frame the server must send, in order. */
export interface Output {
  readonly audience: Audience
  /**
   * A JSON-serialisable frame: an MPAC envelope (coordinator-authored, or the
   * relay of an inbound envelope with `payload.file_changes` removed), or a
   * sideband frame such as `{type:'FILE_UPDATED', path, state_ref, updated_by}`.
   */
  readonly frame: Readonly<Record<string, unknown>>
  /**
   * Set on exactly one output of every `message` input: the terminal frame of
   * that message (DESIGN.md §4.3). It is always the last MPAC envelope of the
   * result that the sender receives; only the sideband FILE_UPDATED pushes of
   * an accepted commit follow it (docs/architecture.md, *Frame order*). On
   * success it is SESSION_INFO (for HELLO) or the relay/echo of the inbound
   * envelope (same `message_id`); on rejection it is the PROTOCOL_ERROR whose
   * `refers_to` is the inbound `message_id`.
   */
  readonly terminal?: true
}

/** The result of a credential check, made by the runtime before the HELLO reaches the core. */
export type Verdict =
  | {
      readonly accepted: true
      /** Roles to grant instead of the role policy / requested roles. Absent → role policy applies. */
      readonly grantedRoles?: readonly string[]
      /** When set, the HELLO must come from exactly this principal id, else CREDENTIAL_REJECTED. */
      readonly principalId?: string
    }
  | { readonly accepted: false; readonly reason: string }

export interface Credential {
  readonly type: string
  readonly value: string
  readonly issuer?: string
  readonly expires_at?: string
}

/**
 * Credential verifier (protocol.md §10.2). Synchronous and pure from the
 * core's point of view. The runtime calls it and journals its verdict so that
 * a replay does not depend on the token table of the day.
 */
export type Verifier = (credential: Credential, sessionId: string, principalId: string) => Verdict

export interface RolePolicy {
  readonly default_role: string
  readonly role_assignments?: Readonly<Record<string, readonly string[]>>
  readonly role_constraints?: Readonly<Record<string, { readonly max_count?: number; readonly allowed_principal_types?: readonly string[] }>>
}

export interface BackendHealthPolicy {
  readonly enabled: boolean
  readonly check_source?: string
  readonly check_interval_sec?: number
  readonly on_degraded?: 'ignore' | 'warn' | 'suspend_and_claim'
  readonly on_down?: 'ignore' | 'warn' | 'suspend_and_claim'
  readonly auto_switch?: 'allowed' | 'notify_first' | 'forbidden'
  readonly allowed_providers?: readonly string[]
}

export interface CoordinatorConfig {
  readonly sessionId: string
  /** 'verified' is refused at configuration time. Default 'open'. */
  readonly securityProfile?: 'open' | 'authenticated'
  /** Default 'core'. */
  readonly complianceProfile?: 'core' | 'governance'
  /** Default 'post_commit'. 'pre_commit' requires 'governance' (the constructor throws otherwise: a configuration error, never an input error). */
  readonly executionModel?: 'post_commit' | 'pre_commit'
  /** Default 30. Also the COORDINATOR_STATUS heartbeat period emitted by `tick`. */
  readonly heartbeatIntervalSec?: number
  /** Default 90. */
  readonly unavailabilityTimeoutSec?: number
  /** Default 300. 0 disables the timeout. */
  readonly resolutionTimeoutSec?: number
  /** Default 0 (the Python coordinator's value). */
  readonly intentClaimGraceSec?: number
  /** Advertised in SESSION_INFO.governance_policy. Default 30. */
  readonly intentExpiryGraceSec?: number
  /** TTL for intents announced without `ttl_sec`. Default 0 = no expiry (Python parity; see docs/compatibility.md). */
  readonly defaultIntentTtlSec?: number
  /** Default 60. */
  readonly deferralTtlSec?: number
  /** Default 300. Authenticated profile only. */
  readonly replayWindowSec?: number
  readonly rolePolicy?: RolePolicy
  /** Used when a `message` input carries no `verdict` (tests, embedding). */
  readonly verifier?: Verifier
  readonly backendHealthPolicy?: BackendHealthPolicy
  /** Envelope `version` and SESSION_INFO.protocol_version. Default '0.1.13' (what Python clients see today). */
  readonly protocolVersion?: string
  /** Total bytes (UTF-8) of file contents the session's workspace may hold. Default 64 MiB. */
  readonly maxWorkspaceBytes?: number
  /** Bytes of one file in `file_changes`. Default 4 MiB. */
  readonly maxFileBytes?: number
  /** Participants (registered principals) per session. Default 256. */
  readonly maxParticipants?: number
  /**
   * Refuse an envelope whose `session_id` differs from this session's with
   * INVALID_REFERENCE. Default true. The server sets false in single-session
   * mode, where protocol.md §2.1 does not recommend the check (the Python
   * bridge's unpinned remote mode sends a locally derived session id).
   */
  readonly checkEnvelopeSessionId?: boolean
  /**
   * Bounded history: the most terminal intents (EXPIRED, WITHDRAWN,
   * SUPERSEDED, TRANSFERRED) and the most settled operations (COMMITTED,
   * REJECTED, ABANDONED, SUPERSEDED) kept, each; likewise terminal
   * conflicts (CLOSED, DISMISSED), batches none of whose entries was
   * recorded, and departed participants (GOODBYE or unavailable) holding no
   * live intent, pending op, claim or deferral. Beyond it the earliest
   * finished ones that no open conflict, pending claim, deferral or pending
   * op refers to are forgotten; a forgotten id may be reused (a forgotten
   * participant must HELLO again). Default 1000.
   */
  readonly maxFinishedRecords?: number
  /**
   * protocol.md §8.5 step 2, progressive degradation of a frozen scope, measured from the freeze.
   * Absent = disabled (default): a frozen scope stays frozen until its conflict is resolved or dismissed.
   * `phase1Sec` (default 60): then phase 2 (escalate to an available arbiter; the owner of the one
   * strictly highest-priority intent may write; else one RESOLUTION_TIMEOUT reminder).
   * `phase2Sec` (default 240): then, when `phase3` (default true), first-committer-wins closes the conflict.
   */
  readonly frozenScopePhases?: { readonly phase1Sec?: number; readonly phase2Sec?: number; readonly phase3?: boolean }
}

export type SessionCloseReason = 'completed' | 'timeout' | 'policy' | 'coordinator_shutdown' | 'manual'

/** Every input the core accepts. The store journals these verbatim (they are JSON-serialisable). */
export type CoreInput =
  /** An inbound frame that is not sideband: already JSON-parsed, not yet validated. */
  | { readonly kind: 'message'; readonly now: number; readonly envelope: unknown; readonly verdict?: Verdict }
  /** Timers: TTL and deferral expiry, liveness, resolution timeouts, claim sweep, COORDINATOR_STATUS heartbeat when due. */
  | { readonly kind: 'tick'; readonly now: number }
  /** Administrative close: SESSION_CLOSE to all. */
  | { readonly kind: 'close'; readonly now: number; readonly reason: SessionCloseReason }
  /**
   * After a restart (once, after replaying the journal): epoch + 1, every
   * participant's last_seen set to `now + graceSec` worth of slack so nobody is
   * declared unavailable before `now + unavailabilityTimeout + graceSec`, and a
   * COORDINATOR_STATUS{event:'recovered'} to all.
   */
  | { readonly kind: 'recovered'; readonly now: number; readonly graceSec: number }
  /**
   * Disk workspace mode: the file at `path` on disk now has this content
   * (null = absent). The runtime feeds this before a commit or read when the
   * disk differs from the core's view, so stale checks see the real file.
   */
  | { readonly kind: 'file_sync'; readonly now: number; readonly path: string; readonly content: string | null }

export interface FileWrite {
  readonly path: string
  readonly content: string
  readonly stateRef: string
}

export interface ApplyResult {
  readonly outputs: readonly Output[]
  /**
   * False only when the input changed nothing a snapshot holds (not even the
   * Lamport clock or the id sequence): an idle tick, say. The store may skip
   * journaling such inputs; every other input must be journaled before any
   * output is sent.
   */
  readonly changed: boolean
  /**
   * For `message` inputs: true when the terminal frame is not a PROTOCOL_ERROR.
   * For a HELLO this means the principal was admitted and the runtime binds the
   * connection to it.
   */
  readonly accepted: boolean
  /** Workspace files this input changed, in order, for the runtime to mirror to disk in workspace mode. */
  readonly fileWrites: readonly FileWrite[]
}

/** Reply shapes of the sideband queries (protocol.md §11.3). */
export interface FileEntry { readonly path: string; readonly state_ref: string; readonly size: number }

/**
 * The snapshot: SPEC §12.2 keys plus everything needed to restore exactly
 * (deferrals, pending claims, workspace files, the per-target ref map, the id
 * sequence, the anti-replay window). JSON-serialisable. Times are epoch
 * milliseconds unless the key says otherwise. Tests may read it to inspect
 * states; the core may add keys but keeps these.
 */
export interface CoordinatorSnapshot {
  readonly snapshot_version: 2
  readonly session_id: string
  readonly protocol_version: string
  /** RFC 3339 */
  readonly captured_at: string
  readonly coordinator_epoch: number
  readonly lamport_clock: number
  readonly session_closed: boolean
  readonly participants: ReadonlyArray<{
    readonly principal_id: string
    readonly principal_type: string
    readonly display_name: string
    readonly roles: readonly string[]
    readonly status: string
    readonly is_available: boolean
    readonly last_seen: number
  } & Readonly<Record<string, unknown>>>
  readonly intents: ReadonlyArray<{
    readonly intent_id: string
    readonly principal_id: string
    readonly state: string
    readonly objective: string
    readonly scope: unknown
    readonly expires_at: number | null
    readonly claimed_by: string | null
  } & Readonly<Record<string, unknown>>>
  readonly operations: ReadonlyArray<{
    readonly op_id: string
    readonly intent_id: string | null
    readonly principal_id: string
    readonly state: string
    readonly target: string
    readonly state_ref_before: string | null
    readonly state_ref_after: string | null
    readonly batch_id: string | null
  } & Readonly<Record<string, unknown>>>
  readonly conflicts: ReadonlyArray<{
    readonly conflict_id: string
    readonly state: string
    readonly category: string
    readonly related_intents: readonly string[]
    readonly related_ops: readonly string[]
    readonly escalated_to: string | null
    readonly scope_frozen: boolean
  } & Readonly<Record<string, unknown>>>
  readonly pending_claims: ReadonlyArray<Readonly<Record<string, unknown>>>
  readonly deferrals: ReadonlyArray<Readonly<Record<string, unknown>>>
  /** path → {content, state_ref} */
  readonly files: Readonly<Record<string, { readonly content: string; readonly state_ref: string }>>
  readonly [key: string]: unknown
}
