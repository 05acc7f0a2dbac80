import { MemoryDatastore } from 'datastore-core'
import { afterAll, describe, expect, it } from 'vitest'
import { PackStore } from '../../src/ipfs/pack-store.js'
import { dialPeer, startP2p, type P2pNode } from '../../src/net/p2p.js'
import { Announcements, type Hearing } from '../../src/net/pubsub.js'
import { tmp } from '../helpers/cli.js'

// A peer that floods a topic with announcements that fail their checks (each
// costs the hearer a signature check) is graylisted after three: gossipsub
// then no longer reads its messages at all, valid ones included.
const TOPIC = '/nixipfs/test-scoring/1'
const quiet = { debug: () => {} }

describe('announcements: scoring', () => {
  const nodes: P2pNode[] = []
  const start = async (): Promise<P2pNode> => {
    const node = await startP2p({ blocks: await PackStore.openRepo(tmp()), datastore: new MemoryDatastore(), listen: ['/ip4/127.0.0.1/tcp/0'], peerSeed: crypto.getRandomValues(new Uint8Array(32)), lookupRecord: async () => undefined })
    nodes.push(node)
    return node
  }
  afterAll(async () => { await Promise.all(nodes.map(async n => { await n.stop() })) })

  it('graylists a peer after three invalid announcements: its next valid one is not heard', async () => {
    const [hearer, flooder] = [await start(), await start()]
    const heard: string[] = []
    new Announcements(hearer, quiet).hear(TOPIC, async (data): Promise<Hearing> => {
      const text = new TextDecoder().decode(data)
      heard.push(text)
      return text.startsWith('valid') ? 'accept' : 'reject'
    })
    const sender = new Announcements(flooder, quiet)
    sender.hear(TOPIC, async () => 'accept')
    await dialPeer(flooder, hearer.libp2p.getMultiaddrs()[0]!.toString())
    const hearerId = hearer.libp2p.peerId.toString()
    for (const until = Date.now() + 10_000; !flooder.libp2p.services.pubsub.getSubscribers(TOPIC).some(p => p.toString() === hearerId) && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 50))

    const waitHeard = async (n: number): Promise<void> => {
      for (const until = Date.now() + 5_000; heard.length < n && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 20))
    }
    await sender.announce(TOPIC, new TextEncoder().encode('valid 0'))
    await waitHeard(1)
    expect(heard).toEqual(['valid 0'])
    for (let i = 1; i <= 3; i++) {
      await sender.announce(TOPIC, new TextEncoder().encode(`forged ${i}`))
      await waitHeard(i + 1)
    }
    expect(heard).toHaveLength(4)
    // gossipsub keeps a score for a heartbeat (1 s) and reads a well-scored peer's next messages unchecked for a second
    await new Promise(resolve => setTimeout(resolve, 1_200))
    expect(hearer.libp2p.services.pubsub.getScore(flooder.libp2p.peerId.toString())).toBeLessThan(-80)
    await sender.announce(TOPIC, new TextEncoder().encode('valid 1'))
    await new Promise(resolve => setTimeout(resolve, 1_000))
    expect(heard).not.toContain('valid 1')
  }, 30_000)

  it('stops reading the backlog of a peer at its third invalid item', async () => {
    const [hearer, flooder] = [await start(), await start()]
    const topic = `${TOPIC}-backlog`
    const forged = Array.from({ length: 10 }, (_, i) => new TextEncoder().encode(`forged ${i}`))
    new Announcements(flooder, quiet).hear(topic, async () => 'accept', async () => forged)
    let checked = 0
    new Announcements(hearer, quiet).hear(topic, async () => { checked++; return 'reject' })
    await dialPeer(hearer, flooder.libp2p.getMultiaddrs()[0]!.toString())
    for (const until = Date.now() + 10_000; checked < 3 && Date.now() < until;) await new Promise(resolve => setTimeout(resolve, 50))
    await new Promise(resolve => setTimeout(resolve, 500))
    expect(checked).toBe(3)
  }, 30_000)
})

