import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CID } from 'multiformats/cid'
import { evictToFit, packBytes } from '../../src/cache/evict.js'
import { collectGarbage } from '../../src/cache/gc.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { addLinks } from '../../src/ipfs/dir-update.js'
import { DirNodeCache, lookupEntry } from '../../src/ipfs/hamt.js'
import { NAR_DIR, narUrl } from '../../src/cache/directory.js'
import { startFollowing } from '../../src/cache/follow.js'
import { openIndex } from '../../src/cache/index.js'
import { appendEntries } from '../../src/cache/publish.js'
import { RECIPES } from '../../src/cache/recipes.js'
import { loadRecord, saveRecord } from '../../src/cache/records.js'
import { loadRecordBytes } from '../../src/repo-layout.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { formatNarInfo } from '../../src/nix/narinfo.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { NetworkBlocks } from '../../src/net/fetcher.js'
import { HttpPeer } from '../../src/net/http-peer.js'
import { narOf } from '../nix/fixtures.js'
import { tmp } from '../helpers/cli.js'

describe('following a cache', () => {
  it('takes the record from a peer and says which index block it could not fetch, and why', async () => {
    // The builder's cache, one narinfo, served by a peer that has lost that narinfo's block.
    const builderRepo = tmp()
    const builder = await PackStore.openRepo(builderRepo)
    const key = generateSecretKey('b-1')
    const name = ipnsNameOf(key.publicKey)
    const nar = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', 'x', ')')
    const { cid, tsize } = await importFile(builder, (async function * () { yield nar })(), RECIPES.cdc.chunker)
    const hash = '0123456789abcdfghijklmnpqrsvwxyz'
    const narInfo = formatNarInfo({ storePath: `/nix/store/${hash}-x`, url: narUrl(cid), compression: 'none', narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: nar.length, references: [], sigs: [] })
    const { root } = await appendEntries({ repo: builderRepo, blocks: builder }, key, [{ hash, nar: cid, narTsize: tsize, narInfo }], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
    const lost = (await (await openIndex(builder, root)).narInfo(hash))!.cid
    await builder.delete(lost)
    const peer = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: builder, local: builder, record: async () => undefined, host: '127.0.0.1', port: 0 })

    const repo = tmp()
    const local = await PackStore.openRepo(repo)
    const warnings: string[] = []
    const log = { info: () => {}, debug: () => {}, warn: (m: string) => warnings.push(m) }
    const record = (await loadRecordBytes(builderRepo, name))!
    const follower = startFollowing(repo, [name], async () => [{ from: peer.url, bytes: record }], new NetworkBlocks(local, { http: [new HttpPeer(peer.url)] }), { intervalMs: 3_600_000, fetch: 'index', log })
    try {
      await follower.poll()
      expect((await loadRecord(repo, name))?.root.toString()).toBe(root.toString())
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(`1 blocks of root ${root.toString()} could not be fetched yet (first: ${lost.toString()}: block ${lost.toString()} is not in the local repo and no peer could supply it (${peer.url}: does not have it)); retrying at the next poll`)
    } finally {
      follower.stop()
      await peer.close()
      await local.close()
      await builder.close()
    }
  })
})

