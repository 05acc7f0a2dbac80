import * as dagPb from '@ipld/dag-pb'
import { murmur3128 } from '@multiformats/murmur3'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { bytesKey } from '../bytes.js'
import { IntegrityError } from '../errors.js'
import { DAG_PB_CODE, getVerified, type BlockGetter } from './block.js'

/** A decoded directory node: a flat directory's entries, or a HAMT shard's slots. */
interface DirNode {
  /** undefined for a flat directory */
  fanoutBits?: number
  /** flat: entry name → link number; shard: link name (hex slot + entry name, or the slot alone for a sub-shard) → link number */
  links: Map<string, number>
  /**
   * The links' CID bytes one after another, link i at `[ends[i - 1] ?? 0, ends[i])`. One buffer a node, not one a
   * link: the pinned levels of a million-entry index hold 65,000 links, and a buffer each cost ~25 MB of memory.
   */
  cids: Uint8Array
  ends: Uint32Array
}

/** The CID of link `name` of `node`, if it has one. */
function linkCid (node: DirNode, name: string): CID | undefined {
  const i = node.links.get(name)
  return i === undefined ? undefined : CID.decode(node.cids.subarray(node.ends[i - 1] ?? 0, node.ends[i]))
}

/** Top levels of a HAMT kept whole: the root and its 256 children serve every lookup. */
const PINNED_DEPTH = 1
const PINNED_MAX = 4096

/**
 * Decoded directory nodes by CID. The root and the level below it are kept
 * (up to PINNED_MAX nodes), deeper nodes in a small LRU: with plain LRU, the
 * deep nodes each lookup touches once would push out the shallow ones every
 * lookup needs.
 */
export class DirNodeCache {
  private readonly pinned = new Map<string, DirNode>()
  private readonly recent = new Map<string, DirNode>()
  constructor (private readonly max = 256) {}

  get (cid: CID): DirNode | undefined {
    const key = bytesKey(cid.bytes)
    const node = this.pinned.get(key) ?? this.recent.get(key)
    if (node !== undefined && this.recent.delete(key)) this.recent.set(key, node)
    return node
  }

  set (cid: CID, node: DirNode, depth: number): void {
    const key = bytesKey(cid.bytes)
    if (depth <= PINNED_DEPTH && this.pinned.size < PINNED_MAX) { this.pinned.set(key, node); return }
    this.recent.set(key, node)
    if (this.recent.size > this.max) this.recent.delete(this.recent.keys().next().value!)
  }
}

/** Reads and decodes a UnixFS directory node (flat or HAMT shard), checking that it is one. */
export async function readDirNode (blocks: BlockGetter, cid: CID): Promise<{ pb: dagPb.PBNode, unixfs: UnixFS }> {
  if (cid.code !== DAG_PB_CODE) throw new IntegrityError(`${cid.toString()} is not a UnixFS directory`)
  const pb = dagPb.decode(await getVerified(blocks, cid))
  const unixfs = pb.Data === undefined ? undefined : UnixFS.unmarshal(pb.Data)
  if (unixfs?.type !== 'hamt-sharded-directory' && unixfs?.type !== 'directory') throw new IntegrityError(`${cid.toString()} is not a UnixFS directory`)
  return { pb, unixfs }
}

async function dirNode (blocks: BlockGetter, cid: CID, cache: DirNodeCache, depth: number): Promise<DirNode> {
  const hit = cache.get(cid)
  if (hit !== undefined) return hit
  const { pb, unixfs } = await readDirNode(blocks, cid)
  let fanoutBits: number | undefined
  if (unixfs.type === 'hamt-sharded-directory') {
    const fanout = Number(unixfs.fanout ?? 0n)
    fanoutBits = Math.log2(fanout)
    if (!Number.isInteger(fanoutBits) || fanoutBits < 1 || fanoutBits > 16) throw new IntegrityError(`HAMT shard ${cid.toString()} has fanout ${fanout}`)
  }
  // CIDs are kept as bytes: a cached shard holds hundreds of links, and CID objects weigh several times more.
  const cids = new Uint8Array(pb.Links.reduce((n, l) => n + l.Hash.bytes.length, 0))
  const ends = new Uint32Array(pb.Links.length)
  let end = 0
  pb.Links.forEach((l, i) => { cids.set(l.Hash.bytes, end); end += l.Hash.bytes.length; ends[i] = end })
  const node: DirNode = { fanoutBits, links: new Map(pb.Links.map((l, i) => [l.Name ?? '', i])), cids, ends }
  cache.set(cid, node, depth)
  return node
}

