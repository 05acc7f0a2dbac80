import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { IntegrityError, PeerError } from '../errors.js'
import { checkBlock, RAW_CODE } from '../ipfs/block.js'
import { readCar } from '../ipfs/car.js'
import type { HttpPeer } from './http-peer.js'
import { StallTimer, waiter, type Waiter } from './prefetch.js'
import { formatBytes } from '../progress.js'

/** What a swarm fetch asks of the block source it fills. */
export interface SwarmSource {
  /** true when the repo holds `cid` */
  stored: (cid: CID) => boolean
  /** true when `cid` is being fetched already (block by block, or by another prefetch) */
  fetching: (cid: CID) => boolean
  /** stores a block a peer delivered (checked against its CID here) */
  keep: (cid: CID, bytes: Uint8Array) => Promise<unknown>
  /** notes that `peer` delivered a block */
  delivered: (peer: string) => void
  /** notes that `peer` sent a corrupt block */
  corrupt: (peer: string, block: string) => void
  /** fetches one block no swarm peer could deliver (other peers, bitswap) */
  fetch: (cid: CID) => Promise<Uint8Array>
  /** how long a byte range may go without a block before its peer leaves the swarm */
  stallMs: number
  log?: { info?: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** Blocks one peer has under way at least: one arriving, the next queued behind it, so the peer's link never idles for a round trip. */
const DEPTH = 3
/** Requests one peer may have under way at most (a long fat link needs more than DEPTH blocks to stay full). */
const MAX_DEPTH = 16
/** Size assumed for a block whose parent gave none (cdc-v1's average chunk). */
const DEFAULT_BLOCK_BYTES = 256 * 1024
/** Throughput assumed for a peer not measured yet (bytes/ms): optimistic, so it is tried. */
const UNMEASURED_RATE = Number.POSITIVE_INFINITY
/**
 * Most bytes of a file asked of one peer in one request: a run of leaves
 * as one CAR (`entity-bytes`), not a request per block, whose overhead
 * (headers, a compression set-up, a round trip's wait) costs both ends
 * CPU; small enough that the work still spreads over the peers.
 */
const RUN_BYTES = 4 * 1024 * 1024
/** Fewest bytes in a run, once the file's end is near: the last ones are split finer, so no peer holds the tail alone. */
const MIN_RUN_BYTES = 512 * 1024

/** A block to fetch: where it stands in the DAG's reading order (link indices from the root), its expected size and, when known, its data's offset in the file. */
export interface Missing { cid: CID, order: number[], size: number, offset?: number }

/** A block the swarm took charge of, and who waits for it. */
interface Wanted extends Missing { waiter: Waiter }

/** Throughput of one peer, measured over the time it had requests under way (bytes and ms, kept across NARs). */
export interface PeerRate { bytes: number, busyMs: number }

/** One peer during one fetch. */
interface Member {
  peer: HttpPeer
  rate: PeerRate
  inflight: number
  inflightBytes: number
  busySince: number
  /** the quickest request so far (ms): the round trip and one block's transfer, unloaded */
  quickestMs: number
  /** blocks it delivered in this fetch */
  blocks: number
  gone: boolean
  /** false once it refused a byte range (it gets single blocks then) */
  ranges: boolean
}

/** Bytes per ms a peer moved while it had requests under way (Infinity until measured). */
function rateOf (r: PeerRate, busyNowMs = 0): number {
  const ms = r.busyMs + busyNowMs
  return ms < 1 || r.bytes === 0 ? UNMEASURED_RATE : r.bytes / ms
}

/** A member's current rate, counting the time its requests under way have run so far. */
function memberRate (m: Member): number {
  return rateOf(m.rate, m.inflight > 0 ? Date.now() - m.busySince : 0)
}

/**
 * How many bytes `m` should have under way: twice its measured rate over an
 * unloaded request's time (the bandwidth-delay product) and two blocks
 * more, so a link with a long round trip stays full; DEPTH blocks at least.
 * Twice, as BBR's window gain: the rate is what the window let through, so
 * with one BDP the window grew by two blocks a round trip and the fetch
 * ended before it filled the link (an upgrade of bench/wan.mjs: 2.12 -> 1.98
 * s); three times overfilled the link's queue, and lost packets cost more.
 * None beyond the first request until the peer is measured: a slow one must
 * not hold many blocks before its rate is known.
 */
function bytesAheadOf (m: Member, blockBytes: number): number {
  if (m.rate.bytes === 0) return 0
  const rate = memberRate(m)
  if (!Number.isFinite(rate) || !Number.isFinite(m.quickestMs)) return DEPTH * blockBytes
  return Math.max(DEPTH * blockBytes, 2 * rate * m.quickestMs + 2 * blockBytes)
}

/** The links of dag-pb node `bytes` (at `order` in the DAG; a file's node at byte `offset`) as blocks to fetch, with their offsets when known. */
export function childrenOf (bytes: Uint8Array, order: number[], offset?: number): Missing[] {
  const pb = dagPb.decode(bytes)
  const sizes = offset === undefined ? undefined : fileBlockSizes(pb)
  let at = offset ?? 0
  return pb.Links.map((l, i) => {
    const child: Missing = { cid: l.Hash, order: [...order, i], size: l.Tsize ?? DEFAULT_BLOCK_BYTES }
    if (sizes !== undefined) {
      child.offset = at
      at += sizes[i]!
      // A raw leaf is its data: the size the parent gives it is exact, and its byte range is asked by it.
      if (l.Hash.code === RAW_CODE) child.size = sizes[i]!
    }
    return child
  })
}

/** The file bytes under each link of a UnixFS file node, or undefined for any other node. */
function fileBlockSizes (pb: dagPb.PBNode): number[] | undefined {
  try {
    const unixfs = pb.Data === undefined ? undefined : UnixFS.unmarshal(pb.Data)
    if (unixfs?.type !== 'file' || unixfs.blockSizes.length !== pb.Links.length) return undefined
    return unixfs.blockSizes.map(Number)
  } catch {
    return undefined
  }
}

/** Reading order: lexicographic on the path of link indices from the root. */
function before (a: number[], b: number[]): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i]! < b[i]!
  return a.length < b.length
}

