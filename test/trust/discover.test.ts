import { describe, expect, it } from 'vitest'
import type { Network } from '../../src/net/network.js'
import { startDiscovery } from '../../src/trust/discover.js'
import { generateSecretKey, publicKeyOf } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

// The end-to-end behaviour is in test/e2e/discover.test.ts and network.test.ts
// on a real loopback DHT. Here, a routing that overruns the deadline, which a
// loaded DHT did (12.4 s for a 3 s deadline): an in-memory stand-in of the
// network facade whose provider search ignores its signal.
describe('discovery', () => {
  it('answers a narinfo request soon after the deadline even when the provider search overruns it', async () => {
    let searching = true
    async function * stuck (): AsyncGenerator<never> { while (searching) await new Promise(resolve => setTimeout(resolve, 50)) }
    const network = { routing: { size: () => 1, findProviders: stuck }, delegated: [], findProviders: stuck, cachesHolding: async () => [], records: async () => [] } as unknown as Network
    const key = publicKeyOf(generateSecretKey('builder'))
    const discovery = startDiscovery({
      repo: tmp(),
      network,
      keys: [key],
      requireSignature: true,
      caches: { sources: new Map(), served: [], open: () => { throw new Error('nothing is followed here') } },
      followOptions: {} as never,
      deadlineMs: 300,
      log: { info: () => {}, warn: () => {}, debug: () => {} }
    })
    try {
      const started = Date.now()
      expect(await discovery.find('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(false)
      expect(Date.now() - started).toBeLessThan(300 + 500 + 400)
    } finally {
      searching = false
      discovery.stop()
    }
  }, 5_000)
})
