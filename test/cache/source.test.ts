import { CID } from 'multiformats/cid'
import { beforeEach, describe, expect, it } from 'vitest'
import { createCacheRoot } from '../../src/cache/directory.js'
import { acceptRecord, saveRecord } from '../../src/cache/records.js'
import { currentIndexes, markOpening, openIndexesLack, repoIndexSource, type IndexSource } from '../../src/cache/source.js'
import type { ServedIndex } from '../../src/cache/index.js'
import { cidOf, DAG_PB_CODE } from '../../src/ipfs/block.js'
import { ipnsNameOf, signRecord } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { generateSecretKey } from '../../src/nix/signing.js'
import { tmp } from '../helpers/cli.js'

describe('the index source behind the gateway', () => {
  const key = generateSecretKey('builder-3')
  const name = ipnsNameOf(key.publicKey)
  let repo: string
  let blocks: PackStore
  let root: CID
  beforeEach(async () => {
    repo = tmp()
    blocks = await PackStore.openRepo(repo)
    root = await createCacheRoot(blocks, 'StoreDir: /nix/store\n')
  })

  it('serves an expired record during the grace period with a warning, then stops', async () => {
    await acceptRecord(repo, name, (await signRecord(key.seed, root, 1n, 60_000)).bytes)
    const warnings: string[] = []
    const fresh = repoIndexSource(repo, blocks, name, { expiredGraceMs: 0, warn: m => warnings.push(m) })
    expect((await fresh.current())?.root.toString()).toBe(root.toString())
    expect(warnings).toEqual([])

    const repo2 = tmp()
    const blocks2 = await PackStore.openRepo(repo2)
    const root2 = await createCacheRoot(blocks2, 'StoreDir: /nix/store\n')
    // A record that expires 50 ms after signing; store it as a publisher would (acceptRecord refuses expired ones).
    await saveRecord(repo2, await signRecord(key.seed, root2, 1n, 50))
    await new Promise(resolve => setTimeout(resolve, 80))
    const inGrace = repoIndexSource(repo2, blocks2, name, { expiredGraceMs: 60_000, warn: m => warnings.push(m) })
    expect((await inGrace.current())?.root.toString()).toBe(root2.toString())
    expect(warnings.at(-1)).toMatch(/expired at .*; serving it until .*nixipfs republish/)
    const over = repoIndexSource(repo2, blocks2, name, { expiredGraceMs: 0, warn: m => warnings.push(m) })
    // Past the grace period what the cache holds is refused (503), what it does not hold is a miss.
    const stopped = await over.current()
    expect(warnings.at(-1)).toMatch(/grace period is over; serving nothing/)
    expect(await stopped?.narInfo('0'.repeat(32))).toBeUndefined()
    expect(stopped?.cacheInfo).toMatch(/StoreDir/)
  })

  it('answers requests that arrive while it loads with the loaded index, and sees a new record once told', async () => {
    const source = repoIndexSource(repo, blocks, name)
    expect(await source.current()).toBeUndefined() // no record yet
    await acceptRecord(repo, name, (await signRecord(key.seed, root, 1n, 60_000)).bytes)
    source.recheck()
    // Concurrent first requests: none may see "no index" (a 404 Nix would cache for an hour).
    const seen = await Promise.all(Array.from({ length: 8 }, async () => (await source.current())?.root.toString()))
    expect(seen).toEqual(Array(8).fill(root.toString()))
  })

  it('says why a cache cannot be opened on every request, and keeps the others of a union serving', async () => {
    // A record whose root block the repo does not hold.
    const missing = cidOf(DAG_PB_CODE, new TextEncoder().encode('a root nobody stored'))
    const other = generateSecretKey('builder-4')
    const otherName = ipnsNameOf(other.publicKey)
    await acceptRecord(repo, name, (await signRecord(key.seed, missing, 1n, 60_000)).bytes)
    await acceptRecord(repo, otherName, (await signRecord(other.seed, root, 1n, 60_000)).bytes)
    const warnings: string[] = []
    const broken = repoIndexSource(repo, blocks, name, { warn: m => warnings.push(m) })
    await expect(broken.current()).rejects.toThrow(/not found|not in the local repo/)
    await expect(broken.current()).rejects.toThrow(/not found|not in the local repo/) // not a 404-looking undefined the second time
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatch(/the cache \/ipns\/.* cannot be opened/)
    const good = repoIndexSource(repo, blocks, otherName)
    expect((await currentIndexes([broken, good])).map(i => i.root.toString())).toEqual([root.toString()])
    await expect(currentIndexes([broken])).rejects.toThrow()
  })

  it('says a path is lacking when every open cache lacks it, whatever caches still opening would say', async () => {
    const index = (narInfo: () => Promise<unknown>, opening = false): IndexSource => {
      const served = { cacheInfo: '', narInfo, nar: async () => undefined, realisation: async () => undefined, log: async () => undefined } as unknown as ServedIndex
      return { current: async () => opening ? markOpening(served) : served, recheck: () => {} }
    }
    const lacks = index(async () => undefined)
    const has = index(async () => ({ text: 'a narinfo' }))
    const fails = index(async () => { throw new Error('a corrupt block') })
    const opening = index(async () => await new Promise(() => {}), true)
    expect(await openIndexesLack([lacks, opening], 'x')).toBe(true)
    expect(await openIndexesLack([lacks, has, opening], 'x')).toBe(false)
    expect(await openIndexesLack([lacks, fails], 'x')).toBe(false)
    expect(await openIndexesLack([], 'x')).toBe(true)
  })
})
