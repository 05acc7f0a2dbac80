import { CID } from 'multiformats/cid'
import { describe, expect, it } from 'vitest'
import type { ServedIndex } from '../../src/cache/index.js'
import type { IndexSource } from '../../src/cache/source.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import type { Network } from '../../src/net/network.js'
import { startDiscovery, withDiscovery } from '../../src/trust/discover.js'
import { UnavailableError } from '../../src/errors.js'
import type { ServedCaches } from '../../src/cache/union.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { fingerprint, formatNarInfo, parseNarInfo, type NarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey, publicKeyOf, signFingerprint, type SecretKey } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

const quiet = { info: () => {}, warn: () => {}, debug: () => {} }
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** An in-memory stand-in of the network facade: one DHT peer, no provider, no record, no block, but for `parts`. */
const fakeNetwork = (parts: Partial<Record<keyof Network, unknown>>): Network => ({
  routing: { size: () => 1, findProviders: async function * () {} },
  delegated: [],
  findProviders: async function * () {},
  cachesHolding: async () => [],
  records: async () => [],
  blocks: { get: async function * () { yield * []; throw new Error('no blocks here') } },
  ...parts
}) as unknown as Network
/** A provider search that finds one provider after 20 ms. */
async function * oneProvider (): AsyncGenerator<{ id: string, addresses: string[] }> { await sleep(20); yield { id: 'provider', addresses: [] } }