describe('following a hostile cache: only the cache layout, within --max-index', () => {
  const MiB = 1024 * 1024
  const key = generateSecretKey('hostile-2')
  const name = ipnsNameOf(key.publicKey)
  const hash = '0123456789abcdfghijklmnpqrsvwxy'
  let builder: PackStore
  let peer: Gateway
  let record: Uint8Array
  let root: CID
  let junk: CID
  let bigNarInfo: CID
  let nar: CID

  beforeAll(async () => {
    // A valid cache (one narinfo, one NAR) whose root also links a 50 MiB file `junk` and a 3 MiB narinfo of several blocks.
    const builderRepo = tmp()
    builder = await PackStore.openRepo(builderRepo)
    const narBytes = narOf('nix-archive-1', '(', 'type', 'regular', 'contents', randomBytes(2 * MiB).toString('hex'), ')')
    const imported = await importFile(builder, (async function * () { yield narBytes })(), fixedChunker(MiB))
    nar = imported.cid
    const narInfo = formatNarInfo({ storePath: `/nix/store/${hash}z-x`, url: narUrl(nar), compression: 'none', narHash: 'sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s', narSize: narBytes.length, references: [], sigs: [] })
    const honest = await appendEntries({ repo: builderRepo, blocks: builder }, key, [{ hash: `${hash}z`, nar, narTsize: imported.tsize, narInfo }], { recordLifetimeMs: 60_000, recipe: RECIPES.cdc })
    const big = async (bytes: number): Promise<{ cid: CID, tsize: number }> => await importFile(builder, (async function * () { for (let i = 0; i < bytes / MiB; i++) yield randomBytes(MiB) })(), fixedChunker(MiB))
    const j = await big(50 * MiB)
    const b = await big(3 * MiB)
    junk = j.cid
    bigNarInfo = b.cid
    root = (await addLinks(builder, honest.root, [{ name: 'junk', ...j }, { name: `${hash}a.narinfo`, ...b }])).cid
    await builder.flush()
    record = (await signRecord(key.seed, root, 2n, 60_000)).bytes
    peer = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: builder, local: builder, record: async () => undefined, host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => { await peer.close(); await builder.close() })

  /** Follows the hostile cache into a fresh repo with `maxIndexBytes`, polling `polls` times; a mirror with `fetch` 'all'. */
  async function follow (maxIndexBytes: number, polls = 1, fetch: 'index' | 'all' = 'index'): Promise<{ repo: string, blocks: NetworkBlocks, warnings: string[], infos: string[], fetched: number }> {
    const repo = tmp()
    const blocks = new NetworkBlocks(await PackStore.openRepo(repo), { http: [new HttpPeer(peer.url)] })
    const warnings: string[] = []
    const infos: string[] = []
    const follower = startFollowing(repo, [name], async () => [{ from: peer.url, bytes: record }], blocks, { intervalMs: 3_600_000, fetch, maxIndexBytes, progressMs: 1, prefetch: async (root) => await blocks.prefetch(root), log: { info: (m: string) => infos.push(m), debug: () => {}, warn: (m: string) => warnings.push(m) } })
    try {
      for (let i = 0; i < polls; i++) await follower.poll()
    } finally {
      follower.stop()
    }
    await blocks.local.sync()
    return { repo, blocks, warnings, infos, fetched: blocks.counters.http + blocks.counters.car }
  }

  it('fetches only what the layout names, each item bounded, and warns of the oversized one', async () => {
    const { repo, blocks, warnings } = await follow(64 * MiB)
    try {
      expect(blocks.local.has(root)).toBe(true)
      expect(blocks.local.has(junk)).toBe(false)
      expect(await packBytes(repo)).toBeLessThan(MiB)
      expect(warnings.join('\n')).toContain(`has 1 index files larger than 1048576 bytes (first: ${bigNarInfo.toString()})`)
      // The index is there: the narinfo and nar/ are local, the NAR is not.
      const narDir = (await lookupEntry(blocks.local, root, NAR_DIR, new DirNodeCache()))!
      expect(blocks.local.has(narDir)).toBe(true)
      expect(blocks.local.has(nar)).toBe(false)
      expect((await openIndex(blocks.local, root)).cacheInfo).toMatch(/StoreDir/)
    } finally {
      await blocks.local.close()
    }
  })

  it('a mirror takes the NARs too, and still nothing outside the layout; it logs its progress meanwhile', async () => {
    const { repo, blocks, infos } = await follow(64 * MiB, 1, 'all')
    try {
      expect(infos.join('\n')).toMatch(new RegExp(`/ipns/${name}: pinning root ${root.toString()}: \\d+ blocks, [\\d.]+ (B|KiB|MiB) so far, [\\d.]+ (B|KiB|MiB)/s`))
      expect(blocks.local.has(junk)).toBe(false)
      expect(blocks.counters.car).toBeGreaterThan(0) // the NAR came as one stream
      for await (const { cid } of walkDag(blocks.local, nar)) expect(blocks.local.has(cid)).toBe(true)
      expect(await packBytes(repo)).toBeLessThan(10 * MiB) // the 4 MiB NAR and the 3 MiB narinfo
    } finally {
      await blocks.local.close()
    }
  })

  it('stops following a cache whose index passes --max-index, with a warning', async () => {
    const { repo, blocks, warnings, fetched } = await follow(600, 2)
    try {
      expect(warnings.join('\n')).toMatch(/is larger than --max-index \(600 bytes\); following it stops/)
      expect(warnings.filter(w => w.includes('--max-index'))).toHaveLength(1) // the second poll did not try again
      expect(fetched).toBeLessThan(40)
      expect(await packBytes(repo)).toBeLessThan(MiB)
    } finally {
      await blocks.local.close()
    }
  })

  it('--max-cache and gc drop what a root links outside the layout, and keep the index', async () => {
    // A repo that holds all of the hostile root (as a follower before this fix stored it).
    const repo = tmp()
    const blocks = new NetworkBlocks(await PackStore.openRepo(repo), { http: [new HttpPeer(peer.url)] })
    try {
      for await (const _ of walkDag(blocks, root)) { /* fetches and keeps every block */ }
      await saveRecord(repo, await signRecord(key.seed, root, 2n, 60_000))
      await blocks.local.sync()
      expect(await packBytes(repo)).toBeGreaterThan(50 * MiB)
      const r = await evictToFit(repo, blocks.local, blocks, { maxBytes: 10 * MiB, follow: [name] })
      expect(r?.bytes.after).toBeLessThan(4 * MiB) // the index (with the 3 MiB narinfo stored before) stays; the 50 MiB junk goes
      expect(blocks.local.has(junk)).toBe(false)
      expect(blocks.local.has(root)).toBe(true)
      expect((await (await openIndex(blocks.local, root)).narInfo(`${hash}z`))?.nar.toString()).toBe(nar.toString())
    } finally {
      await blocks.local.close()
    }
    // gc of a repo that holds it all: the cache (NAR included) stays, the junk goes.
    const repo2 = tmp()
    const all = new NetworkBlocks(await PackStore.openRepo(repo2), { http: [new HttpPeer(peer.url)] })
    try {
      for await (const _ of walkDag(all, root)) { /* fetches and keeps every block */ }
      await saveRecord(repo2, await signRecord(key.seed, root, 2n, 60_000))
      await all.local.sync()
      await collectGarbage(repo2, all.local)
      expect(all.local.has(junk)).toBe(false)
      expect(all.local.has(nar)).toBe(true)
      expect(await packBytes(repo2)).toBeLessThan(8 * MiB) // the 4 MiB NAR and the 3 MiB narinfo
    } finally {
      await all.local.close()
    }
  })
})
