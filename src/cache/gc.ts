import type { CID } from 'multiformats/cid'
import { RAW_CODE } from '../ipfs/block.js'
import type { BlockMarks } from '../ipfs/block-marks.js'
import { walkDag } from '../ipfs/dag.js'
import { compactPrecompressed } from '../ipfs/precompressed.js'
import type { CompactResult } from '../ipfs/pack-compact.js'
import type { CompactableBlocks } from '../ipfs/blocks.js'
import { RepoError } from '../errors.js'
import { runningFetcher, withRepoLock } from '../repo.js'
import { recordNames } from '../repo-layout.js'
import { CacheLayout } from './layout.js'
import { readPins } from './pins.js'
import { remotePinCids } from './remote-pins.js'
import { loadRecord } from './records.js'

export interface GcOptions {
  /** count what would be dropped; change nothing */
  dryRun?: boolean
  /** called when another process holds the repo lock and gc waits for it */
  onWait?: (pid: number) => void
  /** called for each block a root reaches that the repo does not hold (or holds corrupt) */
  onMissing?: (cid: CID, err: Error) => void
}

export interface GcResult extends CompactResult {
  /** roots walked: one per record in `<repo>/records`, plus the pins */
  roots: { records: number, pins: number }
  /** blocks reached but not held (a followed cache stored in part) */
  missing: number
  /** memory of the mark set */
  markBytes: number
  /** memory of the store's block table, before and after */
  tableBytes: { before: number, after: number }
  /** the frames compressed ahead of the blocks dropped, dropped too (none in a dry run, or without frames) */
  frames?: CompactResult
}

/** Every root gc keeps: the root of each stored record (own and followed caches), each pin and each Pinning Service API request. */
async function gcRoots (repo: string): Promise<{ records: CID[], pins: CID[] }> {
  const records: CID[] = []
  for (const name of await recordNames(repo)) {
    // An unreadable record throws: its blocks must not be collected for want of knowing its root.
    const record = await loadRecord(repo, name)
    if (record !== undefined) records.push(record.root)
  }
  return { records, pins: [...await readPins(repo), ...await remotePinCids(repo)] }
}

/**
 * Marks every block reachable from `roots` that `blocks` holds (into `marks`,
 * or a new mark set); missing blocks leave their subtree out. With `layout`,
 * each root is a cache root and only what the cache layout names is marked
 * (anything else it links is dropped): `cache` with its NARs, `index` without.
 */
export async function markReachable (blocks: CompactableBlocks, roots: CID[], onMissing: (cid: CID, err: Error) => void, options: { marks?: BlockMarks, layout?: 'cache' | 'index' } = {}): Promise<BlockMarks> {
  const marks = options.marks ?? blocks.marks()
  // Blocks reached but not held have no slot to mark; they are few, and each is tried once.
  const absent = new Set<string>()
  const visited = {
    has: (cid: CID) => marks.has(cid) || (absent.size > 0 && absent.has(cid.toString())),
    add: (cid: CID) => { if (!marks.add(cid)) absent.add(cid.toString()) }
  }
  for (const root of roots) {
    const layout = options.layout === undefined ? undefined : new CacheLayout(root, options.layout === 'cache')
    // A raw leaf has no links: marking it is enough, so NAR data is never read.
    const skipLink = (name: string | undefined, parent: CID, cid: CID): boolean =>
      layout?.skipLink(name, parent, cid) === true || (cid.code === RAW_CODE && marks.add(cid))
    for await (const _ of walkDag(blocks, root, { visited, skipLink, onMissing })) { /* marked by `visited` */ }
  }
  return marks
}

/**
 * Drops every block that no root reaches — the roots of all records in the
 * repo (its own cache and the caches it follows, as far as the cache layout
 * goes) and the pinned CIDs — and
 * compacts the block store, under the repo lock so that it never races a
 * publish. Blocks missing from a partly stored DAG are tolerated.
 */
export async function collectGarbage (repo: string, blocks: CompactableBlocks, options: GcOptions = {}): Promise<GcResult> {
  const collect = async (): Promise<GcResult> => {
    const fetcher = await runningFetcher(repo)
    if (fetcher !== undefined && options.dryRun !== true) {
      throw new RepoError(`a gateway or mirror (pid ${fetcher}) is fetching blocks into ${repo}; blocks it writes during a gc would be lost. Stop it, run gc, start it again`)
    }
    await blocks.refresh()
    const tableBefore = blocks.indexBytes
    const { records, pins } = await gcRoots(repo)
    let missing = 0
    const onMissing = (cid: CID, err: Error): void => { missing++; options.onMissing?.(cid, err) }
    // Of a cache, what its layout names: whatever else a (hostile) root links is not kept.
    const marks = await markReachable(blocks, records, onMissing, { layout: 'cache' })
    await markReachable(blocks, pins, onMissing, { marks })
    const result = await blocks.compact(marks, { dryRun: options.dryRun })
    const frames = options.dryRun === true ? undefined : await compactPrecompressed(repo, cid => blocks.has(cid))
    return {
      ...result,
      roots: { records: records.length, pins: pins.length },
      missing,
      markBytes: marks.bytes,
      tableBytes: { before: tableBefore, after: blocks.indexBytes },
      frames
    }
  }
  return await withRepoLock(repo, collect, options.onWait).catch(async (err: NodeJS.ErrnoException) => {
    // On a read-only file system no process can change the repo: a dry run needs no lock there.
    if (err.code === 'EROFS' && options.dryRun === true) return await collect()
    throw err
  })
}
