import { MemoryBlockstore } from 'blockstore-core/memory'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { describe, expect, it } from 'vitest'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { addLinks, emptyDirectory, tsizeOf, type NewLink } from '../../src/ipfs/dir-update.js'
import { DirNodeCache, lookupEntry } from '../../src/ipfs/hamt.js'

const names = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `${((i + from) * 7919).toString(32).padStart(32, '0')}.narinfo`)

async function withBlocks (blocks: MemoryBlockstore, list: string[]): Promise<NewLink[]> {
  const out: NewLink[] = []
  for (const name of list) {
    const bytes = new TextEncoder().encode(`content of ${name}`)
    const cid = cidOf(RAW_CODE, bytes)
    await blocks.put(cid, bytes)
    out.push({ name, cid, tsize: bytes.length })
  }
  return out
}

async function importerRoot (blocks: MemoryBlockstore, list: string[]): Promise<string> {
  let root
  const files = list.map(name => ({ path: name, content: new TextEncoder().encode(`content of ${name}`) }))
  for await (const e of importer(files, blocks, { wrapWithDirectory: true, cidVersion: 1, rawLeaves: true, shardSplitThresholdBytes: 256 * 1024 })) root = e
  return root!.cid.toString()
}

describe('addLinks', () => {
  it('builds the same HAMT as ipfs-unixfs-importer, in one batch or in many', async () => {
    const blocks = new MemoryBlockstore()
    const all = names(6000)
    const links = await withBlocks(blocks, all)
    const empty = (await emptyDirectory(blocks)).cid
    const oneBatch = await addLinks(blocks, empty, links)
    expect(oneBatch.cid.toString()).toBe(await importerRoot(blocks, all))
    expect(oneBatch.tsize).toBe(await tsizeOf(blocks, oneBatch.cid))
    // Incremental: a first half (flat until it outgrows the threshold), then batches into the HAMT.
    let dir = (await addLinks(blocks, empty, links.slice(0, 3000))).cid
    for (let i = 3000; i < 6000; i += 700) dir = (await addLinks(blocks, dir, links.slice(i, i + 700))).cid
    expect(dir.toString()).toBe(oneBatch.cid.toString())
  })

  it('replaces an entry of the same name and keeps every other one', async () => {
    const blocks = new MemoryBlockstore()
    const links = await withBlocks(blocks, names(5000))
    const root = (await addLinks(blocks, (await emptyDirectory(blocks)).cid, links)).cid
    const [changed] = await withBlocks(blocks, ['replacement'])
    const next = (await addLinks(blocks, root, [{ ...changed!, name: links[42]!.name }, ...(await withBlocks(blocks, names(3, 9000)))])).cid
    const cache = new DirNodeCache()
    expect((await lookupEntry(blocks, next, links[42]!.name, cache))?.toString()).toBe(changed!.cid.toString())
    for (const l of [...links.slice(0, 42), ...links.slice(43)].filter((_, i) => i % 97 === 0)) {
      expect((await exporter(`${next.toString()}/${l.name}`, blocks)).cid.toString()).toBe(l.cid.toString())
    }
    for (const name of names(3, 9000)) expect(await lookupEntry(blocks, next, name, cache)).toBeDefined()
  })

  it('keeps small directories flat', async () => {
    const blocks = new MemoryBlockstore()
    const links = await withBlocks(blocks, names(10))
    const dir = (await addLinks(blocks, (await emptyDirectory(blocks)).cid, links)).cid
    expect((await exporter(dir, blocks)).type).toBe('directory')
    expect(dir.toString()).toBe(await importerRoot(blocks, names(10)))
  })
})
