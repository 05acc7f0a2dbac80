import type { UnixFS as UnixFSApi } from '@helia/unixfs'
import { CID } from 'multiformats/cid'
import { parseNarInfo, type NarInfo } from '../nix/narinfo.js'
import { NAR_DIR } from './directory.js'

/** What the gateway needs to serve one NAR: its expected hash and size. */
export interface NarEntry {
  cid: CID
  narHash: string
  narSize: number
  /** set once a full read matched NarHash: the DAG is immutable, so later reads need only block checks */
  verified?: boolean
}

/** An in-memory view of one cache root: narinfo text by store hash, NARs by CID. */
export interface CacheIndex {
  root: CID
  narInfos: Map<string, { text: string, info: NarInfo }>
  nars: Map<string, NarEntry>
  cacheInfo: string
}

const NARINFO_SUFFIX = '.narinfo'
const decoder = new TextDecoder()

async function readText (fs: UnixFSApi, cid: CID): Promise<string> {
  const parts: Uint8Array[] = []
  for await (const part of fs.cat(cid, { offline: true })) parts.push(part)
  return decoder.decode(Buffer.concat(parts))
}

/** The CID a narinfo URL `nar/<cid>.nar` names, or undefined when it names none. */
export function narCidOfUrl (url: string): CID | undefined {
  const m = /^nar\/([a-z0-9]+)\.nar$/i.exec(url)
  if (m === null) return undefined
  try { return CID.parse(m[1]!) } catch { return undefined }
}

/** Reads every narinfo of the cache under `root` into memory. */
export async function loadIndex (fs: UnixFSApi, root: CID): Promise<CacheIndex> {
  const index: CacheIndex = { root, narInfos: new Map(), nars: new Map(), cacheInfo: '' }
  for await (const entry of fs.ls(root, { offline: true })) {
    if (entry.name === 'nix-cache-info') {
      index.cacheInfo = await readText(fs, entry.cid)
    } else if (entry.name.endsWith(NARINFO_SUFFIX) && entry.name !== NAR_DIR) {
      const text = await readText(fs, entry.cid)
      const info = parseNarInfo(text)
      const nar = narCidOfUrl(info.url)
      if (nar === undefined) continue // not a NAR this cache serves by CID
      index.narInfos.set(entry.name.slice(0, -NARINFO_SUFFIX.length), { text, info })
      index.nars.set(nar.toString(), { cid: nar, narHash: info.narHash, narSize: info.narSize })
    }
  }
  return index
}
