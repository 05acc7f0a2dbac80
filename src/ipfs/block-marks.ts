import type { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { StoreError } from '../errors.js'
import type { DigestIndex } from './digest-index.js'

/**
 * A set of blocks held by one pack store, one bit per slot of its digest
 * table (~0.2 bytes a block, against ~100 for a Set of CID strings), for
 * marking the live blocks of a million-entry cache. Valid only while the
 * table does not change: any use after a block was added or removed throws.
 */
export class BlockMarks {
  private readonly bits: Uint32Array
  private readonly version: number
  private count = 0

  constructor (private readonly index: DigestIndex) {
    this.bits = new Uint32Array(Math.ceil(index.slots / 32))
    this.version = index.version
  }

  private check (): void {
    if (this.index.version !== this.version) throw new StoreError('ERR_STORE_CHANGED', 'the block store changed while its blocks were being marked; run the command again (writers must hold the repo lock)')
  }

  private slotOf (cid: CID): number {
    this.check()
    return cid.multihash.code === sha256.code ? this.index.slotOf(cid.multihash.digest) : -1
  }

  /** Marks a block; false when the store does not hold it (nothing is marked then). */
  add (cid: CID): boolean {
    const slot = this.slotOf(cid)
    if (slot < 0) return false
    this.addSlot(slot)
    return true
  }

  /** Whether a block is marked. */
  has (cid: CID): boolean {
    const slot = this.slotOf(cid)
    return slot >= 0 && this.hasSlot(slot)
  }

  /** Marks a slot of the table; true if it was not marked yet. */
  addSlot (slot: number): boolean {
    const word = slot >>> 5
    const bit = 1 << (slot & 31)
    if ((this.bits[word]! & bit) !== 0) return false
    this.bits[word]! |= bit
    this.count++
    return true
  }

  /** Whether a slot of the table is marked. */
  hasSlot (slot: number): boolean {
    this.check()
    return (this.bits[slot >>> 5]! & (1 << (slot & 31))) !== 0
  }

  /** Whether the marks are slots of this very table. */
  isFor (index: DigestIndex): boolean {
    return index === this.index
  }

  /** Blocks marked. */
  get size (): number {
    return this.count
  }

  /** Memory held by the marks. */
  get bytes (): number {
    return this.bits.byteLength
  }
}
