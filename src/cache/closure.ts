import type { CID } from 'multiformats/cid'
import { STORE_DIR } from '../constants.js'
import { IntegrityError, NotInCacheError } from '../errors.js'
import { isStoreHash, parseStoreBaseName, parseStorePath } from '../nix/store-path.js'
import type { CacheIndex } from './index.js'

/** One store path of a closure, as the cache describes it. */
export interface ClosureEntry {
  storePath: string
  /** CID of its narinfo file */
  narInfo: CID
  /** root CID of its NAR */
  nar: CID
}

/** The hash part of a store path given as `/nix/store/<hash>-<name>`, `<hash>-<name>` or `<hash>`. */
export function storeHashOf (path: string): string {
  if (path.startsWith('/')) return parseStorePath(path).hash
  if (isStoreHash(path)) return path
  return parseStoreBaseName(path).hash
}

/**
 * The closure of `paths` as the cache under `index` knows it: each path and,
 * transitively, the References of its narinfo (not what the local Nix store
 * says). Throws NotInCacheError naming the first path the cache lacks.
 */
export async function cacheClosure (index: CacheIndex, paths: string[]): Promise<ClosureEntry[]> {
  const entries: ClosureEntry[] = []
  const seen = new Set<string>()
  const queue = paths.map(p => ({ hash: storeHashOf(p), label: p, referrer: undefined as string | undefined }))
  for (let i = 0; i < queue.length; i++) {
    const { hash, label, referrer } = queue[i]!
    if (seen.has(hash)) continue
    seen.add(hash)
    const entry = await index.narInfo(hash)
    if (entry === undefined) {
      const by = referrer === undefined ? '' : ` (referenced by ${referrer}: the cache's closure is incomplete)`
      throw new NotInCacheError(`${label} is not in the cache /ipfs/${index.root.toString()}${by}`)
    }
    const { info } = entry
    // The narinfo was found under this hash; one naming another path would make the export lie.
    if (parseStorePath(info.storePath).hash !== hash) throw new IntegrityError(`${hash}.narinfo in the cache describes ${info.storePath}`)
    entries.push({ storePath: info.storePath, narInfo: entry.cid, nar: entry.nar })
    for (const ref of info.references) {
      queue.push({ hash: parseStoreBaseName(ref).hash, label: `${STORE_DIR}/${ref}`, referrer: info.storePath })
    }
  }
  return entries
}
