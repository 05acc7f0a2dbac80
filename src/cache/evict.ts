import type { CID } from 'multiformats/cid'
import type { CompactableBlocks } from '../ipfs/blocks.js'
import { packFiles } from '../ipfs/pack-compact.js'
import type { NetworkBlocks } from '../net/fetcher.js'
import { withRepoLock } from '../repo.js'
import { markReachable } from './gc.js'
import { readPins } from './pins.js'
import { remotePinCids } from './remote-pins.js'
import { loadRecord } from './records.js'
import { packsDir } from '../repo-layout.js'
import { formatBytes } from '../progress.js'

export interface EvictOptions {
  /** what the repo's pack files may take on disk */
  maxBytes: number
  /** the repo's own cache: kept whole */
  own?: string
  /** followed caches: their indexes are kept, their NARs compete for the space left */
  follow: string[]
}

export interface EvictResult {
  bytes: { before: number, after: number }
  nars: { kept: number, dropped: number }
}

/** Share of `maxBytes` filled after an eviction, so that the next NAR does not trigger another at once. */
const FILL_AFTER_EVICTION = 0.8

/** Bytes of the repo's pack files on disk. */
export async function packBytes (repo: string): Promise<number> {
  const packs = await packFiles(packsDir(repo)).catch(() => [])
  return packs.reduce((sum, p) => sum + p.bytes, 0)
}

/**
 * Keeps a gateway's repo under `maxBytes`: when its packs are larger, drops
 * the NARs of followed caches that were asked for least recently (and those
 * never asked for since the start), keeping the own cache, the pins and every
 * followed cache's index (as far as the cache layout goes: anything else a
 * root links is dropped), then compacts `local`, the store `blocks` keeps
 * fetched blocks in. Fetched blocks are served but not kept while it runs.
 */
export async function evictToFit (repo: string, local: CompactableBlocks, blocks: NetworkBlocks, options: EvictOptions): Promise<EvictResult | undefined> {
  const before = await packBytes(repo)
  if (before <= options.maxBytes) return undefined
  return await withRepoLock(repo, async () => {
    const resume = await blocks.pauseCaching()
    try {
      await local.refresh()
      const ignore = (): void => {}
      const own: CID[] = []
      const indexes: CID[] = []
      for (const name of [...(options.own === undefined ? [] : [options.own]), ...options.follow]) {
        const root = (await loadRecord(repo, name))?.root
        if (root !== undefined) (name === options.own ? own : indexes).push(root)
      }
      const marks = await markReachable(local, [...await readPins(repo), ...await remotePinCids(repo)], ignore)
      await markReachable(local, own, ignore, { marks, layout: 'cache' })
      await markReachable(local, indexes, ignore, { marks, layout: 'index' })
      // The indexes count: the NARs share what they leave of the limit.
      let kept = (await local.compact(marks, { dryRun: true })).kept.bytes
      const recent = blocks.recentlyUsed()
      let keptNars = 0
      for (const { root, size } of recent) {
        if (kept + size > options.maxBytes * FILL_AFTER_EVICTION) break
        await markReachable(local, [root], ignore, { marks })
        kept += size
        keptNars++
      }
      await local.compact(marks)
      return { bytes: { before, after: await packBytes(repo) }, nars: { kept: keptNars, dropped: recent.length - keptNars } }
    } finally {
      resume()
    }
  })
}

/** How often the repo's size is compared with --max-cache. */
const EVICT_CHECK_MS = 30_000

/** Runs `evictToFit` every 30 s (one run at a time), saying what it dropped and when the limit cannot be kept. */
export function startEvictor (repo: string, local: CompactableBlocks, blocks: NetworkBlocks, options: EvictOptions, log: { info: (m: string) => void, warn: (m: string) => void }): { stop: () => void } {
  const { maxBytes } = options
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    evictToFit(repo, local, blocks, options)
      .then(r => {
        if (r === undefined) return
        log.info(`--max-cache: ${formatBytes(r.bytes.before)} → ${formatBytes(r.bytes.after)}; kept the ${r.nars.kept} most recently used NARs, dropped ${r.nars.dropped}`)
        if (r.bytes.after > maxBytes) log.warn(`--max-cache: the own cache, pins and followed indexes alone take ${formatBytes(r.bytes.after)}, more than --max-cache ${formatBytes(maxBytes)}; raise it, or lower --max-index`)
      }, (err: Error) => log.warn(`--max-cache: eviction failed: ${err.message}`))
      .finally(() => { running = false })
  }, EVICT_CHECK_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
