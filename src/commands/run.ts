import { consola } from 'consola'

/** Waits for SIGINT or SIGTERM, then stops gracefully; a second signal stops at once. */
export async function runUntilSignal (stop: () => Promise<void>): Promise<void> {
  await new Promise<void>(resolve => {
    process.once('SIGINT', () => resolve())
    process.once('SIGTERM', () => resolve())
  })
  consola.info('shutting down (a second Ctrl-C or SIGTERM stops at once)')
  // Draining waits up to 10 s for slow readers: an operator who asks again has decided not to wait.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.removeAllListeners(signal)
    process.once(signal, () => {
      consola.warn(`${signal} again: stopping without finishing the requests in flight`)
      process.exit(130)
    })
  }
  await stop()
}
