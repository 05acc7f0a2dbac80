import { MemoryDatastore } from 'datastore-core'
import { Key } from 'interface-datastore'
import { afterAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { withPeersInMemory } from '../../src/net/memory-peers.js'
import { dialPeer, startP2p, type P2pNode } from '../../src/net/p2p.js'
import { tmp } from '../helpers/cli.js'

/** A datastore that notes every key written to it (what would have gone to disk). */
function recording (): { store: MemoryDatastore, written: string[] } {
  const store = new MemoryDatastore()
  const written: string[] = []
  const put = store.put.bind(store)
  store.put = async (key, value, options) => { written.push(key.toString()); return await put(key, value, options) }
  return { store, written }
}

describe('the libp2p peer store is kept in memory', () => {
  const nodes: Array<{ node: P2pNode, blocks: PackStore }> = []
  afterAll(async () => { for (const { node, blocks } of nodes) { await node.stop(); await blocks.close() } })

  it('two connected nodes know each other without writing a peer entry to the repo datastore (a file write each on disk)', async () => {
    const start = async (datastore: MemoryDatastore): Promise<P2pNode> => {
      const blocks = await PackStore.openRepo(tmp())
      const node = await startP2p({ blocks, datastore, listen: ['/ip4/127.0.0.1/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
      nodes.push({ node, blocks })
      return node
    }
    const a = recording()
    const b = recording()
    const na = await start(a.store)
    const nb = await start(b.store)
    await dialPeer(na, nb.libp2p.getMultiaddrs()[0]!.toString())
    // identify tells each side the other's protocols: then the peer store holds them.
    for (let t = 0; t < 100 && !(await na.libp2p.peerStore.get(nb.libp2p.peerId).catch(() => undefined))?.protocols.includes('/ipfs/kad/1.0.0'); t++) await new Promise(resolve => setTimeout(resolve, 50))
    expect((await na.libp2p.peerStore.get(nb.libp2p.peerId)).protocols).toContain('/ipfs/kad/1.0.0')
    expect([...a.written, ...b.written].filter(k => k.startsWith('/peers/'))).toEqual([])
  }, 20_000)

  it('keeps other keys in the datastore and answers queries over both', async () => {
    const { store, written } = recording()
    const ds = withPeersInMemory(store)
    await ds.put(new Key('/peers/abc'), Uint8Array.of(1))
    await ds.put(new Key('/dht/record/xyz'), Uint8Array.of(2))
    expect(written).toEqual(['/dht/record/xyz'])
    expect(await ds.get(new Key('/peers/abc'))).toEqual(Uint8Array.of(1))
    await expect(ds.get(new Key('/peers/none'))).rejects.toMatchObject({ name: 'NotFoundError' })
    const keys = async (prefix?: string): Promise<string[]> => { const out: string[] = []; for await (const p of ds.query({ prefix })) out.push(p.key.toString()); return out.sort() }
    expect(await keys('/peers/')).toEqual(['/peers/abc'])
    expect(await keys('/dht')).toEqual(['/dht/record/xyz'])
    expect(await keys()).toEqual(['/dht/record/xyz', '/peers/abc'])
    await ds.delete(new Key('/peers/abc'))
    expect(await ds.has(new Key('/peers/abc'))).toBe(false)
  })
})
