import { describe, expect, it, vi } from 'vitest'
import { CID } from 'multiformats/cid'
import { startAnnouncing } from '../../src/cache/announce.js'
import { addEntries, createCacheRoot, narUrl, type CacheEntry } from '../../src/cache/directory.js'
import { acceptRecord } from '../../src/cache/records.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { DirNodeCache } from '../../src/ipfs/hamt.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { rendezvousCid } from '../../src/net/rendezvous.js'
import type { Routing } from '../../src/net/routing.js'
import { NarHasher } from '../../src/nix/hash.js'
import { formatNarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

const ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz'
/** A distinct store path hash per number and cache. */
const hashOf = (cache: number, i: number): string => [...(cache * 1000 + i).toString(32).padStart(32, '0')].map(d => ALPHABET[parseInt(d, 32)]!).join('')

describe('announcing to the DHT', () => {
  /**
   * A repo holding `count` caches of 40 paths each, with their records and the NARs of the paths `held` chooses (all
   * by default); and which cache each rendezvous CID and each NAR is of.
   */
  async function caches (count: number, held = (i: number) => true): Promise<{ repo: string, blocks: PackStore, names: string[], rendezvous: Map<string, string>, nars: Map<string, string> }> {
    const repo = tmp()
    const blocks = await PackStore.openRepo(repo)
    const names: string[] = []
    const rendezvous = new Map<string, string>()
    const nars = new Map<string, string>()
    for (let cache = 0; cache < count; cache++) {
      const key = generateSecretKey(`builder-${cache}`)
      const entries: CacheEntry[] = []
      for (let i = 0; i < 40; i++) {
        const bytes = new TextEncoder().encode(`nar ${cache} ${i}`)
        const nar = cidOf(RAW_CODE, bytes)
        if (held(i)) await blocks.put(nar, bytes)
        const hasher = new NarHasher()
        hasher.update(bytes)
        const narHash = hasher.digest()
        const narInfo = formatNarInfo({ storePath: `/nix/store/${hashOf(cache, i)}-x`, url: narUrl(nar), compression: 'none', narHash, narSize: bytes.length, references: [], sigs: [] })
        entries.push({ hash: hashOf(cache, i), nar, narTsize: bytes.length, narInfo })
        rendezvous.set(rendezvousCid(hashOf(cache, i)).toString(), ipnsNameOf(key.publicKey))
        nars.set(nar.toString(), ipnsNameOf(key.publicKey))
      }
      await blocks.sync()
      const root = await addEntries(blocks, await createCacheRoot(blocks, 'StoreDir: /nix/store\n'), entries, new DirNodeCache())
      await acceptRecord(repo, ipnsNameOf(key.publicKey), (await signRecord(key.seed, root, 1n, 3600_000)).bytes)
      names.push(ipnsNameOf(key.publicKey))
    }
    return { repo, blocks, names, rendezvous, nars }
  }
  const quiet = { info: () => {}, warn: () => {}, debug: () => {} }

  // A gateway that had just discovered 20 caches provided their rendezvous CIDs 16 at a time, and the DHT answers
  // stalled its event loop (requests waited up to 1.3 s on the 50-node bench).
  it('provides the own cache 16 at a time, and caches others published 2 at a time', async () => {
    const { repo, blocks, names, rendezvous, nars } = await caches(2)
    const [own, other] = names as [string, string]
    const most = new Map<string, number>()
    const running = new Map<string, number>()
    let provided = 0
    const routing = {
      size: () => 1,
      putRecord: async () => {},
      provide: async (cid: CID) => {
        const cache = rendezvous.get(cid.toString()) ?? nars.get(cid.toString()) ?? 'root'
        running.set(cache, (running.get(cache) ?? 0) + 1)
        most.set(cache, Math.max(most.get(cache) ?? 0, running.get(cache)!))
        await new Promise(resolve => setTimeout(resolve, 10))
        running.set(cache, running.get(cache)! - 1)
        provided++
      }
    } as unknown as Routing
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [own, other], own, log: quiet })
    try {
      await announcer.announce()
      expect(provided).toBe(2 * (40 + 40 + 1)) // rendezvous CIDs, NARs, root
      expect(most.get(own)).toBe(16)
      expect(most.get(other)).toBe(2)
    } finally {
      announcer.stop()
      await blocks.close()
    }
  })
  // The 50-node bench: a client that had followed 20 caches of 8 paths provided every path's rendezvous CID, 180 DHT
  // walks for what it had only looked up, and the next client's lookups waited behind them.
  it('provides the rendezvous CIDs of a cache others published only for the paths whose NAR the node holds', async () => {
    const { repo, blocks, names, rendezvous } = await caches(2, i => i < 5)
    const [own, other] = names as [string, string]
    const provided = new Map<string, number>()
    const routing = {
      size: () => 1,
      putRecord: async () => {},
      provide: async (cid: CID) => { const of = rendezvous.get(cid.toString()) ?? 'other'; provided.set(of, (provided.get(of) ?? 0) + 1) }
    } as unknown as Routing
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [own, other], own, log: quiet, checkMs: 3600_000 })
    try {
      await announcer.announce()
      expect(provided.get(own)).toBe(40) // its own cache: every path, held or not
      expect(provided.get(other)).toBe(5)
      expect(provided.get('other')).toBe(2 + 5 + 5) // the roots, and the NARs held
    } finally {
      announcer.stop()
      await blocks.close()
    }
  })
  // Found by an outside review: a follower that fetched a NAR after the root was announced was never found by the
  // path's rendezvous CID (only by the NAR's), until the publisher's root changed.
  it('provides the rendezvous CID of a followed path once its NAR is fetched', async () => {
    const { repo, blocks, names, rendezvous, nars } = await caches(2, i => i < 5)
    const [own, other] = names as [string, string]
    const provided: string[] = []
    const routing = { size: () => 1, putRecord: async () => {}, provide: async (cid: CID) => { provided.push(cid.toString()) } } as unknown as Routing
    let recent: CID[] = []
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [own, other], own, recent: () => recent, log: quiet, checkMs: 3600_000 })
    try {
      await announcer.announce()
      const of = (cache: string, cids: Map<string, string>): string[] => provided.filter(c => cids.get(c) === cache)
      expect(of(other, rendezvous)).toHaveLength(5)
      // The NAR of a path it did not hold is fetched (and used).
      const [nar7] = [...nars].filter(([, cache]) => cache === other).map(([cid]) => CID.parse(cid)).filter(c => !blocks.has(c)).slice(0, 1)
      await blocks.put(nar7!, new TextEncoder().encode(`nar 1 ${[...nars.keys()].indexOf(nar7!.toString()) - 40}`))
      await blocks.sync()
      recent = [nar7!]
      await announcer.announce()
      expect(of(other, rendezvous)).toHaveLength(6)
      expect(provided).toContain(nar7!.toString())
    } finally {
      announcer.stop()
      await blocks.close()
    }
  })
  // The 50-node bench: a builder announced before most nodes had started, and no client found a provider of its path.
  it('announces a cache again each time a DHT that was still forming doubles, and not once it is formed', async () => {
    const { repo, blocks, names: [name] } = await caches(1)
    let size = 1
    let puts = 0
    let provides = 0
    const routing = { size: () => size, putRecord: async () => { puts++ }, provide: async () => { provides++ } } as unknown as Routing
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [name!], own: name, log: quiet, checkMs: 3600_000 })
    try {
      const after = async (peers: number): Promise<[number, number]> => { size = peers; await announcer.announce(); return [puts, provides] }
      expect(await after(1)).toEqual([1, 81]) // the root, 40 NARs, 40 rendezvous CIDs
      expect(await after(1)).toEqual([1, 81]) // nothing changed
      expect(await after(2)).toEqual([2, 162]) // doubled
      expect(await after(3)).toEqual([2, 162])
      expect(await after(12)).toEqual([3, 243])
      expect(await after(24)).toEqual([4, 324]) // announced at 12 peers, fewer than K: still forming then
      expect(await after(200)).toEqual([4, 324]) // announced at 24: formed
    } finally {
      announcer.stop()
      await blocks.close()
    }
  })
  // The 50-node bench: a client announced the 20 caches it had just discovered while Nix waited for its next
  // lookups, which took twice as long.
  it('announces what others published once no request waits on the network, and its own cache at once', async () => {
    const { repo, blocks, names, rendezvous } = await caches(2)
    const [own, other] = names as [string, string]
    const announced = new Set<string>()
    const routing = {
      size: () => 1,
      putRecord: async (name: string) => { announced.add(`record ${name}`) },
      provide: async (cid: CID) => { announced.add(rendezvous.get(cid.toString()) ?? 'a root') }
    } as unknown as Routing
    let idle!: () => void
    const idleNow = new Promise<void>(resolve => { idle = resolve })
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [own, other], own, log: quiet, checkMs: 3600_000, idle: async () => await idleNow })
    try {
      const done = announcer.announce()
      await new Promise(resolve => setTimeout(resolve, 200))
      expect([...announced].sort()).toEqual(['a root', own, `record ${own}`].sort())
      idle()
      await done
      expect(announced).toContain(other)
      expect(announced).toContain(`record ${other}`)
    } finally {
      announcer.stop()
      await blocks.close()
    }
  })
  // The 50-node bench: a client put the record of each of the 20 caches it had just discovered, a DHT walk each for
  // what it had just taken from the network, while the next client's lookups waited on the same DHT.
  it('puts the record of a cache found on the DHT once it went unchanged for 12 hours, its own at once', async () => {
    const { repo, blocks, names } = await caches(2)
    const [own, other] = names as [string, string]
    const puts: string[] = []
    const routing = { size: () => 1, putRecord: async (name: string) => { puts.push(name) }, provide: async () => {} } as unknown as Routing
    vi.useFakeTimers({ toFake: ['Date'] })
    const announcer = startAnnouncing(repo, blocks, routing, { names: () => [own, other], own, log: quiet, checkMs: 3600_000, foundOnDht: n => n === other })
    try {
      await announcer.announce()
      expect(puts).toEqual([own])
      vi.setSystemTime(Date.now() + 11 * 3600_000)
      await announcer.announce()
      expect(puts).toEqual([own])
      vi.setSystemTime(Date.now() + 3600_000 + 1000)
      await announcer.announce()
      expect(puts.sort()).toEqual([own, own, other].sort())
    } finally {
      vi.useRealTimers()
      announcer.stop()
      await blocks.close()
    }
  })
})
