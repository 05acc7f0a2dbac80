import { startEvictor } from './cache/evict.js'
import { startFollowing } from './cache/follow.js'
import { pinClosures } from './cache/closure-pins.js'
import { startAnnouncing } from './cache/announce.js'
import { cachesHolding, startDiscovery, withDiscovery } from './trust/discover.js'
import { acceptRecord, loadRecord } from './cache/records.js'
import { startRepublisher } from './cache/republish.js'
import { startQueueRetry } from './cache/publish-request.js'
import { openIndexesLack, repoIndexSource } from './cache/source.js'
import type { CommitOptions } from './cache/commit.js'
import { unionOf } from './cache/union.js'
import { HeardStatements } from './trust/heard.js'
import { startGossip } from './trust/gossip.js'
import { ipnsNameOf } from './ipfs/ipns.js'
import { RECIPES } from './cache/recipes.js'
import { startGateway, type Gateway, type RequestLog } from './gateway/server.js'
import { PrecompressedFrames } from './ipfs/precompressed.js'
import { registerNodeMetrics } from './gateway/node-metrics.js'
import type { NarCompression } from './gateway/encode.js'
import { UnavailableError } from './errors.js'
import { quorumOf, type TrustPolicy } from './trust/quorum.js'
import { QuorumLog } from './trust/quorum-log.js'
import { allDisputes } from './trust/disputes.js'
import { PackStore } from './ipfs/pack-store.js'
import { DEFAULT_RECORD_LIFETIME_MS } from './constants.js'
import { UpstreamFallback } from './upstream/fallback.js'
import { HttpBinaryCache } from './upstream/http-cache.js'
import { registerFetcher } from './repo.js'
import { loadRecordBytes } from './repo-layout.js'
import type { PublicKey, SecretKey } from './nix/signing.js'
import { startNetwork, type Network, type NetworkOptions } from './net/network.js'
import { httpMultiaddrsOf, networkRouting, nodeRouting, routingViewOf, withoutPeerId, type PeerInfo } from './net/routing-view.js'
import { startRecordPush } from './net/record-push.js'
import { RemotePinStore } from './cache/remote-pins.js'
import { startPinWorker } from './cache/pin-worker.js'
import { PinnedCaches } from './cache/pinned-caches.js'
import type { IndexSource } from './cache/source.js'
import type { Holding } from './net/rendezvous.js'

export interface DaemonOptions {
  repo: string
  /** the repo's own cache (served first), if any */
  own?: string
  /** the own cache's key, to keep its record fresh */
  ownKey?: SecretKey
  republish?: CommitOptions
  /** publish what failed publishes queued in the repo (at start and every 30 s), with these record options */
  retryQueued?: CommitOptions
  /** IPNS names of followed caches */
  follow: string[]
  /** fetch every block of followed caches (a mirror) or only their index */
  pin: 'index' | 'all'
  /** with pin 'index': store paths whose closures are pinned in full */
  closures: string[]
  followIntervalMs: number
  /** the most bytes one followed cache's index may take (see FollowOptions) */
  maxIndexBytes?: number
  /** serve only what a quorum of trusted builders signed (else: the first cache that has a path, preferring `prefer`'s signatures) */
  trust?: TrustPolicy
  /** without `trust`: keys the local Nix trusts, whose narinfos a union serves first */
  prefer?: PublicKey[]
  /** HTTP binary caches asked for what the served caches miss, the keys their narinfos must be signed by, and the own key that signs what is imported from them */
  upstream?: { urls: string[], keys: PublicKey[], key: SecretKey }
  /** called once per answered request (default: a debug log line) */
  onRequest?: (r: RequestLog) => void
  maxConnections?: number
  maxHeaderBytes?: number
  headTimeoutMs?: number
  /** which narinfos point Nix at NARs compressed on the fly (--compress-nar) */
  compressNar?: NarCompression
  /** look for caches that hold what no served cache has (gateway --discover): those under these keys are followed on demand */
  discover?: { keys: PublicKey[], requireSignature: boolean, deadlineMs?: number, maxCaches?: number }
  /** serve the Pinning Service API at /psa to these bearer tokens, and pin what it is asked to */
  pinTokens?: string[]
  /** keep the repo's packs under this many bytes by evicting least recently used NARs of followed caches */
  maxCacheBytes?: number
  expiredGraceMs: number
  network: Omit<NetworkOptions, 'log'>
  host: string
  port: number
  log: NetworkOptions['log'] & { success: (m: string) => void }
}

/** A running gateway or mirror. */
export interface Daemon {
  gateway: Gateway
  network: Network
  stop: () => Promise<void>
}

/**
 * Runs a node: the HTTP server (Nix binary cache + trustless gateway) over
 * the own cache and followed caches, networking, following, and keeping the
 * own record fresh.
 */
