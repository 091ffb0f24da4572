/** The coordinator core's public surface (docs/architecture.md). */
export { Coordinator, helloFirst } from './coordinator.js'
export type * from './types.js'
