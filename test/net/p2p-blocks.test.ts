import { MemoryDatastore } from 'datastore-core'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { dialPeer, startP2p, type P2pNode } from '../../src/net/p2p.js'
import { tmp } from '../helpers/cli.js'

// A gateway's bitswap answered only blocks its pack store knew when it last
// looked: bitswap asks `has` first, and `has` never read the index again. So a
// block that `nixipfs publish` (another process, e.g. the post-build hook)
// wrote into the repo while the gateway ran was refused to every peer.
const node = async (blocks: PackStore): Promise<P2pNode> => await startP2p({
  blocks,
  datastore: new MemoryDatastore(),
  listen: ['/ip4/127.0.0.1/tcp/0'],
  peerSeed: crypto.getRandomValues(new Uint8Array(32)),
  lookupRecord: async () => undefined
})

describe('blocks over bitswap', () => {
  const stops: Array<() => Promise<void>> = []
  afterAll(async () => { for (const stop of stops) await stop() })

  it('serves a block another process wrote into the repo after the node started', async () => {
    const repo = tmp()
    const server = await node(await PackStore.openRepo(repo))
    stops.push(async () => { await server.stop() })
    const client = await node(await PackStore.openRepo(tmp()))
    stops.push(async () => { await client.stop() })
    await dialPeer(client, server.libp2p.getMultiaddrs()[0]!.toString())

    // "publish": its own store on the same repo.
    const bytes = new TextEncoder().encode(`published while the gateway ran ${Date.now()}`)
    const cid = CID.createV1(raw.code, await sha256.digest(bytes))
    const publisher = await PackStore.openRepo(repo)
    await publisher.put(cid, bytes)
    await publisher.flush()
    await publisher.sync()

    const chunks: Uint8Array[] = []
    for await (const chunk of client.blockstore.get(cid, { signal: AbortSignal.timeout(5_000) })) chunks.push(chunk)
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true)
  }, 20_000)

  it('takes blocks a connected peer holds without asking the DHT who has each one', async () => {
    const holder = await PackStore.openRepo(tmp())
    const cids: CID[] = []
    for (let i = 0; i < 40; i++) {
      const bytes = new TextEncoder().encode(`block ${i} ${Date.now()}`)
      const cid = CID.createV1(raw.code, await sha256.digest(bytes))
      await holder.put(cid, bytes)
      cids.push(cid)
    }
    await holder.flush()
    const server = await node(holder)
    stops.push(async () => { await server.stop() })
    const client = await node(await PackStore.openRepo(tmp()))
    stops.push(async () => { await client.stop() })
    await dialPeer(client, server.libp2p.getMultiaddrs()[0]!.toString())
    // Every provider lookup of bitswap goes through libp2p's content routing (the DHT).
    let lookups = 0
    const routing = client.libp2p.contentRouting
    const findProviders = routing.findProviders.bind(routing)
    routing.findProviders = (cid, options) => { lookups++; return findProviders(cid, options) }
    for (const cid of cids) {
      for await (const _ of client.blockstore.get(cid, { signal: AbortSignal.timeout(5_000) })) { /* got it */ }
    }
    expect(lookups).toBe(0)
  }, 30_000)
})
