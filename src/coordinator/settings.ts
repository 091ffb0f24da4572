/**
 * The coordinator's settings: CoordinatorConfig with every default applied.
 * CORE_DEFAULTS is the one place a default is written; the sidecar's
 * configuration (src/server/config.ts) passes these values and prints them in
 * its help.
 */
import type { BackendHealthPolicy, CoordinatorConfig, RolePolicy, Verifier } from './types.js'

type FrozenScopePhases = NonNullable<CoordinatorConfig['frozenScopePhases']>

/** Every CoordinatorConfig setting that has a default (the policies and the session id have none). */
type Defaulted = Required<Omit<CoordinatorConfig, 'sessionId' | 'rolePolicy' | 'verifier' | 'backendHealthPolicy' | 'frozenScopePhases'>> & {
  /** The phase lengths used when progressive degradation is enabled (the setting itself is off by default). */
  readonly frozenScopePhases: Required<FrozenScopePhases>
}

/** The default of every coordinator setting (see CoordinatorConfig for what each means). */
export const CORE_DEFAULTS = Object.freeze({
  securityProfile: 'open',
  complianceProfile: 'core',
  executionModel: 'post_commit',
  heartbeatIntervalSec: 30,
  unavailabilityTimeoutSec: 90,
  resolutionTimeoutSec: 300,
  intentClaimGraceSec: 0,
  intentExpiryGraceSec: 30,
  defaultIntentTtlSec: 0,
  deferralTtlSec: 60,
  replayWindowSec: 300,
  protocolVersion: '0.1.13',
  maxWorkspaceBytes: 64 * 1024 * 1024,
  maxFileBytes: 4 * 1024 * 1024,
  maxParticipants: 256,
  maxIntentsPerParticipant: 256,
  maxIntentsPerSession: 4096,
  maxScopeFiles: 1024,
  maxOpenConflicts: 1024,
  checkEnvelopeSessionId: true,
  maxFinishedRecords: 1000,
  frozenScopePhases: Object.freeze({ phase1Sec: 60, phase2Sec: 240, phase3: true })
} as const satisfies Defaulted)

export interface Settings {
  securityProfile: 'open' | 'authenticated'
  complianceProfile: 'core' | 'governance'
  executionModel: 'post_commit' | 'pre_commit'
  heartbeatIntervalSec: number
  unavailabilityTimeoutSec: number
  resolutionTimeoutSec: number
  intentClaimGraceSec: number
  intentExpiryGraceSec: number
  defaultIntentTtlSec: number
  deferralTtlSec: number
  replayWindowSec: number
  rolePolicy: RolePolicy | undefined
  verifier: Verifier | undefined
  backendHealthPolicy: BackendHealthPolicy | undefined
  maxWorkspaceBytes: number
  maxFileBytes: number
  maxParticipants: number
  maxIntentsPerParticipant: number
  maxIntentsPerSession: number
  maxScopeFiles: number
  maxOpenConflicts: number
  checkEnvelopeSessionId: boolean
  maxFinishedRecords: number
  /** §8.5 step 2; undefined = disabled. */
  frozenScopePhases: { phase1Sec: number, phase2Sec: number, phase3: boolean } | undefined
}

function num (v: number | undefined, d: number, name: string): number {
  if (v === undefined) return d
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`invalid coordinator config: ${name} must be a non-negative number`)
  return v
}

/** Resolves defaults; throws only on a bad configuration (never on input). */
export function resolveSettings (c: CoordinatorConfig): Settings {
  const d = CORE_DEFAULTS
  if (typeof c.sessionId !== 'string' || c.sessionId.length === 0) throw new TypeError('invalid coordinator config: sessionId is required')
  const sp = c.securityProfile ?? d.securityProfile
  if ((sp as string) === 'verified') throw new TypeError('invalid coordinator config: the verified security profile is not implemented')
  if (sp !== 'open' && sp !== 'authenticated') throw new TypeError(`invalid coordinator config: securityProfile ${String(sp)}`)
  const cp = c.complianceProfile ?? d.complianceProfile
  if (cp !== 'core' && cp !== 'governance') throw new TypeError(`invalid coordinator config: complianceProfile ${String(cp)}`)
  const em = c.executionModel ?? d.executionModel
  if (em !== 'post_commit' && em !== 'pre_commit') throw new TypeError(`invalid coordinator config: executionModel ${String(em)}`)
  // SPEC §7.8: pre_commit requires the governance profile.
  if (em === 'pre_commit' && cp !== 'governance') throw new TypeError('invalid coordinator config: pre_commit requires the governance compliance profile')
  return {
    securityProfile: sp,
    complianceProfile: cp,
    executionModel: em,
    // 0 falls back to the default.
    heartbeatIntervalSec: num(c.heartbeatIntervalSec, d.heartbeatIntervalSec, 'heartbeatIntervalSec') || d.heartbeatIntervalSec,
    unavailabilityTimeoutSec: num(c.unavailabilityTimeoutSec, d.unavailabilityTimeoutSec, 'unavailabilityTimeoutSec'),
    resolutionTimeoutSec: num(c.resolutionTimeoutSec, d.resolutionTimeoutSec, 'resolutionTimeoutSec'),
    intentClaimGraceSec: num(c.intentClaimGraceSec, d.intentClaimGraceSec, 'intentClaimGraceSec'),
    intentExpiryGraceSec: num(c.intentExpiryGraceSec, d.intentExpiryGraceSec, 'intentExpiryGraceSec'),
    defaultIntentTtlSec: num(c.defaultIntentTtlSec, d.defaultIntentTtlSec, 'defaultIntentTtlSec'),
    deferralTtlSec: num(c.deferralTtlSec, d.deferralTtlSec, 'deferralTtlSec'),
    replayWindowSec: num(c.replayWindowSec, d.replayWindowSec, 'replayWindowSec'),
    rolePolicy: c.rolePolicy,
    verifier: c.verifier,
    backendHealthPolicy: c.backendHealthPolicy,
    maxWorkspaceBytes: num(c.maxWorkspaceBytes, d.maxWorkspaceBytes, 'maxWorkspaceBytes'),
    maxFileBytes: num(c.maxFileBytes, d.maxFileBytes, 'maxFileBytes'),
    maxParticipants: num(c.maxParticipants, d.maxParticipants, 'maxParticipants'),
    maxIntentsPerParticipant: num(c.maxIntentsPerParticipant, d.maxIntentsPerParticipant, 'maxIntentsPerParticipant'),
    maxIntentsPerSession: num(c.maxIntentsPerSession, d.maxIntentsPerSession, 'maxIntentsPerSession'),
    maxScopeFiles: num(c.maxScopeFiles, d.maxScopeFiles, 'maxScopeFiles'),
    maxOpenConflicts: num(c.maxOpenConflicts, d.maxOpenConflicts, 'maxOpenConflicts'),
    checkEnvelopeSessionId: c.checkEnvelopeSessionId === false ? false : d.checkEnvelopeSessionId,
    maxFinishedRecords: num(c.maxFinishedRecords, d.maxFinishedRecords, 'maxFinishedRecords'),
    frozenScopePhases: c.frozenScopePhases === undefined
      ? undefined
      : {
          phase1Sec: num(c.frozenScopePhases.phase1Sec, d.frozenScopePhases.phase1Sec, 'frozenScopePhases.phase1Sec'),
          phase2Sec: num(c.frozenScopePhases.phase2Sec, d.frozenScopePhases.phase2Sec, 'frozenScopePhases.phase2Sec'),
          phase3: c.frozenScopePhases.phase3 === false ? false : d.frozenScopePhases.phase3
        }
  }
}
