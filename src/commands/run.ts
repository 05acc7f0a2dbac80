import { consola } from 'consola'

/** Waits for SIGINT or SIGTERM, then stops gracefully. */
export async function runUntilSignal (stop: () => Promise<void>): Promise<void> {
  await new Promise<void>(resolve => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  consola.info('shutting down')
  await stop()
}
