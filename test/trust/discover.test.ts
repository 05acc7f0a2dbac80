import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import type { IndexSource } from '../../src/cache/source.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import type { Network } from '../../src/net/network.js'
import { startDiscovery } from '../../src/trust/discover.js'
import { generateSecretKey, publicKeyOf } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

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

  /** A trusted cache that one provider names for every path, whose record takes `recordMs` to come. */
  async function namedCache (recordMs: number): Promise<{ discovery: ReturnType<typeof startDiscovery>, opened: string[], sources: Map<string, IndexSource> }> {
    const key = generateSecretKey('builder')
    const name = ipnsNameOf(key.publicKey)
    const record = (await signRecord(key.seed, CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), 1n, 3600_000)).bytes
    async function * provider (): AsyncGenerator<{ id: string, addresses: string[] }> { await sleep(20); yield { id: 'provider', addresses: [] } }
    const network = {
      routing: { size: () => 1, findProviders: async function * () {} },
      delegated: [],
      findProviders: provider,
      cachesHolding: async () => [name],
      records: async () => { await sleep(recordMs); return [{ from: 'provider', bytes: record }] },
      blocks: { get: async () => { throw new Error('no blocks here') } }
    } as unknown as Network
    const opened: string[] = []
    const sources = new Map<string, IndexSource>()
    const discovery = startDiscovery({
      repo: tmp(),
      network,
      keys: [publicKeyOf(key)],
      requireSignature: false,
      caches: { sources, served: [], open: (n) => { opened.push(n); return { current: async () => undefined, recheck: () => {} } } },
      followOptions: { intervalMs: 3600_000 } as never,
      deadlineMs: 300,
      warmUp: false,
      log: quiet
    })
    return { discovery, opened, sources }
  }

  it('follows a cache once when concurrent lookups for two paths both find it', async () => {
    const { discovery, opened, sources } = await namedCache(200)
    try {
      expect(await Promise.all([discovery.find('0c6kzph7l0dcbfmjap64f0czdafn3b7x'), discovery.find('1c6kzph7l0dcbfmjap64f0czdafn3b7x')])).toEqual([true, true])
      expect(opened).toHaveLength(1)
      expect(sources.size).toBe(1)
    } finally {
      discovery.stop()
    }
  }, 10_000)

  it('waits past the deadline for a trusted cache named as holding the path, instead of a 404', async () => {
    // The record comes 1.5 s in, long after the 0.3 s deadline (and its grace): Nix would have cached a miss for an hour.
    const { discovery, opened } = await namedCache(1_500)
    try {
      const started = Date.now()
      expect(await discovery.find('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(true)
      expect(Date.now() - started).toBeGreaterThanOrEqual(1_500)
      expect(opened).toHaveLength(1)
    } finally {
      discovery.stop()
    }
  }, 20_000)

  it('looks the trusted caches up by name at start, and a failure then does not keep a lookup from asking again', async () => {
    const key = generateSecretKey('builder')
    const name = ipnsNameOf(key.publicKey)
    const record = (await signRecord(key.seed, CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), 1n, 3600_000)).bytes
    let published = false
    const asked: string[] = []
    const network = {
      routing: { size: () => 1, findProviders: async function * () {} },
      delegated: [],
      findProviders: async function * () {},
      cachesHolding: async () => [],
      records: async (n: string) => { asked.push(n); return published ? [{ from: 'dht', bytes: record }] : [] },
      blocks: { get: async () => { throw new Error('no blocks here') } }
    } as unknown as Network
    const opened: string[] = []
    const discovery = startDiscovery({
      repo: tmp(),
      network,
      keys: [publicKeyOf(key)],
      requireSignature: false,
      caches: { sources: new Map(), served: [], open: (n) => { opened.push(n); return { current: async () => undefined, recheck: () => {} } } },
      followOptions: { intervalMs: 3600_000 } as never,
      deadlineMs: 300,
      log: quiet
    })
    try {
      for (let i = 0; i < 50 && asked.length === 0; i++) await sleep(10)
      expect(asked).toEqual([name]) // at start, before any request
      await sleep(50)
      published = true
      expect(await discovery.find('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(true)
      expect(asked.slice(0, 2)).toEqual([name, name]) // asked again by the lookup (then by the follower it started)
      expect(opened).toEqual([name])
    } finally {
      discovery.stop()
    }
  }, 10_000)
})
