import { describe, expect, it } from 'vitest'
import { addEntries, addFiles, addLinksUnder, createCacheRoot, DISPUTES_DIR, LOG_DIR, NAR_DIR, REALISATIONS_DIR, type CacheEntry } from '../../src/cache/directory.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { importFile } from '../../src/ipfs/file-dag.js'
import { CacheLayout, childRole } from '../../src/cache/layout.js'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { RAW_CODE, cidOf } from '../../src/ipfs/block.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { DirNodeCache, lookupEntry } from '../../src/ipfs/hamt.js'
import type { CID } from 'multiformats/cid'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { tmp } from '../helpers/cli.js'

const ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz'
/** A distinct store path hash per number. */
const hashOf = (i: number): string => [...i.toString(32).padStart(32, '0')].map(d => ALPHABET[parseInt(d, 32)]!).join('')

describe('the cache layout', () => {
  it('reaches every block of an honest cache whose directories are HAMT shards (NARs and build logs only with them), and nothing a root links beside it', async () => {
    const blocks = await PackStore.openRepo(tmp())
    try {
      // 4,000 entries: the root and nar/ outgrow 256 KiB and become HAMTs.
      const entries: CacheEntry[] = []
      const nars = new Set<string>()
      for (let i = 0; i < 4000; i++) {
        const bytes = new TextEncoder().encode(`nar ${i}`)
        const cid = cidOf(RAW_CODE, bytes)
        await blocks.put(cid, bytes)
        nars.add(cid.toString())
        entries.push({ hash: hashOf(i), nar: cid, narTsize: bytes.length, narInfo: `StorePath: /nix/store/${hashOf(i)}-x\n` })
      }
      const dirs = new DirNodeCache()
      let root = await addEntries(blocks, await createCacheRoot(blocks, 'StoreDir: /nix/store\n'), entries, dirs)
      root = await addFiles(blocks, root, REALISATIONS_DIR, [{ name: 'sha256:abc!out.doi', text: '{}' }], dirs)
      root = await addFiles(blocks, root, DISPUTES_DIR, [{ name: `${hashOf(1)}.json`, text: '{}' }], dirs)
      // A build log of several blocks: big like a NAR, so only a walk with NARs takes it.
      const log = await importFile(blocks, (async function * () { yield Uint8Array.from({ length: 5000 }, (_, i) => i % 251) })(), fixedChunker(1024))
      root = await addLinksUnder(blocks, root, LOG_DIR, [{ name: `${hashOf(2)}-hello.drv`, ...log }], dirs)
      const logBlocks = new Set<string>()
      for await (const { cid } of walkDag(blocks, log.cid)) logBlocks.add(cid.toString())
      expect(logBlocks.size).toBe(6)
      const walk = async (layout?: CacheLayout): Promise<Set<string>> => {
        const seen = new Set<string>()
        for await (const { cid } of walkDag(blocks, root, { skipLink: layout?.skipLink })) seen.add(cid.toString())
        return seen
      }
      const type = async (cid: CID): Promise<string> => UnixFS.unmarshal(dagPb.decode(await blocks.read(cid)).Data!).type
      expect(await type(root)).toBe('hamt-sharded-directory')
      expect(await type((await lookupEntry(blocks, root, NAR_DIR, dirs))!)).toBe('hamt-sharded-directory')
      const all = await walk()
      expect([...all].filter(c => !nars.has(c)).length).toBeGreaterThan(4000 + 2 + 2) // narinfos, files and shards
      expect(await walk(new CacheLayout(root, true))).toEqual(all)
      const index = await walk(new CacheLayout(root, false))
      expect([...index].filter(c => nars.has(c) || logBlocks.has(c))).toEqual([])
      expect(index.size).toBe(all.size - nars.size - logBlocks.size)
    } finally {
      await blocks.close()
    }
  })

  it('leaves out what is not the layout: other root entries, a NAR directory\'s other entries, named links of a file', async () => {
    expect(childRole('root', 'junk', true)).toBeUndefined()
    expect(childRole('root', 'A3junk', true)).toBeUndefined()
    expect(childRole('root', `A3${hashOf(7)}.narinfo`, false)).toBe('file')
    expect(childRole('root', 'nar', false)).toBe('nar')
    expect(childRole('root', 'FF', false)).toBe('root')
    expect(childRole('nar', 'x.nar', false)).toBeUndefined()
    expect(childRole('nar', 'x.nar', true)).toBe('nar-data')
    expect(childRole('nar', 'junk', true)).toBeUndefined()
    expect(childRole('disputes', 'junk.doi', true)).toBeUndefined()
    expect(childRole('file', 'named', true)).toBeUndefined()
    expect(childRole('file', '', true)).toBe('file')
    expect(childRole('root', 'log', false)).toBe('log')
    expect(childRole('log', `${hashOf(1)}-hello.drv`, false)).toBeUndefined()
    expect(childRole('log', `${hashOf(1)}-hello.drv`, true)).toBe('log-data')
    expect(childRole('log', `B2${hashOf(1)}-hello.drv`, true)).toBe('log-data')
    expect(childRole('log', 'junk.drv', true)).toBeUndefined()
    expect(childRole('log-data', '', true)).toBe('log-data')
  })
})
