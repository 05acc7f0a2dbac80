import type { UnixFSComponents } from '@helia/unixfs'
import type { CID } from 'multiformats/cid'
import type { BlockGetter, BlockPutter } from './block.js'
import type { BlockMarks } from './block-marks.js'
import type { CompactOptions, CompactResult, Keep } from './pack-compact.js'

// The narrow views of the repo's block store (the PackStore) that other
// layers depend on, each what one kind of caller uses: they take these,
// not the store itself, as Helia's modules take a Blockstore.

/** Blocks as @helia/unixfs reads a DAG from them (listing directories). */
export type UnixfsBlocks = UnixFSComponents['blockstore']

/** Sees again what other processes wrote to (or compacted in) the store. */
export interface Refreshable {
  refresh: () => Promise<void>
}

/** Blocks held locally: asked for without a read, read unchecked, written. */
export interface LocalBlocks extends BlockPutter, Refreshable {
  has: (cid: CID) => boolean
  /** the bytes stored for `cid`, unverified (callers check them against the CID) */
  read: (cid: CID) => Promise<Uint8Array>
}

/** Writes made durable in one step, telling whether any since a point was lost. */
export interface DurableWrites {
  /** counts failed writes: read it before writing, pass it to `sync` */
  readonly writeEpoch: number
  /** makes every block written so far durable; throws if a write failed since `since` */
  sync: (since?: number) => Promise<void>
}

/** What updating a cache needs: read and write blocks, see other writers' blocks, make the writes durable. */
export interface CacheBlocks extends BlockGetter, BlockPutter, Refreshable, DurableWrites {}

/** What gc and eviction need: mark the blocks to keep, compact the rest away. */
export interface CompactableBlocks extends BlockGetter, Refreshable {
  has: (cid: CID) => boolean
  /** an empty mark set over the blocks held now */
  marks: () => BlockMarks
  compact: (keep: Keep, options?: CompactOptions) => Promise<CompactResult>
  /** memory held by the in-memory index */
  readonly indexBytes: number
}