/** What one swarm fetch did, for logs and tests. */
export interface SwarmReport {
  root: string
  blocks: number
  bytes: number
  ms: number
  peers: Array<{ url: string, blocks: number, rate: number }>
}

/**
 * Fetches a DAG (a NAR) from several trustless HTTP peers at once: each
 * block is asked of one peer only, the peers pull the next wanted block (in
 * reading order) as their requests complete, so a fast peer takes more. Near
 * the end a slow peer takes no more blocks that the others would finish
 * sooner (ranked by measured throughput). A peer that fails, lacks the DAG
 * or sends a corrupt block leaves the swarm and its blocks go to the others.
 */
export class Swarm {
  /** blocks a running swarm fetch is expected to deliver */
  private readonly expected = new Map<string, Waiter>()
  /** measured throughput by peer URL */
  private readonly rates = new Map<string, PeerRate>()
  /** the last fetches' reports, newest last (a few) */
  readonly reports: SwarmReport[] = []

  constructor (private readonly source: SwarmSource) {}

  /** The block under `cid` once a running swarm fetch delivered it (or fetched it alone), if one took charge of it. */
  delivery (cid: CID): Promise<Uint8Array> | undefined {
    return this.expected.get(cid.toString())?.promise
  }

  /** The measured throughput of the peer at `url` in bytes/s, if measured. */
  rate (url: string): number | undefined {
    const r = this.rates.get(url)
    if (r === undefined) return undefined
    const v = rateOf(r)
    return Number.isFinite(v) ? v * 1000 : undefined
  }