/** Bits `[from, from + n)` of `hash`, most significant bit first. */
function bitsAt (hash: Uint8Array, from: number, n: number): number {
  let v = 0
  for (let i = from; i < from + n; i++) {
    const byte = hash[i >> 3]
    if (byte === undefined) throw new IntegrityError('HAMT is deeper than its hash is long')
    v = (v << 1) | ((byte >> (7 - (i & 7))) & 1)
  }
  return v
}

/** The UnixFS HAMT hash of a name: the first 64 bits of murmur3-x64-128, consumed from the first byte on. */
export async function hamtHash (name: string): Promise<Uint8Array> {
  return (await murmur3128.encode(new TextEncoder().encode(name))).subarray(0, 8)
}

/**
 * Finds `name` in a UnixFS directory, flat or HAMT-sharded, reading only the
 * blocks on its path (decoded nodes are kept in `cache`). Undefined when absent.
 */
export async function lookupEntry (blocks: BlockGetter, dir: CID, name: string, cache: DirNodeCache): Promise<CID | undefined> {
  let node = await dirNode(blocks, dir, cache, 0)
  let depth = 0
  if (node.fanoutBits === undefined) return linkCid(node, name)
  const hash = await hamtHash(name)
  for (let used = 0; ; used += node.fanoutBits) {
    const bits: number = node.fanoutBits
    const slot = bitsAt(hash, used, bits).toString(16).toUpperCase().padStart(((1 << bits) - 1).toString(16).length, '0')
    const entry = linkCid(node, slot + name)
    if (entry !== undefined) return entry
    const shard = linkCid(node, slot)
    if (shard === undefined) return undefined
    node = await dirNode(blocks, shard, cache, ++depth)
    if (node.fanoutBits === undefined) throw new IntegrityError(`HAMT slot ${slot} of ${dir.toString()} links to a flat directory`)
  }
}

/**
 * Reads and caches the nodes of a directory down to `PINNED_DEPTH` (for a
 * HAMT: the root and its sub-shards), so that the first lookups after it is
 * opened cost no more than later ones. Missing blocks are left for lookups
 * to meet.
 */
export async function preloadDirectory (blocks: BlockGetter, dir: CID, cache: DirNodeCache): Promise<void> {
  const root = await dirNode(blocks, dir, cache, 0)
  if (root.fanoutBits === undefined) return
  // Sub-shard links are named by their slot alone (two hex digits for fanout 256).
  const width = ((1 << root.fanoutBits) - 1).toString(16).length
  const shards = [...root.links.keys()].filter(name => name.length === width).map(name => linkCid(root, name)!)
  await Promise.all(shards.map(async shard => await dirNode(blocks, shard, cache, PINNED_DEPTH).catch(() => undefined)))
}

/**
 * Follows `names` down from directory `root` (flat or HAMT-sharded): the CID
 * they lead to and every block read on the way, in order (what a trustless
 * CAR of a path carries before its target). Undefined when a name is absent
 * or a step is not a directory.
 */
export async function resolvePath (blocks: BlockGetter, root: CID, names: string[]): Promise<{ cid: CID, via: Array<{ cid: CID, bytes: Uint8Array }> } | undefined> {
  const via = new Map<string, { cid: CID, bytes: Uint8Array }>()
  const recording: BlockGetter = {
    get: (cid, options) => blocks.get(cid, options),
    getChecked: async (cid, options) => {
      const bytes = await getVerified(blocks, cid, options)
      via.set(cid.toString(), { cid, bytes })
      return bytes
    }
  }
  let cid = root
  for (const name of names) {
    if (cid.code !== DAG_PB_CODE) return undefined
    const type = dagPb.decode(await getVerified(recording, cid)).Data
    const kind = type === undefined ? undefined : UnixFS.unmarshal(type).type
    if (kind !== 'directory' && kind !== 'hamt-sharded-directory') return undefined
    const next = await lookupEntry(recording, cid, name, new DirNodeCache())
    if (next === undefined) return undefined
    cid = next
  }
  return { cid, via: [...via.values()] }
}
