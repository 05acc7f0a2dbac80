/** Where a block lives: pack file number, byte offset in it, length, and codec of its CID. */
export interface Location { pack: number, offset: number, length: number, codec: number }

/** Bytes of the digest kept per block: 128 bits make an accidental clash about 1 in 10^26 for a million blocks. */
const KEY_BYTES = 16
const KEY_WORDS = KEY_BYTES / 4
const EMPTY = 0
const USED = 1
const DELETED = 2
/** Largest share of slots in use before the table doubles. */
const MAX_LOAD = 0.7
/** Source of table versions: unique across tables, so a mark set can tell any two layouts apart. */
let versions = 0

/**
 * A compact hash table from block digest to location, on typed arrays
 * (~40 bytes a block instead of ~150 for a Map of objects), so that a
 * gateway can keep a million-entry cache's block index in memory.
 */
export class DigestIndex {
  private keys: Uint32Array
  private packs: Uint16Array
  private offsets: Uint32Array
  private lengths: Uint32Array
  private codecs: Uint16Array
  private state: Uint8Array
  /** number of slots; not a power of two, so the table grows in steps of 1.5× instead of 2× */
  private cap: number
  private used = 0
  private live = 0
  private ver = ++versions

  constructor (capacity = 1024) {
    const cap = Math.max(1024, Math.ceil(capacity / MAX_LOAD))
    this.cap = cap
    this.keys = new Uint32Array(cap * KEY_WORDS)
    this.packs = new Uint16Array(cap)
    this.offsets = new Uint32Array(cap)
    this.lengths = new Uint32Array(cap)
    this.codecs = new Uint16Array(cap)
    this.state = new Uint8Array(cap)
  }

  /** Blocks indexed. */
  get size (): number {
    return this.live
  }

  /** Grows the table at once to hold `count` blocks (loading a known number avoids repeated doubling). */
  reserve (count: number): void {
    if (count <= this.cap * MAX_LOAD) return
    const next = new DigestIndex(count)
    this.copyInto(next)
  }

  /** Number of slots: slot numbers run from 0 to this, exclusive. */
  get slots (): number {
    return this.cap
  }

  /** Changes whenever a block is added or removed or the table is rebuilt: slot numbers are valid only while it stays the same. */
  get version (): number {
    return this.ver
  }

  /** The slot holding `digest`, or -1. */
  slotOf (digest: Uint8Array): number {
    const i = this.find(this.words(digest))
    return i < 0 ? -1 : i
  }

  /** The location stored in a used slot. */
  at (slot: number): Location {
    return { pack: this.packs[slot]!, offset: this.offsets[slot]!, length: this.lengths[slot]!, codec: this.codecs[slot]! }
  }

  /** Memory held by the table. */
  get bytes (): number {
    return this.keys.byteLength + this.packs.byteLength + this.offsets.byteLength + this.lengths.byteLength + this.codecs.byteLength + this.state.byteLength
  }

  private words (digest: Uint8Array): [number, number, number, number] {
    const v = new DataView(digest.buffer, digest.byteOffset, KEY_BYTES)
    return [v.getUint32(0, true), v.getUint32(4, true), v.getUint32(8, true), v.getUint32(12, true)]
  }

  /** The slot holding `digest`, or -1 - (the first free slot on its probe path). */
  private find (w: [number, number, number, number]): number {
    let i = w[0] % this.cap
    let free = -1
    for (;;) {
      const s = this.state[i]
      if (s === EMPTY) return -1 - (free >= 0 ? free : i)
      if (s === DELETED) { if (free < 0) free = i } else {
        const k = i * KEY_WORDS
        if (this.keys[k] === w[0] && this.keys[k + 1] === w[1] && this.keys[k + 2] === w[2] && this.keys[k + 3] === w[3]) return i
      }
      i = i + 1 === this.cap ? 0 : i + 1
    }
  }

  has (digest: Uint8Array): boolean {
    return this.find(this.words(digest)) >= 0
  }

  get (digest: Uint8Array): Location | undefined {
    const i = this.find(this.words(digest))
    return i < 0 ? undefined : this.at(i)
  }

  set (digest: Uint8Array, loc: Location): void {
    if (loc.offset > 0xffffffff || loc.pack > 0xffff || loc.codec > 0xffff) throw new RangeError(`block location ${JSON.stringify(loc)} does not fit the index`)
    const w = this.words(digest)
    let i = this.find(w)
    if (i < 0) {
      if ((this.used + 1) > this.cap * MAX_LOAD) { this.grow(); this.set(digest, loc); return }
      i = -1 - i
      if (this.state[i] === EMPTY) this.used++
      this.state[i] = USED
      this.keys.set(w, i * KEY_WORDS)
      this.live++
      this.ver = ++versions
    }
    this.packs[i] = loc.pack
    this.offsets[i] = loc.offset
    this.lengths[i] = loc.length
    this.codecs[i] = loc.codec
  }

  delete (digest: Uint8Array): void {
    const i = this.find(this.words(digest))
    if (i < 0) return
    this.state[i] = DELETED
    this.live--
    this.ver = ++versions
  }

  private grow (): void {
    this.copyInto(new DigestIndex(this.live * 1.5))
  }

  /** Moves every live entry into `next` and takes over its arrays. */
  private copyInto (next: DigestIndex): void {
    for (let i = 0; i < this.cap; i++) {
      if (this.state[i] !== USED) continue
      const key = new Uint8Array(this.keys.buffer, i * KEY_BYTES, KEY_BYTES)
      next.set(key, { pack: this.packs[i]!, offset: this.offsets[i]!, length: this.lengths[i]!, codec: this.codecs[i]! })
    }
    Object.assign(this, { keys: next.keys, packs: next.packs, offsets: next.offsets, lengths: next.lengths, codecs: next.codecs, state: next.state, cap: next.cap, used: next.used, live: next.live })
    this.ver = ++versions
  }
}
