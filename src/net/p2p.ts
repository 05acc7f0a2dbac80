import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight, type HeliaWithLibp2p } from '@helia/libp2p'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { fetch as fetchService, type Fetch } from '@libp2p/fetch'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import type { Datastore } from 'interface-datastore'
import { createHeliaLight } from 'helia'
import type { PackStore } from '../ipfs/pack-store.js'

/** Prefix of libp2p fetch keys under which nodes hand out IPNS records: `/ipns/<name>`. */
export const RECORD_KEY_PREFIX = '/ipns/'

export interface P2pOptions {
  blocks: PackStore
  datastore: Datastore
  /** multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/4001 */
  listen: string[]
  /** 32-byte Ed25519 seed of the node's peer identity */
  peerSeed: Uint8Array
  /** answers record requests from peers */
  lookupRecord: (name: string) => Promise<Uint8Array | undefined>
}

export type P2pNode = HeliaWithLibp2p<{ identify: unknown, fetch: Fetch, pubsub: GossipSub }>

/**
 * Starts a Helia node speaking TCP + noise + yamux + bitswap on `listen`, with
 * no routing and no peer discovery: peers are dialled explicitly. Blocks come
 * from and go to the repo's pack store, so bitswap serves what the repo holds.
 */
export async function startP2p (options: P2pOptions): Promise<P2pNode> {
  const privateKey = privateKeyFromRaw(await ed25519Expanded(options.peerSeed))
  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore: options.blocks, datastore: options.datastore, routers: [], blockBrokers: [] }), {
    privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    services: {
      identify: identify(),
      fetch: fetchService(),
      // Announcements (net/pubsub.ts). Past 10 peers on one IP, gossipsub scores them all below zero and a busy loopback node's mesh empties; loopback peers are this machine's own nodes.
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']) } })
    }
  }), {
    // The default (10) drops block sends when a peer reads ahead on several NARs at once; its wants then go unanswered.
    sendBlocksMaxQueueLength: 1024
  })
  await helia.start()
  const node = helia as unknown as P2pNode
  node.libp2p.services.fetch.registerLookupFunction(RECORD_KEY_PREFIX, async (key) => {
    const name = new TextDecoder().decode(key).slice(RECORD_KEY_PREFIX.length)
    return await options.lookupRecord(name)
  })
  return node
}

/** Dials `address` (a multiaddr ending in /p2p/<peer id>) so bitswap and record requests can reach it. */
export async function dialPeer (node: P2pNode, address: string, signal?: AbortSignal): Promise<void> {
  await node.libp2p.dial(multiaddr(address), { signal })
}

async function ed25519Expanded (seed: Uint8Array): Promise<Uint8Array> {
  const { getPublicKeyAsync } = await import('@noble/ed25519')
  const pub = await getPublicKeyAsync(seed)
  const out = new Uint8Array(64)
  out.set(seed)
  out.set(pub, 32)
  return out
}
