import type { CID } from 'multiformats/cid'
import { isDiskFailure } from '../disk.js'
import { BlockUnavailableError, IntegrityError, PeerError } from '../errors.js'
import { checkBlock, type BlockGetter } from '../ipfs/block.js'
import { readCar } from '../ipfs/car.js'
import { linksOf } from '../ipfs/dag.js'
import type { PackStore } from '../ipfs/pack-store.js'
import type { HttpPeer } from './http-peer.js'

/** Fetches single blocks over bitswap (Helia's networked blockstore fits). */
export interface BitswapSource {
  get: (cid: CID, options: { signal: AbortSignal }) => Iterable<Uint8Array> | AsyncIterable<Uint8Array>
}

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
}

export interface NetworkBlocksOptions {
  http: HttpPeer[]
  bitswap?: BitswapSource
  /** how long a peer may stall (a bitswap want unanswered, a CAR stream without its next block) */
  stallMs?: number
  /** how long a peer that sent a corrupt block is skipped */
  banMs?: number
  log?: { warn: (m: string) => void, debug: (m: string) => void }
}

/** How often, at most, a local miss makes the repo's block index be read again. */
const LOCAL_RECHECK_MS = 200

/** How long a peer may stall unless told otherwise. */
const DEFAULT_STALL_MS = 10_000

/** Times a block is wanted over bitswap before it counts as unavailable. */
const BITSWAP_ATTEMPTS = 3

interface Waiter { promise: Promise<Uint8Array>, resolve: (b: Uint8Array) => void, reject: (e: Error) => void }

function waiter (): Waiter {
  let resolve!: (b: Uint8Array) => void
  let reject!: (e: Error) => void
  const promise = new Promise<Uint8Array>((res, rej) => { resolve = res; reject = rej })
  promise.catch(() => {}) // rejections are observed by whoever awaits it
  return { promise, resolve, reject }
}

/** At most `size` tasks at a time; the rest wait their turn. */
class Slots {
  private free: number
  private readonly waiting: Array<() => void> = []
  constructor (size: number) { this.free = size }

  async run<T> (task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--
    else await new Promise<void>(resolve => this.waiting.push(resolve))
    try {
      return await task()
    } finally {
      const next = this.waiting.shift()
      if (next !== undefined) next()
      else this.free++
    }
  }
}

async function collectBytes (parts: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const all: Uint8Array[] = []
  for await (const part of parts) all.push(part)
  return all.length === 1 ? all[0]! : Buffer.concat(all)
}

/** `promise`, or a rejection after `ms`, whichever comes first. */
async function withDeadline<T> (promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(message)), ms) })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
    promise.catch(() => {}) // a late failure of the abandoned attempt is of no interest
  }
}

function hashesTo (cid: CID, bytes: Uint8Array): boolean {
  try {
    checkBlock(cid, bytes)
    return true
  } catch {
    return false
  }
}

/**
 * A block source that reads the local pack store first and otherwise fetches
 * from peers (HTTP trustless gateways, then bitswap), checking every block
 * against its CID and keeping what it fetched, so this node seeds it on.
 * A peer that sends a corrupt block is skipped for a while and the block is
 * taken from another.
 */
export class NetworkBlocks implements BlockGetter {
  readonly counters: FetchCounters = { local: 0, http: 0, car: 0, bitswap: 0, corrupt: 0, unavailable: 0 }
  private readonly inflight = new Map<string, Promise<Uint8Array>>()
  /** blocks a running CAR prefetch is expected to deliver */
  private readonly expected = new Map<string, Waiter>()
  private readonly banned = new Map<string, number>()
  private next = 0
  private localCheckedAt = 0
  private caching = true
  private readonly puts = new Set<Promise<unknown>>()
  /** NARs asked for, oldest first (a Map keeps insertion order) */
  private readonly used = new Map<string, { root: CID, size: number }>()
  /** Helia's bitswap loses wants when many are in flight at once (seen with a few NARs read ahead in parallel) */
  private readonly bitswapSlots = new Slots(8)

  constructor (readonly local: PackStore, private readonly options: NetworkBlocksOptions) {}

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
    signal?.throwIfAborted()
    if (await this.hasLocal(cid)) {
      this.counters.local++
      return { bytes: await this.local.read(cid), checked: false }
    }
    const key = cid.toString()
    const expected = this.expected.get(key)
    if (expected !== undefined) return { bytes: await expected.promise, checked: true }
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

  /** HTTP peers not currently skipped, starting with a different one each call to spread load. */
  private peers (): HttpPeer[] {
    const now = Date.now()
    const ok = this.options.http.filter(p => (this.banned.get(p.url) ?? 0) <= now)
    const start = this.next++ % Math.max(1, ok.length)
    return [...ok.slice(start), ...ok.slice(0, start)]
  }

  private corrupt (peer: string, cid: CID): void {
    this.counters.corrupt++
    this.banned.set(peer, Date.now() + (this.options.banMs ?? 5 * 60_000))
    this.options.log?.warn(`peer ${peer} sent a corrupt block for ${cid.toString()}; skipping that peer for a while and asking others`)
  }

  private async keep (cid: CID, bytes: Uint8Array): Promise<Uint8Array> {
    if (!this.caching) return bytes
    const put = this.local.put(cid, bytes)
    this.puts.add(put)
    try {
      await put
    } catch (err) {
      if (!isDiskFailure(err)) throw err
      // The block is verified, so it is served all the same. What a failed write lost is not taken
      // for stored: it is fetched again when asked for, and a follower's sync since then fails and retries.
      this.options.log?.warn(`cannot keep fetched blocks: ${(err as Error).message}`)
    } finally {
      this.puts.delete(put)
    }
    return bytes
  }

