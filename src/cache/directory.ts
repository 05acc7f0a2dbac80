import * as dagPb from '@ipld/dag-pb'
import type { UnixFS as UnixFSApi } from '@helia/unixfs'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { DAG_PB_CODE, cidOf, type BlockPutter } from '../ipfs/block.js'

/** Name of the binary-cache metadata file. */
export const CACHE_INFO_FILE = 'nix-cache-info'
/** Directory holding links to every NAR's DAG. */
export const NAR_DIR = 'nar'

/** The narinfo file name for a store path hash. */
export const narInfoFile = (hash: string): string => `${hash}.narinfo`
/** The name (under `nar/`) and narinfo URL of a NAR by its CID. */
export const narFile = (cid: CID): string => `${cid.toString()}.nar`
export const narUrl = (cid: CID): string => `${NAR_DIR}/${narFile(cid)}`

/** One store path to add to the cache directory. */
export interface CacheEntry {
  hash: string
  narInfo: string
  nar: CID
}

/** Stores an empty UnixFS directory and returns its CID. */
export async function emptyDirectory (blocks: BlockPutter): Promise<CID> {
  const bytes = dagPb.encode(dagPb.prepare({ Data: new UnixFS({ type: 'directory' }).marshal(), Links: [] }))
  const cid = cidOf(DAG_PB_CODE, bytes)
  await blocks.put(cid, bytes)
  return cid
}

/** A new cache root: `nix-cache-info` and an empty `nar/`. */
export async function createCacheRoot (fs: UnixFSApi, blocks: BlockPutter, cacheInfo: string): Promise<CID> {
  const empty = await emptyDirectory(blocks)
  const info = await fs.addBytes(new TextEncoder().encode(cacheInfo), { rawLeaves: true, cidVersion: 1 })
  const withInfo = await fs.cp(info, empty, CACHE_INFO_FILE)
  return await fs.cp(empty, withInfo, NAR_DIR)
}

/** True when the cache under `root` has a narinfo for `hash`. */
export async function hasNarInfo (fs: UnixFSApi, root: CID, hash: string): Promise<boolean> {
  try {
    await fs.stat(root, { path: narInfoFile(hash), offline: true })
    return true
  } catch (err) {
    if ((err as Error).name === 'DoesNotExistError' || (err as Error).name === 'NotFoundError') return false
    throw err
  }
}

/**
 * Adds entries to the cache under `root` and returns the new root. NARs are
 * linked first, narinfos after, so no narinfo is reachable without its NAR.
 */
export async function addEntries (fs: UnixFSApi, root: CID, entries: CacheEntry[]): Promise<CID> {
  if (entries.length === 0) return root
  const narDir = (await fs.stat(root, { path: NAR_DIR, offline: true })).cid
  let nars = narDir
  for (const e of entries) nars = await fs.cp(e.nar, nars, narFile(e.nar), { force: true, offline: true })
  let next = await fs.cp(nars, root, NAR_DIR, { force: true, offline: true })
  for (const e of entries) {
    const text = await fs.addBytes(new TextEncoder().encode(e.narInfo), { rawLeaves: true, cidVersion: 1 })
    next = await fs.cp(text, next, narInfoFile(e.hash), { force: true, offline: true })
  }
  return next
}
