import { networkInterfaces } from 'node:os'
import { peerIdFromString } from '@libp2p/peer-id'
import type { CID } from 'multiformats/cid'
import { RecordError } from '../errors.js'
import { checkRecord } from '../ipfs/ipns.js'
import { Lru } from '../lru.js'

/** A peer as the Delegated Routing V1 `peer` schema describes it. */
export interface PeerInfo {
  /** peer ID as a base58btc multihash (12D3Koo…) */
  id: string
  /** multiaddrs without `/p2p/<id>`; a trustless HTTP gateway as `/ip4/…/tcp/<port>/http` */
  addresses: string[]
  /** transfer protocols, e.g. transport-bitswap, transport-ipfs-gateway-http (empty: unknown) */
  protocols: string[]
}

/**
 * What a routing server answers from. Records it returns or takes are
 * checked here (signed by the name's key, unexpired), whoever supplied them.
 */
export interface RoutingView {
  /** peers that have the block `cid` */
  providers: (cid: CID, signal?: AbortSignal) => AsyncIterable<PeerInfo>
  /** the newest valid record known for IPNS name `name` (k51…), as signed */
  record: (name: string, signal?: AbortSignal) => Promise<Uint8Array | undefined>
  /** takes a record for `name`; throws a RecordError when it is invalid or older than one known */
  putRecord: (name: string, bytes: Uint8Array, signal?: AbortSignal) => Promise<void>
  /** what is known of peer `id` (base58btc) */
  peer: (id: string, signal?: AbortSignal) => Promise<PeerInfo | undefined>
}

/** One source of routing knowledge (this node, the DHT…): it may answer only some of the questions. */
export interface RoutingSource {
  providers?: RoutingView['providers']
  /** candidate records for `name` (unverified: the view checks them) */
  records?: (name: string, signal?: AbortSignal) => Promise<Uint8Array[]>
  putRecord?: RoutingView['putRecord']
  peer?: RoutingView['peer']
}

/**
 * A view over several sources, asked in order: providers from all (each peer
 * once), the newest valid record of all, a record put to all, a peer from the
 * first that knows it. The DHT joins as one more source.
 */
export function routingViewOf (sources: RoutingSource[]): RoutingView {
  return {
    async * providers (cid, signal) {
      const seen = new Set<string>()
      for (const source of sources) {
        if (source.providers === undefined) continue
        try {
          for await (const peer of source.providers(cid, signal)) {
            if (seen.has(peer.id)) continue
            seen.add(peer.id)
            yield peer
          }
        } catch (err) {
          // A source that fails (the DHT with no peers) leaves the others' answers standing.
          if (signal?.aborted === true) throw err
        }
      }
    },
    async record (name, signal) {
      let best: { bytes: Uint8Array, sequence: bigint } | undefined
      const candidates = await Promise.all(sources.map(async s => await s.records?.(name, signal).catch(() => []) ?? []))
      for (const bytes of candidates.flat()) {
        // A record counts only if it is valid now: an expired or forged one is never handed on.
        const record = await checkRecord(name, bytes).catch(() => undefined)
        if (record !== undefined && (best === undefined || record.sequence > best.sequence)) best = { bytes, sequence: record.sequence }
      }
      return best?.bytes
    },
    async putRecord (name, bytes, signal) {
      await checkRecord(name, bytes)
      const results = await Promise.allSettled(sources.filter(s => s.putRecord !== undefined).map(async s => await s.putRecord!(name, bytes, signal)))
      // A refusal on the record's merits (a rollback, a conflict) is the answer; a source that is merely unreachable is not.
      const refused = results.find(r => r.status === 'rejected' && r.reason instanceof RecordError)
      if (refused !== undefined) throw (refused as PromiseRejectedResult).reason
      if (results.length > 0 && results.every(r => r.status === 'rejected')) throw (results[0] as PromiseRejectedResult).reason
    },
    async peer (id, signal) {
      for (const source of sources) {
        const found = await source.peer?.(id, signal).catch(() => undefined)
        if (found !== undefined) return found
      }
      return undefined
    }
  }
}

