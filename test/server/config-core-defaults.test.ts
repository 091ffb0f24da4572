// The coordinator's defaults are written once, in CORE_DEFAULTS: the core
// resolves an empty configuration to them, and the sidecar passes them and
// prints them in its help for every setting that configures the core.
import t from 'tap'
import { CORE_DEFAULTS, resolveSettings } from '../../src/coordinator/settings.js'
import { loadServerConfig, SETTINGS, type ServerConfig } from '../../src/server/config.js'

t.test('the core resolves an unset setting to its CORE_DEFAULTS value', async t => {
  const s = resolveSettings({ sessionId: 's' })
  for (const [key, value] of Object.entries(CORE_DEFAULTS)) {
    if (key === 'protocolVersion' || key === 'frozenScopePhases') continue
    t.equal(s[key as keyof typeof s], value, key)
  }
  t.equal(s.frozenScopePhases, undefined, 'progressive degradation is off unless configured')
  t.same(resolveSettings({ sessionId: 's', frozenScopePhases: {} }).frozenScopePhases, CORE_DEFAULTS.frozenScopePhases, 'phase lengths')
  t.equal(resolveSettings({ sessionId: 's', heartbeatIntervalSec: 0 }).heartbeatIntervalSec, CORE_DEFAULTS.heartbeatIntervalSec, 'a zero heartbeat falls back to the default')
  t.ok(Object.isFrozen(CORE_DEFAULTS) && Object.isFrozen(CORE_DEFAULTS.frozenScopePhases), 'the table cannot be changed at run time')
})

/** Sidecar flag → where loadServerConfig puts it → the core setting it configures. */
const MAPPED: Array<[flag: string, read: (c: ServerConfig) => unknown, core: keyof typeof CORE_DEFAULTS]> = [
  ['compliance-profile', c => c.complianceProfile, 'complianceProfile'],
  ['execution-model', c => c.executionModel, 'executionModel'],
  ['unavailability-timeout', c => c.unavailabilityTimeoutSec, 'unavailabilityTimeoutSec'],
  ['resolution-timeout', c => c.resolutionTimeoutSec, 'resolutionTimeoutSec'],
  ['claim-grace', c => c.claimGraceSec, 'intentClaimGraceSec'],
  ['heartbeat-interval', c => c.heartbeatIntervalSec, 'heartbeatIntervalSec'],
  ['max-participants', c => c.limits.maxParticipants, 'maxParticipants'],
  ['max-workspace-bytes', c => c.limits.maxWorkspaceBytes, 'maxWorkspaceBytes'],
  ['max-intents-per-participant', c => c.limits.maxIntentsPerParticipant, 'maxIntentsPerParticipant'],
  ['max-intents-per-session', c => c.limits.maxIntentsPerSession, 'maxIntentsPerSession'],
  ['max-scope-files', c => c.limits.maxScopeFiles, 'maxScopeFiles'],
  ['max-open-conflicts', c => c.limits.maxOpenConflicts, 'maxOpenConflicts']
]

t.test('the sidecar passes and prints the core defaults', async t => {
  const r = loadServerConfig([], { HOME: '/home/u' })
  if (!r.ok) throw new Error(r.error.message)
  for (const [flag, read, core] of MAPPED) {
    t.equal(read(r.value), CORE_DEFAULTS[core], `--${flag} defaults to CORE_DEFAULTS.${core}`)
    const help = SETTINGS.find(s => s.flag === flag)?.help ?? ''
    t.match(help, `default ${String(CORE_DEFAULTS[core])}`, `--${flag} help prints it`)
  }
  const phases = SETTINGS.find(s => s.flag === 'frozen-scope-phases')?.help ?? ''
  const { phase1Sec, phase2Sec } = CORE_DEFAULTS.frozenScopePhases
  t.match(phases, `after ${phase1Sec} s escalate`, 'phase 2 starts after phase1Sec')
  t.match(phases, `after ${phase1Sec + phase2Sec} s first committer wins`, 'phase 3 starts after phase1Sec + phase2Sec')
})
