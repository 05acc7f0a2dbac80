import { setMaxListeners } from 'node:events'
import type { CID } from 'multiformats/cid'
import { IndexBudgetError, IntegrityError, NixipfsError, RecordError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import { walkDag } from '../ipfs/dag.js'
import { DAG_PB_CODE } from '../ipfs/block.js'
import { readSmallFile } from '../ipfs/file-dag.js'
import { MAX_NARINFO_BYTES } from '../nix/narinfo.js'
import { CacheLayout } from './layout.js'
import { acceptRecord, loadRecord, type AcceptResult } from './records.js'
import { formatBytes } from '../progress.js'

/** Where candidate records for a name come from (peers; unverified). */
export type RecordFinder = (name: string, signal?: AbortSignal) => Promise<Array<{ from: string, bytes: Uint8Array }>>

/** Progress of a root being fetched is logged this often by default. */
const PROGRESS_MS = 5_000

export interface FollowOptions {
  /** how often peers are asked for newer records */
  intervalMs: number
  /** what to fetch when a new root arrives: the index (directories and narinfos), or everything (a mirror) */
  fetch: 'index' | 'all'
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
  /** pulls a NAR's whole DAG in one go (with fetch 'all'), as the walk reaches it */
  prefetch?: (root: CID) => Promise<void>
  /** called with the code of each record refused (rollback, forgery, expiry…) */
  onRefused?: (code: string) => void
  /** a count of failed writes, read before a root is fetched and given to `persist` */
  writeEpoch?: () => number
  /** makes every block fetched so far durable, or throws if a write failed since the epoch (called before a root counts as synced) */
  persist?: (since?: number) => Promise<void>
  /** with fetch 'index': the most bytes one cache's index may take; past it, following that cache stops with a warning */
  maxIndexBytes?: number
  /** how often progress (blocks and bytes so far, rate) is logged while a root is fetched; default 5 s */
  progressMs?: number
  /** called when a newer record was stored */
  onRecord?: (name: string) => void
  /** called after a new root was fetched as far as `fetch` asks */
  onSynced?: (name: string, root: string) => void
}

/** A running follower. */
export interface Follower {
  /** asks peers once now (also done every interval) */
  poll: () => Promise<void>
  /** fetches the root of the record stored for `name`, if followed, without asking peers (one was just stored) */
  sync: (name: string) => Promise<void>
  /** takes a record for a followed name that a peer announced, as one a poll found (refusals throw) and fetches its root if it is newer */
  offer: (name: string, from: string, bytes: Uint8Array) => Promise<AcceptResult>
  stop: () => void
}

/**
 * Follows caches by IPNS name: asks peers for their records, keeps the newest
 * valid one in the repo (refusing rollbacks, forgeries, expired and malformed
 * records, see acceptRecord), and fetches the new root's blocks through
 * `blocks` — the index only, so lookups are local, or every block (a mirror).
 */
export function startFollowing (repo: string, names: string[], find: RecordFinder, blocks: BlockGetter, options: FollowOptions): Follower {
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal) // shared by every fetch a sync runs in parallel
  const synced = new Map<string, string>()
  const syncing = new Map<string, Promise<void>>()
  /** caches whose index passed --max-index: no longer followed */
  const stopped = new Set<string>()

  async function sync (name: string, root: string): Promise<void> {
    const record = await loadRecord(repo, name)
    if (record === undefined) return
    let count = 0
    let bytes = 0
    let missing = 0
    let firstMissing = ''
    const started = Date.now()
    const rootCid = record.root
    // What the cache layout names is fetched, whatever else a (hostile) root links never: the index is the directories
    // (nar/ included), nix-cache-info, narinfos, realisations and dispute statements, each small; a mirror adds the NARs.
    const layout = new CacheLayout(rootCid, options.fetch === 'all')
    // A mirror pulls each NAR as one stream from a peer, one after the other in the order the walk reaches them.
    let pulling = Promise.resolve()
    const skipLink = options.fetch === 'index' ? layout.skipLink : (link: string | undefined, parent: CID, cid: CID): boolean => {
      const narRoot = layout.roleOf(parent) === 'nar'
      if (layout.skipLink(link, parent, cid)) return true
      if (narRoot) pulling = pulling.then(async () => await options.prefetch?.(cid)).catch(() => {})
      return false
    }
    const oversized: string[] = []
    async function walkRoot (): Promise<void> {
      for await (const block of walkDag(blocks, rootCid, {
        signal: abort.signal,
        skipLink,
        onMissing: (cid, err) => {
          if (missing++ === 0) firstMissing = `${cid.toString()}: ${err.message}`
          options.log.debug(`${cid.toString()}: ${err.message}`)
        }
      })) {
        count++
        bytes += block.bytes.length
        if (options.fetch === 'all') continue // a mirror takes every NAR: no index budget
        // A file of several blocks is read as one, bounded (its own blocks checked against the sizes its root gives).
        if (block.cid.code === DAG_PB_CODE && layout.roleOf(block.cid) === 'file') {
          layout.skipLinksOf(block.cid)
          bytes += (await readSmallFile(blocks, block.cid, MAX_NARINFO_BYTES, 'index file').catch((err: Error) => {
            if (err instanceof IntegrityError) oversized.push(block.cid.toString()) // larger than allowed, or than it says
            else if (missing++ === 0) firstMissing = `${block.cid.toString()}: ${err.message}`
            return new Uint8Array()
          })).length
        } else if (block.cid.code !== DAG_PB_CODE && block.bytes.length > MAX_NARINFO_BYTES) {
          oversized.push(block.cid.toString())
        }
        if (bytes > (options.maxIndexBytes ?? Infinity)) throw new IndexBudgetError(name, options.maxIndexBytes!)
      }
    }
    const epoch = options.writeEpoch?.()
    // A mirror of a large cache takes minutes to hours: never silent until it is done.
    const progress = setInterval(() => {
      const s = Math.max((Date.now() - started) / 1000, 0.001)
      options.log.info(`/ipns/${name}: ${options.fetch === 'all' ? 'pinning' : 'indexing'} root ${root}: ${count} blocks, ${formatBytes(bytes)} so far, ${formatBytes(Math.round(bytes / s))}/s`)
    }, options.progressMs ?? PROGRESS_MS)
    progress.unref()
    try {
      await walkRoot()
    } finally {
      clearInterval(progress)
    }
    if (oversized.length > 0) options.log.warn(`/ipns/${name}: root ${root} has ${oversized.length} index files larger than ${MAX_NARINFO_BYTES} bytes (first: ${oversized[0]!}); fetched no further than their first block, and refused if asked for`)
    if (missing > 0) {
      options.log.warn(`/ipns/${name}: ${missing} blocks of root ${root} could not be fetched yet (first: ${firstMissing}); retrying at the next poll`)
      return
    }
    // "Pinned" must survive a crash: the store buffers writes.
    await options.persist?.(epoch)
    synced.set(name, root)
    const s = (Date.now() - started) / 1000
    options.log.info(`/ipns/${name}: ${options.fetch === 'all' ? 'pinned' : 'indexed'} root ${root} (${count} blocks, ${formatBytes(bytes)} in ${s.toFixed(1)} s, ${formatBytes(bytes / Math.max(s, 0.001))}/s)`)
    options.onSynced?.(name, root)
  }

  /** Takes one candidate record for `name` (newest valid wins, see acceptRecord); refusals are counted, logged and thrown. */
  async function consider (name: string, from: string, bytes: Uint8Array): Promise<AcceptResult> {
    try {
      const result = await acceptRecord(repo, name, bytes)
      if (result === 'newer') {
        const record = await loadRecord(repo, name)
        options.log.info(`/ipns/${name}: record ${record?.sequence} from ${from} → ${record?.root.toString()}`)
        options.onRecord?.(name)
      }
      return result
    } catch (err) {
      if (err instanceof NixipfsError) {
        options.onRefused?.(err.code)
        options.log.warn(`/ipns/${name}: refused a record from ${from}: ${err.message}`)
      }
      throw err
    }
  }

  /** Fetches the root of the newest stored record, unless it is fetched already or being fetched. */
  async function syncStored (name: string): Promise<void> {
    const record = await loadRecord(repo, name)
    if (record === undefined) {
      options.log.warn(`/ipns/${name}: no peer has a record for it yet (check --peer / --http-gateway / --routing / --bootstrap)`)
      return
    }
    const root = record.root.toString()
    if (synced.get(name) === root || syncing.has(name) || stopped.has(name)) return
    const running = sync(name, root).catch(err => {
      if (err instanceof IndexBudgetError) stopped.add(name)
      if (!abort.signal.aborted) options.log.warn(`/ipns/${name}: fetching root ${root} failed: ${(err as Error).message}${stopped.has(name) ? '' : '; retrying at the next poll'}`)
    }).finally(() => syncing.delete(name))
    syncing.set(name, running)
    await running
  }

  async function pollOne (name: string): Promise<void> {
    for (const { from, bytes } of await find(name, abort.signal)) {
      await consider(name, from, bytes).catch(err => { if (!(err instanceof NixipfsError)) throw err })
    }
    await syncStored(name)
  }

  async function poll (): Promise<void> {
    await Promise.all(names.map(async name => await pollOne(name).catch(err => options.log.warn(`/ipns/${name}: ${(err as Error).message}`))))
  }

  const timer = setInterval(() => { poll().catch(() => {}) }, options.intervalMs)
  timer.unref()
  async function offer (name: string, from: string, bytes: Uint8Array): Promise<AcceptResult> {
    if (!names.includes(name)) throw new RecordError('ERR_RECORD_NOT_FOLLOWED', `/ipns/${name} is not followed here`)
    const result = await consider(name, from, bytes)
    // The walk runs on its own: whoever offered the record need not wait for a whole index.
    if (result === 'newer') syncStored(name).catch((err: Error) => options.log.warn(`/ipns/${name}: ${err.message}`))
    return result
  }

  const syncFollowed = async (name: string): Promise<void> => { if (names.includes(name)) await syncStored(name) }
  return { poll, sync: syncFollowed, offer, stop: () => { clearInterval(timer); abort.abort() } }
}
