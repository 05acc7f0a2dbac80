import { setTimeout as delay } from 'node:timers/promises'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight, type HeliaWithLibp2p } from '@helia/libp2p'
import { privateKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { fetch as fetchService, type Fetch } from '@libp2p/fetch'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper, type KadDHT } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { CID } from 'multiformats/cid'
import { multiaddr } from '@multiformats/multiaddr'
import type { Datastore } from 'interface-datastore'
import { createHeliaLight } from 'helia'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import type { PackStore } from '../ipfs/pack-store.js'
import { DHT_PROTOCOL, RECORD_KEY_PREFIX } from './protocols.js'
import { withPeersInMemory } from './memory-peers.js'

/** Loopback: connections from it are not rate limited (libp2p's 5 a second per host breaks a network of nodes on one machine). */
const LOOPBACK = '/ip4/127.0.0.0/ipcidr/8'
/** Inbound connections whose handshake may be under way at once (libp2p's default: 10). */
const MAX_PENDING_HANDSHAKES = 256
/** How long an inbound connection may take to finish its handshake (libp2p's default: 10 s). */
const HANDSHAKE_TIMEOUT_MS = 5_000
/** How often libp2p pings each connection (its default: 10 s). */
const PING_INTERVAL_MS = 60_000
/** How long bitswap waits for its connected peers to send a block before it asks the routing who has it. */
const PROVIDER_LOOKUP_DELAY_MS = 1_000

export interface P2pOptions {
  blocks: PackStore
  datastore: Datastore
  /** multiaddrs to listen on, e.g. /ip4/127.0.0.1/tcp/4001 */
  listen: string[]
  /** 32-byte Ed25519 seed of the node's peer identity */
  peerSeed: Uint8Array
  /** answers record requests from peers */
  lookupRecord: (name: string) => Promise<Uint8Array | undefined>
  /**
   * joins the public IPFS network (`--bootstrap public`): peers' private and
   * loopback addresses are dropped from the DHT, and a node that listens on
   * loopback only stays a DHT client (nobody out there could reach it)
   */
  publicNetwork?: boolean
  /** more addresses to announce beside the listening ones (the trustless HTTP gateway's `/ip4/…/tcp/PORT/http`), read whenever libp2p announces */
  extraAddresses?: () => string[]
}

export type P2pNode = HeliaWithLibp2p<{ identify: unknown, ping: unknown, fetch: Fetch, dht: KadDHT, pubsub: GossipSub }>

/**
 * Starts a Helia node speaking TCP + noise + yamux + bitswap on `listen`,
 * with the Kademlia DHT as its routing (so bitswap finds providers) and no
 * peer discovery: peers and bootstrap peers are dialled explicitly. Blocks
 * come from and go to the repo's pack store, so bitswap serves what the repo holds.
 */
export async function startP2p (options: P2pOptions): Promise<P2pNode> {
  const privateKey = privateKeyFromRaw(await ed25519Expanded(options.peerSeed))
  // Bitswap answers a want only when `has` says yes: a store that never looked again missed every block another
  // process (publish, as a post-build hook) wrote after it opened, and peers were told it had none of them.
  const blockstore = new Proxy(options.blocks, {
    get: (store, prop, receiver) => prop === 'has' ? async (cid: CID) => await store.hasFresh(cid) : Reflect.get(store, prop, receiver)
  })
  const helia = withBitswap(withLibp2pLight(createHeliaLight({ blockstore, datastore: options.datastore, routers: [], blockBrokers: [] }), {
    privateKey,
    // The peer store is rewritten at every identify and DHT answer: on disk, that was a file write each.
    datastore: withPeersInMemory(options.datastore),
    // The HTTP gateway's /http address goes with the peer record (identify, DHT provider answers), so HTTP-only clients find it; no transport dials it.
    addresses: { listen: options.listen, announceFilter: addrs => [...addrs, ...(options.extraAddresses?.() ?? []).map(a => multiaddr(a))] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    peerDiscovery: [],
    connectionMonitor: { pingInterval: PING_INTERVAL_MS },
    connectionManager: {
      allow: [LOOPBACK],
      // libp2p lets one host open 5 connections a second (inboundConnectionThreshold) but, by default, only 10
      // handshakes be pending at once, each for up to 10 s: one host that opens connections and sends nothing
      // held every slot, and no other machine could connect. Now one host can hold at most 5 × 5 = 25 of 256.
      maxIncomingPendingConnections: MAX_PENDING_HANDSHAKES,
      inboundUpgradeTimeout: HANDSHAKE_TIMEOUT_MS
    },
    services: {
      identify: identify(),
      // kad-dht and libp2p's connection monitor both ping: with one stream at a time, one of them fails (an unhandled rejection in libp2p).
      ping: ping({ maxOutboundStreams: 4 }),
      fetch: fetchService(),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        // kad-dht waits for a public address before it answers queries; our networks are often private or loopback.
        clientMode: options.publicNetwork === true && options.listen.every(isLoopback),
        peerInfoMapper: options.publicNetwork === true ? removePrivateAddressesMapper : passthroughMapper,
        // Without them kad-dht validates only /pk/ records: an IPNS put would "succeed" and store nothing.
        validators: { ipns: ipnsValidator },
        selectors: { ipns: ipnsSelector }
      }),
      // Announcements (net/pubsub.ts). Past 10 peers on one IP, gossipsub scores them all below zero and a busy loopback node's mesh empties; loopback peers are this machine's own nodes.
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, scoreParams: { IPColocationFactorWhitelist: new Set(['127.0.0.1', '::1']) } })
    }
  }), {
    // The default (10) drops block sends when a peer reads ahead on several NARs at once; its wants then go unanswered.
    sendBlocksMaxQueueLength: 1024
  })
  await helia.start()
  delayProviderLookups(helia.routing)
  dropRepeatedPeerNews((helia.libp2p.services as { dht: unknown }).dht)
  const node = helia as unknown as P2pNode
  node.libp2p.services.fetch.registerLookupFunction(RECORD_KEY_PREFIX, async (key) => {
    const name = new TextDecoder().decode(key).slice(RECORD_KEY_PREFIX.length)
    return await options.lookupRecord(name)
  })
  return node
}

