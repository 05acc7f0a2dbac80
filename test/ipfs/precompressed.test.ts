import { randomBytes } from 'node:crypto'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { cidOf, RAW_CODE } from '../../src/ipfs/block.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { compactPrecompressed, frameOfRecord, PrecompressedFrames, precompressBlocks, precompressedRecord } from '../../src/ipfs/precompressed.js'
import { precompressedDir } from '../../src/repo-layout.js'
import { decompressFrames } from '../../src/zstd.js'
import { tmp } from '../helpers/cli.js'
import { rawGet } from '../helpers/http.js'

/** Text-like data that compresses (as binaries and NARs do), with random words so that no two blocks are alike. */
function compressible (bytes: number): Buffer {
  const words = Array.from({ length: 500 }, () => randomBytes(4).toString('hex'))
  let text = ''
  while (text.length < bytes) text += `${words[Math.floor(Math.random() * words.length)]!} `
  return Buffer.from(text.slice(0, bytes))
}

describe('blocks compressed ahead (nixipfs precompress)', () => {
  const data = compressible(1024 * 1024 + 333)
  const repo = tmp()
  const warnings: string[] = []
  let store: PackStore
  let frames: PrecompressedFrames
  let gw: Gateway
  let root: CID
  const cids: CID[] = []

  beforeAll(async () => {
    store = await PackStore.openRepo(repo)
    for await (const e of importer([{ path: 'file', content: data }], store, { chunker: fixedSize({ chunkSize: 128 * 1024 }), wrapWithDirectory: false })) root = e.cid
    await store.flush()
    for await (const b of walkDag(store, root)) cids.push(b.cid)
    frames = new PrecompressedFrames(repo, { warn: m => warnings.push(m) })
    gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, precompressed: frames, record: async () => undefined, host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => { await gw.close(); await frames.close(); await store.close() })

  it('a record is the frame behind its CRC-32; a damaged one is refused', () => {
    const record = precompressedRecord(data.subarray(0, 100_000), 3)
    const frame = frameOfRecord(record)!
    expect(decompressFrames(frame, 200_000).equals(data.subarray(0, 100_000))).toBe(true)
    const damaged = Buffer.from(record)
    damaged[damaged.length >> 1]! ^= 1
    expect(frameOfRecord(damaged)).toBeUndefined()
    expect(frameOfRecord(record.subarray(0, 3))).toBeUndefined()
  })

  it('compresses every block once; a second run finds them done', async () => {
    const first = await precompressBlocks(repo, store, { level: 9 })
    expect(first.compressed.blocks).toBe(cids.length)
    expect(first.already).toBe(0)
    expect(first.compressed.frameBytes).toBeLessThan(first.compressed.bytes / 1.5)
    const again = await precompressBlocks(repo, store)
    expect(again.compressed.blocks).toBe(0)
    expect(again.already).toBe(cids.length)
  })

  it('a CAR asked for with zstd is made of the frames as stored, and decodes to the CAR sent uncompressed', async () => {
    const url = `${gw.url}/ipfs/${root.toString()}?format=car`
    const plain = await rawGet(url)
    expect(plain.status).toBe(200)
    expect(plain.headers['content-encoding']).toBeUndefined()
    const packed = await rawGet(url, { 'accept-encoding': 'zstd' })
    expect(packed.status).toBe(200)
    expect(packed.headers['content-encoding']).toBe('zstd')
    expect(decompressFrames(packed.body, 4 * plain.body.length).equals(plain.body)).toBe(true)
    // Not compressed again: every leaf's stored frame is in the response byte for byte.
    for (const cid of cids.slice(1)) expect(packed.body.indexOf((await frames.frame(cid))!)).toBeGreaterThanOrEqual(0)
    // A range of the file (what a swarm asks for) too.
    const range = `${gw.url}/ipfs/${root.toString()}?format=car&entity-bytes=200000:600000`
    const rangePacked = await rawGet(range, { 'accept-encoding': 'zstd' })
    expect(decompressFrames(rangePacked.body, 4 * plain.body.length).equals((await rawGet(range)).body)).toBe(true)
  })

  it('a raw block asked for with zstd is its frame', async () => {
    const leaf = cids[1]!
    const r = await rawGet(`${gw.url}/ipfs/${leaf.toString()}?format=raw`, { 'accept-encoding': 'zstd' })
    expect(r.headers['content-encoding']).toBe('zstd')
    expect(r.body.equals((await frames.frame(leaf))!)).toBe(true)
    // Found by an outside test: the same ETag as the other bytes a gateway compressing on the fly sends.
    expect(r.headers.etag).toBe(`"${leaf.toString()}.raw.zstd.ahead"`)
    expect((await rawGet(`${gw.url}/ipfs/${root.toString()}?format=car`, { 'accept-encoding': 'zstd' })).headers.etag).toMatch(/\.car\.[\w-]+\.zstd\.ahead"$/)
  })

  it('a damaged frame is compressed again on the fly, never sent, and said once', async () => {
    const dir = precompressedDir(repo)
    const pack = join(dir, readdirSync(dir).find(f => f.endsWith('.pack'))!)
    const bytes = readFileSync(pack)
    bytes[bytes.length >> 1]! ^= 0xff
    writeFileSync(pack, bytes)
    // A server that had not read that frame yet (the first one read and checked it once).
    const fresh = new PrecompressedFrames(repo, { warn: m => warnings.push(m) })
    const gw2 = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, precompressed: fresh, record: async () => undefined, host: '127.0.0.1', port: 0 })
    try {
      const url = `${gw2.url}/ipfs/${root.toString()}?format=car`
      const packed = await rawGet(url, { 'accept-encoding': 'zstd' })
      expect(packed.headers['content-encoding']).toBe('zstd')
      expect(decompressFrames(packed.body, 8 * data.length).equals((await rawGet(url)).body)).toBe(true)
      expect(warnings.filter(w => /CRC-32 mismatch/.test(w))).toHaveLength(1)
    } finally {
      await gw2.close()
      await fresh.close()
    }
  })

  // Found by an outside test: precompress skipped a block with a frame whatever the frame's state.
  it('precompress makes a damaged frame again', async () => {
    const r = await precompressBlocks(repo, store)
    expect(r.replaced).toBeGreaterThanOrEqual(1)
    expect(r.compressed.blocks).toBe(r.replaced)
    expect(r.already + r.replaced).toBe(cids.length)
    const fresh = new PrecompressedFrames(repo, { warn: m => warnings.push(m) })
    try {
      for (const cid of cids) expect(await fresh.frame(cid), cid.toString()).toBeDefined()
    } finally {
      await fresh.close()
    }
  })

  // Found by an outside test: a block damaged on disk became a frame, which a CRC-32 cannot catch and peers were sent.
  it('compresses only blocks that match their CIDs', async () => {
    const other = tmp()
    const blocks = await PackStore.openRepo(other)
    try {
      const good = compressible(100_000)
      const bad = Buffer.from(good)
      bad[50_000]! ^= 1
      const [goodCid, badCid] = [cidOf(RAW_CODE, good), cidOf(RAW_CODE, Buffer.concat([good, good]))]
      await blocks.put(goodCid, good)
      await blocks.put(badCid, bad) // stored under another block's CID: what a flipped bit on disk looks like
      await blocks.flush()
      const r = await precompressBlocks(other, blocks)
      expect(r.corrupt).toEqual([badCid.toString()])
      expect(r.compressed.blocks).toBe(1)
      const frames = new PrecompressedFrames(other)
      try {
        expect(await frames.frame(badCid)).toBeUndefined()
        expect(decompressFrames((await frames.frame(goodCid))!, good.length).equals(good)).toBe(true)
      } finally {
        await frames.close()
      }
    } finally {
      await blocks.close()
    }
  })

  it('gc drops the frames of the blocks it drops', async () => {
    const gone = cids[2]!
    const r = await compactPrecompressed(repo, cid => !cid.equals(gone))
    expect(r?.before.blocks).toBe(cids.length)
    expect(r?.kept.blocks).toBe(cids.length - 1)
    const after = new PrecompressedFrames(repo)
    try {
      expect(await after.frame(gone)).toBeUndefined()
      expect(await after.frame(cids[3]!)).toBeDefined()
    } finally {
      await after.close()
    }
    expect(await compactPrecompressed(tmp(), () => true)).toBeUndefined()
  })
})
