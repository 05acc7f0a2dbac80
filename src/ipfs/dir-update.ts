import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import { IntegrityError } from '../errors.js'
import { DAG_PB_CODE, cidOf, getVerified, type BlockGetter, type BlockPutter } from './block.js'
import { hamtHash, readDirNode } from './hamt.js'

/** A link to add to a directory: its name, target and cumulative DAG size. */
export interface NewLink {
  name: string
  cid: CID
  tsize: number
}

/** A written directory node: its CID and cumulative DAG size. */
export interface DirResult {
  cid: CID
  tsize: number
}

/** Slots of a shard: 2^8 of them (fanout 256, as kubo and Helia use). */
const FANOUT_BITS = 8
const FANOUT = 1 << FANOUT_BITS
/** The multicodec of murmur3-x64-64, the HAMT hash of UnixFS. */
const HAMT_HASH_TYPE = 0x22n
/** A flat directory whose links would take more bytes than this becomes a HAMT (as @helia/unixfs does). */
export const SHARD_SPLIT_THRESHOLD_BYTES = 256 * 1024

type Slot = { leaf: true, name: string, cid: CID, tsize: number } | { leaf: false, cid: CID, tsize: number }
interface Pending { link: NewLink, hash: Uint8Array }

async function put (blocks: BlockPutter, links: dagPb.PBLink[], unixfs: UnixFS): Promise<DirResult> {
  const bytes = dagPb.encode(dagPb.prepare({ Data: unixfs.marshal(), Links: links }))
  const cid = cidOf(DAG_PB_CODE, bytes)
  await blocks.put(cid, bytes)
  return { cid, tsize: links.reduce((n, l) => n + (l.Tsize ?? 0), bytes.length) }
}

function slotOf (hash: Uint8Array, level: number): number {
  const byte = hash[level]
  if (byte === undefined) throw new IntegrityError('HAMT keys collide on all 64 hash bits')
  return byte
}

/** The UnixFS HAMT bitfield: bit i set for every occupied slot i, big-endian bytes, leading zero bytes dropped. */
function bitfield (slots: Map<number, Slot>): Uint8Array {
  const le = new Uint8Array(FANOUT / 8)
  for (const i of slots.keys()) le[i >> 3]! |= 1 << (i & 7)
  let end = le.length
  while (end > 1 && le[end - 1] === 0) end--
  return le.slice(0, end).reverse()
}

/** Inserts entries into the shard `cid` (or a new one) at `level`, writing each touched shard once. */
async function insertShard (blocks: BlockGetter & BlockPutter, cid: CID | undefined, level: number, entries: Pending[]): Promise<DirResult> {
  const slots = new Map<number, Slot>()
  if (cid !== undefined) {
    const { pb } = await readDirNode(blocks, cid)
    for (const l of pb.Links) {
      const name = l.Name ?? ''
      const slot = parseInt(name.slice(0, 2), 16)
      slots.set(slot, name.length === 2
        ? { leaf: false, cid: l.Hash, tsize: l.Tsize ?? 0 }
        : { leaf: true, name: name.slice(2), cid: l.Hash, tsize: l.Tsize ?? 0 })
    }
  }
  const groups = new Map<number, Pending[]>()
  for (const e of entries) {
    const s = slotOf(e.hash, level)
    const g = groups.get(s)
    if (g === undefined) groups.set(s, [e])
    else g.push(e)
  }
  for (const [s, group] of groups) {
    const existing = slots.get(s)
    if (existing !== undefined && !existing.leaf) {
      const child = await insertShard(blocks, existing.cid, level + 1, group)
      slots.set(s, { leaf: false, ...child })
      continue
    }
    // Later entries for one name replace earlier ones; an existing leaf joins unless replaced.
    const byName = new Map<string, Pending>()
    if (existing?.leaf === true) byName.set(existing.name, { link: { name: existing.name, cid: existing.cid, tsize: existing.tsize }, hash: await hamtHash(existing.name) })
    for (const e of group) byName.set(e.link.name, e)
    const all = [...byName.values()]
    if (all.length === 1) {
      const { link } = all[0]!
      slots.set(s, { leaf: true, name: link.name, cid: link.cid, tsize: link.tsize })
    } else {
      slots.set(s, { leaf: false, ...await insertShard(blocks, undefined, level + 1, all) })
    }
  }
  const ordered = [...slots.entries()].sort((a, b) => a[0] - b[0])
  const links = ordered.map(([i, slot]) => {
    const prefix = i.toString(16).toUpperCase().padStart(2, '0')
    return { Name: slot.leaf ? prefix + slot.name : prefix, Tsize: slot.tsize, Hash: slot.cid }
  })
  return await put(blocks, links, new UnixFS({ type: 'hamt-sharded-directory', data: bitfield(slots), fanout: BigInt(FANOUT), hashType: HAMT_HASH_TYPE }))
}

/**
 * Adds (or replaces) links in a UnixFS directory, flat or HAMT-sharded, and
 * returns the new directory. Every node on the way to a changed entry is
 * written once per call, however many entries are added; a flat directory
 * that grows past `SHARD_SPLIT_THRESHOLD_BYTES` becomes a HAMT.
 */
export async function addLinks (blocks: BlockGetter & BlockPutter, dir: CID, add: NewLink[]): Promise<DirResult> {
  const { pb, unixfs } = await readDirNode(blocks, dir)
  if (unixfs.type === 'hamt-sharded-directory') {
    if (Number(unixfs.fanout) !== FANOUT) throw new IntegrityError(`HAMT ${dir.toString()} has fanout ${unixfs.fanout}; only ${FANOUT} is written`)
    return await insertShard(blocks, dir, 0, await Promise.all(add.map(async link => ({ link, hash: await hamtHash(link.name) }))))
  }
  const links = new Map<string, NewLink>(pb.Links.map(l => [l.Name ?? '', { name: l.Name ?? '', cid: l.Hash, tsize: l.Tsize ?? 0 }]))
  for (const l of add) links.set(l.name, l)
  const all = [...links.values()]
  const estimate = all.reduce((n, l) => n + Buffer.byteLength(l.name) + l.cid.bytes.length, 0)
  if (estimate > SHARD_SPLIT_THRESHOLD_BYTES) {
    return await insertShard(blocks, undefined, 0, await Promise.all(all.map(async link => ({ link, hash: await hamtHash(link.name) }))))
  }
  return await put(blocks, all.map(l => ({ Name: l.name, Tsize: l.tsize, Hash: l.cid })), new UnixFS({ type: 'directory' }))
}

/** Stores an empty UnixFS directory. */
export async function emptyDirectory (blocks: BlockPutter): Promise<DirResult> {
  return await put(blocks, [], new UnixFS({ type: 'directory' }))
}

/** Reads `cid`'s cumulative DAG size (Tsize) from its own block: the sum of its links' Tsize plus its length. */
export async function tsizeOf (blocks: BlockGetter, cid: CID): Promise<number> {
  const bytes = await getVerified(blocks, cid)
  if (cid.code !== DAG_PB_CODE) return bytes.length
  return dagPb.decode(bytes).Links.reduce((n, l) => n + (l.Tsize ?? 0), bytes.length)
}

