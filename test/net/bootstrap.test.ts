import { getEventListeners } from 'node:events'
import { describe, expect, it } from 'vitest'
import { pause } from '../../src/net/bootstrap.js'

describe('bootstrap', () => {
  it('waits between dials without leaving a listener on the stop signal, and ends a wait when stopped', async () => {
    const stop = new AbortController()
    for (let i = 0; i < 20; i++) await pause(1, stop.signal)
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(0)
    const started = Date.now()
    setTimeout(() => stop.abort(), 20)
    await pause(60_000, stop.signal)
    expect(Date.now() - started).toBeLessThan(5_000)
  })
})