  /** Notes that the NAR under `root` (of `size` bytes) was just asked for: what --max-cache keeps longest. */
  touch (root: CID, size: number): void {
    const key = root.toString()
    this.used.delete(key)
    this.used.set(key, { root, size })
  }

  /** NARs asked for, most recent first. */
  recentlyUsed (): Array<{ root: CID, size: number }> {
    return [...this.used.values()].reverse()
  }

  /** Stops keeping fetched blocks (they are still served) until the returned function is called; waits for writes under way. */
  async pauseCaching (): Promise<() => void> {
    this.caching = false
    await Promise.allSettled([...this.puts])
    return () => { this.caching = true }
  }

  private async fetchOne (cid: CID): Promise<Uint8Array> {
    // What each source said, for the error when none could supply the block.
    const asked: string[] = []
    const peers = this.peers()
    const skipped = this.options.http.length - peers.length
    if (skipped > 0) asked.push(`${skipped} peer(s) skipped for sending corrupt blocks`)
    for (const peer of peers) {
      let bytes: Uint8Array | undefined
      try {
        bytes = await peer.block(cid)
      } catch (err) {
        this.options.log?.debug((err as Error).message)
        asked.push((err as Error).message)
        continue
      }
      if (bytes === undefined) { asked.push(`${peer.url}: does not have it`); continue }
      if (!hashesTo(cid, bytes)) { this.corrupt(peer.url, cid); asked.push(`${peer.url}: sent a corrupt block`); continue }
      this.counters.http++
      return await this.keep(cid, bytes)
    }
    const bitswap = this.options.bitswap
    // A want can go unanswered under load (seen with many in flight): ask again, a few times, before giving up.
    for (let attempt = 0; bitswap !== undefined && attempt < BITSWAP_ATTEMPTS; attempt++) {
      const ms = this.options.stallMs ?? DEFAULT_STALL_MS
      const timeout = AbortSignal.timeout(ms)
      try {
        // The deadline is enforced here too: a want stuck inside bitswap must not hang the request.
        const bytes = await this.bitswapSlots.run(async () => await withDeadline(collectBytes(bitswap.get(cid, { signal: timeout })), ms + 1_000, `bitswap gave no answer for ${cid.toString()} within ${ms} ms`))
        if (hashesTo(cid, bytes)) {
          this.counters.bitswap++
          return await this.keep(cid, bytes)
        }
        this.corrupt('bitswap', cid)
        asked.push('bitswap: sent a corrupt block')
        break
      } catch (err) {
        if (attempt === BITSWAP_ATTEMPTS - 1) asked.push(`bitswap: no answer in ${BITSWAP_ATTEMPTS} tries`)
        const causes = (err as { errors?: Error[] }).errors?.map(e => e.message).join('; ')
        this.options.log?.debug(`bitswap (attempt ${attempt + 1}): ${(err as Error).message}${causes === undefined ? '' : ` (${causes})`}`)
      }
    }
    this.counters.unavailable++
    throw new BlockUnavailableError(cid.toString(), asked)
  }

  /**
   * Starts fetching the whole DAG under `root` as one CAR stream from an HTTP
   * peer, so that reading it afterwards (block by block, in order) rarely
   * waits a round trip. Blocks the stream fails to deliver are fetched one by
   * one. Resolves when every block it took charge of has arrived or failed.
   */
  async prefetch (root: CID, signal?: AbortSignal): Promise<void> {
    if (this.local.has(root) || this.expected.has(root.toString())) return
    const peer = this.peers()[0]
    if (peer === undefined) return
    const owned = new Map<string, { cid: CID, waiter: Waiter }>()
    const expect = (cid: CID): void => {
      const key = cid.toString()
      if (this.local.has(cid) || this.expected.has(key) || this.inflight.has(key)) return
      const w = waiter()
      this.expected.set(key, w)
      owned.set(key, { cid, waiter: w })
    }
    expect(root)
    // A peer that trickles (or stops sending) is dropped once no block came for a while: the rest is fetched block by block.
    const stall = new AbortController()
    const stallMs = this.options.stallMs ?? DEFAULT_STALL_MS
    let timer = setTimeout(() => stall.abort(), stallMs)
    try {
      const body = await peer.car(root, signal === undefined ? stall.signal : AbortSignal.any([signal, stall.signal]))
      if (body === undefined) return
      const car = readCar(body)
      for await (const { cid, bytes } of car.blocks) {
        clearTimeout(timer)
        timer = setTimeout(() => stall.abort(), stallMs)
        const key = cid.toString()
        const mine = owned.get(key)
        if (mine === undefined) continue // not asked for (or someone else fetches it): ignore
        await this.keep(cid, bytes)
        this.counters.car++
        owned.delete(key)
        this.expected.delete(key)
        mine.waiter.resolve(bytes)
        for (const link of linksOf(cid, bytes)) expect(link.cid)
      }
    } catch (err) {
      if (err instanceof IntegrityError) this.corrupt(peer.url, root)
      else if (stall.signal.aborted) this.options.log?.warn(`peer ${peer.url} stalled sending ${root.toString()} (no block for ${stallMs / 1000} s); fetching the rest block by block`)
      else if (signal?.aborted !== true) this.options.log?.debug(`CAR of ${root.toString()} from ${peer.url}: ${(err as Error).message}`)
    } finally {
      clearTimeout(timer)
      // Whatever the stream did not deliver is fetched block by block (or fails with the request).
      for (const [key, { cid, waiter }] of owned) {
        this.expected.delete(key)
        if (signal?.aborted === true) waiter.reject(new PeerError(peer.url, 'request aborted'))
        else this.block(cid).then(waiter.resolve, waiter.reject)
      }
    }
  }
}