// The end-to-end behaviour is in test/e2e/discover.test.ts and network.test.ts
// on a real loopback DHT. Here, a routing that overruns the deadline, which a
// loaded DHT did (12.4 s for a 3 s deadline): a stand-in network whose
// provider search ignores its signal.
describe('discovery', () => {
  it('answers a narinfo request soon after the deadline even when the provider search overruns it', async () => {
    let searching = true
    async function * stuck (): AsyncGenerator<never> { while (searching) await new Promise(resolve => setTimeout(resolve, 50)) }
    const network = fakeNetwork({ routing: { size: () => 1, findProviders: stuck }, findProviders: stuck })
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

  /** A trusted cache that one provider names for every path (its answer taking `holdingMs`), whose record takes `recordMs` to come. */
  async function namedCache (recordMs: number, holdingMs = 0): Promise<{ discovery: ReturnType<typeof startDiscovery>, opened: string[], sources: Map<string, IndexSource> }> {
    const key = generateSecretKey('builder')
    const name = ipnsNameOf(key.publicKey)
    const record = (await signRecord(key.seed, CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), 1n, 3600_000)).bytes
    const network = fakeNetwork({
      findProviders: oneProvider,
      cachesHolding: async (_provider: unknown, _hash: string, signal: AbortSignal) => await new Promise((resolve, reject) => {
        const timer = setTimeout(() => resolve([{ name, narinfo: '' }]), holdingMs)
        signal.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
      }),
      // The record comes from the provider that named the cache (not from a look-up by name alone).
      records: async (_name: string, _signal: AbortSignal, _settleMs: number, prefer: string[] = []) => {
        if (!prefer.includes('provider')) return []
        await sleep(recordMs)
        return [{ from: 'provider', bytes: record }]
      }
    })
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

  // The 50-node bench: a provider found 2.4 s into a lookup was still being asked at the 3 s deadline, which cut its
  // answer off: a 404 for a path it held (Nix remembers one for an hour).
  it('gives a provider found near the deadline time to answer, instead of a 404', async () => {
    const { discovery, opened } = await namedCache(0, 600)
    try {
      expect(await discovery.find('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(true)
      expect(opened).toHaveLength(1)
    } finally {
      discovery.stop()
    }
  }, 10_000)

  it('looks the trusted caches up by name at start, and a failure then does not keep a lookup from asking again, nor its follower', async () => {
    const key = generateSecretKey('builder')
    const name = ipnsNameOf(key.publicKey)
    const record = (await signRecord(key.seed, CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'), 1n, 3600_000)).bytes
    let published = false
    const asked: string[] = []
    const network = fakeNetwork({ records: async (n: string) => { asked.push(n); return published ? [{ from: 'dht', bytes: record }] : [] } })
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
      await sleep(100)
      // Asked again by the lookup; not by the follower it started, which takes the record the lookup stored (asking
      // at once doubled the DHT walks of every discovered cache).
      expect(asked).toEqual([name, name])
      expect(opened).toEqual([name])
    } finally {
      discovery.stop()
    }
  }, 10_000)

  /** Discovery of a cache whose root is `root`, found through one provider (`address`), on a network with `parts`. */
  async function foundThroughProvider (root: CID, parts: Partial<Record<keyof Network, unknown>>, addresses: string[] = []): Promise<ReturnType<typeof startDiscovery>> {
    const key = generateSecretKey('builder')
    const name = ipnsNameOf(key.publicKey)
    const record = (await signRecord(key.seed, root, 1n, 3600_000)).bytes
    return startDiscovery({
      repo: tmp(),
      network: fakeNetwork({
        findProviders: async function * (cid: CID) { if (!cid.equals(root)) { await sleep(20); yield { id: PROVIDER, addresses } } },
        cachesHolding: async () => [{ name, narinfo: '' }],
        records: async () => [{ from: 'provider', bytes: record }],
        addHolder: async () => true,
        ...parts
      }),
      // More trusted keys than caches followed: found through the provider alone, not also looked up by name.
      keys: [publicKeyOf(key), publicKeyOf(generateSecretKey('absent'))],
      maxCaches: 1,
      requireSignature: false,
      caches: { sources: new Map(), served: [], open: () => ({ current: async () => undefined, recheck: () => {} }) },
      followOptions: { intervalMs: 3600_000 } as never,
      deadlineMs: 300,
      log: quiet
    })
  }
  const ROOT = CID.parse('bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy')
  const HASH = '0c6kzph7l0dcbfmjap64f0czdafn3b7x'
  const PROVIDER = '12D3KooWE9KvWsAw6N8gEud4eMtrgahWKDxTF1kAS6SDkjPvSzHR'

  // Found by an outside test: a gateway stopped while it looked its trusted caches up said it found none of them.
  it('says nothing of the caches it looked up by name at start when it was stopped meanwhile', async () => {
    const said: string[] = []
    const slow = async (): Promise<never[]> => { await sleep(300); return [] }
    const discovery = startDiscovery({
      repo: tmp(),
      network: fakeNetwork({ records: slow, cachesHolding: slow }),
      keys: [publicKeyOf(generateSecretKey('a'))],
      requireSignature: false,
      caches: { sources: new Map(), served: [], open: () => { throw new Error('nothing is followed here') } },
      followOptions: {} as never,
      log: { ...quiet, info: (m: string) => said.push(m) }
    })
    await sleep(50)
    discovery.stop()
    await sleep(400)
    expect(said.filter(m => /found by name at start/.test(m))).toEqual([])
  })

  // The 50-node bench: each client's first lookup was its slowest (0.6–1 s, the others 0.3 s at p50): its first DHT
  // walk, with no connection open yet and the code cold.
  it('walks the DHT once at start when there are more trusted keys than caches it follows, and says when it is ready', async () => {
    const walks: string[] = []
    const said: string[] = []
    const discovery = startDiscovery({
      repo: tmp(),
      network: fakeNetwork({ findProviders: async function * (cid: CID) { walks.push(cid.toString()); await sleep(50) } }),
      keys: [publicKeyOf(generateSecretKey('a')), publicKeyOf(generateSecretKey('b'))],
      maxCaches: 1,
      requireSignature: false,
      caches: { sources: new Map(), served: [], open: () => { throw new Error('nothing is followed here') } },
      followOptions: {} as never,
      log: { ...quiet, info: (m: string) => said.push(m) }
    })
    try {
      for (let i = 0; i < 50 && said.length === 0; i++) await sleep(20)
      expect(walks).toHaveLength(1)
      expect(said).toEqual([expect.stringMatching(/^discovery: ready \(a first provider search took \d+ ms\)$/)])
    } finally {
      discovery.stop()
    }
  })

  // The 50-node bench: following a cache found by discovery walked the DHT for a second holder of its root at once,
  // a walk per cache found, beside the next lookups Nix waited for.
  it('looks for a second holder of a cache found through its provider only once no lookup is under way', async () => {
    const rootWalks: number[] = []
    const started = Date.now()
    const discovery = await foundThroughProvider(ROOT, {
      routing: { size: () => 1, findProviders: async function * () {} },
      findProviders: async function * (cid: CID) { if (cid.equals(ROOT)) rootWalks.push(Date.now() - started); else { await sleep(20); yield { id: PROVIDER, addresses: [] } } }
    })
    try {
      expect(await discovery.find(HASH)).toBe(true)
      await sleep(1_000)
      expect(rootWalks).toEqual([]) // the provider that named it holds it: the index comes from there
      await discovery.idle(AbortSignal.timeout(10_000))
      for (let i = 0; i < 100 && rootWalks.length === 0; i++) await sleep(20)
      expect(rootWalks).toHaveLength(1)
    } finally {
      discovery.stop()
    }
  }, 15_000)

  // The 50-node bench: the client dialled every provider that named a cache over libp2p (a Noise handshake and
  // identify on both sides, one per cache found), though the provider's trustless gateway serves the index.
  it('takes the provider that named a cache as a holder over its trustless gateway, without a libp2p dial', async () => {
    let dials = 0
    let holders = 0
    const p2p = { libp2p: { getConnections: () => [], peerStore: { merge: async () => {} }, dial: async () => { dials++ } } }
    const discovery = await foundThroughProvider(ROOT, { p2p, addHolder: async () => { holders++; return true } }, ['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/8080/http'])
    try {
      expect(await discovery.find(HASH)).toBe(true)
      for (let i = 0; i < 50 && holders === 0; i++) await sleep(20)
      expect(holders).toBe(1)
      expect(dials).toBe(0)
    } finally {
      discovery.stop()
    }
  }, 10_000)
})

// A provider of a path's rendezvous CID hands over, with each cache's name, the narinfo it holds there. Before, a
// discovered narinfo waited for the cache's record, a holder and its index (p50 4 s on the 50-node bench, after the
// provider's answer at 0.6 s). Only what a trusted key signed for that very path is served from it.
describe('narinfos handed over by a provider', () => {
  const HASH = '0c6kzph7l0dcbfmjap64f0czdafn3b7x'
  const narCid = cidOf(RAW_CODE, Buffer.from('a NAR'))
  const narInfoText = (signer: SecretKey, storePath = `/nix/store/${HASH}-hello-2.12`, forge?: SecretKey, nar = narCid): string => {
    const base: NarInfo = { storePath, url: `nar/${nar.toString()}.nar`, compression: 'none', narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: 1000, references: [], sigs: [] }
    const sig = signFingerprint(forge ?? signer, fingerprint(base)).replace(/^[^:]*:/, `${signer.name}:`)
    return formatNarInfo({ ...base, sigs: [sig] })
  }

  /** Discovery on a network whose one provider names `name` with `narinfo`, and whose records never come. */
  function handingOver (key: SecretKey, narinfo: (name: string) => string, enough = 1, also?: SecretKey, index?: ServedIndex, indexAfterMs = 0): { discovery: ReturnType<typeof startDiscovery>, sources: Map<string, IndexSource>, opened: string[] } {
    const name = ipnsNameOf(key.publicKey)
    const network = fakeNetwork({
      findProviders: oneProvider,
      cachesHolding: async () => [{ name, narinfo: narinfo(name) }, ...(also === undefined ? [] : [{ name: ipnsNameOf(also.publicKey), narinfo: narinfo(name) }])],
      // With an index, the record search ends at once (the index stands for what the repo holds).
      records: async (_name: string, signal: AbortSignal) => index !== undefined ? [] : await new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)))
    })
    const sources = new Map<string, IndexSource>()
    const opened: string[] = []
    const discovery = startDiscovery({
      repo: tmp(),
      network,
      keys: [key, ...(also === undefined ? [] : [also])].map(publicKeyOf),
      requireSignature: true,
      enough,
      caches: { sources, served: [], open: (n) => { opened.push(n); return { current: async () => { await sleep(indexAfterMs); return index ?? await new Promise(() => {}) }, recheck: () => {} } } },
      followOptions: { intervalMs: 3600_000 } as never,
      deadlineMs: 2_000,
      warmUp: false,
      log: quiet
    })
    return { discovery, sources, opened }
  }

  it('serves a narinfo a trusted key signed at once, while the cache\'s record and index have not come', async () => {
    const key = generateSecretKey('builder')
    const { discovery, sources } = handingOver(key, () => narInfoText(key))
    try {
      const started = Date.now()
      expect(await discovery.find(HASH)).toBe(true)
      expect(Date.now() - started).toBeLessThan(1_000)
      const index = await [...sources.values()][0]!.current()
      const served = await index!.narInfo(HASH)
      expect(served?.text).toBe(narInfoText(key))
      expect(served?.nar.toString()).toBe(narCid.toString())
      expect(await index!.nar(narCid.toString())).toMatchObject({ narSize: 1000, narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s' })
    } finally {
      discovery.stop()
    }
  }, 10_000)

  it('serves nothing a provider hands over with a forged signature, for another path, or that is no narinfo', async () => {
    const key = generateSecretKey('builder')
    const other = generateSecretKey('sybil')
    await Promise.all([narInfoText(key, undefined, other), narInfoText(key, '/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-hello-2.12'), 'StorePath: /nix/store/x\nnot a narinfo\n'].map(async text => {
      const { discovery, sources } = handingOver(key, () => text)
      try {
        expect(await discovery.find(HASH)).toBe(false)
        for (const source of sources.values()) {
          const index = await Promise.race([source.current(), sleep(200)])
          expect(await index?.narInfo(HASH)).toBeUndefined()
        }
      } finally {
        discovery.stop()
      }
    }))
  }, 30_000)

  it('serves the cache\'s own NAR once its index is open, where a provider handed over its signed narinfo naming another NAR', async () => {
    const key = generateSecretKey('builder')
    // The signature covers neither URL nor FileHash: a Sybil can hand over the builder's narinfo with a NAR of its own.
    const bogus = cidOf(RAW_CODE, Buffer.from('not that NAR'))
    const genuine = narInfoText(key)
    const index: ServedIndex = {
      cacheInfo: '',
      narInfo: async (hash) => hash === HASH ? { text: genuine, info: parseNarInfo(genuine), cid: cidOf(RAW_CODE, Buffer.from(genuine)), nar: narCid } : undefined,
      nar: async (cid) => cid === narCid.toString() ? { cid: narCid, narSize: 1000 } : undefined,
      realisation: async () => undefined,
      log: async () => undefined
    }
    const { discovery, sources } = handingOver(key, () => narInfoText(key, undefined, undefined, bogus), 1, undefined, index)
    try {
      expect(await discovery.find(HASH)).toBe(true)
      // Served at once, the handed-over narinfo; asked again once the cache's follow has ended, the index's.
      let served = await [...sources.values()][0]!.current()
      for (let i = 0; i < 20 && (await served!.narInfo(HASH))?.nar.toString() !== narCid.toString(); i++) {
        await sleep(100)
        served = await [...sources.values()][0]!.current()
      }
      expect((await served!.narInfo(HASH))?.nar.toString()).toBe(narCid.toString())
      // A Nix that was handed the other URL meanwhile (it keeps narinfos for a month) gets the cache's NAR under it.
      expect((await served!.nar(bogus.toString()))?.cid.toString()).toBe(narCid.toString())
    } finally {
      discovery.stop()
    }
  }, 10_000)

  it('serves what was handed over while a followed cache\'s index is still on its way', async () => {
    const key = generateSecretKey('builder')
    const genuine = narInfoText(key)
    const index: ServedIndex = {
      cacheInfo: '',
      narInfo: async (hash) => hash === HASH ? { text: genuine, info: parseNarInfo(genuine), cid: cidOf(RAW_CODE, Buffer.from(genuine)), nar: narCid } : undefined,
      nar: async () => undefined,
      realisation: async () => undefined,
      log: async () => undefined
    }
    // The follow joins at once (its record search ends), and then its index takes 4 s to open.
    const { discovery, sources } = handingOver(key, () => genuine, 1, undefined, index, 4_000)
    try {
      expect(await discovery.find(HASH)).toBe(true)
      await sleep(300) // the follow has joined: nothing of it is pending but its index
      const started = Date.now()
      const served = await [...sources.values()][0]!.current()
      expect((await served!.narInfo(HASH))?.text).toBe(genuine)
      expect(Date.now() - started).toBeLessThan(1_500)
    } finally {
      discovery.stop()
    }
  }, 20_000)

  it('waits for the index when fewer trusted keys signed what was handed over than the threshold needs', async () => {
    const key = generateSecretKey('builder')
    // Two trusted caches hand over the same narinfo, which one key signed: one vote, not two.
    const { discovery } = handingOver(key, () => narInfoText(key), 2, generateSecretKey('builder-2'))
    try {
      const started = Date.now()
      await discovery.find(HASH)
      expect(Date.now() - started).toBeGreaterThanOrEqual(2_000) // the deadline: one cache cannot settle a path two must agree on
    } finally {
      discovery.stop()
    }
  }, 30_000)
})

// A served cache that may hold the path did not answer in time (a 503): discovery is asked all the same, and the
// path is served if it finds it; otherwise the 503 stands, which Nix asks again, where a 404 is remembered an hour.
describe('served caches with discovery', () => {
  const late = new UnavailableError('a cache did not answer within 10 s of another; not counted this time')
  const served = (answers: Array<() => unknown>): (() => Promise<ServedCaches>) => {
    let n = 0
    return async () => ({ cacheInfo: '', narInfo: async () => answers[Math.min(n++, answers.length - 1)]!() as never, nar: async () => undefined, realisation: async () => undefined, log: async () => undefined })
  }
  const finding = (): { find: (hash: string) => Promise<boolean>, missed: (hash: string) => void, stop: () => void, asked: string[], misses: string[] } => {
    const asked: string[] = []
    const misses: string[] = []
    return { asked, misses, find: async (hash) => { asked.push(hash); return true }, missed: (hash) => { misses.push(hash) }, stop: () => {} }
  }

  it('asks discovery when a cache was late, and serves what it found', async () => {
    const discovery = finding()
    const found = { text: 'found' }
    expect(await (await withDiscovery(served([() => { throw late }, () => found]), discovery)())!.narInfo('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(found)
    expect(discovery.asked).toEqual(['0c6kzph7l0dcbfmjap64f0czdafn3b7x'])
  })

  it('asks discovery while a served cache is slow to answer, and serves what it found without waiting for that cache', async () => {
    const discovery = finding()
    const found = { text: 'found' }
    const started = Date.now()
    expect(await (await withDiscovery(served([async () => { await sleep(3_000); throw late }, () => found]), discovery)())!.narInfo('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(found)
    expect(Date.now() - started).toBeLessThan(1_500)
  }, 10_000)

  // The 50-node bench: a discovered cache whose index was on its way held every later discovered narinfo for the
  // whole hedge (150 ms, more under load) before discovery was asked.
  it('asks discovery at once when every open cache lacks the path, while one still opening has not answered', async () => {
    const asked: number[] = []
    const started = Date.now()
    const discovery = { find: async () => { asked.push(Date.now() - started); return true }, missed: () => {} }
    const found = { text: 'found' }
    const caches = withDiscovery(served([async () => { await sleep(1_000); return undefined }, () => found]), discovery, async () => true)
    expect(await (await caches())!.narInfo('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBe(found)
    expect(asked).toHaveLength(1)
    expect(asked[0]).toBeLessThan(100)
    // An open cache that may have it: the hedge stands.
    asked.length = 0
    const hedged = withDiscovery(served([async () => { await sleep(1_000); return undefined }, () => found]), discovery, async () => false)
    const t = Date.now()
    await (await hedged())!.narInfo('1c6kzph7l0dcbfmjap64f0czdafn3b7x')
    expect(asked[0]! - (t - started)).toBeGreaterThanOrEqual(140)
  }, 10_000)

  it('remembers a miss when the caches a lookup added lack the path too, and not while a cache was late', async () => {
    // The lookup added a cache (found: true), which was asked and has nothing: the next request must not look again
    // (the e2e test saw a second lookup for a path nobody has, after one had followed a trusted cache by name).
    const discovery = finding()
    expect(await (await withDiscovery(served([() => undefined]), discovery)())!.narInfo('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).toBeUndefined()
    expect(discovery.misses).toEqual(['0c6kzph7l0dcbfmjap64f0czdafn3b7x'])
    await expect((await withDiscovery(served([() => { throw late }, () => undefined]), discovery)())!.narInfo('1c6kzph7l0dcbfmjap64f0czdafn3b7x')).rejects.toBe(late)
    expect(discovery.misses).toHaveLength(1)
  })

  it('keeps the 503 when discovery finds nothing either', async () => {
    const discovery = finding()
    await expect((await withDiscovery(served([() => { throw late }, () => undefined]), discovery)())!.narInfo('0c6kzph7l0dcbfmjap64f0czdafn3b7x')).rejects.toBe(late)
  })
})
