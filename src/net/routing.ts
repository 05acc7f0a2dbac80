import type { KadDHT, QueryEvent } from '@libp2p/kad-dht'
import { peerIdFromString } from '@libp2p/peer-id'
import { multihashToIPNSRoutingKey } from 'ipns'
import type { CID } from 'multiformats/cid'
import { PeerError } from '../errors.js'

/** A peer that says it has something: its libp2p id and the multiaddrs it can be dialled at. */
export interface Provider {
  id: string
  addresses: string[]
}

/** A candidate record (unverified) and where it came from. */
export interface FoundRecord {
  from: string
  bytes: Uint8Array
}

export interface RoutingCallOptions {
  signal?: AbortSignal
  /** getRecord: how long the lookup goes on after the first record came (default RECORD_SETTLE_MS) */
  settleMs?: number
}

/** What a node asks the network: who has a CID, what a name's record is; and what it tells it. */
export interface Routing {
  /** tells the network this node has `cid` (the DHT keeps the provider record fresh from then on) */
  provide: (cid: CID, options?: RoutingCallOptions) => Promise<void>
  /** the peers that say they have `cid`, each once, as they are found */
  findProviders: (cid: CID, options?: RoutingCallOptions) => AsyncIterable<Provider>
  /** stores the signed IPNS record of `name` (k51…) in the network */
  putRecord: (name: string, bytes: Uint8Array, options?: RoutingCallOptions) => Promise<void>
  /** candidate records of `name` from the network (unverified) */
  getRecord: (name: string, options?: RoutingCallOptions) => Promise<FoundRecord[]>
  /** the addresses of peer `id` */
  findPeer: (id: string, options?: RoutingCallOptions) => Promise<Provider | undefined>
  /** peers in the DHT routing table (0: this node has not joined a network) */
  size: () => number
}

/** How long a record lookup goes on after the first record came (a newer one may come from another peer). */
export const RECORD_SETTLE_MS = 1_000

/** The DHT key of an IPNS name's record: `/ipns/` + the multihash of its key. */
export function ipnsRoutingKey (name: string): Uint8Array {
  return multihashToIPNSRoutingKey(peerIdFromString(name).toMultihash())
}

/**
 * The node's routing over the libp2p Kademlia DHT. (The `--routing` servers
 * are asked beside it by net/network.ts and net/record-push.ts.)
 */
export function dhtRouting (dht: KadDHT & { routingTable?: { size: number } }, self: string): Routing {
  return {
    provide: async (cid, options = {}) => {
      let stored = 0
      for await (const event of dht.provide(cid, options)) if (event.name === 'FINAL_PEER') stored++
      if (stored === 0) throw new PeerError('dht', `no DHT peer to store the provider record of ${cid.toString()} with (is any --bootstrap peer reachable?)`)
    },
    findProviders: async function * (cid, options = {}) {
      const seen = new Set<string>([self])
      for await (const provider of dhtProviders(dht.findProviders(cid, options))) {
        if (seen.has(provider.id)) continue
        seen.add(provider.id)
        yield provider
      }
    },
    putRecord: async (name, bytes, options = {}) => {
      let stored = 0
      for await (const event of dht.put(ipnsRoutingKey(name), bytes, options)) if (event.name === 'PEER_RESPONSE') stored++
      if (stored === 0) throw new PeerError('dht', `no DHT peer took the record of /ipns/${name} (is any --bootstrap peer reachable?)`)
    },
    getRecord: async (name, options = {}) => {
      const found: FoundRecord[] = []
      // A query goes on until every closest peer answered or failed (a stopped one only by a timeout):
      // once a record came, the others are waited for a little, then the records found are what counts.
      const settled = new AbortController()
      const signal = options.signal === undefined ? settled.signal : AbortSignal.any([options.signal, settled.signal])
      let timer: NodeJS.Timeout | undefined
      try {
        for await (const event of dht.get(ipnsRoutingKey(name), { ...options, signal })) {
          if (event.name !== 'VALUE' || found.some(f => Buffer.compare(f.bytes, event.value) === 0)) continue
          found.push({ from: `dht:${event.from.toString()}`, bytes: event.value })
          timer ??= setTimeout(() => settled.abort(), options.settleMs ?? RECORD_SETTLE_MS)
        }
      } catch (err) {
        if (found.length === 0) throw err
      } finally {
        clearTimeout(timer)
      }
      return found
    },
    findPeer: async (id, options = {}) => {
      try {
        for await (const event of dht.findPeer(peerIdFromString(id), options)) {
          if (event.name === 'FINAL_PEER') return { id, addresses: event.peer.multiaddrs.map(String) }
        }
      } catch (err) {
        if (options.signal?.aborted === true) throw err
      }
      return undefined
    },
    size: () => dht.routingTable?.size ?? 0
  }
}

async function * dhtProviders (events: AsyncIterable<QueryEvent>): AsyncGenerator<Provider> {
  for await (const event of events) {
    if (event.name !== 'PROVIDER') continue
    for (const p of event.providers) yield { id: p.id.toString(), addresses: p.multiaddrs.map(String) }
  }
}
