import { randomBytes } from 'node:crypto'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { exporter } from 'ipfs-unixfs-exporter'
import { describe, expect, it } from 'vitest'
import { IntegrityError } from '../../src/errors.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { importFile, readFile } from '../../src/ipfs/file-dag.js'

async function * chunksOf (bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size)
}

async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}

async function referenceCid (bytes: Uint8Array, chunk: number, width: number): Promise<string> {
  const blocks = new MemoryBlockstore()
  let last
  for await (const entry of importer([{ content: chunksOf(bytes, 10_000) }], blocks, {
    cidVersion: 1, rawLeaves: true, reduceSingleLeafToSelf: true, layout: (await import('ipfs-unixfs-importer/layout')).balanced({ maxChildrenPerNode: width }), chunker: fixedSize({ chunkSize: chunk })
  })) last = entry
  return last!.cid.toString()
}

describe('importFile', () => {
  // Sizes around the single-leaf, one-level and two-level boundaries of a width-4 tree.
  const cases = [0, 1, 99, 100, 101, 400, 401, 1600, 1601, 5000]
  for (const size of cases) {
    it(`matches ipfs-unixfs-importer (balanced, raw leaves) for ${size} bytes`, async () => {
      const bytes = randomBytes(size)
      const blocks = new MemoryBlockstore()
      const { cid, size: got } = await importFile(blocks, chunksOf(bytes, 37), fixedChunker(100), 4)
      expect(got).toBe(size)
      expect(cid.toString()).toBe(await referenceCid(bytes, 100, 4))
      // Read back by the standard exporter and by our reader.
      const entry = await exporter(cid, blocks)
      expect(Buffer.compare(await collect(entry.content()), bytes)).toBe(0)
      expect(Buffer.compare(await collect(readFile(blocks, cid)), bytes)).toBe(0)
    })
  }

  it('uses the default width of 174 like kubo and Helia', async () => {
    const bytes = randomBytes(175 * 64)
    const blocks = new MemoryBlockstore()
    const { cid } = await importFile(blocks, chunksOf(bytes, 1000), fixedChunker(64))
    expect(cid.toString()).toBe(await referenceCid(bytes, 64, 174))
  })
})

describe('readFile', () => {
  it('serves every byte range exactly', async () => {
    const bytes = randomBytes(1234)
    const blocks = new MemoryBlockstore()
    const { cid } = await importFile(blocks, chunksOf(bytes, 500), fixedChunker(50), 3)
    for (const [offset, length] of [[0, 1], [0, 1234], [49, 2], [50, 50], [333, 700], [1233, 1], [1000, 500]] as const) {
      const got = await collect(readFile(blocks, cid, { offset, length }))
      expect(Buffer.compare(got, bytes.subarray(offset, offset + length))).toBe(0)
    }
  })

  it('raises IntegrityError on a corrupt block and yields none of its bytes', async () => {
    const bytes = randomBytes(1000)
    const blocks = new MemoryBlockstore()
    const { cid } = await importFile(blocks, chunksOf(bytes, 1000), fixedChunker(100), 4)
    // Corrupt the fourth leaf: store different bytes under its CID.
    const leaf = cidOf(RAW_CODE, bytes.subarray(300, 400))
    const evil = Buffer.from(bytes.subarray(300, 400)); evil[5] ^= 1
    await blocks.put(leaf, evil)
    const seen: Uint8Array[] = []
    await expect((async () => { for await (const c of readFile(blocks, cid)) seen.push(c) })()).rejects.toBeInstanceOf(IntegrityError)
    expect(Buffer.concat(seen).length).toBe(300)
    expect(Buffer.compare(Buffer.concat(seen), bytes.subarray(0, 300))).toBe(0)
  })
})
