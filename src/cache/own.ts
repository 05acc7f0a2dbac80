import type { CID } from 'multiformats/cid'
import { DEFAULT_PRIORITY, STORE_DIR } from '../constants.js'
import { RepoError } from '../errors.js'
import { DirNodeCache } from '../ipfs/hamt.js'
import { ipnsNameOf, type CacheRecord } from '../ipfs/ipns.js'
import type { CacheBlocks } from '../ipfs/blocks.js'
import { formatCacheInfo } from '../nix/cache-info.js'
import type { SecretKey } from '../nix/signing.js'
import { withRepoLock } from '../repo.js'
import { commitRoot, nextSequence, type CommitOptions } from './commit.js'
import { createCacheRoot } from './directory.js'
import { loadRecord } from './records.js'

/** The repo's own cache as one update sees it, under the repo lock. */
export interface OwnCache {
  /** its IPNS name */
  readonly name: string
  /** its newest record: the one loaded, or the last this update committed */
  readonly record: CacheRecord | undefined
  /** directory nodes read and written during this update */
  readonly dirs: DirNodeCache
  /**
   * The root to build on: the record's, or a new empty cache. Throws first
   * when no new record could be signed (a repo behind its ledger), so that
   * no work is wasted.
   */
  root: () => Promise<CID>
  /** Makes every block written since the update began durable, then signs and saves the record that makes `root` current. */
  commit: (root: CID) => Promise<CacheRecord>
}

export interface OwnCacheOptions extends CommitOptions {
  /** the CID recipe a new cache's nix-cache-info names (none: the update only signs the record's root again) */
  recipe?: string
  /**
   * Blocks written before the update that its roots reach: since this write
   * epoch, or with 'unreported' whenever a failed write was not yet reported
   * (default: none, the epoch is taken when the update begins)
   */
  writtenSince?: number | 'unreported'
  /** called when another process holds the repo lock and the update waits for it */
  onWait?: (pid: number) => void
}

/**
 * Updates the own cache of `key`: takes the repo lock, loads the cache's
 * record and lets `change` add to it and commit new roots (blocks synced,
 * then the record signed and saved). Without `blocks` and `recipe`, only the
 * record's root can be signed again.
 */
export async function updateOwnCache<T> (repo: string, blocks: CacheBlocks | undefined, key: SecretKey, options: OwnCacheOptions, change: (own: OwnCache) => Promise<T>): Promise<T> {
  return await withRepoLock(repo, async () => {
    // The store may have been compacted (gc) while this process waited for the lock: what it holds
    // must be known afresh, or a block gc dropped would pass for present and be left out.
    await blocks?.refresh()
    const epoch = options.writtenSince === 'unreported' ? undefined : options.writtenSince ?? blocks?.writeEpoch // a block lost to a failed write since then must stop the record
    const name = ipnsNameOf(key.publicKey)
    let record = await loadRecord(repo, name)
    return await change({
      name,
      get record () { return record },
      dirs: new DirNodeCache(),
      root: async () => {
        if (record === undefined && (blocks === undefined || options.recipe === undefined)) throw new RepoError(`the repo ${repo} has no record for ${name} yet; run \`nixipfs publish\` first`)
        await nextSequence(key, record, options.continueSequence)
        return record?.root ?? await newCacheRoot(blocks!, options.recipe!)
      },
      commit: async (root) => {
        await blocks?.sync(epoch) // every block the new root reaches is durable before the record moves
        record = await commitRoot(repo, key, root, record, options)
        return record
      }
    })
  }, options.onWait)
}

/** An empty cache whose nix-cache-info names the CID recipe. */
async function newCacheRoot (blocks: CacheBlocks, recipe: string): Promise<CID> {
  return await createCacheRoot(blocks, formatCacheInfo({ storeDir: STORE_DIR, wantMassQuery: true, priority: DEFAULT_PRIORITY, extra: { 'X-CID-Recipe': recipe } }))
}
