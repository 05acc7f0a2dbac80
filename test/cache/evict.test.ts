import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { evictToFit, packBytes } from '../../src/cache/evict.js'
import { pin } from '../../src/cache/pins.js'
import { RemotePinStore } from '../../src/cache/remote-pins.js'
import { fixedChunker } from '../../src/ipfs/chunker.js'
import { walkDag } from '../../src/ipfs/dag.js'
import { importFile, readFile } from '../../src/ipfs/file-dag.js'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { startGateway, type Gateway } from '../../src/gateway/server.js'
import { NetworkBlocks } from '../../src/net/fetcher.js'
import { HttpPeer } from '../../src/net/http-peer.js'
import { tmp } from '../helpers/cli.js'

async function * once (bytes: Uint8Array): AsyncGenerator<Uint8Array> { yield bytes }
async function collect (it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const p of it) parts.push(p)
  return Buffer.concat(parts)
}
const MiB = 1024 * 1024

describe('--max-cache: least recently used NARs are evicted', () => {
  const data = { a: randomBytes(3 * MiB), b: randomBytes(3 * MiB), pinned: randomBytes(MiB / 2), remote: randomBytes(MiB / 2) }
  let origin: PackStore
  let gw: Gateway
  const roots: Record<string, Awaited<ReturnType<typeof importFile>>['cid']> = {}

  beforeAll(async () => {
    origin = await PackStore.openRepo(tmp())
    for (const [k, v] of Object.entries(data)) roots[k] = (await importFile(origin, once(v), fixedChunker(256 * 1024))).cid
    await origin.flush()
    gw = await startGateway({ caches: async () => undefined, disputes: async () => [], stats: () => ({}), blocks: origin, local: origin, record: async () => undefined, host: '127.0.0.1', port: 0 })
  })
  afterAll(async () => { await gw.close(); await origin.close() })

  it('keeps the pins, the Pinning Service API\'s pin requests and the most recently used NAR, drops the older one, and fetches it again when asked', async () => {
    const repo = tmp()
    const blocks = new NetworkBlocks(await PackStore.openRepo(repo), { http: [new HttpPeer(gw.url)] })
    const read = async (k: 'a' | 'b' | 'pinned' | 'remote'): Promise<Buffer> => {
      blocks.touch(roots[k]!, data[k].length)
      return await collect(readFile(blocks, roots[k]!))
    }
    await read('pinned')
    await pin(repo, [roots.pinned!])
    await read('remote')
    await (await RemotePinStore.open(repo)).add({ cid: roots.remote!.toString() })
    expect(Buffer.compare(await read('a'), data.a)).toBe(0)
    expect(Buffer.compare(await read('b'), data.b)).toBe(0)
    await blocks.local.sync()
    expect(await packBytes(repo)).toBeGreaterThan(6 * MiB)

    expect(await evictToFit(repo, blocks.local, blocks, { maxBytes: 100 * MiB, follow: [] })).toBeUndefined() // under the limit: nothing to do
    const r = await evictToFit(repo, blocks.local, blocks, { maxBytes: 6 * MiB, follow: [] })
    expect(r?.nars).toEqual({ kept: 1, dropped: 3 }) // b kept; a and the pinned ones (kept by their pins) left the LRU
    expect(await packBytes(repo)).toBeLessThan(5 * MiB)
    const held = async (k: string): Promise<boolean> => {
      for await (const { cid } of walkDag({ get: async function * (cid) { yield await blocks.local.read(cid) } }, roots[k]!, { onMissing: () => {} })) {
        if (!blocks.local.has(cid)) return false
      }
      return blocks.local.has(roots[k]!)
    }
    expect(await held('b')).toBe(true)
    expect(await held('pinned')).toBe(true)
    expect(await held('remote')).toBe(true)
    expect(blocks.local.has(roots.a!)).toBe(false)
    const fetchedBefore = blocks.counters.car + blocks.counters.http
    expect(Buffer.compare(await read('a'), data.a)).toBe(0)
    expect(blocks.counters.car + blocks.counters.http).toBeGreaterThan(fetchedBefore)
    await blocks.local.close()
  })
})
