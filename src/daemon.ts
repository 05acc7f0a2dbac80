import { evictToFit } from './cache/evict.js'
import { startFollowing, type Follower } from './cache/follow.js'
import { startDiscovery, withDiscovery } from './trust/discover.js'
import { startAnnouncing } from './cache/announce.js'
import { cacheClosure } from './cache/closure.js'
import { openIndex } from './cache/index.js'
import { loadRecord } from './cache/records.js'
import { startRepublisher } from './cache/republish.js'
import { startQueueRetry } from './cache/publish-request.js'
import { repoIndexSource } from './cache/source.js'
import type { CommitOptions } from './cache/commit.js'
import { startGateway, type Gateway, type RequestLog } from './gateway/server.js'
import { UnavailableError } from './errors.js'
import type { MetricFamily } from './gateway/metrics.js'
import { unionOf, type Dispute } from './cache/union.js'
import { quorumOf, type QuorumOptions, type TrustPolicy } from './trust/quorum.js'
import { allDisputes, recordDispute } from './trust/disputes.js'
import { walkDag } from './ipfs/dag.js'
import { PackStore } from './ipfs/pack-store.js'
import { RECIPES } from './cache/recipes.js'
import { DEFAULT_RECORD_LIFETIME_MS } from './constants.js'
import { UpstreamFallback } from './upstream/fallback.js'
import { HttpBinaryCache } from './upstream/http-cache.js'
import { registerFetcher } from './repo.js'
import { loadRecordBytes } from './repo-layout.js'
import type { PublicKey, SecretKey } from './nix/signing.js'
import { startNetwork, type Network, type NetworkOptions } from './net/network.js'

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
  /** look for caches that hold what no served cache has (gateway --discover): those under these keys are followed on demand */
  discover?: { keys: PublicKey[], requireSignature: boolean, deadlineMs?: number, maxCaches?: number }
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
  const local = await PackStore.openRepo(repo)
  // Following means writing fetched blocks; gc must not compact under it.
  const unregister = options.follow.length > 0 || options.discover !== undefined ? await registerFetcher(repo) : undefined
  const network = await startNetwork(repo, local, { ...options.network, log })
  const sourceOptions = { expiredGraceMs: options.expiredGraceMs, warn: log.warn }
  const names = [...(options.own === undefined ? [] : [options.own]), ...options.follow.filter(n => n !== options.own)]
  const sources = new Map(names.map(name => [name, repoIndexSource(repo, network.blocks, name, sourceOptions)]))

  const pinClosures = async (name: string): Promise<void> => {
    const record = await loadRecord(repo, name)
    if (record === undefined || options.closures.length === 0) return
    const epoch = local.writeEpoch
    const index = await openIndex(network.blocks, record.root)
    let paths = 0
    for (const { nar } of await cacheClosure(index, options.closures)) {
      await network.blocks.prefetch(nar)
      for await (const _ of walkDag(network.blocks, nar)) { /* fetches and keeps every block */ }
      paths++
    }
    await local.sync(epoch)
    log.info(`/ipns/${name}: pinned the closure (${paths} paths)`)
  }
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
      onSynced: (name) => { pinClosures(name).catch((err: Error) => log.warn(`/ipns/${name}: pinning the closure failed: ${err.message}`)) }
    })
  follower?.poll().catch(() => {})

  const served = [...sources.values()]
  // Every node on a network says which of its caches hold a narinfo (what discovery asks the providers of a rendezvous CID).
  network.serveNarInfoNames(async (hash) => {
    const holding = await Promise.all([...sources].map(async ([name, source]) => (await (await source.current().catch(() => undefined))?.narInfo(hash).catch(() => undefined)) === undefined ? [] : [name]))
    return holding.flat()
  })
  const discovered = new Map<string, Follower>()
  const discovery = options.discover === undefined
    ? undefined
    : startDiscovery({
      repo,
      network,
      ...options.discover,
      served: () => [...sources.keys()],
      add: (name, wrap) => {
        const source = wrap(repoIndexSource(repo, network.blocks, name, sourceOptions))
        sources.set(name, source)
        served.push(source)
        // Later lookups are local: its index is fetched in the background and kept in step with its record.
        const follower = startFollowing(repo, [name], network.records, network.blocks, { intervalMs: options.followIntervalMs, fetch: 'index', maxIndexBytes: options.maxIndexBytes, log, onRecord: () => source.recheck() })
        follower.poll().catch(() => {})
        discovered.set(name, follower)
        log.info(`discovery: following /ipns/${name}`)
      },
      remove: (name) => {
        discovered.get(name)?.stop()
        discovered.delete(name)
        const source = sources.get(name)
        sources.delete(name)
        if (source !== undefined) served.splice(served.indexOf(source), 1)
      },
      log
    })
  const quorum = new QuorumLog()
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
      onImported: () => { if (options.own !== undefined) sources.get(options.own)?.recheck() }
    })
  const judged = options.trust === undefined
    ? unionOf(served, { prefer: options.prefer, onDispute: quorum.disputeRecorder(repo, log, 'followed caches') })
    : quorumOf(served, quorum.hooks(repo, options.trust, log))
  const caches = discovery === undefined ? judged : withDiscovery(judged, discovery)
  // A gateway that cannot listen (a busy --listen) must not leave the node running without it.
  const gateway = await startGateway({
    caches: async () => {
      const current = await caches()
      // Before any followed cache's record arrived nothing is known: not a miss Nix should remember (an upstream still answers).
      if (current === undefined && upstream === undefined && options.follow.length > 0) {
        throw new UnavailableError(`no record of ${options.follow.map(n => `/ipns/${n}`).join(', ')} has arrived yet; waiting for peers (check --peer / --http-gateway / --bootstrap)`)
      }
      return current
    },
    disputes: async () => await allDisputes(repo, local, log.warn),
    upstream,
    stats: () => ({ blocks: network.blocks.counters, upstream: upstream?.counters }),
    metrics: async () => await metricFamilies(repo, names, local, network, upstream, quorum, refusedRecords),
    blocks: network.blocks,
    local,
    record: async name => await loadRecordBytes(repo, name),
    host: options.host,
    port: options.port,
    logger: log,
    onRequest: options.onRequest,
    maxConnections: options.maxConnections,
    maxHeaderBytes: options.maxHeaderBytes,
    headTimeoutMs: options.headTimeoutMs
  }).catch(async (err: Error) => {
    follower?.stop()
    await network.stop()
    await local.close()
    await unregister?.()
    throw err
  })
  const evictor = options.maxCacheBytes === undefined ? undefined : startEvictor(repo, network, options, options.maxCacheBytes)
  const republisher = options.ownKey === undefined || options.republish === undefined
    ? undefined
    : startRepublisher(repo, options.ownKey, options.republish, log)
  // On a network (--bootstrap, --routing), every served cache is announced: record, root, NARs, rendezvous CIDs.
  const announcer = network.routing === undefined || !network.joined
    ? undefined
    : startAnnouncing(repo, local, network.routing, { names: () => [...sources.keys()], recent: () => network.blocks.recentlyUsed().map(n => n.root), log })
  const queue = options.retryQueued === undefined
    ? undefined
    : startQueueRetry(repo, local, { ...options.retryQueued, log }, () => { if (options.own !== undefined) sources.get(options.own)?.recheck() })
  return {
    gateway,
    network,
    stop: async () => {
      republisher?.stop()
      announcer?.stop()
      discovery?.stop()
      for (const follower of discovered.values()) follower.stop()
      await queue?.stop()
      if (evictor !== undefined) clearInterval(evictor)
      follower?.stop()
      await gateway.close()
      await network.stop()
      await local.close()
      await unregister?.()
    }
  }
}

