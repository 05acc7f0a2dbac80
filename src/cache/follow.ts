import { setMaxListeners } from 'node:events'
import type { CID } from 'multiformats/cid'
import { NixipfsError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import { walkDag } from '../ipfs/dag.js'
import { NAR_SUFFIX } from './directory.js'
import { acceptRecord, loadRecord } from './records.js'

/** Where candidate records for a name come from (peers; unverified). */
export type RecordFinder = (name: string, signal?: AbortSignal) => Promise<Array<{ from: string, bytes: Uint8Array }>>

export interface FollowOptions {
  /** how often peers are asked for newer records */
  intervalMs: number
  /** what to fetch when a new root arrives: the index (directories and narinfos), or everything (a mirror) */
  fetch: 'index' | 'all'
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
  /** pulls a whole DAG in one go (with fetch 'all'), before it is walked block by block */
  prefetch?: (root: CID) => Promise<void>
  /** called with the code of each record refused (rollback, forgery, expiry…) */
  onRefused?: (code: string) => void
  /** a count of failed writes, read before a root is fetched and given to `persist` */
  writeEpoch?: () => number
  /** makes every block fetched so far durable, or throws if a write failed since the epoch (called before a root counts as synced) */
  persist?: (since?: number) => Promise<void>
  /** called when a newer record was stored */
  onRecord?: (name: string) => void
  /** called after a new root was fetched as far as `fetch` asks */
  onSynced?: (name: string, root: string) => void
}

/** A running follower. */
export interface Follower {
  /** asks peers once now (also done every interval) */
  poll: () => Promise<void>
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

  async function sync (name: string, root: string): Promise<void> {
    const record = await loadRecord(repo, name)
    if (record === undefined) return
    let count = 0
    let bytes = 0
    let missing = 0
    let firstMissing = ''
    const started = Date.now()
    const rootCid = record.root
    const epoch = options.writeEpoch?.()
    if (options.fetch === 'all') await options.prefetch?.(rootCid)
    for await (const block of walkDag(blocks, rootCid, {
      signal: abort.signal,
      // The index is everything but the NARs themselves: directories (nar/ included) and narinfos.
      skipLink: options.fetch === 'index' ? (linkName) => linkName?.endsWith(NAR_SUFFIX) === true : undefined,
      onMissing: (cid, err) => {
        if (missing++ === 0) firstMissing = `${cid.toString()}: ${err.message}`
        options.log.debug(`${cid.toString()}: ${err.message}`)
      }
    })) {
      count++
      bytes += block.bytes.length
    }
    if (missing > 0) {
      options.log.warn(`/ipns/${name}: ${missing} blocks of root ${root} could not be fetched yet (first: ${firstMissing}); retrying at the next poll`)
      return
    }
    // "Pinned" must survive a crash: the store buffers writes.
    await options.persist?.(epoch)
    synced.set(name, root)
    const s = (Date.now() - started) / 1000
    options.log.info(`/ipns/${name}: ${options.fetch === 'all' ? 'pinned' : 'indexed'} root ${root} (${count} blocks, ${(bytes / 2 ** 20).toFixed(1)} MiB in ${s.toFixed(1)} s, ${(bytes / 2 ** 20 / Math.max(s, 0.001)).toFixed(1)} MiB/s)`)
    options.onSynced?.(name, root)
  }

  async function pollOne (name: string): Promise<void> {
    for (const { from, bytes } of await find(name, abort.signal)) {
      try {
        if (await acceptRecord(repo, name, bytes) === 'newer') {
          const record = await loadRecord(repo, name)
          options.log.info(`/ipns/${name}: record ${record?.sequence} from ${from} → ${record?.root.toString()}`)
          options.onRecord?.(name)
        }
      } catch (err) {
        if (!(err instanceof NixipfsError)) throw err
        options.onRefused?.(err.code)
        options.log.warn(`/ipns/${name}: refused a record from ${from}: ${err.message}`)
      }
    }
    const record = await loadRecord(repo, name)
    if (record === undefined) {
      options.log.warn(`/ipns/${name}: no peer has a record for it yet (check --peer / --http-gateway)`)
      return
    }
    const root = record.root.toString()
    if (synced.get(name) === root || syncing.has(name)) return
    const running = sync(name, root).catch(err => {
      if (!abort.signal.aborted) options.log.warn(`/ipns/${name}: fetching root ${root} failed: ${(err as Error).message}; retrying at the next poll`)
    }).finally(() => syncing.delete(name))
    syncing.set(name, running)
    await running
  }

  async function poll (): Promise<void> {
    await Promise.all(names.map(async name => await pollOne(name).catch(err => options.log.warn(`/ipns/${name}: ${(err as Error).message}`))))
  }

  const timer = setInterval(() => { poll().catch(() => {}) }, options.intervalMs)
  timer.unref()
  return { poll, stop: () => { clearInterval(timer); abort.abort() } }
}
