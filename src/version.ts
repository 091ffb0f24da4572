/** The package version; kept equal to package.json's `version` (checked by test/smoke.test.ts). */
export const VERSION = '0.1.0'