/** How often the repo's size is compared with --max-cache. */
const EVICT_CHECK_MS = 30_000

function startEvictor (repo: string, network: Network, options: DaemonOptions, maxBytes: number): NodeJS.Timeout {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    evictToFit(repo, network.blocks, { maxBytes, own: options.own, follow: options.follow })
      .then(r => {
        if (r === undefined) return
        options.log.info(`--max-cache: ${mib(r.bytes.before)} → ${mib(r.bytes.after)}; kept the ${r.nars.kept} most recently used NARs, dropped ${r.nars.dropped}`)
        if (r.bytes.after > maxBytes) options.log.warn(`--max-cache: the own cache, pins and followed indexes alone take ${mib(r.bytes.after)}, more than --max-cache ${mib(maxBytes)}; raise it, or lower --max-index`)
      }, (err: Error) => options.log.warn(`--max-cache: eviction failed: ${err.message}`))
      .finally(() => { running = false })
  }, EVICT_CHECK_MS)
  timer.unref()
  return timer
}

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`

/** Records disputes and says (once per path) why a path was refused; counts both. */
class QuorumLog {
  refusals = 0
  disputes = 0
  private readonly told = new Set<string>()

  /** Records a dispute, saying so when it is new; `who` signed the different NARs. */
  disputeRecorder (repo: string, log: DaemonOptions['log'], who: string): (dispute: Dispute) => void {
    return (dispute) => {
      recordDispute(repo, dispute).then(
        isNew => { if (isNew) { this.disputes++; log.warn(`dispute: ${who} signed ${dispute.groups.length} different NARs for ${dispute.storePath} (nixipfs disputes, GET /disputes)`) } },
        (err: Error) => log.warn(`recording the dispute over ${dispute.storePath} failed: ${err.message}`))
    }
  }

  hooks (repo: string, policy: TrustPolicy, log: DaemonOptions['log']): QuorumOptions {
    return {
      policy,
      onDispute: this.disputeRecorder(repo, log, 'trusted builders'),
      onRefused: (reason) => {
        this.refusals++
        if (this.told.has(reason)) return
        this.told.add(reason)
        log.warn(`refused ${reason}`)
      }
    }
  }
}

/** The node's metrics beside the HTTP ones. */
async function metricFamilies (repo: string, names: string[], local: PackStore, network: Network, upstream: UpstreamFallback | undefined, quorum: QuorumLog, refusedRecords: Map<string, number>): Promise<MetricFamily[]> {
  const c = network.blocks.counters
  const records = (await Promise.all(names.map(async name => ({ name, record: await loadRecord(repo, name).catch(() => undefined) })))).filter(r => r.record !== undefined)
  return [
    { name: 'nixipfs_blocks_served_total', help: 'Blocks read for requests, by where they came from.', type: 'counter', samples: (['local', 'http', 'car', 'bitswap'] as const).map(source => ({ labels: { source }, value: c[source] })) },
    { name: 'nixipfs_verification_failures_total', help: 'Blocks from peers that did not hash to their CID.', type: 'counter', samples: [{ value: c.corrupt }] },
    { name: 'nixipfs_blocks_unavailable_total', help: 'Blocks no source could supply.', type: 'counter', samples: [{ value: c.unavailable }] },
    { name: 'nixipfs_quorum_refusals_total', help: 'Narinfos and realisations refused by the trust policy.', type: 'counter', samples: [{ value: quorum.refusals }] },
    { name: 'nixipfs_disputes_recorded_total', help: 'New or changed disputes recorded.', type: 'counter', samples: [{ value: quorum.disputes }] },
    { name: 'nixipfs_store_blocks', help: 'Blocks in the repo\'s block store.', type: 'gauge', samples: [{ value: local.size }] },
    { name: 'nixipfs_records_refused_total', help: 'IPNS records from peers refused, by error code (rollback, conflict, expired, bad signature…).', type: 'counter', samples: [...refusedRecords].map(([code, value]) => ({ labels: { code }, value })) },
    { name: 'nixipfs_record_sequence', help: 'Sequence of the newest record held, by cache.', type: 'gauge', samples: records.map(r => ({ labels: { name: r.name }, value: Number(r.record!.sequence) })) },
    { name: 'nixipfs_record_expiry_seconds', help: 'When the newest record held expires (Unix time), by cache.', type: 'gauge', samples: records.map(r => ({ labels: { name: r.name }, value: Date.parse(r.record!.validity) / 1000 })) },
    ...(upstream === undefined
      ? []
      : [{ name: 'nixipfs_upstream_total', help: 'Upstream fallback: narinfo hits and misses, NARs imported, errors.', type: 'counter' as const, samples: Object.entries(upstream.counters).map(([event, value]) => ({ labels: { event }, value })) }])
  ]
}
