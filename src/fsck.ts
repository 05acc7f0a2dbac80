import { createHash } from 'node:crypto'

import type { CID } from 'multiformats/cid'
import { NAR_SUFFIX } from './cache/directory.js'
import { listNarInfos, openIndex, type NarInfoEntry } from './cache/index.js'
import type { CidRecipe } from './cache/publish.js'
import { RECIPES } from './cache/recipes.js'
import { loadRecord } from './cache/records.js'
import { getVerified, type BlockGetter } from './ipfs/block.js'
import { walkDag } from './ipfs/dag.js'
import type { Location } from './ipfs/digest-index.js'
import { importFile, readFile as readDagFile } from './ipfs/file-dag.js'
import type { CacheRecord } from './ipfs/ipns.js'
import { packName } from './ipfs/pack-format.js'
import type { PackStore } from './ipfs/pack-store.js'
import { parseCacheInfo } from './nix/cache-info.js'
import { NarHasher } from './nix/hash.js'
import { checkedNar } from './nix/nar/check.js'
import { encodeNar } from './nix/nar/encode.js'
import { walkPath } from './nix/nar/walk.js'
import { parseNarInfo } from './nix/narinfo.js'
import { parseStorePath } from './nix/store-path.js'
import { validPaths } from './nix/store.js'
import { recordNames } from './repo-layout.js'
import type { HttpBinaryCache } from './upstream/http-cache.js'
import { importUpstreamNar } from './upstream/import.js'

/** One thing found damaged. */
export interface Damage {
  kind: 'block' | 'nar' | 'cache'
  /** the block's CID, the NAR's store path, or the cache's IPNS name */
  what: string
  reason: string
}

export interface FsckOptions {
  /** the repo's own cache: its NARs must be held whole (a followed cache's may be held in part) */
  own?: string
  /** drop the records of damaged blocks and fetch those blocks again through `fetch` */
  repair?: boolean
  /** where blocks the repair dropped, or a NAR lacks, are fetched from (peers); none: they are only dropped */
  fetch?: BlockGetter
  /** HTTP binary caches a NAR still damaged after that is imported again from (checked against the cache's own NarHash, so their keys need no trust) */
  upstreams?: HttpBinaryCache[]
  /** called for each damage as it is found */
  onDamage?: (d: Damage) => void
}

export interface FsckResult {
  blocks: { checked: number, bytes: number, damaged: number }
  /** `fromStore`, `fromUpstream`: damaged NARs the repair took back from the local Nix store, imported again from an upstream */
  nars: { checked: number, damaged: number, notHeld: number, fromStore: number, fromUpstream: number }
  /** records of damaged blocks dropped (with repair) */
  repaired: { dropped: number }
  /** what is still damaged: after a repair, what it could not mend */
  damage: Damage[]
}

/** The records stored in the repo (own and followed caches), by IPNS name. */
async function storedRecords (repo: string): Promise<CacheRecord[]> {
  const out: CacheRecord[] = []
  for (const name of await recordNames(repo)) {
    const record = await loadRecord(repo, name)
    if (record !== undefined) out.push(record)
  }
  return out
}

/** What is wrong with the block `cid` recorded at `loc`, if anything. */
async function blockProblem (blocks: PackStore, cid: CID, loc: Location): Promise<string | undefined> {
  let bytes: Uint8Array
  try {
    bytes = await blocks.readLocation(loc)
  } catch (err) {
    return `${packName(loc.pack)} cannot be read: ${(err as Error).message}`
  }
  if (bytes.length < loc.length) return `its record points past the end of ${packName(loc.pack)} (bytes ${loc.offset}–${loc.offset + loc.length}, the pack holds ${loc.offset + bytes.length})`
  if (Buffer.compare(createHash('sha256').update(bytes).digest(), cid.multihash.digest) !== 0) return `its bytes in ${packName(loc.pack)} at ${loc.offset} do not hash to its CID`
  return undefined
}

/** Checks every index record's bytes against its pack and its CID; returns the damaged blocks. */
async function checkBlocks (blocks: PackStore, result: FsckResult, found: (d: Damage) => void): Promise<CID[]> {
  const bad: CID[] = []
  for await (const { cid, loc } of blocks.records()) {
    result.blocks.checked++
    result.blocks.bytes += loc.length
    const reason = await blockProblem(blocks, cid, loc)
    if (reason === undefined) continue
    result.blocks.damaged++
    bad.push(cid)
    found({ kind: 'block', what: cid.toString(), reason })
  }
  return bad
}

/** Reads a NAR whole and compares it with what its narinfo says. */
async function narProblem (blocks: BlockGetter, nar: CID, narHash: string, narSize: number): Promise<string | undefined> {
  const hasher = new NarHasher()
  try {
    for await (const chunk of readDagFile(blocks, nar)) hasher.update(chunk)
  } catch (err) {
    return (err as Error).message
  }
  const hash = hasher.digest()
  if (hash !== narHash || hasher.size !== narSize) return `its bytes (${hash}, ${hasher.size} bytes) are not what its narinfo says (${narHash}, ${narSize} bytes)`
  return undefined
}