/**
 * Bitswap asks the routing who has each block it wants, at once, beside
 * asking the peers it is connected to. On the DHT that is a walk for every
 * 256 KiB leaf, which nobody provides (nixipfs provides NAR roots; the
 * fetcher looks those up): it made a NAR fetched over bitswap cost its
 * holder and its fetcher twice the CPU. A block a connected peer holds comes
 * in milliseconds; the walk now starts only if it has not come by then.
 */
function delayProviderLookups (routing: Pick<P2pNode['routing'], 'findProviders'>): void {
  const find = routing.findProviders.bind(routing)
  routing.findProviders = async function * (cid, options) {
    // Aborted meanwhile: bitswap has the block.
    try { await delay(PROVIDER_LOOKUP_DELAY_MS, undefined, { signal: options?.signal }) } catch { return }
    yield * find(cid, options)
  }
}

/** How long a peer a DHT answer named, with the same addresses, is old news (not handed on again). */
const PEER_NEWS_MS = 30_000
/** Peers remembered as named lately at most. */
const PEER_NEWS_KEPT = 10_000

/**
 * kad-dht hands every peer each DHT answer names (up to 20 closer peers, and the providers) to its routing table
 * and, as a discovered peer, to libp2p's peer store: a lock, a protobuf decode and encode each. On a network of
 * 50 nodes the same peers come back in every answer, and that was a tenth of a discovering client's CPU while Nix
 * waited. A peer named again within PEER_NEWS_MS with the same addresses is not handed on again.
 */
function dropRepeatedPeerNews (dht: unknown): void {
  const network = (dht as { network?: { safeDispatchEvent?: (type: string, init?: { detail?: unknown }) => boolean } }).network
  const dispatch = network?.safeDispatchEvent?.bind(network)
  if (network === undefined || dispatch === undefined) return // another kad-dht: nothing to trim
  const named = new Map<string, { at: number, addresses: string }>()
  network.safeDispatchEvent = (type, init) => {
    const peer = init?.detail as { id?: { toString: () => string }, multiaddrs?: Array<{ toString: () => string }> } | undefined
    if (type !== 'peer' || peer?.id === undefined || peer.multiaddrs === undefined) return dispatch(type, init)
    const id = peer.id.toString()
    const addresses = peer.multiaddrs.map(String).join(' ')
    const last = named.get(id)
    const now = Date.now()
    if (last !== undefined && last.addresses === addresses && now - last.at < PEER_NEWS_MS) return true
    named.delete(id) // re-inserted last: the Map's order is the order peers were last named in
    named.set(id, { at: now, addresses })
    if (named.size > PEER_NEWS_KEPT) named.delete(named.keys().next().value!)
    return dispatch(type, init)
  }
}

/** Dials `address` (a multiaddr ending in /p2p/<peer id>) so bitswap and record requests can reach it. */
export async function dialPeer (node: P2pNode, address: string, signal?: AbortSignal): Promise<void> {
  await node.libp2p.dial(multiaddr(address), { signal })
}

/** Dials `provider` (a peer a routing lookup named, with the addresses it gave) unless it is connected already. */
export async function dialProvider (node: P2pNode, provider: { id: string, addresses: string[] }, signal?: AbortSignal): Promise<void> {
  const peer = peerIdFromString(provider.id)
  if (node.libp2p.getConnections(peer).length > 0) return
  if (provider.addresses.length > 0) await node.libp2p.peerStore.merge(peer, { multiaddrs: provider.addresses.map(a => multiaddr(a)) })
  await node.libp2p.dial(peer, { signal })
}

function isLoopback (address: string): boolean {
  return /^\/ip4\/127\.|^\/ip6\/::1\//.test(address)
}

async function ed25519Expanded (seed: Uint8Array): Promise<Uint8Array> {
  const { getPublicKeyAsync } = await import('@noble/ed25519')
  const pub = await getPublicKeyAsync(seed)
  const out = new Uint8Array(64)
  out.set(seed)
  out.set(pub, 32)
  return out
}