/** Records of names this node neither publishes nor follows, kept for routing clients: at most this many… */
const FOREIGN_RECORDS = 10_000
/** …and at most this many bytes: anyone can make names, and 10 000 records of 10 KiB would be 100 MiB. */
export const FOREIGN_RECORD_BYTES = 8 * 1024 * 1024

/** libp2p protocol ids and the transfer protocol names routing announces for them. */
const TRANSFER_PROTOCOLS: Array<[RegExp, string]> = [[/^\/ipfs\/bitswap(\/|$)/, 'transport-bitswap']]

export interface NodeRoutingOptions {
  /** this node as a provider: its peer ID, libp2p addresses and trustless gateway */
  self: () => PeerInfo
  /** whether this node holds a block (checked again after a miss: another process may have written it) */
  has: (cid: CID) => Promise<boolean>
  /** the repo's stored record for a name (own or followed caches) */
  stored: (name: string) => Promise<Uint8Array | undefined>
  /** names whose records go through the follower's checks into the repo */
  followed: ReadonlySet<string>
  /** stores a record for a followed name (refusing rollbacks and conflicts) */
  accept: (name: string, bytes: Uint8Array) => Promise<void>
  /** bytes of records kept for names this node neither publishes nor follows (FOREIGN_RECORD_BYTES) */
  foreignRecordBytes?: number
  /** libp2p's peer store, when libp2p runs */
  peerStore?: { get: (id: ReturnType<typeof peerIdFromString>) => Promise<{ addresses: Array<{ multiaddr: { toString: () => string } }>, protocols: string[] }> }
}

/**
 * What this node knows by itself: it provides the blocks it holds, knows the
 * records in its repo (and those routing clients put, in memory), itself and
 * the peers libp2p met.
 */
export function nodeRouting (options: NodeRoutingOptions): RoutingSource {
  const foreign = new Lru<{ bytes: Uint8Array, sequence: bigint }>(FOREIGN_RECORDS, r => r.bytes.length, options.foreignRecordBytes ?? FOREIGN_RECORD_BYTES)
  return {
    async * providers (cid) {
      if (await options.has(cid)) yield options.self()
    },
    async records (name) {
      return [await options.stored(name), foreign.get(name)?.bytes].filter(b => b !== undefined)
    },
    async putRecord (name, bytes) {
      if (options.followed.has(name)) { await options.accept(name, bytes); return }
      // The own cache's record stays as this node signed it (the next publish builds on it); others are only remembered.
      const offered = await checkRecord(name, bytes)
      const known = foreign.get(name) ?? await recordOf(name, await options.stored(name))
      if (known !== undefined) {
        if (offered.sequence < known.sequence) throw new RecordError('ERR_RECORD_ROLLBACK', `IPNS record ${offered.sequence} for ${name} is older than record ${known.sequence} already known; refusing it`)
        if (offered.sequence === known.sequence && Buffer.compare(Buffer.from(bytes), Buffer.from(known.bytes)) !== 0) {
          throw new RecordError('ERR_RECORD_CONFLICT', `another IPNS record for ${name} with sequence ${offered.sequence} is already known; keeping it`)
        }
      }
      foreign.set(name, { bytes, sequence: offered.sequence })
    },
    async peer (id) {
      const self = options.self()
      if (self.id === id) return self
      if (options.peerStore === undefined) return undefined
      const peer = await options.peerStore.get(peerIdFromString(id)).catch(() => undefined)
      if (peer === undefined || peer.addresses.length === 0) return undefined
      return {
        id,
        addresses: peer.addresses.map(a => withoutPeerId(a.multiaddr.toString())),
        protocols: [...new Set(peer.protocols.flatMap(p => TRANSFER_PROTOCOLS.filter(([re]) => re.test(p)).map(([, name]) => name)))]
      }
    }
  }
}