/** Checks every NAR the stored records reach (that the repo holds) against its NarHash. */
async function checkNars (repo: string, blocks: PackStore, options: FsckOptions, result: FsckResult, found: (d: Damage) => void): Promise<void> {
  const getter = options.repair === true && options.fetch !== undefined ? options.fetch : blocks
  for (const record of await storedRecords(repo)) {
    const own = record.name === options.own
    try {
      if (getter !== blocks) {
        // Index blocks the repair dropped come back first, so the cache can be listed.
        for await (const _ of walkDag(getter, record.root, { skipLink: name => name?.endsWith(NAR_SUFFIX) === true, onMissing: () => {} })) { /* fetched */ }
      }
      const index = await openIndex(blocks, record.root)
      for await (const { hash } of listNarInfos(blocks, record.root)) {
        const entry = await index.narInfo(hash)
        if (entry === undefined) continue
        // A followed cache's NARs are fetched when asked for: one not held at all is not damage.
        if (!own && !blocks.has(entry.nar)) { result.nars.notHeld++; continue }
        result.nars.checked++
        const problem = await narProblem(getter, entry.nar, entry.info.narHash, entry.info.narSize)
        if (problem === undefined) continue
        if (options.repair === true && await fromLocalStore(blocks, entry, recipeNames(index.cacheInfo))) {
          result.nars.fromStore++
          continue
        }
        if (options.repair === true && await fromUpstream(blocks, entry, recipeNames(index.cacheInfo), options.upstreams ?? [])) {
          result.nars.fromUpstream++
          continue
        }
        result.nars.damaged++
        found({ kind: 'nar', what: entry.info.storePath, reason: `NAR ${entry.nar.toString()} of /ipns/${record.name}: ${problem}` })
      }
    } catch (err) {
      found({ kind: 'cache', what: record.name, reason: `the cache /ipns/${record.name} (root ${record.root.toString()}) cannot be listed: ${(err as Error).message}` })
    }
  }
}

/** The CID recipes to rebuild a NAR's DAG with: the cache's own first (its nix-cache-info says which), then the others. */
function recipeNames (cacheInfo: string): CidRecipe[] {
  const own = parseCacheInfo(cacheInfo).extra['X-CID-Recipe']
  const all = Object.values(RECIPES)
  return [...all.filter(r => r.name === own), ...all.filter(r => r.name !== own)]
}

/**
 * Takes the NAR of `entry` back from the local Nix store, where the path
 * usually still is: dumped, checked against the cache's own narinfo
 * (structure, NarHash, NarSize) as it is imported, chunked as the cache did.
 * True once its DAG has the CID the narinfo names and reads back whole.
 */
async function fromLocalStore (blocks: PackStore, entry: NarInfoEntry, recipes: CidRecipe[]): Promise<boolean> {
  const { info } = entry
  try {
    if ((await validPaths([info.storePath])).length === 0) return false
    for (const recipe of recipes) {
      const dumped = checkedNar(encodeNar(walkPath(info.storePath)), info, `${info.storePath} in the local Nix store`)
      const { cid } = await importFile(blocks, dumped, recipe.chunker)
      if (cid.equals(entry.nar)) return await narProblem(blocks, entry.nar, info.narHash, info.narSize) === undefined
    }
  } catch { /* not there as the narinfo says (or no Nix): the upstreams may help */ }
  return false
}

/**
 * Imports the NAR of `entry` again from the first upstream that has a NAR
 * with the same NarHash, chunked as the cache did: true once its DAG has the
 * CID the narinfo names and reads back whole.
 */
async function fromUpstream (blocks: PackStore, entry: NarInfoEntry, recipes: CidRecipe[], upstreams: HttpBinaryCache[]): Promise<boolean> {
  const { info } = entry
  for (const upstream of upstreams) {
    try {
      const text = await upstream.narInfo(parseStorePath(info.storePath).hash)
      const theirs = text === undefined ? undefined : parseNarInfo(text)
      if (theirs?.narHash !== info.narHash) continue
      for (const recipe of recipes) {
        // The NAR is checked against the cache's own narinfo as it comes in.
        const { cid } = await importUpstreamNar(blocks, { ...theirs, narSize: info.narSize }, upstream, recipe.chunker)
        if (cid.equals(entry.nar)) return await narProblem(blocks, entry.nar, info.narHash, info.narSize) === undefined
      }
    } catch { /* this upstream could not help; the next may */ }
  }
  return false
}

/**
 * Checks the repo: every index record against its pack bytes and its CID,
 * then every NAR the stored records reach against its NarHash. With
 * `repair`, the records of damaged blocks are dropped and the blocks fetched
 * again (from `fetch`), before the NARs are checked; a NAR still damaged is
 * taken back from the local Nix store if the path is valid there, else
 * imported again from `upstreams`. The caller holds the repo lock when
 * repairing.
 */
export async function fsck (repo: string, blocks: PackStore, options: FsckOptions = {}): Promise<FsckResult> {
  const result: FsckResult = { blocks: { checked: 0, bytes: 0, damaged: 0 }, nars: { checked: 0, damaged: 0, notHeld: 0, fromStore: 0, fromUpstream: 0 }, repaired: { dropped: 0 }, damage: [] }
  const found = (d: Damage): void => { result.damage.push(d); options.onDamage?.(d) }
  await blocks.refresh()
  const bad = await checkBlocks(blocks, result, found)
  if (options.repair === true && bad.length > 0) {
    // The damaged blocks are mended by dropping them; what a cache still lacks afterwards, the NAR check reports.
    result.damage = []
    for (const cid of bad) await blocks.delete(cid)
    result.repaired.dropped = bad.length
    for (const cid of options.fetch === undefined ? [] : bad) {
      await getVerified(options.fetch!, cid).catch(() => { /* no peer has it: if a cache needs it, its NAR or index is reported below */ })
    }
    await blocks.sync()
  }
  await checkNars(repo, blocks, options, result, found)
  if (options.repair === true) await blocks.sync()
  return result
}
