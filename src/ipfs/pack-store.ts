import { readSync } from 'node:fs'
import { mkdir, open, readdir, readFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { BaseBlockstore } from 'blockstore-core/base'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { BlockNotFoundError, NixipfsError } from '../errors.js'
import { DigestIndex, type Location } from './digest-index.js'

/** A pack file is closed for appends once it reaches this size. */
const PACK_LIMIT_BYTES = 1024 * 1024 * 1024
/** Block bytes gathered in memory before one write to the pack. */
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024
/** One index record: digest(32) codec(4) pack(4) offset(8) length(4) crc32(4). */
const RECORD_BYTES = 56
/** Blocks up to this size are read synchronously. */
const SYNC_READ_BYTES = 64 * 1024
/** Index records read per step when loading the index. */
const REFRESH_CHUNK_RECORDS = 65536
/** Length value marking a deleted block. */
const TOMBSTONE = 0xffffffff


const packName = (n: number): string => `${String(n).padStart(6, '0')}.pack`
const key = (digest: Uint8Array): string => Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength).toString('latin1')

function encodeRecord (digest: Uint8Array, loc: Location): Buffer {
  const rec = Buffer.alloc(RECORD_BYTES)
  rec.set(digest, 0)
  rec.writeUInt32LE(loc.codec, 32)
  rec.writeUInt32LE(loc.pack, 36)
  rec.writeBigUInt64LE(BigInt(loc.offset), 40)
  rec.writeUInt32LE(loc.length, 48)
  rec.writeUInt32LE(crc32(rec.subarray(0, 52)), 52)
  return rec
}

/** A valid index record's digest and the block's location (undefined for a tombstone); undefined for a torn or damaged record. */
function decodeRecord (rec: Buffer): { digest: Buffer, loc?: Location } | undefined {
  if (crc32(rec.subarray(0, 52)) !== rec.readUInt32LE(52)) return undefined
  const digest = rec.subarray(0, 32)
  const length = rec.readUInt32LE(48)
  if (length === TOMBSTONE) return { digest }
  return { digest, loc: { codec: rec.readUInt32LE(32), pack: rec.readUInt32LE(36), offset: Number(rec.readBigUInt64LE(40)), length } }
}

/**
 * A blockstore for NARs: blocks are appended to large pack files in the order
 * they are written, so a NAR's blocks sit together and stream back with few
 * positioned reads. An append-only index (`index.log`) maps sha2-256 digests
 * to (pack, offset, length); it is written only after the data it points to,
 * and a torn or corrupt tail record is ignored, so a crash loses at most the
 * blocks not yet indexed — never the meaning of blocks already indexed.
 * Several processes may read; one writes at a time (the repo lock ensures it).
 */
export class PackStore extends BaseBlockstore {
  private readonly dir: string
  private readonly index = new DigestIndex()
  private readonly readers = new Map<number, Promise<FileHandle>>()
  private indexFile?: FileHandle
  private indexReadBytes = 0
  private writer?: { pack: number, fh: FileHandle, size: number }
  private buffer: Buffer[] = []
  private bufferBytes = 0
  private pendingRecords: Buffer[] = []
  private readonly pending = new Map<string, Uint8Array>()
  private writing: Promise<void> = Promise.resolve()
  private switching?: Promise<{ pack: number, fh: FileHandle, size: number }>

  constructor (dir: string) {
    super()
    this.dir = dir
  }

  /** Opens the store, reading the whole index. */
  async open (): Promise<void> {
    await mkdir(this.dir, { recursive: true })
    this.indexFile = await open(join(this.dir, 'index.log'), 'a+')
    await this.refresh()
  }