export async function startDaemon (options: DaemonOptions): Promise<Daemon> {
  const { repo, log } = options
  const names = [...(options.own === undefined ? [] : [options.own]), ...options.follow.filter(n => n !== options.own)]
  // Statements by the keys this node serves or trusts are all kept; others only in a bounded number.
  const keptNames = new Set([...names, ...(options.trust?.keys.map(k => ipnsNameOf(k.key)) ?? [])])
  const heard = await HeardStatements.open(repo, name => keptNames.has(name))

  const local = await PackStore.openRepo(repo)
  const remotePins = options.pinTokens === undefined ? undefined : await RemotePinStore.open(repo)
  // Following (or pinning) means writing fetched blocks; gc must not compact under it.
  const unregister = options.follow.length > 0 || options.discover !== undefined || remotePins !== undefined ? await registerFetcher(repo) : undefined

  const network = await startNetwork(repo, local, { ...options.network, log })

  const sourceOptions = { expiredGraceMs: options.expiredGraceMs, warn: log.warn }
  const sources = new Map(names.map(name => [name, repoIndexSource(repo, network.blocks, name, sourceOptions)]))
  const ownChanged = (): void => { if (options.own !== undefined) sources.get(options.own)?.recheck() }
  const refusedRecords = new Map<string, number>()
  const follower = options.follow.length === 0
    ? undefined
    : startFollowing(repo, options.follow, network.records, network.blocks, {
      intervalMs: options.followIntervalMs,
      fetch: options.pin,
      maxIndexBytes: options.maxIndexBytes,
      log,
      prefetch: async (root) => await network.blocks.prefetch(root),
      writeEpoch: () => local.writeEpoch,
      persist: async (since) => await local.sync(since),
      onRecord: (name) => sources.get(name)?.recheck(),
      onRefused: (code) => refusedRecords.set(code, (refusedRecords.get(code) ?? 0) + 1),
      onSynced: (name) => {
        pinClosures(repo, local, network.blocks, name, options.closures).then(
          paths => { if (paths !== undefined) log.info(`/ipns/${name}: pinned the closure (${paths} paths)`) },
          (err: Error) => log.warn(`/ipns/${name}: pinning the closure failed: ${err.message}`))
      }
    })
  follower?.poll().catch(() => {})
  const gossip = network.p2p === undefined ? undefined : startGossip(network.p2p, { repo, own: options.own, follow: options.follow, follower, heard, local, log })
  const upstream = options.upstream === undefined
    ? undefined
    : new UpstreamFallback({
      upstreams: options.upstream.urls.map(url => new HttpBinaryCache(url, { timeoutMs: options.network.peerTimeoutMs })),
      keys: options.upstream.keys,
      repo,
      blocks: local,
      key: options.upstream.key,
      recipe: RECIPES.cdc,
      recordLifetimeMs: options.republish?.recordLifetimeMs ?? DEFAULT_RECORD_LIFETIME_MS,
      log,
      onImported: ownChanged
    })
  let gatewayUrl: string | undefined
  // This node as routing names it: its libp2p addresses (bitswap) and its trustless gateway over HTTP.
  const self = (): PeerInfo => ({
    id: network.peerId,
    addresses: [...new Set([...(network.p2p?.libp2p.getMultiaddrs().map(a => withoutPeerId(a.toString())) ?? []), ...(gatewayUrl === undefined ? [] : httpMultiaddrsOf(gatewayUrl))])],
    protocols: [...(network.p2p === undefined ? [] : ['transport-bitswap']), 'transport-ipfs-gateway-http']
  })
  const routing = routingViewOf([nodeRouting({
    self,
    has: async cid => await network.blocks.hasLocal(cid),
    stored: async name => await loadRecordBytes(repo, name),
    followed: new Set(options.follow.filter(n => n !== options.own)),
    accept: async (name, bytes) => { if (await acceptRecord(repo, name, bytes) === 'newer') follower?.sync(name).catch(() => {}) },
    peerStore: network.p2p?.libp2p.peerStore
  }), ...(network.routing === undefined ? [] : [networkRouting(network.routing, () => network.routing!.size() > 0)])]) // on a DHT, /routing/v1 answers from it too
  const quorum = new QuorumLog(repo, log)
  const served = [...sources.values()]
  // Every node on a network says which of its caches hold a narinfo; --discover asks that of others and follows what it trusts.
  const holdings = async (hash: string): Promise<Holding[]> => await cachesHolding(sources, hash)
  network.serveHoldings(holdings)
  const discovery = options.discover === undefined
    ? undefined
    : startDiscovery({
      repo,
      network,
      ...options.discover,
      enough: options.trust?.threshold,
      caches: { sources, served, open: name => repoIndexSource(repo, network.blocks, name, sourceOptions) },
      followOptions: { intervalMs: options.followIntervalMs, fetch: 'index', maxIndexBytes: options.maxIndexBytes, log },
      log
    })
  // Pinned cache roots are served after the followed caches, newest first (see PinnedCaches).
  const pinned = remotePins === undefined ? undefined : new PinnedCaches(remotePins, network.blocks)
  let pinnedServed: IndexSource[] = []
  const servePinned = (): void => {
    if (pinned === undefined) return
    for (const s of pinnedServed) { const i = served.indexOf(s); if (i >= 0) served.splice(i, 1) }
    pinnedServed = pinned.sources()
    served.push(...pinnedServed)
  }
  servePinned()
  const pinWorker = remotePins === undefined
    ? undefined
    : startPinWorker({
      store: remotePins,
      blocks: network.blocks,
      local,
      dialOrigin: network.dialOrigin,
      fetchedBlocks: () => { const c = network.blocks.counters; return c.http + c.car + c.bitswap },
      onPinned: servePinned,
      log
    })
  const judged = options.trust === undefined
    ? unionOf(served, { prefer: options.prefer, onDispute: quorum.disputeRecorder('followed caches') })
    : quorumOf(served, { ...quorum.hooks(options.trust), votes: hash => heard.votes(hash) })
  const caches = discovery === undefined ? judged : withDiscovery(judged, discovery, async hash => await openIndexesLack(served, hash))

  const precompressed = new PrecompressedFrames(repo, log)
  // A gateway that cannot listen (a busy --listen) must not leave the node running without it.
  const gateway = await startGateway({
    refresh: async () => (await Promise.all([...sources.values()].map(async s => await s.refresh?.()))).some(changed => changed === true),
    caches: async () => {
      const current = await caches()
      // Before any followed cache's record arrived nothing is known: not a miss Nix should remember (an upstream still answers).
      if (current === undefined && upstream === undefined && options.follow.length > 0) {
        throw new UnavailableError(`no record of ${options.follow.map(n => `/ipns/${n}`).join(', ')} has arrived yet; waiting for peers (check --peer / --http-gateway / --routing / --bootstrap)`)
      }
      return current
    },
    disputes: async () => await allDisputes(repo, local, log.warn),
    upstream,
    stats: () => ({ blocks: network.blocks.counters, upstream: upstream?.counters }),
    metrics: registry => registerNodeMetrics(registry, { repo, names, blocks: network.blocks, local, quorum, refusedRecords, upstream, peers: () => ({ libp2p: network.p2p?.libp2p.getPeers().length ?? 0, http: network.blocks.usableHttpPeers() }) }),
    blocks: network.blocks,
    local,
    precompressed,
    record: async name => await loadRecordBytes(repo, name),
    routing,
    holdings,
    pinning: remotePins === undefined
      ? undefined
      : {
          store: remotePins,
          tokens: options.pinTokens ?? [],
          // The spec's delegates end in /p2p/<id>: this node's libp2p addresses and its trustless gateway.
          delegates: () => self().addresses.map(a => `${a}/p2p/${network.peerId}`),
          changed: () => { servePinned(); pinWorker?.wake() }
        },
    host: options.host,
    port: options.port,
    logger: log,
    onRequest: options.onRequest,
    maxConnections: options.maxConnections,
    maxHeaderBytes: options.maxHeaderBytes,
    headTimeoutMs: options.headTimeoutMs,
    compressNar: options.compressNar
  }).catch(async (err: Error) => {
    await pinWorker?.stop()
    gossip?.stop()
    follower?.stop()
    await network.stop()
    await precompressed.close()
    await local.close()
    await unregister?.()
    throw err
  })
  gatewayUrl = gateway.url
  await network.announceGateway(gateway.url).catch((err: Error) => log.warn(`announcing the HTTP gateway with the peer record failed: ${err.message}`))
  const own = options.own
  const pusher = own === undefined || network.delegated.length === 0 ? undefined : startRecordPush(async () => await loadRecord(repo, own), network.delegated, log)

  const evictor = options.maxCacheBytes === undefined
    ? undefined
    : startEvictor(repo, local, network.blocks, { maxBytes: options.maxCacheBytes, own: options.own, follow: options.follow }, log)
  const republisher = options.ownKey === undefined || options.republish === undefined
    ? undefined
    : startRepublisher(repo, options.ownKey, options.republish, log)
  // On the DHT every served cache is announced: record, root, NARs, rendezvous CIDs. Once the routing table holds a
  // peer, not only with --bootstrap: a node others bootstrap from (told no address itself) announced nothing.
  const announcer = network.routing === undefined
    ? undefined
    : startAnnouncing(repo, local, network.routing, { names: () => [...sources.keys()], own: options.own, recent: () => network.blocks.recentlyUsed().map(n => n.root), idle: discovery?.idle, foundOnDht: discovery?.isDiscovered, log })
  const queue = options.retryQueued === undefined
    ? undefined
    : startQueueRetry(repo, local, { ...options.retryQueued, log }, ownChanged)
  return {
    gateway,
    network,
    stop: async () => {
      republisher?.stop()
      announcer?.stop()
      discovery?.stop()
      pusher?.stop()
      await queue?.stop()
      evictor?.stop()
      gossip?.stop()
      follower?.stop()
      await pinWorker?.stop()
      await gateway.close()
      await network.stop()
      await precompressed.close()
      await local.close()
      await unregister?.()
    }
  }
}
