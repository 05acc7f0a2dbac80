import type { CID } from 'multiformats/cid'
import { IntegrityError, PeerError } from '../errors.js'
import { readCar } from '../ipfs/car.js'
import { linksOf } from '../ipfs/dag.js'
import type { HttpPeer } from './http-peer.js'

/** What a CAR prefetch asks of the block source it fills. */
export interface PrefetchSource {
  /** true when the repo holds `cid` */
  stored: (cid: CID) => boolean
  /** true when `cid` is being fetched block by block already */
  fetching: (cid: CID) => boolean
  /** the peer to stream from, if any */
  peer: () => HttpPeer | undefined
  /** stores a block the stream delivered (it was checked against its CID by the CAR reader) */
  keep: (cid: CID, bytes: Uint8Array) => Promise<unknown>
  /** counts a block the stream delivered by `peer` */
  delivered: (peer: string) => void
  /** notes that `peer` sent a corrupt block */
  corrupt: (peer: string, block: string) => void
  /** fetches one block the stream did not deliver */
  fetch: (cid: CID) => Promise<Uint8Array>
  /** how long the stream may go without a block before the rest is fetched block by block */
  stallMs: number
  log?: { warn: (m: string) => void, debug: (m: string) => void }
}

/** A block promised to readers before it has come, settled by whoever fetches it. */
export interface Waiter { promise: Promise<Uint8Array>, resolve: (b: Uint8Array) => void, reject: (e: Error) => void }

/** A new Waiter, whose rejection is left to whoever awaits it. */
export function waiter (): Waiter {
  let resolve!: (b: Uint8Array) => void
  let reject!: (e: Error) => void
  const promise = new Promise<Uint8Array>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {}) // rejections are observed by whoever awaits it
  return { promise, resolve, reject }
}

/**
 * Aborts its signal once `ms` pass without `alive()`: a CAR stream whose peer
 * trickles, stops, or sends only blocks nobody asked for is given up.
 */
export class StallTimer {
  private readonly stall = new AbortController()
  private readonly timer: NodeJS.Timeout

  constructor (readonly ms: number) {
    this.timer = setTimeout(() => this.stall.abort(), ms)
  }

  /** true once it fired */
  get stalled (): boolean {
    return this.stall.signal.aborted
  }

  /** `signal` (the request's, if any) that also aborts on a stall */
  signal (signal?: AbortSignal): AbortSignal {
    return signal === undefined ? this.stall.signal : AbortSignal.any([signal, this.stall.signal])
  }

  /** A wanted block came: the wait starts again. */
  alive (): void {
    this.timer.refresh()
  }

  stop (): void {
    clearTimeout(this.timer)
  }
}

/** Fetches whole DAGs as one CAR stream each, handing out their blocks as they arrive. */
export class CarPrefetch {
  /** blocks a running prefetch is expected to deliver */
  private readonly expected = new Map<string, Waiter>()

  constructor (private readonly source: PrefetchSource) {}

  /** The block under `cid` once a running prefetch delivered it (or fetched it alone), if one took charge of it. */
  delivery (cid: CID): Promise<Uint8Array> | undefined {
    return this.expected.get(cid.toString())?.promise
  }

  /**
   * Starts fetching the whole DAG under `root` as one CAR stream from a
   * peer; with `frontier`, takes charge only of those blocks and what lies
   * below them (the stream's blocks above them are held). Blocks the stream
   * fails to deliver are fetched one by one. Resolves when every block it
   * took charge of has arrived or failed.
   */
  async prefetch (root: CID, signal?: AbortSignal, frontier?: CID[]): Promise<void> {
    const { source } = this
    if (frontier === undefined && (source.stored(root) || this.expected.has(root.toString()))) return
    const peer = source.peer()
    if (peer === undefined) return
    const owned = new Map<string, { cid: CID, waiter: Waiter }>()
    const expect = (cid: CID): void => {
      const key = cid.toString()
      if (source.stored(cid) || this.expected.has(key) || source.fetching(cid)) return
      const w = waiter()
      this.expected.set(key, w)
      owned.set(key, { cid, waiter: w })
    }
    for (const cid of frontier ?? [root]) expect(cid)
    if (owned.size === 0) return
    // A peer that trickles (or stops sending) is dropped once no block came for a while: the rest is fetched block by block.
    const stall = new StallTimer(source.stallMs)
    try {
      const body = await peer.car(root, stall.signal(signal))
      if (body === undefined) return
      const car = readCar(body)
      for await (const { cid, bytes } of car.blocks) {
        const key = cid.toString()
        const mine = owned.get(key)
        // Not asked for (or someone else fetches it): ignored, and no sign of life (a peer sending only such blocks stalls).
        if (mine === undefined) continue
        stall.alive()
        await source.keep(cid, bytes)
        source.delivered(peer.url)
        owned.delete(key)
        this.expected.delete(key)
        mine.waiter.resolve(bytes)
        for (const link of linksOf(cid, bytes)) expect(link.cid)
      }
    } catch (err) {
      if (err instanceof IntegrityError) source.corrupt(peer.url, err.block ?? root.toString())
      else if (stall.stalled) source.log?.warn(`peer ${peer.url} stalled sending ${root.toString()} (no block for ${stall.ms / 1000} s); fetching the rest block by block`)
      else if (signal?.aborted !== true) source.log?.debug(`CAR of ${root.toString()} from ${peer.url}: ${(err as Error).message}`)
    } finally {
      stall.stop()
      // Whatever the stream did not deliver is fetched block by block (or fails with the request).
      for (const [key, { cid, waiter }] of owned) {
        this.expected.delete(key)
        if (signal?.aborted === true) waiter.reject(new PeerError(peer.url, 'request aborted'))
        else source.fetch(cid).then(waiter.resolve, waiter.reject)
      }
    }
  }
}
