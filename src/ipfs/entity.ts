import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { IntegrityError } from '../errors.js'
import { DAG_PB_CODE, RAW_CODE, getVerified, type BlockGetter } from './block.js'

/** Bytes `[start, end)` of a file. */
export interface ByteRange {
  start: number
  end: number
}

interface Block { cid: CID, bytes: Uint8Array }

/** The UnixFS node of a dag-pb block (undefined for a dag-pb block without UnixFS data). */
function unixfsOf (bytes: Uint8Array): { pb: dagPb.PBNode, unixfs?: UnixFS } {
  const pb = dagPb.decode(bytes)
  return { pb, unixfs: pb.Data === undefined ? undefined : UnixFS.unmarshal(pb.Data) }
}

const isFile = (unixfs: UnixFS | undefined): boolean => unixfs?.type === 'file' || unixfs?.type === 'raw'

/** The size in bytes of the entity at `cid` if it is a file (a raw block or a UnixFS file), else undefined. */
export async function fileSizeOf (blocks: BlockGetter, cid: CID): Promise<number | undefined> {
  const bytes = await getVerified(blocks, cid)
  if (cid.code === RAW_CODE) return bytes.length
  if (cid.code !== DAG_PB_CODE) return undefined
  const { unixfs } = unixfsOf(bytes)
  return isFile(unixfs) ? Number(unixfs!.fileSize()) : undefined
}

/**
 * Yields the blocks of the UnixFS entity at `root` (a trustless gateway's
 * `dag-scope=entity`), depth first, each checked against its CID: a file's
 * whole DAG, or with `range` only the blocks holding those bytes (the root
 * alone for an empty range); a directory's node and its HAMT shards, not its
 * entries; any other block alone.
 */
export async function * walkEntity (blocks: BlockGetter, root: CID, options: { range?: ByteRange, signal?: AbortSignal } = {}): AsyncGenerator<Block> {
  const bytes = await getVerified(blocks, root, options)
  if (root.code !== DAG_PB_CODE) { yield { cid: root, bytes }; return }
  const { pb, unixfs } = unixfsOf(bytes)
  if (isFile(unixfs)) yield * fileBlocks(blocks, { cid: root, bytes }, pb, unixfs!, 0, options.range ?? { start: 0, end: Infinity }, options.signal)
  else if (unixfs?.type === 'hamt-sharded-directory') yield * shardBlocks(blocks, { cid: root, bytes }, pb, unixfs, options.signal)
  else yield { cid: root, bytes }
}

/** A file node and, under it, the nodes and leaves that hold bytes of `range` (`base` is the node's offset in the file). */
async function * fileBlocks (blocks: BlockGetter, node: Block, pb: dagPb.PBNode, unixfs: UnixFS, base: number, range: ByteRange, signal?: AbortSignal): AsyncGenerator<Block> {
  yield node
  if (unixfs.blockSizes.length !== pb.Links.length) throw new IntegrityError(`block ${node.cid.toString()} has ${pb.Links.length} links but ${unixfs.blockSizes.length} block sizes`)
  let pos = base + (unixfs.data?.length ?? 0)
  for (let i = 0; i < pb.Links.length && pos < range.end; i++) {
    const size = Number(unixfs.blockSizes[i])
    if (pos + size > range.start && range.end > range.start) {
      const cid = pb.Links[i]!.Hash
      const bytes = await getVerified(blocks, cid, { signal })
      if (cid.code === RAW_CODE) yield { cid, bytes }
      else {
        const child = unixfsOf(bytes)
        if (!isFile(child.unixfs)) throw new IntegrityError(`block ${cid.toString()} in file ${node.cid.toString()} is not a UnixFS file node`)
        yield * fileBlocks(blocks, { cid, bytes }, child.pb, child.unixfs!, pos, range, signal)
      }
    }
    pos += size
  }
}

/** A HAMT shard and its sub-shards (links named by their slot alone), not the entries. */
async function * shardBlocks (blocks: BlockGetter, node: Block, pb: dagPb.PBNode, unixfs: UnixFS, signal?: AbortSignal): AsyncGenerator<Block> {
  yield node
  const width = (Number(unixfs.fanout ?? 256n) - 1).toString(16).length
  for (const link of pb.Links) {
    if (link.Name?.length !== width) continue
    const bytes = await getVerified(blocks, link.Hash, { signal })
    const child = unixfsOf(bytes)
    if (child.unixfs?.type !== 'hamt-sharded-directory') throw new IntegrityError(`HAMT slot ${link.Name} of ${node.cid.toString()} links to something that is not a shard`)
    yield * shardBlocks(blocks, { cid: link.Hash, bytes }, child.pb, child.unixfs, signal)
  }
}