/** `address` without a trailing `/p2p/<id>` (routing records name the peer in `ID`). */
export function withoutPeerId (address: string): string {
  return address.replace(/\/p2p\/[^/]+$/, '')
}

/** The multiaddrs (`/ip4/…/tcp/<port>/http`) of an HTTP server at `url`; a wildcard host stands for every address of this machine. */
export function httpMultiaddrsOf (url: string): string[] {
  const { hostname, port } = new URL(url)
  const host = hostname.replace(/^\[|\]$/g, '')
  const wildcard = host === '0.0.0.0' || host === '::'
  const hosts = !wildcard
    ? [host]
    : Object.values(networkInterfaces()).flat().filter(i => i !== undefined && (host === '::' || i.family === 'IPv4')).map(i => i!.address)
  return hosts.map(h => `/${h.includes(':') ? 'ip6' : 'ip4'}/${h}/tcp/${port === '' ? 80 : port}/http`)
}

async function recordOf (name: string, bytes: Uint8Array | undefined): Promise<{ bytes: Uint8Array, sequence: bigint } | undefined> {
  if (bytes === undefined) return undefined
  const record = await checkRecord(name, bytes, { allowExpired: true }).catch(() => undefined)
  return record === undefined ? undefined : { bytes, sequence: record.sequence }
}

/** The routing facade of the DHT (net/routing.ts), as far as /routing/v1 asks it. */
export interface NetworkRouting {
  findProviders: (cid: CID, options?: { signal?: AbortSignal }) => AsyncIterable<{ id: string, addresses: string[] }>
  getRecord: (name: string, options?: { signal?: AbortSignal }) => Promise<Array<{ bytes: Uint8Array }>>
  putRecord: (name: string, bytes: Uint8Array, options?: { signal?: AbortSignal }) => Promise<void>
  findPeer: (id: string, options?: { signal?: AbortSignal }) => Promise<{ id: string, addresses: string[] } | undefined>
}

/** The DHT as a routing source: its providers and peers (transfer protocols unknown), its records, and records put into it; asked only while `live()` (it knows a peer). */
export function networkRouting (routing: NetworkRouting, live: () => boolean = () => true): RoutingSource {
  return {
    async * providers (cid, signal) {
      if (!live()) return
      for await (const p of routing.findProviders(cid, { signal })) yield { id: p.id, addresses: p.addresses.map(withoutPeerId), protocols: [] }
    },
    records: async (name, signal) => live() ? (await routing.getRecord(name, { signal })).map(r => r.bytes) : [],
    putRecord: async (name, bytes, signal) => { if (live()) await routing.putRecord(name, bytes, { signal }) },
    async peer (id, signal) {
      if (!live()) return undefined
      const p = await routing.findPeer(id, { signal })
      return p === undefined ? undefined : { id: p.id, addresses: p.addresses.map(withoutPeerId), protocols: [] }
    }
  }
}

/** The trustless gateway URLs a routing record gives for a peer: `/ip4/…/tcp/<port>/http(s)` (ip6, dns too) as http(s)://host:port. */
export function gatewayUrlsOf (peer: PeerInfo): string[] {
  // An /http address says it by itself when no protocol list came with it (the DHT gives none).
  if (peer.protocols.length > 0 && !peer.protocols.includes('transport-ipfs-gateway-http')) return []
  return httpUrlsOf(peer.addresses)
}

/** The http(s)://host:port of each `/ip4/…/tcp/<port>/http(s)` multiaddr (ip6, dns too; a trailing /p2p/<id> allowed) among `addresses`. */
export function httpUrlsOf (addresses: string[]): string[] {
  return addresses.flatMap(address => {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)(?:\/tls)?\/(https?)(?:\/p2p\/[^/]+)?$/.exec(address)
    if (m === null) return []
    const host = m[1] === 'ip6' ? `[${m[2]!}]` : m[2]!
    return [`${m[4]!}://${host}:${m[3]!}`]
  })
}
