import { randomBytes } from 'node:crypto'
import { MemoryDatastore } from 'datastore-core'
import { afterAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { dialPeer, startP2p, type P2pNode } from '../../src/net/p2p.js'
import { tmp } from '../helpers/cli.js'

// Every DHT answer names up to 20 closer peers, and kad-dht handed each to its routing table and to libp2p's peer
// store (a lock, a protobuf decode and encode): on a 50-node network the same peers came back in every answer, a
// tenth of a discovering client's CPU while Nix waited on its lookups.
describe('peers named by DHT answers', () => {
  const nodes: Array<{ node: P2pNode, blocks: PackStore }> = []
  afterAll(async () => { for (const { node, blocks } of nodes) { await node.stop(); await blocks.close() } })
  const start = async (): Promise<P2pNode> => {
    const blocks = await PackStore.openRepo(tmp())
    const node = await startP2p({ blocks, datastore: new MemoryDatastore(), listen: ['/ip4/127.0.0.1/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
    nodes.push({ node, blocks })
    return node
  }
  const tableSize = (node: P2pNode): number => (node.libp2p.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
  const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

  it('are handed on once, however many answers name them again with the same addresses', async () => {
    const hub = await start()
    const others = await Promise.all(Array.from({ length: 4 }, start))
    for (const n of others) await dialPeer(n, hub.libp2p.getMultiaddrs()[0]!.toString())
    const asker = await start()
    await dialPeer(asker, hub.libp2p.getMultiaddrs()[0]!.toString())
    for (let t = 0; t < 100 && tableSize(hub) < others.length + 1; t++) await sleep(50)
    await sleep(300)
    const named = new Map<string, number>()
    asker.libp2p.services.dht.addEventListener('peer', (evt) => {
      const id = evt.detail.id.toString()
      named.set(id, (named.get(id) ?? 0) + 1)
    })
    for (let i = 0; i < 3; i++) for await (const event of asker.libp2p.services.dht.getClosestPeers(randomBytes(32))) void event
    const otherIds = others.map(n => n.libp2p.peerId.toString())
    expect(otherIds.filter(id => named.has(id)).length).toBeGreaterThan(0) // the answers named them
    expect(Math.max(...named.values())).toBe(1)
  }, 30_000)
})