  /** Reads index records appended (by another process) since the last look, a few MB at a time. */
  async refresh (): Promise<void> {
    const fh = this.indexFile
    if (fh === undefined) throw new NixipfsError('ERR_STORE_CLOSED', 'the block store is not open')
    const { size } = await fh.stat()
    const end = this.indexReadBytes + Math.floor((size - this.indexReadBytes) / RECORD_BYTES) * RECORD_BYTES
    if (this.index.size === 0) this.index.reserve((end - this.indexReadBytes) / RECORD_BYTES)
    const buf = Buffer.alloc(Math.min(REFRESH_CHUNK_RECORDS * RECORD_BYTES, Math.max(end - this.indexReadBytes, 0)))
    while (this.indexReadBytes < end) {
      const n = Math.min(buf.length, end - this.indexReadBytes)
      await fh.read(buf, 0, n, this.indexReadBytes)
      for (let at = 0; at < n; at += RECORD_BYTES) {
        const rec = decodeRecord(buf.subarray(at, at + RECORD_BYTES))
        if (rec === undefined) continue // torn or damaged record: its block is simply unknown
        if (rec.loc === undefined) this.index.delete(rec.digest)
        else this.index.set(rec.digest, rec.loc)
      }
      this.indexReadBytes += n
    }
  }

  private digestOf (cid: CID): Uint8Array {
    if (cid.multihash.code !== sha256.code) throw new NixipfsError('ERR_UNSUPPORTED_HASH', `block ${cid.toString()} is not sha2-256; the pack store keeps sha2-256 blocks only`)
    return cid.multihash.digest
  }

  override has (cid: CID): boolean {
    const digest = this.digestOf(cid)
    return this.pending.has(key(digest)) || this.index.has(digest)
  }

