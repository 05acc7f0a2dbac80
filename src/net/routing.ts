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
}

/**
 * A routing system beside the DHT, such as a delegated routing V1 HTTP
 * client (`--routing URL`, src/net/delegated.ts): whatever it cannot do it
 * leaves out. Nothing it returns is trusted: records are verified against
 * their names, blocks against their CIDs.
 */
export interface ExtraRouter {
  /** how it appears in logs (e.g. its URL) */
  name: string
  provide?: (cid: CID, options: RoutingCallOptions) => Promise<void>
  findProviders?: (cid: CID, options: RoutingCallOptions) => AsyncIterable<Provider>
  putRecord?: (name: string, bytes: Uint8Array, options: RoutingCallOptions) => Promise<void>
  getRecord?: (name: string, options: RoutingCallOptions) => Promise<Uint8Array | undefined>
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
  /** peers in the DHT routing table plus routers beside it (0: this node has not joined a network) */
  size: () => number
}

/** The DHT key of an IPNS name's record: `/ipns/` + the multihash of its key. */
export function ipnsRoutingKey (name: string): Uint8Array {
  return multihashToIPNSRoutingKey(peerIdFromString(name).toMultihash())
}

/** The node's routing: the libp2p Kademlia DHT, and any `extra` routers beside it. */
export function dhtRouting (dht: KadDHT & { routingTable?: { size: number } }, self: string, extra: ExtraRouter[] = []): Routing {
  return {
    provide: async (cid, options = {}) => {
      const others = Promise.allSettled(extra.filter(r => r.provide !== undefined).map(async r => await r.provide!(cid, options)))
      let stored = 0
      if (dht.routingTable?.size !== 0) for await (const event of dht.provide(cid, options)) if (event.name === 'FINAL_PEER') stored++
      if ((await others).some(r => r.status === 'fulfilled')) return
      if (stored === 0) throw new PeerError('dht', `no DHT peer to store the provider record of ${cid.toString()} with (is any --bootstrap peer reachable?)`)
    },
    findProviders: async function * (cid, options = {}) {
      const seen = new Set<string>([self])
      const sources: Array<AsyncIterable<Provider>> = [dhtProviders(dht.findProviders(cid, options)), ...extra.flatMap(r => r.findProviders === undefined ? [] : [r.findProviders(cid, options)])]
      for await (const provider of merge(sources)) {
        if (seen.has(provider.id)) continue
        seen.add(provider.id)
        yield provider
      }
    },
    putRecord: async (name, bytes, options = {}) => {
      const others = Promise.allSettled(extra.filter(r => r.putRecord !== undefined).map(async r => await r.putRecord!(name, bytes, options)))
      let stored = 0
      if (dht.routingTable?.size !== 0) for await (const event of dht.put(ipnsRoutingKey(name), bytes, options)) if (event.name === 'PEER_RESPONSE') stored++
      if ((await others).some(r => r.status === 'fulfilled')) return
      if (stored === 0) throw new PeerError('dht', `no DHT peer took the record of /ipns/${name} (is any --bootstrap peer reachable?)`)
    },
    getRecord: async (name, options = {}) => {
      const found: FoundRecord[] = []
      const add = (from: string, bytes: Uint8Array | undefined): void => {
        if (bytes !== undefined && !found.some(f => Buffer.compare(f.bytes, bytes) === 0)) found.push({ from, bytes })
      }
      await Promise.allSettled([
        (async () => {
          for await (const event of dht.get(ipnsRoutingKey(name), options)) if (event.name === 'VALUE') add(`dht:${event.from.toString()}`, event.value)
        })(),
        ...extra.map(async r => { if (r.getRecord !== undefined) add(r.name, await r.getRecord(name, options)) })
      ])
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
    // Delegated routers count as known peers: a node with only --routing can announce and look up.
    size: () => (dht.routingTable?.size ?? 0) + extra.length
  }
}

async function * dhtProviders (events: AsyncIterable<QueryEvent>): AsyncGenerator<Provider> {
  for await (const event of events) {
    if (event.name !== 'PROVIDER') continue
    for (const p of event.providers) yield { id: p.id.toString(), addresses: p.multiaddrs.map(String) }
  }
}

/** The items of several async iterables as they come; one that fails ends early without ending the others. */
async function * merge<T> (sources: Array<AsyncIterable<T>>): AsyncGenerator<T> {
  const iterators = sources.map(s => s[Symbol.asyncIterator]())
  const pending = new Map<number, Promise<{ i: number, r: IteratorResult<T> | undefined }>>()
  const next = (i: number): void => {
    pending.set(i, iterators[i]!.next().then(r => ({ i, r }), () => ({ i, r: undefined })))
  }
  iterators.forEach((_, i) => next(i))
  try {
    while (pending.size > 0) {
      const { i, r } = await Promise.race(pending.values())
      if (r === undefined || r.done === true) { pending.delete(i); continue }
      next(i)
      yield r.value
    }
  } finally {
    for (const i of pending.keys()) iterators[i]!.return?.().catch(() => {})
  }
}
