import { setMaxListeners } from 'node:events'
import type { CID } from 'multiformats/cid'
import { BlockNotFoundError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import type { LocalBlocks, UnixfsBlocks } from '../ipfs/blocks.js'
import { rendezvousCid } from '../net/rendezvous.js'
import type { Routing } from '../net/routing.js'
import { loadRecordBytes } from '../repo-layout.js'
import { listNarInfos, openIndex } from './index.js'
import { loadRecord } from './records.js'

/** How often served records are looked at for a change (a publish in another process, a republish, a followed cache's new root). */
const CHECK_MS = 5_000
/** A record is put into the DHT again this often even if unchanged: DHT nodes drop records after 36 h (kad-dht's maximum record age). */
const REPUT_MS = 12 * 60 * 60 * 1000
/**
 * A name announced while the DHT routing table held fewer peers than this (kad-dht's K) is announced again each time
 * the table doubles: the network was still forming, and its record and provider records went to the closest peers of
 * a few, which the closest of many may not ask (the 50-node bench: a builder announced before most nodes had started,
 * and both clients found no provider of its first path). A node joining a formed network fills its table at once.
 */
const FORMING_TABLE = 20
/** Provides under way at once for the node's own cache. */
const CONCURRENCY = 16
/**
 * Provides under way at once for what others published (followed and discovered caches, NARs fetched): each is a
 * DHT walk whose answers the event loop digests peer by peer, and at 16 a gateway that had just discovered 20 caches
 * stalled its requests for up to 1.3 s (event loop delay p99 0.9 s, 50-node bench); at 2, p99 0.35 s.
 */
const OTHERS_CONCURRENCY = 2
/** Paths of followed caches kept at most to be provided once their NAR is fetched (beyond, at the root's next announcement). */
const MAX_UNHELD = 100_000

export interface AnnounceOptions {
  /** the IPNS names this node serves (own, followed, discovered) */
  names: () => string[]
  /** the node's own cache among them, announced faster */
  own?: string
  /** NAR roots asked for lately (what a gateway fetched on demand): provided once they are local */
  recent?: () => CID[]
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
  checkMs?: number
  /** true for a cache found on the DHT (by discovery): its publisher announces it there itself */
  foundOnDht?: (name: string) => boolean
  /**
   * resolves once no request waits on the network (a discovery lookup Nix is waiting for): what others published is
   * announced only then, the node's own cache at once
   */
  idle?: (signal: AbortSignal) => Promise<void>
}

/** A running announcer. */
export interface Announcer {
  /** announces what changed now, not at the next check; resolves when done */
  announce: () => Promise<void>
  stop: () => void
}

/**
 * Tells the network what this node serves: for every served cache, its
 * signed IPNS record (put into the DHT, again when it changes and every
 * REPUT_MS; a cache found on the DHT, once it has not changed for REPUT_MS),
 * and provider records for its root CID, every local NAR root and
 * the rendezvous CID of every store path of its own cache and of every path
 * whose NAR it holds of the others (kad-dht re-provides them before they
 * expire, as long as the node runs). Nothing is announced while the node
 * knows no DHT peer; it is retried at the next check.
 */
export function startAnnouncing (repo: string, local: Pick<LocalBlocks, 'has'> & BlockGetter & UnixfsBlocks, routing: Routing, options: AnnounceOptions): Announcer {
  const put = new Map<string, { bytes: Buffer, at: number }>()
  const rootsDone = new Map<string, string>()
  const provided = new Set<string>()
  const abort = new AbortController()
  // Shared by every DHT query the announcer runs (several provides at once, each listening once per peer it asks):
  // past 10 listeners Node warned of a leak that is none (each query removes its own when it ends).
  setMaxListeners(Infinity, abort.signal)
  let running: Promise<void> | undefined

  /** the paths of followed caches whose NAR the node did not hold when their root was announced, by NAR CID */
  const unheld = new Map<string, string>()

  /** the size of the routing table when each name's root was last announced */
  const tableAt = new Map<string, number>()

  /**
   * Waits, for what others published, until no request waits on the network: the client of a 50-node network announced
   * the 20 caches it had just discovered (a record and 9 provider records each, every one a DHT walk) while Nix
   * waited for its next lookups, and those took twice as long.
   */
  const othersTurn = async (own: boolean): Promise<void> => { if (!own) await options.idle?.(abort.signal) }

  async function provideAll (cids: CID[], concurrency: number, own: boolean, again = false): Promise<number> {
    const todo = again ? [...cids] : cids.filter(c => !provided.has(c.toString()))
    let done = 0
    let failure: Error | undefined
    const work = async (): Promise<void> => {
      for (let cid = todo.shift(); cid !== undefined; cid = todo.shift()) {
        try {
          await othersTurn(own)
          await routing.provide(cid, { signal: abort.signal })
          provided.add(cid.toString())
          done++
        } catch (err) {
          failure ??= err as Error
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, work))
    if (failure !== undefined) throw failure
    return done
  }

  async function announceName (name: string): Promise<void> {
    const bytes = await loadRecordBytes(repo, name)
    if (bytes === undefined) return
    const size = routing.size()
    const before = tableAt.get(name)
    const grown = before !== undefined && before < FORMING_TABLE && size >= 2 * before
    const own = name === options.own
    const last = put.get(name)
    const changed = last === undefined || Buffer.compare(last.bytes, bytes) !== 0
    let recordPut = false
    if (changed && options.foundOnDht?.(name) === true) {
      // Its publisher puts it, as it was found there: it is put again once it has not changed for REPUT_MS (its
      // publisher gone, say), not at once (a DHT walk for every cache discovery found).
      put.set(name, { bytes: Buffer.from(bytes), at: Date.now() })
    } else if (changed || Date.now() - last.at > REPUT_MS || (own && grown)) {
      await othersTurn(own)
      await routing.putRecord(name, bytes, { signal: abort.signal })
      put.set(name, { bytes: Buffer.from(bytes), at: Date.now() })
      recordPut = true
      options.log.debug(`/ipns/${name}: record put into the DHT`)
    }
    const record = await loadRecord(repo, name)
    const announced = record !== undefined && rootsDone.get(name) === record.root.toString()
    if (record === undefined || (announced && !grown)) return
    if (!local.has(record.root)) return // a followed root not fetched yet: next check
    const started = Date.now()
    const index = await openIndex(local, record.root)
    const cids: CID[] = [record.root]
    for await (const { hash } of listNarInfos(local, record.root)) {
      const nar = (await index.narInfo(hash).catch(() => undefined))?.nar
      const held = nar !== undefined && local.has(nar)
      if (held) cids.push(nar)
      else if (nar !== undefined && !own && unheld.size < MAX_UNHELD) unheld.set(nar.toString(), hash)
      // Of a cache others published, only the paths whose NAR the node holds: it seeds those. Every path of a followed
      // index was a DHT walk each (a client that had followed 20 caches of 8 paths ran 180 walks for what it had only
      // looked up, and a million-path cache would cost a million).
      if (own || held) cids.push(rendezvousCid(hash))
    }
    const again = grown && announced
    const count = await provideAll(cids, own ? CONCURRENCY : OTHERS_CONCURRENCY, own, again)
    rootsDone.set(name, record.root.toString())
    tableAt.set(name, size)
    const took = `${((Date.now() - started) / 1000).toFixed(1)} s`
    options.log.info(again
      ? `/ipns/${name}: the DHT has grown from ${before!} to ${size} peers since root ${record.root.toString()} was announced: ${recordPut ? 'record and ' : ''}${count} provider records put again in ${took}`
      : `/ipns/${name}: announced root ${record.root.toString()} to the DHT (${recordPut ? 'record, ' : ''}${count} new provider records) in ${took}`)
  }

  async function check (): Promise<void> {
    if (routing.size() === 0) return
    for (const name of options.names()) {
      await announceName(name).catch((err: Error) => {
        // A followed cache whose index is still being fetched is announced once it is local.
        if (err instanceof BlockNotFoundError) { options.log.debug(`/ipns/${name}: not announced yet: ${err.message}`); return }
        if (!abort.signal.aborted) options.log.warn(`/ipns/${name}: announcing to the DHT failed (${err.message}); retrying in ${(options.checkMs ?? CHECK_MS) / 1000} s`)
      })
    }
    const recent = (options.recent?.() ?? []).filter(c => local.has(c))
    // A path of a followed cache whose NAR was fetched since its root was announced: the node seeds it now.
    const seeded = recent.flatMap(c => { const hash = unheld.get(c.toString()); unheld.delete(c.toString()); return hash === undefined ? [] : [rendezvousCid(hash)] })
    if (recent.length > 0) await provideAll([...recent, ...seeded], OTHERS_CONCURRENCY, false).catch((err: Error) => options.log.debug(`providing fetched NARs: ${err.message}`))
  }

  const announce = async (): Promise<void> => {
    // One check at a time; a caller that arrives during one waits for it and runs another (what it asks for may be newer).
    while (running !== undefined) await running
    running = check().finally(() => { running = undefined })
    await running
  }
  const timer = setInterval(() => { if (running === undefined) announce().catch(() => {}) }, options.checkMs ?? CHECK_MS)
  timer.unref()
  announce().catch(() => {})
  return { announce, stop: () => { clearInterval(timer); abort.abort() } }
}

/** How long a one-off announcement waits for the DHT routing table to hold a peer. */
const JOIN_WAIT_MS = 10_000

/**
 * Puts the repo's record of `name` into the network once, for a publish that
 * runs no node (on a network joined for that). Only the record: provider
 * records would name a peer that is gone when the command ends (a running
 * gateway provides).
 */
export async function putRecordOnce (repo: string, name: string, routing: Routing): Promise<void> {
  const bytes = await loadRecordBytes(repo, name)
  if (bytes === undefined) return
  for (let waited = 0; routing.size() === 0 && waited < JOIN_WAIT_MS; waited += 100) await new Promise(resolve => setTimeout(resolve, 100))
  await routing.putRecord(name, bytes, { signal: AbortSignal.timeout(JOIN_WAIT_MS * 3) })
}
