import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { BlockUnavailableError } from '../errors.js'
import { checkBlock, hashesTo, type BlockGetter } from '../ipfs/block.js'
import type { LocalBlocks } from '../ipfs/blocks.js'
import { BITSWAP_ATTEMPTS, BitswapWants, type BitswapSource } from './bitswap-wants.js'
import { BlockKeeper } from './block-keeper.js'
import { FreshBlocks } from './fresh-blocks.js'
import type { HttpPeer } from './http-peer.js'
import { PeerBans } from './peer-bans.js'
import { CarPrefetch } from './prefetch.js'
import { RecentNars } from './recent-nars.js'
import { childrenOf, Swarm, type Missing, type SwarmReport } from './swarm.js'

/** Where the blocks served so far came from, and what went wrong. */
export interface FetchCounters {
  local: number
  http: number
  car: number
  bitswap: number
  /** blocks a peer sent that did not hash to their CID */
  corrupt: number
  /** blocks no source could supply */
  unavailable: number
  /** blocks fetched over HTTP (block by block, swarm or CAR), by peer URL */
  peers: Record<string, number>
}

/** Bytes of the blocks fetched from peers and checked, by how they came. */
export interface FetchedBytes {
  http: number
  car: number
  bitswap: number
}

export interface NetworkBlocksOptions {
  http: HttpPeer[]
  bitswap?: BitswapSource
  /** how long a peer may stall (a bitswap want unanswered, a CAR stream without its next block) */
  stallMs?: number
  /** how long a peer that sent a corrupt block is skipped */
  banMs?: number
  /** trustless HTTP peers the routing names as providers of a DAG root (searched while a NAR is fetched; they join its swarm) */
  providers?: (root: CID, signal: AbortSignal) => AsyncIterable<HttpPeer> | undefined
  log?: { info?: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** How long a fetch with no known peer waits for the routing to name a first provider before it goes block by block. */
const FIRST_PROVIDER_MS = 2_000

/** Most DAG nodes of one level the look at a DAG's upper levels reads at once; a wider level is left to the fetch below. */
const PROBE_NODES = 16

/** How often, at most, a local miss makes the repo's block index be read again. */
const LOCAL_RECHECK_MS = 200

/** How long an HTTP peer whose single-block request failed is asked after the others. */
const FAILED_PEER_MS = 60_000
/** How long a peer may stall unless told otherwise. */
const DEFAULT_STALL_MS = 10_000

/**
 * A block source that reads the local pack store first and otherwise fetches
 * from peers (HTTP trustless gateways, then bitswap), checking every block
 * against its CID and keeping what it fetched, so this node seeds it on.
 * A peer that sends a corrupt block is skipped for a while and the block is
 * taken from another.
 */
export class NetworkBlocks implements BlockGetter {
  readonly counters: FetchCounters = { local: 0, http: 0, car: 0, bitswap: 0, corrupt: 0, unavailable: 0, peers: {} }
  readonly bytes: FetchedBytes = { http: 0, car: 0, bitswap: 0 }
  private readonly inflight = new Map<string, Promise<Uint8Array>>()
  /** blocks below DAG nodes a one-peer prefetch has read while it decides how to fetch the rest; settled once it has taken charge */
  private readonly deciding = new Map<string, Promise<void>>()
  /** DAG nodes a one-peer prefetch's probe is reading, with what to do with their bytes once anyone has them */
  private readonly probing = new Map<string, (bytes: Uint8Array) => void>()
  private localCheckedAt = 0
  /** the HTTP peer that served the last single block */
  private lastServed: string | undefined
  /** when HTTP peers last failed a single-block request (unreachable, stalled, an HTTP error) */
  private readonly failedAt = new Map<string, number>()
  private readonly bans: PeerBans
  private readonly keeper: BlockKeeper
  private readonly recent = new RecentNars()
  private readonly fresh = new FreshBlocks()
  private readonly car: CarPrefetch
  private readonly swarm: Swarm
  private readonly bitswap?: BitswapWants

  constructor (readonly local: LocalBlocks, private readonly options: NetworkBlocksOptions) {
    this.bans = new PeerBans(options.http, options.banMs)
    const stallMs = options.stallMs ?? DEFAULT_STALL_MS
    this.keeper = new BlockKeeper(local, options.log)
    if (options.bitswap !== undefined) this.bitswap = new BitswapWants(options.bitswap, stallMs, options.log)
    this.car = new CarPrefetch({
      stored: cid => local.has(cid),
      fetching: cid => this.inflight.has(cid.toString()) || this.swarm.delivery(cid) !== undefined,
      peer: () => this.bans.usable()[0],
      keep: async (cid, bytes) => { this.bytes.car += bytes.length; return await this.kept(cid, bytes) },
      delivered: (peer) => { this.counters.car++; this.byPeer(peer) },
      corrupt: (peer, cid) => this.corrupt(peer, cid),
      fetch: async cid => await this.block(cid),
      stallMs,
      log: options.log
    })
    this.swarm = new Swarm({
      stored: cid => local.has(cid),
      fetching: cid => this.inflight.has(cid.toString()) || this.car.delivery(cid) !== undefined,
      keep: async (cid, bytes) => { this.bytes.http += bytes.length; return await this.kept(cid, bytes) },
      delivered: (peer) => { this.counters.http++; this.byPeer(peer) },
      corrupt: (peer, cid) => this.corrupt(peer, cid),
      fetch: async cid => await this.block(cid),
      stallMs,
      log: options.log
    })
  }

  /** Stores a block fetched ahead of its reader (checked), and holds it for that reader. */
  private async kept (cid: CID, bytes: Uint8Array): Promise<Uint8Array> {
    this.fresh.add(cid.toString(), bytes)
    return await this.keeper.keep(cid, bytes)
  }

  private byPeer (url: string): void {
    this.counters.peers[url] = (this.counters.peers[url] ?? 0) + 1
  }

  /** What the last swarm fetches did (blocks and measured throughput by peer), newest last. */
  swarmReports (): SwarmReport[] {
    return [...this.swarm.reports]
  }

  async * get (cid: CID, options?: { signal?: AbortSignal }): AsyncGenerator<Uint8Array> {
    yield await this.block(cid, options?.signal)
  }

  /** The bytes of `cid`, checked against it: local, or fetched and stored. */
  async getChecked (cid: CID, options?: { signal?: AbortSignal }): Promise<Uint8Array> {
    const { bytes, checked } = await this.lookup(cid, options?.signal)
    if (!checked) checkBlock(cid, bytes)
    return bytes
  }

  /** The bytes of `cid`: local (unchecked, as read), or fetched, checked and stored. */
  async block (cid: CID, signal?: AbortSignal): Promise<Uint8Array> {
    return (await this.lookup(cid, signal)).bytes
  }

  private async lookup (cid: CID, signal?: AbortSignal): Promise<{ bytes: Uint8Array, checked: boolean }> {
    const found = await this.find(cid, signal)
    // Whoever reads a node a probe waits for, the probe reserves its children before that reader can ask for them.
    const key = cid.toString()
    const probe = this.probing.get(key)
    if (probe !== undefined) { this.probing.delete(key); probe(found.bytes) }
    return found
  }

  private async find (cid: CID, signal?: AbortSignal): Promise<{ bytes: Uint8Array, checked: boolean }> {
    signal?.throwIfAborted()
    const key = cid.toString()
    const fresh = this.fresh.take(key)
    if (fresh !== undefined) {
      this.counters.local++ // stored already, as a read from the repo would have found
      return { bytes: fresh, checked: true }
    }
    if (await this.hasLocal(cid)) {
      this.counters.local++
      return { bytes: await this.local.read(cid), checked: false }
    }
    const delivery = this.car.delivery(cid) ?? this.swarm.delivery(cid)
    if (delivery !== undefined) {
      const bytes = await delivery
      this.fresh.take(key) // its reader came while it was on its way
      return { bytes, checked: true }
    }
    // Fetched alone now, the block would come a second time in the prefetch's CAR stream: wait (a round trip at most) for it to take charge.
    const deciding = this.deciding.get(key)
    if (deciding !== undefined) { await deciding; return await this.lookup(cid, signal) }
    let fetching = this.inflight.get(key)
    if (fetching === undefined) {
      // Shared by every request for this block, so not tied to the first one's signal (peers have timeouts of their own).
      fetching = this.fetchOne(cid).finally(() => this.inflight.delete(key))
      this.inflight.set(key, fetching)
    }
    return { bytes: await fetching, checked: true }
  }

  /** True when the repo holds `cid`; on a miss, looks again at most every LOCAL_RECHECK_MS (a publish in another process adds blocks before it moves the record). */
  async hasLocal (cid: CID): Promise<boolean> {
    if (this.local.has(cid)) return true
    const now = Date.now()
    if (now - this.localCheckedAt < LOCAL_RECHECK_MS) return false
    this.localCheckedAt = now
    await this.local.refresh()
    return this.local.has(cid)
  }

  private corrupt (peer: string, block: string): void {
    this.counters.corrupt++
    this.bans.ban(peer)
    this.options.log?.warn(`peer ${peer} sent a corrupt block for ${block}; skipping that peer for a while and asking others`)
  }

  /** HTTP peers blocks are asked from now (not skipped for sending corrupt blocks). */
  usableHttpPeers (): number {
    return this.bans.usable().length
  }

  /** Notes that the NAR under `root` (of `size` bytes) was just asked for: what --max-cache keeps longest. */
  touch (root: CID, size: number): void {
    this.recent.touch(root, size)
  }

  /** NARs asked for, most recent first. */
  recentlyUsed (): Array<{ root: CID, size: number }> {
    return this.recent.mostRecentFirst()
  }

  /** Stops keeping fetched blocks (they are still served) until the returned function is called; waits for writes under way. */
  async pauseCaching (): Promise<() => void> {
    return await this.keeper.pause()
  }

  /**
   * Starts fetching the whole DAG under `root` ahead of its reader, so that
   * reading it afterwards (block by block, in order) rarely waits a round
   * trip. From one HTTP peer: as one CAR stream, or block by block for only
   * the blocks missing when this node holds part of the DAG already (an
   * earlier build of the same program shares most chunks). From several at
   * once (a swarm), which the providers the routing finds join as they are
   * found; with none known, the first one found starts the swarm.
   */
  async prefetch (root: CID, signal?: AbortSignal): Promise<void> {
    if (this.local.has(root) || this.car.delivery(root) !== undefined || this.swarm.delivery(root) !== undefined) return
    const peers = this.bans.usable()
    if (peers.length === 1) { await this.fromOnePeer(root, peers[0]!, signal); return }
    const search = new AbortController()
    const joining = this.options.providers?.(root, signal === undefined ? search.signal : AbortSignal.any([signal, search.signal]))
    try {
      if (joining === undefined) {
        if (peers.length > 1) await this.swarm.fetch(root, peers, { signal })
        return
      }
      const found = joining[Symbol.asyncIterator]()
      if (peers.length === 0) {
        // Nobody known yet: the first provider the routing names starts the swarm (meanwhile the reader asks bitswap).
        const first = await Promise.race([found.next(), new Promise<undefined>(resolve => setTimeout(() => resolve(undefined), FIRST_PROVIDER_MS).unref())])
        if (first === undefined || first.done === true) return
        peers.push(first.value)
      }
      await this.swarm.fetch(root, peers, { signal, joining: { [Symbol.asyncIterator]: () => found } })
    } finally {
      search.abort()
    }
  }

  /** Prefetches the DAG under `root` from `peer`: one CAR stream of what is missing, or (holding part of it) only the missing blocks. */
  private async fromOnePeer (root: CID, peer: HttpPeer, signal?: AbortSignal): Promise<void> {
    if (root.code !== dagPb.code) { await this.car.prefetch(root, signal); return }
    const reserved: string[] = []
    let decided!: () => void
    const decision = new Promise<void>(resolve => { decided = resolve })
    const settle = (): void => {
      for (const key of reserved) this.deciding.delete(key)
      decided()
    }
    let fetching: Promise<unknown>
    try {
      const below = await this.missingBelow(root, signal, cid => {
        const key = cid.toString()
        // Not the DAG nodes: the probe fetches the next level itself, through lookup().
        if (cid.code === dagPb.code || this.deciding.has(key)) return
        this.deciding.set(key, decision)
        reserved.push(key)
      })
      if (below.missing.length === 0) return
      // A CAR stream carries every block below the root, held ones included: holding some, ask for each missing one instead.
      // Either takes charge of the missing blocks before its first await, so the readers waiting on the decision find them.
      fetching = below.holdsSome
        ? this.swarm.fetch(root, [peer], { signal, frontier: below.missing })
        : this.car.prefetch(root, signal, below.missing.map(m => m.cid))
    } catch (err) {
      // A peer may serve CARs but not single blocks: stream it all.
      this.options.log?.debug(`prefetch of ${root.toString()}: ${(err as Error).message}; asking for one CAR of it all`)
      fetching = this.car.prefetch(root, signal)
    } finally {
      settle()
    }
    await fetching
  }

  /**
   * The blocks under `root` that this node lacks, and whether it holds any
   * block under it: reads (fetching them if need be, a round trip per level)
   * the DAG's upper levels down to the leaves' parents, or to a level wider
   * than PROBE_NODES, which is then itself counted missing. Tells `seen` of
   * every link of a node it read.
   */
  private async missingBelow (root: CID, signal: AbortSignal | undefined, seen: (cid: CID) => void): Promise<{ missing: Missing[], holdsSome: boolean }> {
    const missing: Missing[] = []
    let holdsSome = false
    // No offsets: the missing blocks go one per request. Runs of them as byte ranges took 2.2 s against 2.0 s for the
    // upgrade of bench/wan.mjs (one peer, 40 ms away): each range waits for the peer to compress its first MiB.
    let level: Missing[] = [{ cid: root, order: [], size: 0 }]
    while (level.length > 0 && level.length <= PROBE_NODES) {
      const nodes = await Promise.all(level.map(async node => {
        const key = node.cid.toString()
        let children: Missing[] | undefined
        // Told by whoever reads the node first (see lookup()): a reader that got it first is about to ask for its children.
        const probe = (bytes: Uint8Array): void => {
          children = childrenOf(bytes, node.order)
          for (const child of children) seen(child.cid)
        }
        this.probing.set(key, probe)
        try {
          const bytes = await this.block(node.cid, signal)
          if (children === undefined) probe(bytes) // another probe of the same node took the slot
          return children ?? []
        } finally {
          if (this.probing.get(key) === probe) this.probing.delete(key)
        }
      }))
      level = []
      for (const child of nodes.flat()) {
        if (this.local.has(child.cid)) holdsSome = true
        else if (child.cid.code === dagPb.code) level.push(child)
        else missing.push(child)
      }
    }
    missing.push(...level)
    return { missing, holdsSome }
  }

  private async fetchOne (cid: CID): Promise<Uint8Array> {
    // What each source said, for the error when none could supply the block.
    const asked: string[] = []
    // The peer that served the last block first: the next is most likely of the same DAG (an index walk), and each peer
    // asked before the one holding it costs a round trip (discovered caches' holders add a peer each). A peer that
    // failed lately last: one that stalls (a provider record is anyone's claim) would cost every block a timeout.
    const now = Date.now()
    const rank = (p: HttpPeer): number => p.url === this.lastServed ? 0 : now - (this.failedAt.get(p.url) ?? -Infinity) < FAILED_PEER_MS ? 2 : 1
    const peers = this.bans.usable().sort((a, b) => rank(a) - rank(b))
    const skipped = this.options.http.length - peers.length
    if (skipped > 0) asked.push(`${skipped} peer(s) skipped for sending corrupt blocks`)
    for (const peer of peers) {
      let bytes: Uint8Array | undefined
      try {
        bytes = await peer.block(cid)
      } catch (err) {
        this.failedAt.set(peer.url, Date.now())
        this.options.log?.debug((err as Error).message)
        asked.push((err as Error).message)
        continue
      }
      if (bytes === undefined) { asked.push(`${peer.url}: does not have it`); continue }
      if (!hashesTo(cid, bytes)) { this.corrupt(peer.url, cid.toString()); asked.push(`${peer.url}: sent a corrupt block`); continue }
      this.counters.http++
      this.bytes.http += bytes.length
      this.byPeer(peer.url)
      this.lastServed = peer.url
      this.failedAt.delete(peer.url)
      return await this.keeper.keep(cid, bytes)
    }
    if (this.bitswap !== undefined) {
      const bytes = await this.bitswap.want(cid)
      if (bytes === undefined) asked.push(`bitswap: no answer in ${BITSWAP_ATTEMPTS} tries`)
      else if (hashesTo(cid, bytes)) {
        this.counters.bitswap++
        this.bytes.bitswap += bytes.length
        return await this.keeper.keep(cid, bytes)
      } else {
        this.corrupt('bitswap', cid.toString())
        asked.push('bitswap: sent a corrupt block')
      }
    }
    this.counters.unavailable++
    throw new BlockUnavailableError(cid.toString(), asked)
  }
}
