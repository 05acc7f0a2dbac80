import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { PeerId } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'
import type { PackStore } from '../ipfs/pack-store.js'
import { hashesTo } from '../ipfs/block.js'
import { writeFileAtomic } from '../atomic.js'
import { Lru } from '../lru.js'
import { datastoreDir, keysDir, loadRecordBytes } from '../repo-layout.js'
import { NetworkBlocks } from './fetcher.js'
import { HttpPeer, type PeerCompression } from './http-peer.js'
import type { P2pNode } from './p2p.js'
import { FETCH_PROTOCOL, NARINFO_KEY_PREFIX, RECORD_KEY_PREFIX } from './protocols.js'
import { decodeHoldings, encodeHoldings, MAX_HOLDINGS_BYTES, type Holding } from './rendezvous.js'
import { RECORD_SETTLE_MS, type FoundRecord, type Provider, type Routing } from './routing.js'
import type { DelegatedRouting } from './delegated.js'
import { pause, startBootstrap } from './bootstrap.js'
import { openRecord } from '../ipfs/ipns.js'
import { gatewayUrlsOf, httpMultiaddrsOf, httpUrlsOf } from './routing-view.js'
import { makeDirectory } from '../disk.js'
import { ListenError } from '../errors.js'

export interface NetworkOptions {
  /** no libp2p at all: blocks only from the repo and `httpGateways` */
  offline: boolean
  /** libp2p listen multiaddrs */
  listen: string[]
  /** whether a free port may stand in for `listen` when it is taken (the default address, not one the user chose) */
  listenFallback?: boolean
  /** libp2p peers to dial and keep dialling (multiaddrs with /p2p/<id>) */
  peers: string[]
  /** DHT bootstrap peers (multiaddrs with /p2p/<id>): dialled until reached, then the DHT finds the rest */
  bootstrap?: string[]
  /** the bootstrap peers are the public IPFS network's (see P2pOptions.publicNetwork) */
  publicNetwork?: boolean
  /** trustless HTTP gateways to fetch blocks and records from */
  httpGateways: string[]
  /** Delegated Routing V1 servers (`--routing`) to ask for records and to hand the own record to */
  routing?: string[]
  /** how long a peer may stall before it is given up for a block */
  peerTimeoutMs: number
  /** HTTP connections to one peer at once */
  peerConnections: number
  /** whether HTTP peers are asked for compressed responses (--peer-compression). @default 'auto' */
  peerCompression?: PeerCompression
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** This node's view of the network: a verified block source and record lookups. */
export interface Network {
  blocks: NetworkBlocks
  p2p?: P2pNode
  /** the DHT; undefined when offline */
  routing?: Routing
  /** this node's libp2p peer ID (base58btc), also when libp2p is off: it names the node's HTTP gateway in routing records */
  peerId: string
  /** the `--routing` servers */
  delegated: DelegatedRouting[]
  /** the multiaddrs peers can dial this node at */
  addresses: string[]
  /** announces this node's trustless HTTP gateway at `url` with its peer record (to connected peers at once, to others as they connect) */
  announceGateway: (url: string) => Promise<void>
  /**
   * candidate records for `name` from every peer that answers (unverified); the DHT lookup ends `settleMs` after its
   * first record; the libp2p peers `prefer` (ids, e.g. the provider that named the cache) are asked whatever else is
   * connected, and the DHT only if they have none soon
   */
  records: (name: string, signal?: AbortSignal, settleMs?: number, prefer?: string[]) => Promise<Array<{ from: string, bytes: Uint8Array }>>
  /** answers peers asking which caches hold a narinfo for a store path hash, and what it says (see NARINFO_KEY_PREFIX) */
  serveHoldings: (lookup: (hash: string) => Promise<Holding[]>) => void
  /** dials a pin request's origin (best effort): an HTTP multiaddr joins the trustless gateways blocks come from, a libp2p one is dialled */
  dialOrigin: (address: string) => Promise<void>
  /**
   * adds the trustless HTTP gateway of `provider` (from its provider record, or its peer record once dialled) to the
   * peers blocks come from, once it served `root` checked; true when it was added or was there already
   */
  addHolder: (provider: Provider, root: CID, signal: AbortSignal) => Promise<boolean>
  /** the providers of `cid` the DHT (once joined) and the --routing servers name, each once, as they are found (those named in the last minute first) */
  findProviders: (cid: CID, signal: AbortSignal) => AsyncIterable<Provider>
  /** the caches in which `provider` says it holds a narinfo for `hash`, with the narinfo it sent (unverified) */
  cachesHolding: (provider: Provider, hash: string, signal: AbortSignal) => Promise<Holding[]>
  stop: () => Promise<void>
}

/** How often lost libp2p peers are dialled again. */
const REDIAL_MS = 30_000
/** Most trustless HTTP gateways used at once, those given and those routing servers named together. */
const MAX_HTTP_PEERS = 32
/** How long a provider's trustless gateway may take to serve the root it claims before it is passed over. */
const HOLDER_CHECK_MS = 2_000
/** How long a peer may take to answer a record request. */
const RECORD_TIMEOUT_MS = 5_000
/** A store path's hash: 32 characters of Nix's base32. */
const STORE_HASH = /^[0-9abcdfghijklmnpqrsvwxyz]{32}$/

/** HTTP peers found as providers kept for reuse (their connection pools) at most. */
const MAX_FOUND_PEERS = 256

/** How long a NAR fetch asks the routing for more providers. */
const PROVIDER_SEARCH_MS = 5_000

/** How long the providers named for a CID are remembered: a question asked again soon (the NAR after a search for it, a second lookup) starts with them instead of waiting on a DHT query. */
const RECENT_PROVIDERS_MS = 60_000
/** CIDs whose providers are remembered, and providers remembered per CID, at most (a Sybil naming itself a thousand times fills one slot). */
const RECENT_CIDS = 1024
const RECENT_PER_CID = 32

/**
 * How long a record lookup waits for the preferred peers (the provider that named a discovered cache) before it walks
 * the DHT too: a walk per discovered cache, for a record that peer had, loaded the client while Nix waited on its lookups.
 */
const PREFERRED_FIRST_MS = 500

/** Connected peers (beyond the named ones) asked for a record directly over fetch. */
const RECORD_PEERS = 8

/** How long start-up waits for a first bootstrap peer before it goes on (dialling continues). */
const BOOTSTRAP_WAIT_MS = 5_000

/** The libp2p identity of this repo's node, created on first use (it is not the cache's signing key); one for this run only on a read-only repo. */
async function peerSeed (repo: string, warn?: (m: string) => void): Promise<Uint8Array> {
  const path = join(keysDir(repo), 'peer.secret')
  const existing = await readFile(path).catch(() => undefined)
  if (existing?.length === 32) return existing
  const seed = randomBytes(32)
  try {
    await makeDirectory(keysDir(repo), { mode: 0o700, flag: '--repo' })
    await writeFileAtomic(path, seed, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EROFS') throw err
    warn?.(`the repo is on a read-only file system: this node's libp2p identity (${path}) lasts for this run only`)
  }
  return seed
}

/**
 * Joins the network as configured: libp2p (TCP, noise, yamux, bitswap,
 * record exchange) unless offline, the given HTTP gateways, and a block
 * source over all of them that keeps what it fetches in `local`.
 */
export async function startNetwork (repo: string, local: PackStore, options: NetworkOptions): Promise<Network> {
  /** What every HTTP peer is made with: the given ones, and those the routing names. */
  const peerOptions = { idleMs: options.peerTimeoutMs, connections: options.peerConnections, compression: options.peerCompression }
  const http = options.httpGateways.map(url => new HttpPeer(url, peerOptions))
  // Loaded only when asked for, as libp2p below: the client pulls in part of libp2p.
  const servers = options.routing ?? []
  const delegated = servers.length === 0 ? [] : await import('./delegated.js').then(({ DelegatedRouting }) => servers.map(url => new DelegatedRouting(url, options.log)))
  // Offline, the identity is only a name: a read-only repo's passing one needs no word.
  const seed = await peerSeed(repo, options.offline ? undefined : options.log?.warn)
  const peerId = peerIdFromPrivateKey(await generateKeyPairFromSeed('Ed25519', seed)).toString()
  let p2p: P2pNode | undefined
  let routing: Routing | undefined
  let redial: NodeJS.Timeout | undefined
  let bootstrap: { stop: () => void } | undefined
  let gatewayAddresses: string[] = []
  if (!options.offline) {
    // Loaded only when networking is on: libp2p costs seconds of start-up and tens of MB.
    const { startP2p, dialPeer } = await import('./p2p.js')
    const { FsDatastore } = await import('datastore-fs')
    const datastore = new FsDatastore(datastoreDir(repo))
    await datastore.open()
    const p2pOptions = {
      blocks: local,
      datastore,
      listen: options.listen,
      publicNetwork: options.publicNetwork,
      peerSeed: seed,
      extraAddresses: () => gatewayAddresses,
      lookupRecord: async (name: string) => await loadRecordBytes(repo, name)
    }
    try {
      p2p = await startP2p(p2pOptions)
    } catch (err) {
      if (options.listenFallback !== true) throw new ListenError(`cannot listen for libp2p on ${options.listen.join(', ')} (${listenFailure(err as Error)}); choose another --listen-p2p (/tcp/0 takes any free port)`)
      // A busy default port (a second node on this machine) must not stop the node: any free port seeds as well.
      const fallback = options.listen.map(a => a.replace(/\/tcp\/\d+/, '/tcp/0'))
      options.log.warn(`cannot listen on ${options.listen.join(', ')} (${listenFailure(err as Error)}); listening on a free port instead`)
      p2p = await startP2p({ ...p2pOptions, listen: fallback })
    }
    const node = p2p
    const dialAll = async (): Promise<void> => {
      const connected = new Set(node.libp2p.getConnections().map(c => c.remotePeer.toString()))
      await Promise.all(options.peers.filter(a => !connected.has(a.split('/p2p/')[1] ?? '')).map(async address => {
        try {
          await dialPeer(node, address, AbortSignal.timeout(5_000))
          options.log.info(`connected to peer ${address}`)
        } catch (err) {
          options.log.warn(`cannot reach peer ${address} (${(err as Error).message}); retrying every ${REDIAL_MS / 1000} s`)
        }
      }))
    }
    await dialAll()
    redial = setInterval(() => { dialAll().catch(() => {}) }, REDIAL_MS)
    redial.unref()
    const { dhtRouting } = await import('./routing.js')
    routing = dhtRouting(node.libp2p.services.dht, node.libp2p.peerId.toString())
    if ((options.bootstrap ?? []).length > 0) {
      const joining = startBootstrap(node, options.bootstrap!, options.log)
      bootstrap = joining
      // Records and providers can be found only once some peer is known; a node whose bootstrap peers are all down still starts.
      const waited = Date.now()
      await Promise.race([joining.joined, new Promise(resolve => setTimeout(resolve, BOOTSTRAP_WAIT_MS).unref())])
      // Connected is not joined: the peer enters the routing table once identify says it speaks the DHT.
      while (routing.size() === 0 && Date.now() - waited < BOOTSTRAP_WAIT_MS) await new Promise(resolve => setTimeout(resolve, 50))
      if (routing.size() === 0) options.log.warn(`no DHT peer after ${BOOTSTRAP_WAIT_MS / 1000} s of dialling the --bootstrap peers: going on without the DHT for now (it is joined once one answers)`)
    }
  }
  const blocks = new NetworkBlocks(local, {
    http,
    bitswap: p2p === undefined ? undefined : { get: (cid: CID, o: { signal: AbortSignal }) => p2p.blockstore.get(cid, o) },
    stallMs: options.peerTimeoutMs,
    providers: (root, signal) => routing === undefined && delegated.length === 0 ? undefined : httpProviders(root, signal),
    log: options.log
  })

  /** Providers named lately, by CID. */
  const recentProviders = new Lru<{ at: number, providers: Map<string, Provider> }>(RECENT_CIDS)
  const remember = (key: string, provider: Provider): void => {
    const entry = recentProviders.get(key)
    if (entry === undefined || Date.now() - entry.at > RECENT_PROVIDERS_MS) {
      recentProviders.set(key, { at: Date.now(), providers: new Map([[provider.id, provider]]) })
    } else if (entry.providers.size < RECENT_PER_CID || entry.providers.has(provider.id)) {
      entry.providers.set(provider.id, provider)
      entry.at = Date.now()
    }
  }

  /** A provider search under way for one CID: what it found so far, and who waits for more. */
  interface Search { found: Provider[], running: number, wakes: Set<() => void>, users: number, stop: AbortController }
  /**
   * Searches under way, by CID. Everyone who asks for a CID's providers meanwhile shares one: a discovered cache's root
   * was searched twice at once (its holders were dialled, and its index fetch looked for their gateways), two DHT walks.
   */
  const searches = new Map<string, Search>()

  /** The search under way for `cid` (whose string is `key`), started (with the providers named lately) if none is. */
  function searchOf (key: string, cid: CID): Search {
    const under = searches.get(key)
    if (under !== undefined) return under
    const recent = recentProviders.get(key)
    const search: Search = { found: recent !== undefined && Date.now() - recent.at <= RECENT_PROVIDERS_MS ? [...recent.providers.values()] : [], running: 0, wakes: new Set(), users: 0, stop: new AbortController() }
    setMaxListeners(Infinity, search.stop.signal) // the DHT query listens on it once per peer it asks
    const wakeAll = (): void => { for (const wake of search.wakes) wake(); search.wakes.clear() }
    const take = async (from: string, providers: AsyncIterable<Provider>): Promise<void> => {
      search.running++
      try {
        for await (const provider of providers) { remember(key, provider); search.found.push(provider); wakeAll() }
      } catch (err) {
        if (!search.stop.signal.aborted) options.log.debug(`providers of ${key} from ${from}: ${(err as Error).message}`)
      } finally {
        if (--search.running === 0 && searches.get(key) === search) searches.delete(key)
        wakeAll()
      }
    }
    const { signal } = search.stop
    if (routing !== undefined && routing.size() > 0) take('the DHT', routing.findProviders(cid, { signal })).catch(() => {})
    for (const server of delegated) take(server.name, server.findProviders(cid, { signal })).catch(() => {})
    if (search.running > 0) searches.set(key, search)
    return search
  }

  /** The providers of `cid` the DHT (once joined) and the --routing servers name, each peer once, as they are found. */
  async function * findProviders (cid: CID, signal: AbortSignal): AsyncGenerator<Provider> {
    const key = cid.toString()
    const search = searchOf(key, cid)
    search.users++
    const seen = new Set<string>([peerId])
    let next = 0
    let wake: (() => void) | undefined
    const onAbort = (): void => wake?.()
    signal.addEventListener('abort', onAbort, { once: true })
    try {
      while (!signal.aborted) {
        const provider = search.found[next]
        if (provider !== undefined) { next++; if (!seen.has(provider.id)) { seen.add(provider.id); yield provider } continue }
        if (search.running === 0) return
        await new Promise<void>(resolve => { wake = resolve; search.wakes.add(resolve) })
        wake = undefined
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
      if (wake !== undefined) search.wakes.delete(wake)
      // Nobody waits for more: the walk stops, and whoever asks next starts a new one.
      if (--search.users === 0) {
        if (searches.get(key) === search) searches.delete(key)
        search.stop.abort()
      }
    }
  }

  /** HTTP peers the routing named as providers, by URL (a few hundred at most: the oldest go first). */
  const foundPeers = new Lru<HttpPeer>(MAX_FOUND_PEERS)

  /** The gateway URL of each peer the routing named with one, by peer ID: a preferred peer not connected over libp2p is asked there for records. */
  const gatewayOfPeer = new Lru<string>(MAX_FOUND_PEERS)

  /** The HTTP peer at `url` that the routing named as a provider (`provider`, of `what`), kept for reuse (its connection pool). */
  function foundPeer (url: string, provider: Provider, what: string): HttpPeer {
    gatewayOfPeer.set(provider.id, url)
    let peer = http.find(p => p.url === url) ?? foundPeers.get(url)
    if (peer === undefined) {
      peer = new HttpPeer(url, peerOptions)
      foundPeers.set(url, peer)
      options.log.debug(`the routing names ${url} (peer ${provider.id}) as a provider of ${what}`)
    }
    return peer
  }

  /** The trustless HTTP gateways among the providers of `root` that the routing names (searched for PROVIDER_SEARCH_MS at most). */
  async function * httpProviders (root: CID, given: AbortSignal): AsyncGenerator<HttpPeer> {
    const signal = AbortSignal.any([given, AbortSignal.timeout(PROVIDER_SEARCH_MS)])
    setMaxListeners(Infinity, signal) // the DHT query listens on it once per peer it asks
    const named = new Set<string>()
    for await (const provider of findProviders(root, signal)) {
      for (const url of httpUrlsOf(provider.addresses)) {
        if (named.has(url)) continue
        named.add(url)
        // Only this NAR's swarm asks them: in the list every single-block fetch walks, each provider the DHT names
        // (a Sybil's too) would cost every later block a request.
        yield foundPeer(url, provider, root.toString())
      }
    }
  }

  async function records (name: string, signal?: AbortSignal, settleMs?: number, prefer: string[] = []): Promise<Array<{ from: string, bytes: Uint8Array }>> {
    const timeout = AbortSignal.timeout(RECORD_TIMEOUT_MS)
    const sig = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    // The first record, from wherever, ends the lookup settleMs later (a newer one may come meanwhile): the DHT query
    // otherwise walks on until the record's closest peers answered, and a busy peer's answer took up to the timeout,
    // seconds on a busy network.
    const settled = new AbortController()
    const asking = AbortSignal.any([sig, settled.signal])
    setMaxListeners(Infinity, asking)
    let settle: NodeJS.Timeout | undefined
    let firstRecord!: () => void
    const recordCame = new Promise<void>(resolve => { firstRecord = resolve })
    /** What `from` answered; its failure names it (a timeout's message names no one). */
    const ask = async (from: string, answer: () => Promise<Uint8Array | undefined>): Promise<{ from: string, bytes: Uint8Array | undefined }> => {
      const bytes = await answer().catch((err: Error) => { throw new Error(err.message.includes(from) ? err.message : `${from}: ${err.message}`) })
      if (bytes !== undefined) { settle ??= setTimeout(() => settled.abort(), settleMs ?? RECORD_SETTLE_MS); firstRecord() }
      return { from, bytes }
    }
    const asks: Array<Promise<{ from: string, bytes: Uint8Array | undefined }>> = [
      ...http.map(async peer => await ask(peer.url, async () => await peer.record(name, asking))),
      ...delegated.map(async server => await ask(server.name, async () => await server.getRecord(name, { signal: asking })))
    ]
    // Observed at once: the loop below awaits the peer store (on disk), and a refused request failing meanwhile
    // was an unhandled rejection that killed the process (a mirror whose --http-gateway had stopped).
    for (const ask of asks) ask.catch(() => {})
    // On a DHT a node is connected to many peers, most of which do not speak the fetch protocol (kubo, Helia):
    // ask only those that do, the named --peer ones first, at most RECORD_PEERS of them (the DHT is asked besides).
    // With preferred peers, only the named ones: a preferred peer holds the record, and the DHT is walked if it has none
    // soon (8 more requests for every cache discovery found loaded a client while Nix waited on its lookups).
    const named = new Set([...options.peers.map(a => a.split('/p2p/').at(-1)), ...prefer])
    const connections = [...(p2p?.libp2p.getConnections() ?? [])].sort((a, b) => Number(named.has(b.remotePeer.toString())) - Number(named.has(a.remotePeer.toString())))
    // A preferred peer asked over HTTP has no libp2p connection (its holdings came so): asked at its gateway.
    for (const id of prefer) {
      const url = gatewayOfPeer.get(id)
      if (url === undefined || connections.some(c => c.remotePeer.toString() === id)) continue
      const peer = foundPeer(url, { id, addresses: [] }, 'a record')
      const request = ask(url, async () => await peer.record(name, asking))
      request.catch(() => {})
      asks.push(request)
    }
    let asked = 0
    for (const conn of connections) {
      if ((asked >= RECORD_PEERS || prefer.length > 0) && !named.has(conn.remotePeer.toString())) break
      // A named peer is asked even before identify has told its protocols (a command that has just dialled it).
      const isNamed = named.has(conn.remotePeer.toString())
      if (!isNamed && !await speaks(p2p!, conn.remotePeer, FETCH_PROTOCOL)) continue
      if (!isNamed) asked++
      const request = ask(conn.remotePeer.toString(), async () => await p2p!.libp2p.services.fetch.fetch(conn.remotePeer, RECORD_KEY_PREFIX + name, { signal: asking }))
      request.catch(() => {})
      asks.push(request)
    }
    // Settled together: an answer that fails before the others come in must not go unobserved.
    const fromDht = async (): Promise<FoundRecord[]> => {
      if (routing === undefined || routing.size() === 0) return []
      // A preferred peer holds the record (it named the cache): the DHT is walked only if none came from it soon.
      if (prefer.length > 0 && await Promise.race([recordCame.then(() => true), pause(PREFERRED_FIRST_MS, asking).then(() => false)])) return []
      if (asking.aborted) return []
      return await routing.getRecord(name, { signal: asking, settleMs }).catch((err: Error) => {
        if (!settled.signal.aborted) options.log.debug(`DHT record lookup for ${name}: ${err.message}`)
        return []
      })
    }
    const [fromRouting, answers] = await Promise.all([fromDht(), Promise.allSettled(asks)]).finally(() => clearTimeout(settle))
    const found: Array<{ from: string, bytes: Uint8Array }> = [...fromRouting]
    const failures: string[] = []
    for (const a of answers) {
      if (a.status === 'fulfilled' && a.value.bytes !== undefined) found.push({ from: a.value.from, bytes: a.value.bytes })
      else if (a.status === 'rejected' && !settled.signal.aborted) failures.push((a.reason as Error).message)
    }
    // With no record at all, why the peers gave none is the user's to know (a peer answering 502 is not one without the name).
    if (failures.length > 0) {
      const why = `record of /ipns/${name}: ${failures.slice(0, 3).join('; ')}${failures.length > 3 ? ` (and ${failures.length - 3} more)` : ''}`
      if (found.length === 0) options.log.warn(why)
      else options.log.debug(why)
    }
    // Before the follower fetches a root, the routing servers name who has it.
    const distinct = new Map(found.map(({ bytes }) => [Buffer.from(bytes).toString('base64'), bytes]))
    await Promise.all([...distinct.values()].map(async bytes => await learnGateways(name, bytes, sig)))
    return found
  }

  function serveHoldings (lookup: (hash: string) => Promise<Holding[]>): void {
    p2p?.libp2p.services.fetch.registerLookupFunction(NARINFO_KEY_PREFIX, async (key) => {
      const hash = new TextDecoder().decode(key).slice(NARINFO_KEY_PREFIX.length)
      if (!STORE_HASH.test(hash)) return undefined
      const holdings = await lookup(hash)
      return holdings.length === 0 ? undefined : new TextEncoder().encode(encodeHoldings(holdings))
    })
  }

  async function cachesHolding (provider: Provider, hash: string, signal: AbortSignal): Promise<Holding[]> {
    // Over a libp2p connection to the provider if there is one; else over its HTTP gateway when it has one (a node
    // without libp2p can ask only so, and a request on a plain connection costs less than a first libp2p one: a
    // Noise handshake and several negotiations); over a new libp2p connection when it has none or that fails. On the
    // 50-node bench, with the provider connected either way, both took about 0.4 s at p50 under load.
    const connected = p2p?.libp2p.getConnections().some(c => c.remotePeer.toString() === provider.id) === true
    for (const url of connected ? [] : httpUrlsOf(provider.addresses).slice(0, 1)) {
      try {
        return await foundPeer(url, provider, `the rendezvous CID of ${hash}`).holdings(hash, signal)
      } catch (err) {
        if (signal.aborted) throw err
        options.log.debug(`asking ${url} (peer ${provider.id}) which caches hold ${hash}: ${(err as Error).message}`)
      }
    }
    if (p2p === undefined) return []
    const peer = peerIdFromString(provider.id)
    if (provider.addresses.length > 0) await p2p.libp2p.peerStore.merge(peer, { multiaddrs: provider.addresses.map(a => multiaddr(a)) })
    const bytes = await p2p.libp2p.services.fetch.fetch(peer, NARINFO_KEY_PREFIX + hash, { signal })
    if (bytes === undefined || bytes.length > MAX_HOLDINGS_BYTES) return []
    return decodeHoldings(new TextDecoder().decode(bytes))
  }

  /** Adds the trustless gateways the routing servers name as providers of the root a (valid) record points to. */
  async function learnGateways (name: string, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    if (delegated.length === 0) return
    const root = await openRecord(name, bytes).then(r => r.root, () => undefined)
    if (root === undefined) return
    await Promise.all(delegated.map(async server => {
      try {
        for await (const provider of server.findProviders(root, { signal })) {
          if (provider.id === peerId) continue // this node itself
          for (const url of gatewayUrlsOf(provider)) {
            if (http.length >= MAX_HTTP_PEERS || http.some(p => p.url === url)) continue
            // The block source reads this list at each fetch; every block from it is checked against its CID.
            http.push(new HttpPeer(url, peerOptions))
            options.log.info(`${server.name} names ${url} (peer ${provider.id}) as a provider of /ipns/${name}`)
          }
        }
      } catch (err) {
        options.log.debug(`providers of ${root.toString()} from ${server.name}: ${(err as Error).message}`)
      }
    }))
  }

  // HTTP peers this node found itself (pin requests' origins, discovered caches' holders), oldest first: at the cap the
  // oldest gives way, so old finds never crowd out new ones (the --http-gateway peers stay).
  const foundHttp: HttpPeer[] = []
  /** Adds `peer` to the HTTP peers blocks come from; false when they are all given ones and at the cap. */
  function addFoundPeer (peer: HttpPeer): boolean {
    if (http.some(p => p.url === peer.url)) return true
    if (http.length >= MAX_HTTP_PEERS) {
      const oldest = foundHttp.shift()
      if (oldest === undefined) return false
      http.splice(http.indexOf(oldest), 1)
    }
    foundHttp.push(peer)
    // The block source reads this list at each fetch; every block from it is checked against its CID.
    http.push(peer)
    return true
  }

  async function dialOrigin (address: string): Promise<void> {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)(\/tls)?\/(https?)(?:\/p2p\/\w+)?$/.exec(address)
    if (m !== null) {
      const url = `${m[5] === 'https' || m[4] !== undefined ? 'https' : 'http'}://${m[1] === 'ip6' ? `[${m[2]!}]` : m[2]!}:${m[3]!}`
      if (http.some(p => p.url === url)) return
      if (addFoundPeer(new HttpPeer(url, peerOptions))) {
        options.log.info(`pin origin ${url} added as a trustless gateway peer`)
      }
      return
    }
    if (p2p === undefined || !address.includes('/p2p/')) return
    const { dialPeer } = await import('./p2p.js')
    await dialPeer(p2p, address, AbortSignal.timeout(5_000))
    options.log.info(`connected to pin origin ${address}`)
  }

  async function addHolder (provider: Provider, root: CID, signal: AbortSignal): Promise<boolean> {
    if (provider.id === peerId) return false
    let addresses = provider.addresses
    if (httpUrlsOf(addresses).length === 0 && p2p !== undefined) {
      // The DHT's provider records often come without addresses: identify told the peer's own, the gateway's included.
      const known = await p2p.libp2p.peerStore.get(peerIdFromString(provider.id)).catch(() => undefined)
      addresses = known?.addresses.map(a => a.multiaddr.toString()) ?? []
    }
    for (const url of httpUrlsOf(addresses)) {
      if (http.some(p => p.url === url)) return true
      const peer = foundPeers.get(url) ?? new HttpPeer(url, peerOptions)
      // A provider record is anyone's claim: the gateway joins the peers every block is asked of only once it served the root.
      const bytes = await peer.block(root, AbortSignal.any([signal, AbortSignal.timeout(HOLDER_CHECK_MS)])).catch(() => undefined)
      if (bytes === undefined || !hashesTo(root, bytes)) continue
      if (!addFoundPeer(peer)) return false
      options.log.info(`${url} (peer ${provider.id}) serves ${root.toString()}: added as a trustless gateway peer`)
      return true
    }
    return false
  }

  return {
    blocks,
    p2p,
    routing,
    dialOrigin,
    addHolder,
    serveHoldings,
    cachesHolding,
    findProviders,
    peerId,
    delegated,
    addresses: p2p?.libp2p.getMultiaddrs().map(String) ?? [],
    records,
    announceGateway: async (url) => {
      gatewayAddresses = httpMultiaddrsOf(url)
      if (p2p === undefined) return
      // Patching its own peer record makes libp2p push it (identify push) to every connected peer.
      const own = p2p.libp2p.getMultiaddrs().map(a => multiaddr(a.toString().replace(/\/p2p\/[^/]+$/, '')))
      await p2p.libp2p.peerStore.patch(p2p.libp2p.peerId, { multiaddrs: own })
    },
    stop: async () => {
      clearInterval(redial)
      bootstrap?.stop()
      await Promise.all(delegated.map(async d => await d.stop()))
      await p2p?.stop()
    }
  }
}

/** True when identify said `peer` speaks `protocol`. */
async function speaks (node: P2pNode, peer: PeerId, protocol: string): Promise<boolean> {
  try {
    return (await node.libp2p.peerStore.get(peer)).protocols.includes(protocol)
  } catch {
    return false
  }
}

/** Why libp2p could not listen, in a line: the system error (`EADDRINUSE: address already in use …`) its message wraps with advice and stack traces. */
function listenFailure (err: Error): string {
  return /\b(E[A-Z]+: [^\n]+)/.exec(err.message)?.[1] ?? err.message.split('\n')[0]!
}
