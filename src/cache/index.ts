import { unixfs } from '@helia/unixfs'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { InconsistentCacheError } from '../errors.js'
import { DAG_PB_CODE, RAW_CODE, getVerified, type BlockGetter } from '../ipfs/block.js'
import { readSmallFile } from '../ipfs/file-dag.js'
import { DirNodeCache, lookupEntry, preloadDirectory } from '../ipfs/hamt.js'
import type { UnixfsBlocks } from '../ipfs/blocks.js'
import { MAX_NARINFO_BYTES, parseNarInfo, type NarInfo } from '../nix/narinfo.js'
import { Lru } from '../lru.js'
import { CACHE_INFO_FILE, LOG_DIR, NAR_DIR, REALISATIONS_DIR, narFile, narInfoFile } from './directory.js'

/** What the gateway needs to serve one NAR. */
export interface NarEntry {
  cid: CID
  narSize: number
  /** known once a narinfo naming this NAR was read; without it only blocks are checked */
  narHash?: string
  /** the store path of the narinfo that gave `narHash` */
  narHashFrom?: string
  /** set once a full read matched NarHash and the NAR format: the DAG is immutable, so later reads need only block checks */
  verified?: boolean
}

/** A narinfo as served: its exact text and what it says. */
export interface NarInfoEntry {
  text: string
  info: NarInfo
  /** the narinfo file's CID */
  cid: CID
  /** the NAR's root CID, from the narinfo's URL */
  nar: CID
}

/** A build log of the cache: the file DAG of its bzip2 bytes. */
export interface LogEntry {
  cid: CID
  /** bytes of the bzip2 file */
  size: number
}

/**
 * A view of one cache root that answers lookups from the local block store,
 * reading only the blocks on the way to an entry (≤ 4 for a million entries,
 * fewer as directory nodes are cached) and never the whole directory.
 */
export interface CacheIndex {
  root: CID
  cacheInfo: string
  narInfo: (hash: string) => Promise<NarInfoEntry | undefined>
  nar: (cid: string) => Promise<NarEntry | undefined>
  /** the text of `realisations/<id>.doi` (a CA derivation output), if the cache has it */
  realisation: (id: string) => Promise<string | undefined>
  /** the build log `log/<drv>` of a derivation (its store path base name), if the cache has it */
  log: (drv: string) => Promise<LogEntry | undefined>
}

/** What a served cache answers: a cache root's index, or several answering as one. */
export type ServedIndex = Omit<CacheIndex, 'root'>

/** Narinfos (and NARs) kept in memory after a lookup. */
const ENTRY_CACHE = 2_000

const decoder = new TextDecoder()

/** A small text file of the cache (narinfo, nix-cache-info, realisation): a hostile cache's huge one is refused, not held in memory. */
async function readText (blocks: BlockGetter, cid: CID): Promise<string> {
  return decoder.decode(await readSmallFile(blocks, cid, MAX_NARINFO_BYTES, 'text file'))
}

/** The CID a narinfo URL `nar/<cid>.nar` names, or undefined when it names none. */
export function narCidOfUrl (url: string): CID | undefined {
  const m = /^nar\/([a-z0-9]+)\.nar$/i.exec(url)
  if (m === null) return undefined
  try { return CID.parse(m[1]!) } catch { return undefined }
}

/** Size of the file whose DAG root is `cid`, from its root block alone. */
async function fileSize (blocks: BlockGetter, cid: CID): Promise<number> {
  const bytes = await getVerified(blocks, cid)
  if (cid.code === RAW_CODE) return bytes.length
  if (cid.code !== DAG_PB_CODE) return 0
  const node = dagPb.decode(bytes)
  return node.Data === undefined ? 0 : Number(UnixFS.unmarshal(node.Data).fileSize())
}

/** Opens the cache under `root` for lookups. */
export async function openIndex (blocks: BlockGetter, root: CID): Promise<CacheIndex> {
  const dirs = new DirNodeCache()
  const narInfos = new Lru<NarInfoEntry | null>(ENTRY_CACHE)
  const nars = new Lru<NarEntry | null>(ENTRY_CACHE)
  await preloadDirectory(blocks, root, dirs)
  const infoCid = await lookupEntry(blocks, root, CACHE_INFO_FILE, dirs)
  const cacheInfo = infoCid === undefined ? '' : await readText(blocks, infoCid)
  let narDir: Promise<CID | undefined> | undefined
  let realisationsDir: Promise<CID | undefined> | undefined
  let logDir: Promise<CID | undefined> | undefined

  return {
    root,
    cacheInfo,
    narInfo: async (hash) => {
      const hit = narInfos.get(hash)
      if (hit !== undefined) return hit ?? undefined
      const cid = await lookupEntry(blocks, root, narInfoFile(hash), dirs)
      let entry: NarInfoEntry | null = null
      if (cid !== undefined) {
        const text = await readText(blocks, cid)
        const info = parseNarInfo(text)
        const nar = narCidOfUrl(info.url)
        if (nar !== undefined) {
          entry = { text, info, cid, nar }
          // The first narinfo naming a NAR gives the NarHash its first full read is checked against (also when the NAR was asked for first);
          // a NAR's bytes have one hash, so a narinfo claiming another is refused.
          const known = nars.get(nar.toString())
          if (known == null) nars.set(nar.toString(), { cid: nar, narSize: info.narSize, narHash: info.narHash, narHashFrom: info.storePath })
          else if (known.narHash === undefined) Object.assign(known, { narHash: info.narHash, narHashFrom: info.storePath })
          else if (known.narHash !== info.narHash) {
            throw new InconsistentCacheError(nar.toString(), info.storePath, info.narHash, { storePath: known.narHashFrom, narHash: known.narHash, verified: known.verified })
          }
        }
      }
      narInfos.set(hash, entry)
      return entry ?? undefined
    },
    nar: async (cidText) => {
      const hit = nars.get(cidText)
      if (hit !== undefined) return hit ?? undefined
      let cid: CID
      try { cid = CID.parse(cidText) } catch { return undefined }
      narDir ??= lookupEntry(blocks, root, NAR_DIR, dirs)
      const dir = await narDir
      const linked = dir === undefined ? undefined : await lookupEntry(blocks, dir, narFile(cid), dirs)
      const entry = linked === undefined || !linked.equals(cid) ? null : { cid, narSize: await fileSize(blocks, cid) }
      nars.set(cidText, entry)
      return entry ?? undefined
    },
    realisation: async (id) => {
      realisationsDir ??= lookupEntry(blocks, root, REALISATIONS_DIR, dirs)
      const dir = await realisationsDir
      const cid = dir === undefined ? undefined : await lookupEntry(blocks, dir, `${id}.doi`, dirs)
      return cid === undefined ? undefined : await readText(blocks, cid)
    },
    log: async (drv) => {
      logDir ??= lookupEntry(blocks, root, LOG_DIR, dirs)
      const dir = await logDir
      const cid = dir === undefined ? undefined : await lookupEntry(blocks, dir, drv, dirs)
      return cid === undefined ? undefined : { cid, size: await fileSize(blocks, cid) }
    }
  }
}

/** Streams the store path hashes and narinfo CIDs of the cache under `root` (fine for millions). */
export async function * listNarInfos (blocks: UnixfsBlocks, root: CID): AsyncGenerator<{ hash: string, cid: CID }> {
  for await (const entry of unixfs({ blockstore: blocks }).ls(root)) {
    if (entry.name.endsWith('.narinfo')) yield { hash: entry.name.slice(0, -'.narinfo'.length), cid: entry.cid }
  }
}