  /**
   * Fetches the DAG under `root` from `peers` (more may join from `joining`
   * while it runs); with `frontier`, only those blocks and what lies below
   * them (the rest of the DAG is held). Resolves when every block it took
   * charge of has arrived or been handed to single-block fetches.
   */
  async fetch (root: CID, peers: HttpPeer[], options: { signal?: AbortSignal, joining?: AsyncIterable<HttpPeer>, frontier?: Missing[] } = {}): Promise<SwarmReport | undefined> {
    const { source } = this
    const signal = options.signal
    if (options.frontier === undefined && (source.stored(root) || this.expected.has(root.toString()))) return undefined
    const started = Date.now()
    const pending: Wanted[] = []
    const owned = new Map<string, Wanted>()
    const members: Member[] = []
    let bytes = 0
    let delivered = 0
    let finish!: () => void
    const finished = new Promise<void>(resolve => { finish = resolve })

    const expect = (cid: CID, order: number[], size: number, offset?: number): void => {
      const key = cid.toString()
      if (source.stored(cid) || this.expected.has(key) || source.fetching(cid)) return
      const wanted: Wanted = { cid, order, size, offset, waiter: waiter() }
      this.expected.set(key, wanted.waiter)
      owned.set(key, wanted)
      let i = pending.length
      while (i > 0 && before(order, pending[i - 1]!.order)) i--
      pending.splice(i, 0, wanted)
    }

    const join = (peer: HttpPeer): void => {
      if (members.some(m => m.peer.url === peer.url)) return
      let rate = this.rates.get(peer.url)
      if (rate === undefined) { rate = { bytes: 0, busyMs: 0 }; this.rates.set(peer.url, rate) }
      // Earlier fetches count half as much as this one's (a peer's link changes).
      rate.bytes /= 2
      rate.busyMs /= 2
      members.push({ peer, rate, inflight: 0, inflightBytes: 0, busySince: 0, quickestMs: Number.POSITIVE_INFINITY, blocks: 0, gone: false, ranges: true })
      pump()
    }

    /**
     * Whether `m` should take a block of `size` now: not when the other peers
     * would be done with all that is left (this block included) before `m`
     * finished it. A block goes to one peer whole, so the others can be done
     * no sooner than the best of them could finish this block after its own.
     */
    const worth = (m: Member, size: number): boolean => {
      const mine = memberRate(m)
      const others = members.filter(o => o !== m && !o.gone)
      if (others.length === 0 || !Number.isFinite(mine)) return true
      const rates = others.map(memberRate)
      const otherRate = rates.reduce((sum, r) => sum + r, 0)
      if (!Number.isFinite(otherRate)) return true
      const left = pending.reduce((sum, w) => sum + w.size, 0) + others.reduce((sum, o) => sum + o.inflightBytes, 0)
      const soonest = Math.min(...others.map((o, i) => (o.inflightBytes + size) / rates[i]!))
      return (m.inflightBytes + size) / mine <= Math.max(left / otherRate, soonest)
    }

    /** The bytes of one request now: RUN_BYTES, less once what is left, split over the peers, is less. */
    const runBytes = (live: number): number => {
      const left = pending.reduce((sum, w) => sum + w.size, 0)
      return Math.min(RUN_BYTES, Math.max(MIN_RUN_BYTES, left / (2 * Math.max(1, live))))
    }

    /** The next request for `m`: the first block wanted and, for a peer that takes byte ranges, the leaves that follow it in the file, up to `limit` bytes. */
    const nextRun = (m: Member, limit: number): Wanted[] => {
      const run = [pending.shift()!]
      if (!m.ranges || run[0]!.cid.code !== RAW_CODE || run[0]!.offset === undefined) return run
      let bytes = run[0]!.size
      for (let last = run[0]!; pending.length > 0 && bytes + pending[0]!.size <= limit; last = run.at(-1)!) {
        const next = pending[0]!
        if (next.cid.code !== RAW_CODE || next.offset !== last.offset! + last.size) break
        run.push(pending.shift()!)
        bytes += next.size
      }
      return run
    }

    const pump = (): void => {
      if (signal?.aborted === true) return
      // The fastest peers pick first.
      const live = members.filter(m => !m.gone).sort((a, b) => memberRate(b) - memberRate(a))
      const limit = runBytes(live.length)
      const blockBytes = bytes > 0 ? bytes / delivered : DEFAULT_BLOCK_BYTES
      for (const m of live) {
        // Bytes still to come count, not requests: a peer whose runs are mostly in is asked for more when a request ends.
        const ahead = bytesAheadOf(m, blockBytes)
        while ((m.inflight === 0 || (m.inflight < MAX_DEPTH && m.inflightBytes < ahead)) && pending.length > 0 && worth(m, pending[0]!.size)) request(m, nextRun(m, limit))
      }
      // Never all idle with blocks left: the fastest takes one whatever the estimates say.
      if (pending.length > 0 && live.length > 0 && live.every(m => m.inflight === 0)) request(live[0]!, nextRun(live[0]!, limit))
      const busy = members.some(m => !m.gone && m.inflight > 0)
      if (!busy && pending.length > 0 && members.every(m => m.gone)) {
        // No peer left: the rest is fetched block by block (other peers, bitswap).
        for (const w of pending.splice(0)) handOff(w)
      }
      if (owned.size === 0 && !busy) finish()
    }

    const handOff = (w: Wanted): void => {
      const key = w.cid.toString()
      owned.delete(key)
      this.expected.delete(key)
      if (signal?.aborted === true) w.waiter.reject(new PeerError('swarm', 'request aborted'))
      else source.fetch(w.cid).then(w.waiter.resolve, w.waiter.reject)
    }

    const leave = (m: Member, why: string): void => {
      if (m.gone) return
      m.gone = true
      source.log?.warn(`swarm: ${m.peer.url} left the fetch of ${root.toString()} (${why}); the other peers take its blocks`)
    }

    /** Asks `m` for `run`: one block, or a run of leaves as a CAR of their byte range. What does not come goes back to the others. */
    const request = (m: Member, run: Wanted[]): void => {
      const asked = Date.now()
      if (m.inflight === 0) m.busySince = asked
      m.inflight++
      const left = new Map(run.map(w => [w.cid.toString(), w]))
      for (const w of run) m.inflightBytes += w.size
      /** A block of the run came, checked against its CID. */
      const arrived = async (w: Wanted, got: Uint8Array): Promise<void> => {
        const key = w.cid.toString()
        left.delete(key)
        m.inflightBytes -= w.size
        if (left.size === run.length - 1) m.quickestMs = Math.min(m.quickestMs, Date.now() - asked)
        m.rate.bytes += got.length
        m.blocks++
        source.log?.debug(`swarm: +${Date.now() - started} ms ${m.peer.url} sent ${got.length} bytes (${m.inflight} under way, ${pending.length} blocks not asked yet); MB/s by peer: ${members.map(o => (memberRate(o) / 1000).toFixed(2)).join('/')}`)
        bytes += got.length
        delivered++
        let failed: Error | undefined
        try { await source.keep(w.cid, got) } catch (err) { failed = err as Error }
        // Only now: until the block is stored, a reader must wait for this delivery rather than fetch it again.
        owned.delete(key)
        this.expected.delete(key)
        // Keeping the block failed (the disk): the reader gets the error, the swarm goes on.
        if (failed !== undefined) { w.waiter.reject(failed); return }
        source.delivered(m.peer.url)
        // The children are taken charge of before anyone hears of them (the reader learns them from this block).
        if (w.cid.code === dagPb.code) links(got, w.order, w.offset)
        w.waiter.resolve(got)
      }
      const transfer = run.length === 1 ? oneBlock(m, run[0]!, arrived) : byteRange(m, run, left, arrived)
      transfer.then(() => {
        if (left.size > 0) leave(m, `it does not have ${[...left.values()][0]!.cid.toString()}`)
      }, (err: Error) => {
        if (signal?.aborted === true) return // handed off by onAbort
        if (err instanceof IntegrityError) {
          source.corrupt(m.peer.url, err.block ?? root.toString())
          leave(m, `it sent a corrupt block: ${err.message}`)
        } else if (run.length > 1 && err instanceof PeerError && / answered HTTP 4\d\d$/.test(err.message)) {
          m.ranges = false // a gateway that takes no byte ranges: single blocks then
          source.log?.debug(`swarm: ${m.peer.url} refused a byte range (${err.message}); asking it block by block`)
        } else leave(m, err.message)
      }).finally(() => {
        m.inflight--
        for (const w of left.values()) m.inflightBytes -= w.size
        if (m.inflight === 0) m.rate.busyMs += Date.now() - m.busySince
        if (signal?.aborted !== true) for (const w of left.values()) requeue(w)
        pump()
      })
    }

    /** One block from `m`, checked against its CID. */
    const oneBlock = async (m: Member, w: Wanted, arrived: (w: Wanted, got: Uint8Array) => Promise<void>): Promise<void> => {
      const got = await m.peer.block(w.cid, signal)
      if (got === undefined) return
      checkBlock(w.cid, got) // IntegrityError
      await arrived(w, got)
    }

    /** The leaves of `run` from `m` as one CAR of their byte range (the file's nodes above them come along and are passed over). */
    const byteRange = async (m: Member, run: Wanted[], left: Map<string, Wanted>, arrived: (w: Wanted, got: Uint8Array) => Promise<void>): Promise<void> => {
      const last = run.at(-1)!
      // A peer that trickles (a byte now and then keeps the connection alive) is given up once no block came for a while.
      const stall = new StallTimer(source.stallMs)
      try {
        const body = await m.peer.carRange(root, run[0]!.offset!, last.offset! + last.size - 1, stall.signal(signal))
        if (body === undefined) return
        const car = readCar(body) // every block checked against its CID (IntegrityError)
        for await (const { cid, bytes: got } of car.blocks) {
          const w = left.get(cid.toString())
          // Only a block of the run is a sign of life: a peer sending others (the file's nodes come first) may do so for ever.
          if (w === undefined) continue
          stall.alive()
          await arrived(w, got)
          if (left.size === 0) break
        }
      } catch (err) {
        if (stall.stalled && signal?.aborted !== true) throw new PeerError(m.peer.url, `it stalled: no block for ${stall.ms / 1000} s`)
        throw err
      } finally {
        stall.stop()
      }
    }

    const requeue = (w: Wanted): void => {
      let i = pending.length
      while (i > 0 && before(w.order, pending[i - 1]!.order)) i--
      pending.splice(i, 0, w)
    }

    const links = (bytes: Uint8Array, order: number[], offset?: number): void => {
      for (const child of childrenOf(bytes, order, offset)) expect(child.cid, child.order, child.size, child.offset)
    }
    if (options.frontier !== undefined) for (const { cid, order, size, offset } of options.frontier) expect(cid, order, size, offset)
    else if (!source.fetching(root)) expect(root, [], DEFAULT_BLOCK_BYTES, 0)
    else if (root.code === dagPb.code) {
      // The reader got to the root first (bitswap, while the routing searched): the swarm takes the blocks below it.
      try { links(await source.fetch(root), [], 0) } catch { return undefined }
    }
    if (owned.size === 0) return undefined
    for (const peer of peers) join(peer)
    if (options.joining !== undefined) {
      (async () => { for await (const peer of options.joining!) { if (owned.size === 0) break; join(peer) } })().catch(() => {})
    }
    const onAbort = (): void => {
      for (const w of [...owned.values()]) handOff(w) // rejects them: the request is gone
      pending.length = 0
      finish()
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    pump()
    try {
      await finished
    } finally {
      signal?.removeEventListener('abort', onAbort)
    }
    const ms = Date.now() - started
    const report: SwarmReport = {
      root: root.toString(),
      blocks: delivered,
      bytes,
      ms,
      peers: members.map(m => ({ url: m.peer.url, blocks: m.blocks, rate: Math.round((this.rate(m.peer.url) ?? 0)) }))
    }
    this.reports.push(report)
    if (this.reports.length > 16) this.reports.shift()
    source.log?.info?.(`swarm: ${root.toString()}: ${delivered} blocks, ${formatBytes(bytes)} in ${(ms / 1000).toFixed(2)} s from ${members.length} peer(s): ${report.peers.map(p => `${p.url} ${p.blocks} blocks at ${formatBytes(p.rate)}/s`).join(', ')}`)
    return report
  }
}
