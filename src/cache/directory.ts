import type { CID } from 'multiformats/cid'
import { IntegrityError } from '../errors.js'
import { RAW_CODE, cidOf, type BlockGetter, type BlockPutter } from '../ipfs/block.js'
import { addLinks, emptyDirectory } from '../ipfs/dir-update.js'
import { lookupEntry, type DirNodeCache } from '../ipfs/hamt.js'

/** Name of the binary-cache metadata file. */
export const CACHE_INFO_FILE = 'nix-cache-info'
/** Directory of signed dispute statements (`<hash>.json`). */
export const DISPUTES_DIR = 'disputes'
/** Directory of CA derivation realisations (`<id>.doi`), as in Nix's binary caches. */
export const REALISATIONS_DIR = 'realisations'
/** Directory of build logs (`<drv base name>`, bzip2 as Nix stores them), as in Nix's binary caches. */
export const LOG_DIR = 'log'
/** Directory holding links to every NAR's DAG. */
export const NAR_DIR = 'nar'

/** The narinfo file name for a store path hash. */
export const narInfoFile = (hash: string): string => `${hash}.narinfo`
/** Ending of the names under nar/. */
export const NAR_SUFFIX = '.nar'
/** The name (under `nar/`) and narinfo URL of a NAR by its CID. */
export const narFile = (cid: CID): string => `${cid.toString()}${NAR_SUFFIX}`
export const narUrl = (cid: CID): string => `${NAR_DIR}/${narFile(cid)}`

/** One store path to add to the cache directory. */
export interface CacheEntry {
  hash: string
  narInfo: string
  nar: CID
  /** cumulative size of the NAR's DAG (the link's Tsize) */
  narTsize: number
}

type Blocks = BlockGetter & BlockPutter

/** Stores a small file as one raw block; returns it as a link. */
async function putText (blocks: Blocks, name: string, text: string): Promise<{ name: string, cid: CID, tsize: number }> {
  const bytes = new TextEncoder().encode(text)
  const cid = cidOf(RAW_CODE, bytes)
  await blocks.put(cid, bytes)
  return { name, cid, tsize: bytes.length }
}

/** A new cache root: `nix-cache-info` and an empty `nar/`. */
export async function createCacheRoot (blocks: Blocks, cacheInfo: string): Promise<CID> {
  const empty = await emptyDirectory(blocks)
  const root = await addLinks(blocks, empty.cid, [await putText(blocks, CACHE_INFO_FILE, cacheInfo), { name: NAR_DIR, ...empty }])
  return root.cid
}

/** True when the cache under `root` has a narinfo for `hash`. */
export async function hasNarInfo (blocks: BlockGetter, root: CID, hash: string, cache: DirNodeCache): Promise<boolean> {
  return await lookupEntry(blocks, root, narInfoFile(hash), cache) !== undefined
}

/**
 * Adds entries to the cache under `root` and returns the new root: one batch,
 * so every directory node on the way to a new entry is written once. The
 * NARs are linked in the same new root as their narinfos, which becomes
 * visible only when a record names it.
 */
export async function addEntries (blocks: Blocks, root: CID, entries: CacheEntry[], cache: DirNodeCache): Promise<CID> {
  if (entries.length === 0) return root
  const narDir = await lookupEntry(blocks, root, NAR_DIR, cache)
  if (narDir === undefined) throw new IntegrityError(`cache root ${root.toString()} has no ${NAR_DIR}/ directory; it was not made by nixipfs publish`)
  const nars = await addLinks(blocks, narDir, entries.map(e => ({ name: narFile(e.nar), cid: e.nar, tsize: e.narTsize })))
  const narInfos = await Promise.all(entries.map(async e => await putText(blocks, narInfoFile(e.hash), e.narInfo)))
  return (await addLinks(blocks, root, [...narInfos, { name: NAR_DIR, cid: nars.cid, tsize: nars.tsize }])).cid
}

/** Adds (or replaces) small files under the subdirectory `dir` (created if missing) of the cache under `root`; returns the new root. */
export async function addFiles (blocks: Blocks, root: CID, dir: string, files: Array<{ name: string, text: string }>, cache: DirNodeCache): Promise<CID> {
  return await addLinksUnder(blocks, root, dir, await Promise.all(files.map(async f => await putText(blocks, f.name, f.text))), cache)
}

/** Links DAGs already stored (`log/` files) under the subdirectory `dir` (created if missing) of the cache under `root`; returns the new root. */
export async function addLinksUnder (blocks: Blocks, root: CID, dir: string, links: Array<{ name: string, cid: CID, tsize: number }>, cache: DirNodeCache): Promise<CID> {
  if (links.length === 0) return root
  const current = await lookupEntry(blocks, root, dir, cache) ?? (await emptyDirectory(blocks)).cid
  const updated = await addLinks(blocks, current, links)
  return (await addLinks(blocks, root, [{ name: dir, cid: updated.cid, tsize: updated.tsize }])).cid
}
