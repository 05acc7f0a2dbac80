import { MemoryBlockstore } from 'blockstore-core/memory'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { describe, expect, it } from 'vitest'
import { DirNodeCache, lookupEntry } from '../../src/ipfs/hamt.js'

async function directory (names: string[], shardSplitThresholdBytes: number): Promise<{ blocks: MemoryBlockstore, root: Awaited<ReturnType<typeof exporter>>['cid'] }> {
  const blocks = new MemoryBlockstore()
  let root
  const files = names.map(name => ({ path: name, content: new TextEncoder().encode(`content of ${name}`) }))
  for await (const e of importer(files, blocks, { wrapWithDirectory: true, cidVersion: 1, rawLeaves: true, shardSplitThresholdBytes })) root = e
  return { blocks, root: root!.cid }
}

describe('lookupEntry', () => {
  const names = Array.from({ length: 3000 }, (_, i) => `${(i * 7919).toString(32).padStart(32, '0')}.narinfo`)

  it('finds every entry of a multi-level HAMT exactly where the standard exporter does, and nothing else', async () => {
    const { blocks, root } = await directory(names, 1000) // shards early, so the tree has several levels
    expect((await exporter(root, blocks)).type).toBe('directory')
    // One listing by the standard exporter: a path lookup per name through it took over a minute.
    const listed = new Map<string, string>()
    const dir = await exporter(root, blocks)
    if (dir.type !== 'directory') throw new Error('not a directory')
    for await (const entry of dir.entries()) listed.set(entry.name, entry.cid.toString())
    expect(listed.size).toBe(names.length)
    const cache = new DirNodeCache(16)
    let reads = 0
    const counting = { get: (cid: Parameters<MemoryBlockstore['get']>[0]) => { reads++; return blocks.get(cid) } }
    for (const name of names) {
      const got = await lookupEntry(counting, root, name, cache)
      expect(got?.toString()).toBe(listed.get(name))
    }
    expect(reads / names.length).toBeLessThanOrEqual(4)
    for (const absent of ['missing.narinfo', `${names[0]!}x`, names[0]!.slice(1)]) {
      expect(await lookupEntry(counting, root, absent, cache)).toBeUndefined()
    }
  })

  it('reads flat directories too', async () => {
    const { blocks, root } = await directory(names.slice(0, 20), 1 << 20)
    const cache = new DirNodeCache()
    expect((await lookupEntry(blocks, root, names[3]!, cache))?.toString()).toBe((await exporter(`${root.toString()}/${names[3]!}`, blocks)).cid.toString())
    expect(await lookupEntry(blocks, root, 'nope', cache)).toBeUndefined()
  })
})
