import { randomBytes } from 'node:crypto'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { CarBlockIterator } from '@ipld/car'
import { MemoryBlockstore } from 'blockstore-core'
import { exporter } from 'ipfs-unixfs-exporter'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { createIPNSRecord, marshalIPNSRecord } from 'ipns'
import type { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { walkDag } from '../../src/ipfs/dag.js'
import { DirNodeCache, lookupEntry } from '../../src/ipfs/hamt.js'
import { ipnsNameOf } from '../../src/ipfs/ipns.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { tmp } from '../helpers/cli.js'

/** The blocks of a CAR response, in order, as @ipld/car reads them. */
async function carBlocks (r: Response): Promise<Array<{ cid: CID, bytes: Uint8Array }>> {
  const car = await CarBlockIterator.fromIterable(r.body as unknown as AsyncIterable<Uint8Array>)
  const blocks = []
  for await (const block of car) blocks.push(block)
  return blocks
}
/** A block store holding only the blocks of a CAR: what a client that trusts nothing can read from it. */
function storeOf (blocks: Array<{ cid: CID, bytes: Uint8Array }>): MemoryBlockstore {
  const store = new MemoryBlockstore()
  for (const b of blocks) store.put(b.cid, b.bytes)
  return store
}
async function bytesOf (store: MemoryBlockstore, path: string, options: { offset?: number, length?: number } = {}): Promise<Buffer> {
  const entry = await exporter(path, store)
  if (entry.type !== 'file') throw new Error(`${path} is a ${entry.type}`)
  const parts: Uint8Array[] = []
  for await (const p of entry.content(options)) parts.push(p)
  return Buffer.concat(parts)
}

describe('trustless gateway details (spec)', () => {
  // A 1 MiB file in 64 KiB raw leaves, four to a node (three levels), at d/sub/file; d holds 300 more files, so it is a HAMT.
  const data = randomBytes(1024 * 1024 + 777)
  const names = Array.from({ length: 300 }, (_, i) => `e${i}`)
  let store: PackStore
  let gw: Gateway
  let root: CID
  let file: CID
  const records: Record<string, Uint8Array> = {}

  beforeAll(async () => {
    store = await PackStore.openRepo(tmp())
    const entries = [{ path: 'd/sub/file', content: data }, ...names.map(n => ({ path: `d/${n}`, content: Buffer.from(`file ${n}`) }))]
    const made = new Map<string, CID>()
    for await (const e of importer(entries, store, { chunker: fixedSize({ chunkSize: 64 * 1024 }), layout: balanced({ maxChildrenPerNode: 4 }), shardSplitThresholdBytes: 1000 })) made.set(e.path!, e.cid)
    root = made.get('d')!
    file = made.get('d/sub/file')!
    await store.flush()
    gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: store, local: store, record: async n => records[n], host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => { await gw.close(); await store.close() })

  it('sends Content-Disposition: attachment on raw and CAR responses', async () => {
    const raw = await fetch(`${gw.url}/ipfs/${root.toString()}?format=raw`)
    expect(raw.status).toBe(200)
    expect(raw.headers.get('content-disposition')).toBe(`attachment; filename="${root.toString()}.bin"`)
    const car = await fetch(`${gw.url}/ipfs/${root.toString()}?format=car&dag-scope=block`)
    expect(car.status).toBe(200)
    expect(car.headers.get('content-disposition')).toBe(`attachment; filename="${root.toString()}.car"`)
    await car.arrayBuffer()
  })

  it('answers If-None-Match with the ETag 304 and no body; another ETag gets the response', async () => {
    for (const url of [`/ipfs/${file.toString()}?format=raw`, `/ipfs/${file.toString()}?format=car`, `/ipfs/${root.toString()}/sub/file?format=car&entity-bytes=0:99`]) {
      const first = await fetch(gw.url + url)
      expect(first.status).toBe(200)
      await first.arrayBuffer()
      const etag = first.headers.get('etag')!
      expect(etag).toMatch(/^"[^"]+"$/)
      for (const condition of [etag, `"other", ${etag}`, `W/${etag}`, '*']) {
        const again = await fetch(gw.url + url, { headers: { 'if-none-match': condition } })
        expect(again.status, `${url} If-None-Match: ${condition}`).toBe(304)
        expect(again.headers.get('etag')).toBe(etag)
        expect((await again.arrayBuffer()).byteLength).toBe(0)
      }
      const other = await fetch(gw.url + url, { headers: { 'if-none-match': '"something-else"' } })
      expect(other.status).toBe(200)
      await other.arrayBuffer()
    }
    // The CAR's ETag depends on what it holds.
    const etags = new Set<string>()
    for (const q of ['', '&dag-scope=block', '&dag-scope=entity', '&entity-bytes=0:99', '&entity-bytes=0:100']) {
      const r = await fetch(`${gw.url}/ipfs/${file.toString()}?format=car${q}`)
      await r.arrayBuffer()
      etags.add(r.headers.get('etag')!)
    }
    expect(etags.size).toBe(5)
  })

  it('refuses CAR versions other than 1 with 406', async () => {
    const url = `${gw.url}/ipfs/${file.toString()}`
    expect((await fetch(url, { headers: { accept: 'application/vnd.ipld.car; version=2' } })).status).toBe(406)
    expect((await fetch(`${url}?format=car&car-version=2`)).status).toBe(406)
    const v1 = await fetch(url, { headers: { accept: 'application/vnd.ipld.car; version=1; order=dfs' } })
    expect(v1.status).toBe(200)
    expect(v1.headers.get('content-type')).toMatch(/^application\/vnd\.ipld\.car; version=1;/)
    await v1.arrayBuffer()
    // A client that also takes version 2 gets version 1.
    const either = await fetch(url, { headers: { accept: 'application/vnd.ipld.car; version=2, application/vnd.ipld.car; version=1' } })
    expect(either.status).toBe(200)
    await either.arrayBuffer()
  })

  it('resolves /ipfs/<cid>/<path>?format=car through HAMT shards: the path blocks, then the target', async () => {
    const r = await fetch(`${gw.url}/ipfs/${root.toString()}/sub/file?format=car`)
    expect(r.status).toBe(200)
    const blocks = await carBlocks(r)
    expect(blocks[0]!.cid.toString()).toBe(root.toString())
    const fileBlocks: string[] = []
    for await (const { cid } of walkDag(store, file)) fileBlocks.push(cid.toString())
    // The file's DAG comes last, whole and in depth-first order, after the directory blocks.
    expect(blocks.slice(-fileBlocks.length).map(b => b.cid.toString())).toEqual(fileBlocks)
    expect(new Set(blocks.map(b => b.cid.toString())).size).toBe(blocks.length)
    expect(Buffer.compare(await bytesOf(storeOf(blocks), `${root.toString()}/sub/file`), data)).toBe(0)
    expect((await fetch(`${gw.url}/ipfs/${root.toString()}/sub/absent?format=car`)).status).toBe(404)
    expect((await fetch(`${gw.url}/ipfs/${root.toString()}/sub/file/deeper?format=car`)).status).toBe(404)
    // A raw block has no path (the spec allows only /ipfs/<cid> for blocks).
    expect((await fetch(`${gw.url}/ipfs/${root.toString()}/sub?format=raw`)).status).toBe(400)
  })

  it('serves dag-scope=entity: a whole file, or a directory node with its HAMT shards and not its entries', async () => {
    const whole = await carBlocks(await fetch(`${gw.url}/ipfs/${file.toString()}?format=car&dag-scope=entity`))
    expect(Buffer.compare(await bytesOf(storeOf(whole), file.toString()), data)).toBe(0)
    const dir = await carBlocks(await fetch(`${gw.url}/ipfs/${root.toString()}?format=car&dag-scope=entity`))
    const only = storeOf(dir)
    const held = new Set(dir.map(b => b.cid.toString()))
    const getter = { get: (cid: CID) => only.get(cid) }
    for (const name of [...names, 'sub']) {
      const entry = await lookupEntry(getter, root, name, new DirNodeCache())
      expect(entry, name).toBeDefined()
      expect(held.has(entry!.toString()), `${name} is not part of the directory entity`).toBe(false)
    }
  })

  it('serves entity-bytes=from:to as the blocks of that byte range only, so range clients can read it', async () => {
    const all = (await carBlocks(await fetch(`${gw.url}/ipfs/${file.toString()}?format=car`))).length
    const cases: Array<[string, number, number]> = [
      ['100000:200000', 100000, 200001],
      ['0:*', 0, data.length],
      ['-1024:*', data.length - 1024, data.length],
      ['499:-1000', 499, data.length - 999],
      [`1000000:${data.length + 5000}`, 1000000, data.length]
    ]
    for (const [range, from, end] of cases) {
      const r = await fetch(`${gw.url}/ipfs/${root.toString()}/sub/file?format=car&entity-bytes=${range}`)
      expect(r.status, range).toBe(200)
      const blocks = await carBlocks(r)
      const got = await bytesOf(storeOf(blocks), `${root.toString()}/sub/file`, { offset: from, length: end - from })
      expect(Buffer.compare(got, data.subarray(from, end)), range).toBe(0)
      const leaves = Math.ceil(end / 65536) - Math.floor(from / 65536)
      expect(blocks.filter(b => b.cid.code === 0x55).length, range).toBe(leaves)
    }
    const small = await carBlocks(await fetch(`${gw.url}/ipfs/${file.toString()}?format=car&entity-bytes=0:0`))
    expect(small.length).toBeLessThan(all / 4)
    expect((await fetch(`${gw.url}/ipfs/${file.toString()}?format=car&entity-bytes=${data.length}:*`)).status).toBe(400)
    expect((await fetch(`${gw.url}/ipfs/${file.toString()}?format=car&entity-bytes=abc`)).status).toBe(400)
    expect((await fetch(`${gw.url}/ipfs/${file.toString()}?format=car&dag-scope=nonsense`)).status).toBe(400)
  })

  it('gives /ipns record responses the Cache-Control of the record\'s TTL, never past its validity', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = ipnsNameOf(key.publicKey.raw)
    records[name] = marshalIPNSRecord(await createIPNSRecord(key, root, 1n, 3_600_000, { ttlNs: 42n * 1_000_000_000n, v1Compatible: true }))
    const r = await fetch(`${gw.url}/ipns/${name}?format=ipns-record`)
    expect(r.status).toBe(200)
    expect(r.headers.get('cache-control')).toBe('public, max-age=42')
    records[name] = marshalIPNSRecord(await createIPNSRecord(key, root, 2n, 10_000, { ttlNs: 3600n * 1_000_000_000n, v1Compatible: true }))
    const soon = await fetch(`${gw.url}/ipns/${name}?format=ipns-record`)
    const maxAge = Number(/max-age=(\d+)/.exec(soon.headers.get('cache-control') ?? '')?.[1])
    expect(maxAge).toBeGreaterThanOrEqual(0)
    expect(maxAge).toBeLessThanOrEqual(10)
  })
})