  override async put (cid: CID, val: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<CID> {
    const digest = this.digestOf(cid)
    const k = key(digest)
    if (this.pending.has(k) || this.index.has(digest)) return cid
    let bytes: Uint8Array
    if (val instanceof Uint8Array) bytes = val
    else {
      const parts: Uint8Array[] = []
      for await (const p of val) parts.push(p)
      bytes = Buffer.concat(parts)
    }
    const w = await this.openWriter(bytes.length)
    const loc: Location = { pack: w.pack, offset: w.size + this.bufferBytes, length: bytes.length, codec: cid.code }
    this.buffer.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    this.bufferBytes += bytes.length
    this.pendingRecords.push(encodeRecord(digest, loc))
    this.pending.set(k, bytes)
    this.index.set(digest, loc)
    if (this.bufferBytes >= WRITE_BUFFER_BYTES) await this.startFlush()
    return cid
  }

  private async openWriter (next: number): Promise<{ pack: number, fh: FileHandle, size: number }> {
    if (this.writer !== undefined && this.writer.size + this.bufferBytes + next <= PACK_LIMIT_BYTES) return this.writer
    // Concurrent puts (the importer writes in parallel) must share one switch of pack file.
    this.switching ??= this.switchPack(next).finally(() => { this.switching = undefined })
    return await this.switching
  }

  private async switchPack (next: number): Promise<{ pack: number, fh: FileHandle, size: number }> {
    await this.flush()
    if (this.writer === undefined) {
      // A crash may have left half a record at the end of the index; appends must start on a record boundary.
      const { size } = await this.indexFile!.stat()
      if (size % RECORD_BYTES !== 0) await this.indexFile!.truncate(size - (size % RECORD_BYTES))
    }
    const packs = (await readdir(this.dir)).filter(f => f.endsWith('.pack')).map(f => Number(f.slice(0, -5))).filter(Number.isInteger)
    let pack = packs.length === 0 ? 1 : Math.max(...packs)
    let fh = await open(join(this.dir, packName(pack)), 'a+')
    let { size } = await fh.stat()
    if (size + next > PACK_LIMIT_BYTES) {
      await fh.close()
      pack++
      fh = await open(join(this.dir, packName(pack)), 'a+')
      size = 0
    }
    await this.writer?.fh.close()
    this.writer = { pack, fh, size }
    return this.writer
  }

  /**
   * Starts writing buffered blocks, then their index records, in the
   * background; waits only for the write before it, so disk and CPU overlap.
   */
  private async startFlush (): Promise<void> {
    const w = this.writer
    if (w === undefined || this.buffer.length === 0) return
    const data = this.buffer
    const records = this.pendingRecords
    const keys = [...this.pending.keys()]
    const offset = w.size
    w.size += this.bufferBytes
    this.buffer = []
    this.pendingRecords = []
    this.bufferBytes = 0
    const previous = this.writing
    this.writing = (async () => {
      await previous
      await w.fh.writev(data, offset)
      // indexReadBytes stays put: a refresh re-reads our own records, which sets what is already set.
      await this.indexFile!.write(Buffer.concat(records))
      for (const k of keys) this.pending.delete(k)
    })()
    await previous
  }

  /** Writes every buffered block and its index record. */
  async flush (): Promise<void> {
    await this.startFlush()
    await this.writing
  }

  /** Flushes and makes every block written so far durable. */
  async sync (): Promise<void> {
    await this.flush()
    await this.writer?.fh.sync()
    await this.indexFile?.sync()
  }

  private async reader (pack: number): Promise<FileHandle> {
    // The promise is cached, so concurrent first reads of a pack share one handle.
    let fh = this.readers.get(pack)
    if (fh === undefined) {
      fh = open(join(this.dir, packName(pack)), 'r')
      this.readers.set(pack, fh)
      fh.catch(() => this.readers.delete(pack))
    }
    return await fh
  }

  /** The bytes stored for `cid`, unverified (callers check them against the CID). */
  async read (cid: CID): Promise<Uint8Array> {
    const digest = this.digestOf(cid)
    const buffered = this.pending.get(key(digest))
    if (buffered !== undefined) return buffered
    let loc = this.index.get(digest)
    if (loc === undefined) {
      await this.refresh() // another process may have added it
      loc = this.index.get(digest)
      if (loc === undefined) throw new BlockNotFoundError(cid.toString())
    }
    const buf = Buffer.allocUnsafe(loc.length)
    let bytesRead: number
    if (loc.length <= SYNC_READ_BYTES) {
      // Small blocks (narinfos, directory shards) come from the page cache faster than a
      // thread-pool round trip; this is what keeps narinfo lookups' tail latency low.
      bytesRead = readSync((await this.reader(loc.pack)).fd, buf, 0, loc.length, loc.offset)
    } else {
      bytesRead = (await (await this.reader(loc.pack)).read(buf, 0, loc.length, loc.offset)).bytesRead
    }
    return bytesRead === loc.length ? buf : buf.subarray(0, bytesRead) // a short read fails verification
  }

  override async * get (cid: CID): AsyncGenerator<Uint8Array> {
    yield await this.read(cid)
  }

  override async delete (cid: CID): Promise<void> {
    const digest = this.digestOf(cid)
    if (!this.index.has(digest)) return
    await this.flush()
    this.index.delete(digest)
    await this.indexFile!.write(encodeRecord(digest, { pack: 0, offset: 0, length: TOMBSTONE, codec: 0 }))
  }

  override async * getAll (): AsyncGenerator<{ cid: CID, bytes: AsyncGenerator<Uint8Array> }> {
    // The in-memory index keeps only digest prefixes; full CIDs come from the log, latest record per block.
    await this.flush()
    const log = await readFile(join(this.dir, 'index.log'))
    const seen = new Set<string>()
    for (let at = log.length - (log.length % RECORD_BYTES) - RECORD_BYTES; at >= 0; at -= RECORD_BYTES) {
      const rec = decodeRecord(log.subarray(at, at + RECORD_BYTES))
      if (rec === undefined) continue
      const k = key(rec.digest)
      if (seen.has(k)) continue
      seen.add(k)
      if (rec.loc === undefined) continue
      const cid = CID.createV1(rec.loc.codec, Digest.create(sha256.code, Uint8Array.from(rec.digest)))
      yield { cid, bytes: this.get(cid) }
    }
  }

  /** Opens the pack store of a repo (`<repo>/packs`). */
  static async openRepo (repo: string): Promise<PackStore> {
    const store = new PackStore(join(repo, 'packs'))
    await store.open()
    return store
  }

  /** Number of blocks indexed. */
  get size (): number {
    return this.index.size
  }

  /** Flushes and closes every file. */
  async close (): Promise<void> {
    await this.sync()
    await this.writer?.fh.close()
    this.writer = undefined
    for (const fh of this.readers.values()) await (await fh).close()
    this.readers.clear()
    await this.indexFile?.close()
    this.indexFile = undefined
  }
}
