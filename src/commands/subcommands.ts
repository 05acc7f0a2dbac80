import type { CommandDef } from 'citty'

/** The subcommands of `nixipfs`, by name, each loaded when it is run. */
export const SUBCOMMANDS: Record<string, () => Promise<CommandDef<any>>> = {
  keygen: async () => (await import('./keygen.js')).default,
  publish: async () => (await import('./publish.js')).default,
  gateway: async () => (await import('./gateway.js')).default,
  info: async () => (await import('./info.js')).default,
  ls: async () => (await import('./ls.js')).default,
  'export-car': async () => (await import('./export-car.js')).default,
  republish: async () => (await import('./republish.js')).default,
  mirror: async () => (await import('./mirror.js')).default,
  gc: async () => (await import('./gc.js')).default,
  fsck: async () => (await import('./fsck.js')).default,
  disputes: async () => (await import('./disputes.js')).default,
  config: async () => (await import('./config.js')).default,
  doctor: async () => (await import('./doctor.js')).default,
  verify: async () => (await import('./verify.js')).default,
  import: async () => (await import('./import.js')).default,
  use: async () => (await import('./use.js')).default,
  watch: async () => (await import('./watch.js')).default,
  'pin-remote': async () => (await import('./pin-remote.js')).default,
  precompress: async () => (await import('./precompress.js')).default
}
