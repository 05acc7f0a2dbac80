import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import { PeerError } from '../errors.js'
import { checkBlock } from '../ipfs/block.js'
import type { HttpPeer } from './http-peer.js'
import { waiter, type Waiter } from './prefetch.js'

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
  corrupt: (peer: string, cid: CID) => void
  /** fetches one block no swarm peer could deliver (other peers, bitswap) */
  fetch: (cid: CID) => Promise<Uint8Array>
  log?: { info?: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** Requests one peer has under way at least: one arriving, the next queued behind it, so the peer's link never idles for a round trip. */
const DEPTH = 3
/** Requests one peer may have under way at most (a long fat link needs more than DEPTH to stay full). */
const MAX_DEPTH = 16
/** Size assumed for a block whose parent gave none (cdc-v1's average chunk). */
const DEFAULT_BLOCK_BYTES = 256 * 1024
/** Throughput assumed for a peer not measured yet (bytes/ms): optimistic, so it is tried. */
const UNMEASURED_RATE = Number.POSITIVE_INFINITY


/** A block to fetch: where it stands in the DAG's reading order (link indices from the root) and its expected size. */
export interface Missing { cid: CID, order: number[], size: number }

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
 * How many requests `m` should have under way: enough bytes in flight to
 * cover its measured rate over an unloaded request's time (the
 * bandwidth-delay product) and two blocks more, so a link with a long round
 * trip stays full; DEPTH at least, MAX_DEPTH at most.
 */
function depthOf (m: Member, blockBytes: number): number {
  // A peer not measured yet gets one block, its probe: a slow one must not hold DEPTH blocks before its rate is known.
  if (m.rate.bytes === 0) return 1
  const rate = memberRate(m)
  if (!Number.isFinite(rate) || !Number.isFinite(m.quickestMs)) return DEPTH
  return Math.min(MAX_DEPTH, Math.max(DEPTH, Math.ceil(rate * m.quickestMs / blockBytes) + 2))
}

/** The links of dag-pb node `bytes` (at `order` in the DAG) as blocks to fetch. */
export function childrenOf (bytes: Uint8Array, order: number[]): Missing[] {
  return dagPb.decode(bytes).Links.map((l, i) => ({ cid: l.Hash, order: [...order, i], size: l.Tsize ?? DEFAULT_BLOCK_BYTES }))
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

    const expect = (cid: CID, order: number[], size: number): void => {
      const key = cid.toString()
      if (source.stored(cid) || this.expected.has(key) || source.fetching(cid)) return
      const wanted: Wanted = { cid, order, size, waiter: waiter() }
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
      members.push({ peer, rate, inflight: 0, inflightBytes: 0, busySince: 0, quickestMs: Number.POSITIVE_INFINITY, blocks: 0, gone: false })
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

    const pump = (): void => {
      if (signal?.aborted === true) return
      // The fastest peers pick first.
      const live = members.filter(m => !m.gone).sort((a, b) => memberRate(b) - memberRate(a))
      for (const m of live) {
        const depth = depthOf(m, bytes > 0 ? bytes / delivered : DEFAULT_BLOCK_BYTES)
        while (m.inflight < depth && pending.length > 0 && worth(m, pending[0]!.size)) request(m, pending.shift()!)
      }
      // Never all idle with blocks left: the fastest takes one whatever the estimates say.
      if (pending.length > 0 && live.length > 0 && live.every(m => m.inflight === 0)) request(live[0]!, pending.shift()!)
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

    const request = (m: Member, w: Wanted): void => {
      const asked = Date.now()
      if (m.inflight === 0) m.busySince = asked
      m.inflight++
      m.inflightBytes += w.size
      const settle = (): void => {
        m.inflight--
        m.inflightBytes -= w.size
        if (m.inflight === 0) m.rate.busyMs += Date.now() - m.busySince
      }
      const failed = (why: string): void => { leave(m, why); requeue(w) }
      m.peer.block(w.cid, signal).then(async got => {
        settle()
        if (got === undefined) { failed(`it does not have ${w.cid.toString()}`); return }
        try { checkBlock(w.cid, got) } catch {
          source.corrupt(m.peer.url, w.cid)
          failed(`it sent a corrupt block for ${w.cid.toString()}`)
          return
        }
        m.rate.bytes += got.length
        m.quickestMs = Math.min(m.quickestMs, Date.now() - asked)
        m.blocks++
        source.log?.debug(`swarm: +${Date.now() - started} ms ${m.peer.url} sent ${got.length} bytes (${m.inflight} under way, ${pending.length} blocks not asked yet); MB/s by peer: ${members.map(o => (memberRate(o) / 1000).toFixed(2)).join('/')}`)
        bytes += got.length
        delivered++
        await source.keep(w.cid, got)
        source.delivered(m.peer.url)
        const key = w.cid.toString()
        owned.delete(key)
        this.expected.delete(key)
        // The children are taken charge of before anyone hears of them (the reader learns them from this block).
        if (w.cid.code === dagPb.code) links(got, w.order)
        w.waiter.resolve(got)
      }, (err: Error) => {
        settle()
        if (signal?.aborted === true) return // handed off by onAbort
        failed(err.message)
      }).catch((err: Error) => {
        // Keeping the block failed (the disk): the reader gets the error, the swarm goes on.
        owned.delete(w.cid.toString())
        this.expected.delete(w.cid.toString())
        w.waiter.reject(err)
      }).finally(pump)
    }

    const requeue = (w: Wanted): void => {
      let i = pending.length
      while (i > 0 && before(w.order, pending[i - 1]!.order)) i--
      pending.splice(i, 0, w)
    }

    const links = (bytes: Uint8Array, order: number[]): void => {
      for (const child of childrenOf(bytes, order)) expect(child.cid, child.order, child.size)
    }
    if (options.frontier !== undefined) for (const { cid, order, size } of options.frontier) expect(cid, order, size)
    else if (!source.fetching(root)) expect(root, [], DEFAULT_BLOCK_BYTES)
    else if (root.code === dagPb.code) {
      // The reader got to the root first (bitswap, while the routing searched): the swarm takes the blocks below it.
      try { links(await source.fetch(root), []) } catch { return undefined }
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
    const mb = (n: number): string => (n / 1e6).toFixed(1)
    source.log?.info?.(`swarm: ${root.toString()}: ${delivered} blocks, ${mb(bytes)} MB in ${(ms / 1000).toFixed(2)} s from ${members.length} peer(s): ${report.peers.map(p => `${p.url} ${p.blocks} blocks at ${mb(p.rate)} MB/s`).join(', ')}`)
    return report
  }
}
