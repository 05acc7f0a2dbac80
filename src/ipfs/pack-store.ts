import { readSync } from 'node:fs'
import { open, readdir, readFile, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { BaseBlockstore } from 'blockstore-core/base'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { bytesKey } from '../bytes.js'
import { asDiskError, makeDirectory } from '../disk.js'
import { BlockNotFoundError, NixipfsError, StoreError } from '../errors.js'
import { BlockMarks } from './block-marks.js'
import { DigestIndex, type Location } from './digest-index.js'
import { compactPacks, packFiles, type CompactOptions, type CompactResult, type Keep } from './pack-compact.js'
import { INDEX_FILE, PACK_LIMIT_BYTES, RECORD_BYTES, decodeRecord, encodeRecord, encodeTombstone, packName, packNumber, writeAll } from './pack-format.js'
import { PackHandles } from './pack-handles.js'
import { packsDir } from '../repo-layout.js'

/** Block bytes gathered in memory before one write to the pack. */
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024
/** Blocks up to this size are read synchronously. */
const SYNC_READ_BYTES = 64 * 1024
/** Index records read per step when loading the index. */
const REFRESH_CHUNK_RECORDS = 65536
/** How often reads look whether another process compacted the store. */
const RECHECK_MS = 1000

const key = bytesKey

/**
 * Reads the index records of `fh` from byte `from` on into `index`, a few MB
 * at a time; returns where it stopped (a record boundary). A record pointing
 * past the end of its pack is dropped and its digest added to `stale`: older
 * versions indexed blocks before their bytes were durable, and a disk that
 * filled up then left such records behind.
 */
async function loadRecords (dir: string, fh: FileHandle, from: number, index: DigestIndex, stale: Set<string>): Promise<number> {
  const { size } = await fh.stat()
  const end = from + Math.floor((size - from) / RECORD_BYTES) * RECORD_BYTES
  if (end <= from) return from
  if (index.size === 0) index.reserve((end - from) / RECORD_BYTES)
  // Sizes taken after the index's: a record is written only once its data is durable, so its pack already holds it.
  const packSizes = new Map((await packFiles(dir)).map(p => [p.pack, p.bytes]))
  const buf = Buffer.alloc(Math.min(REFRESH_CHUNK_RECORDS * RECORD_BYTES, Math.max(end - from, 0)))
  let at = from
  while (at < end) {
    const n = Math.min(buf.length, end - at)
    await fh.read(buf, 0, n, at)
    for (let i = 0; i < n; i += RECORD_BYTES) {
      const rec = decodeRecord(buf.subarray(i, i + RECORD_BYTES))
      if (rec === undefined) continue // torn or damaged record: its block is simply unknown
      if (rec.loc !== undefined && rec.loc.offset + rec.loc.length > (packSizes.get(rec.loc.pack) ?? 0)) {
        index.delete(rec.digest)
        stale.add(key(rec.digest))
        continue
      }
      if (stale.size > 0) stale.delete(key(rec.digest))
      if (rec.loc === undefined) index.delete(rec.digest)
      else index.set(rec.digest, rec.loc)
    }
    at += n
  }
  return at
}

export interface PackStoreOptions {
  /** size at which a pack file is closed for appends (default 1 GiB; tests use less) */
  packLimitBytes?: number
}

/**
 * A blockstore for NARs: blocks are appended to large pack files in the order
 * they are written, so a NAR's blocks sit together and stream back with few
 * positioned reads. An append-only index (`index.log`) maps sha2-256 digests
 * to (pack, offset, length); a record is appended only once the data it
 * points to is written and fsynced, and a torn or corrupt tail record is
 * ignored, so a crash loses at most the blocks not yet indexed — never the
 * meaning of blocks already indexed. A failed write (a full disk, an I/O
 * error) forgets every block not yet durable, takes the pack and the index
 * back to where they were, and is reported by the next flush or sync; the
 * store stays usable. Several processes may read; one writes at a time (the
 * repo lock ensures it).
 *
 * `compact` rewrites the store without the blocks no longer wanted and
 * replaces `index.log` by a rename; other processes with the store open
 * notice the new file (its inode) within a second, or on their next miss,
 * and reload their table, while reads in flight finish on the old handles.
 */
export class PackStore extends BaseBlockstore {
  private readonly dir: string
  private readonly packLimit: number
  private index = new DigestIndex()
  private handles: PackHandles
  private indexFile?: FileHandle
  /** inode of the open index file: another after a compaction */
  private indexIno = -1
  private indexReadBytes = 0
  private checkedAt = 0
  private refreshing: Promise<void> = Promise.resolve()
  /** the refresh `hasFresh` misses wait for */
  private missRefresh?: Promise<void>
  private writer?: Writer
  private buffer: Buffer[] = []
  private bufferBytes = 0
  private bufferKeys: string[] = []
  private pendingRecords: Buffer[] = []
  /** blocks put but not yet durable and indexed */
  private readonly pending = new Map<string, Uint8Array>()
  /** the batch writes, one after the other; never rejects (a failure is kept in `failure`) */
  private writing: Promise<void> = Promise.resolve()
  private switching?: Promise<Writer>
  /** rises when a failed write discards what was not yet durable: batches of an older generation are not written */
  private generation = 0
  /** a write that failed since the last sync; the next flush or sync throws it */
  private failure?: unknown
  /** the last write that failed, for the puts whose blocks it discarded */
  private lastFailure?: unknown
  /** where this process appends its next index record (a record boundary); unknown until its first append */
  private indexEnd?: number
  /** digests whose current record points past the end of its pack: dropped, and tombstoned before the first append */
  private stale = new Set<string>()

  constructor (dir: string, options: PackStoreOptions = {}) {
    super()
    this.dir = dir
    this.packLimit = options.packLimitBytes ?? PACK_LIMIT_BYTES
    this.handles = new PackHandles(dir)
  }

  private get indexPath (): string {
    return join(this.dir, INDEX_FILE)
  }

  /** Opens the store, reading the whole index. */
  async open (): Promise<void> {
    await makeDirectory(this.dir, { flag: '--repo' })
    // A repo on read-only media (a backup, a read-only bind mount) can still be read: a write fails when it is tried.
    this.indexFile = await open(this.indexPath, 'a+').catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EROFS') throw err
      return await open(this.indexPath, 'r')
    })
    this.indexIno = (await this.indexFile.stat()).ino
    await this.refresh()
  }

  /**
   * Catches up with other processes: reads index records appended since the
   * last look, or reloads the whole table if the store was compacted.
   */
  async refresh (): Promise<void> {
    // One at a time: two interleaved reads of the log would skip or repeat records.
    const next = this.refreshing.then(async () => await this.refreshNow())
    this.refreshing = next.catch(() => {})
    await next
  }

  private async refreshNow (): Promise<void> {
    if (this.indexFile === undefined) throw new NixipfsError('ERR_STORE_CLOSED', 'the block store is not open')
    this.checkedAt = Date.now()
    const ino = await stat(this.indexPath).then(s => s.ino, () => this.indexIno)
    if (ino !== this.indexIno) await this.reload()
    else this.indexReadBytes = await loadRecords(this.dir, this.indexFile, this.indexReadBytes, this.index, this.stale)
  }

  /** Switches to a new index file (a compaction replaced it): a table sized for its blocks, new read handles. */
  private async reload (): Promise<void> {
    if (this.bufferBytes > 0 || this.pending.size > 0) {
      throw new StoreError('ERR_STORE_COMPACTED', `the block store ${this.dir} was compacted while this process was writing to it; writers must hold the repo lock`)
    }
    await this.writing
    const fh = await open(this.indexPath, 'a+')
    const index = new DigestIndex()
    const stale = new Set<string>()
    let ino: number
    let readBytes: number
    try {
      ino = (await fh.stat()).ino
      readBytes = await loadRecords(this.dir, fh, 0, index, stale)
    } catch (err) {
      await fh.close()
      throw err
    }
    const old = { file: this.indexFile, handles: this.handles, writer: this.writer }
    this.indexFile = fh
    this.indexIno = ino
    this.index = index
    this.stale = stale
    this.indexReadBytes = readBytes
    this.indexEnd = undefined
    this.handles = new PackHandles(this.dir)
    this.writer = undefined // the next put picks the newest pack again
    await old.writer?.fh.close()
    await old.file?.close()
    await old.handles.retire()
  }

  private digestOf (cid: CID): Uint8Array {
    if (cid.multihash.code !== sha256.code) throw new NixipfsError('ERR_UNSUPPORTED_HASH', `block ${cid.toString()} is not sha2-256; the pack store keeps sha2-256 blocks only`)
    return cid.multihash.digest
  }

  override has (cid: CID): boolean {
    const digest = this.digestOf(cid)
    return this.pending.has(key(digest)) || this.index.has(digest)
  }

  /**
   * Whether the store holds `cid`, reading the index again on a miss: another process, `publish` above all, may
   * have added it since. What peers asking for blocks are answered from.
   */
  async hasFresh (cid: CID): Promise<boolean> {
    if (this.has(cid)) return true
    // Misses at once share one read of the index's new records (a stranger asking for absent blocks costs little).
    this.missRefresh ??= this.refresh().finally(() => { this.missRefresh = undefined })
    await this.missRefresh
    return this.has(cid)
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
    let w: Writer
    // A failed write may have dropped the writer while this put waited for it: take the new one.
    do w = await this.openWriter(bytes.length)
    while (w !== this.writer)
    if (this.pending.has(k) || this.index.has(digest)) return cid // a concurrent put of the same block won
    const loc: Location = { pack: w.pack, offset: w.size + this.bufferBytes, length: bytes.length, codec: cid.code }
    this.buffer.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    this.bufferBytes += bytes.length
    this.bufferKeys.push(k)
    this.pendingRecords.push(encodeRecord(digest, loc))
    this.pending.set(k, bytes)
    this.index.set(digest, loc)
    if (this.bufferBytes >= WRITE_BUFFER_BYTES) await this.startFlush()
    return cid
  }

  private async openWriter (next: number): Promise<Writer> {
    if (this.writer !== undefined && this.writer.size + this.bufferBytes + next <= this.packLimit) return this.writer
    // Concurrent puts (the importer writes in parallel) must share one switch of pack file.
    this.switching ??= this.switchPack(next).finally(() => { this.switching = undefined })
    return await this.switching
  }

  private async switchPack (next: number): Promise<Writer> {
    await this.drain()
    // Before the first byte is appended to a pack, records pointing past its end must be gone for good.
    await this.startAppending()
    const packs = (await readdir(this.dir)).map(packNumber).filter(n => n !== undefined)
    let pack = packs.length === 0 ? 1 : Math.max(...packs)
    let fh = await open(join(this.dir, packName(pack)), 'a+')
    let { size } = await fh.stat()
    if (size > 0 && size + next > this.packLimit) {
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
   * Throws if that write failed (its blocks, and these, were discarded).
   */
  private async startFlush (): Promise<void> {
    const w = this.writer
    if (w === undefined || this.buffer.length === 0) return
    const batch: Batch = { w, data: this.buffer, records: this.pendingRecords, keys: this.bufferKeys, offset: w.size, bytes: this.bufferBytes, generation: this.generation }
    w.size += this.bufferBytes
    this.buffer = []
    this.pendingRecords = []
    this.bufferKeys = []
    this.bufferBytes = 0
    const previous = this.writing
    this.writing = previous.then(async () => await this.writeBatch(batch))
    await previous
    if (this.generation !== batch.generation) throw this.lastFailure
  }

  /** Writes one batch: data, fsync, then its index records; a failure discards everything not yet durable. */
  private async writeBatch (batch: Batch): Promise<void> {
    if (batch.generation !== this.generation) return // discarded by a failure before it
    try {
      await writeAll(batch.w.fh, batch.data)
      await batch.w.fh.datasync()
      await this.appendIndex(Buffer.concat(batch.records))
      for (const k of batch.keys) this.pending.delete(k)
    } catch (err) {
      await this.discardUnwritten(batch, err)
    }
  }

  /**
   * After a failed write: forgets every block not yet durable (so it is not
   * taken for stored and is put again), and cuts the pack back to where the
   * failed batch began, so the next append starts at the durable end.
   */
  private async discardUnwritten (batch: Batch, err: unknown): Promise<void> {
    // All at once, before any await: puts meanwhile must see either the old state or the reset one.
    this.generation++
    for (const k of this.pending.keys()) this.index.delete(Buffer.from(k, 'latin1'))
    this.pending.clear()
    this.buffer = []
    this.pendingRecords = []
    this.bufferKeys = []
    this.bufferBytes = 0
    if (this.writer === batch.w) this.writer = undefined // the next put opens the pack again at its real end
    try {
      const { size } = await batch.w.fh.stat()
      if (size > batch.offset) await batch.w.fh.truncate(batch.offset)
    } catch { /* the bytes past the durable end are unindexed either way; the next writer appends after them */ }
    await batch.w.fh.close().catch(() => {})
    this.failure = this.lastFailure = await asDiskError(err, this.dir, batch.bytes)
  }

  /** Waits for every batch started so far, whatever came of it. */
  private async drain (): Promise<void> {
    await this.startFlush().catch(() => {})
    await this.writing
  }

  /**
   * Prepares this process's first append to the index: a torn record left by
   * a crash is cut off (appends start on a record boundary), and records
   * pointing past their pack's end get tombstones, durably, before any pack
   * grows under them.
   */
  private async startAppending (): Promise<void> {
    if (this.indexEnd !== undefined) return
    const { size } = await this.indexFile!.stat()
    if (size % RECORD_BYTES !== 0) await this.indexFile!.truncate(size - (size % RECORD_BYTES))
    this.indexEnd = size - (size % RECORD_BYTES)
    if (this.stale.size === 0) return
    await this.appendIndex(Buffer.concat([...this.stale].map(k => encodeTombstone(Buffer.from(k, 'latin1')))))
    await this.indexFile!.sync()
    this.stale.clear()
  }

  /** Appends whole records to the index; on failure the index is cut back to where it was, so no record is torn. */
  private async appendIndex (records: Buffer): Promise<void> {
    await this.startAppending()
    const at = this.indexEnd!
    try {
      await writeAll(this.indexFile!, [records])
      this.indexEnd = at + records.length
    } catch (err) {
      await this.indexFile!.truncate(at).catch(() => { this.indexEnd = undefined }) // else cut to a record boundary before the next append
      throw err
    }
  }

  /** Writes every buffered block and its index record; throws if a write failed since the last sync. */
  async flush (): Promise<void> {
    await this.drain()
    if (this.failure !== undefined) throw this.failure
  }

  /**
   * Counts failed writes: a caller that reads it before its puts and passes
   * it to `sync` learns whether any of its blocks were lost, whatever other
   * writers in the process did meanwhile.
   */
  get writeEpoch (): number {
    return this.generation
  }

  /**
   * Flushes and makes every block written so far durable. Throws if a write
   * failed since `since` (a writeEpoch), or without it, a write that failed
   * and was not yet reported by a sync.
   */
  async sync (since?: number): Promise<void> {
    try {
      await this.drain()
      if (since === undefined ? this.failure !== undefined : this.generation !== since) throw this.lastFailure
      await this.writer?.fh.sync()
      await this.indexFile?.sync()
    } catch (err) {
      this.failure = undefined // reported now
      throw await asDiskError(err, this.dir)
    }
  }

  /** The bytes stored for `cid`, unverified (callers check them against the CID). */
  async read (cid: CID): Promise<Uint8Array> {
    const digest = this.digestOf(cid)
    const k = key(digest)
    if (!this.pending.has(k) && Date.now() - this.checkedAt >= RECHECK_MS) await this.refresh() // let a compaction's freed space go
    for (let attempt = 0; ; attempt++) {
      // Looked at after every await: a put meanwhile indexes its block at once, at a place in the pack it is not
      // written to yet (a read there returned 0 bytes, "corrupt" to the caller); until then the bytes are pending.
      let buffered = this.pending.get(k)
      if (buffered !== undefined) return buffered
      let loc = this.index.get(digest)
      if (loc === undefined) {
        await this.refresh() // another process may have added it
        buffered = this.pending.get(k)
        if (buffered !== undefined) return buffered
        loc = this.index.get(digest)
        if (loc === undefined) throw new BlockNotFoundError(cid.toString())
      }
      try {
        return await this.handles.use(async handles => await readAt(handles, loc))
      } catch (err) {
        // A compaction deleted the pack before this store opened it: reload, look again.
        if (attempt > 0 || (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        await this.refresh()
      }
    }
  }

  override async * get (cid: CID): AsyncGenerator<Uint8Array> {
    yield await this.read(cid)
  }

  /** Removes a block (also one whose record was dropped for pointing past its pack's end). */
  override async delete (cid: CID): Promise<void> {
    const digest = this.digestOf(cid)
    if (!this.index.has(digest) && !this.stale.has(key(digest))) return
    await this.flush()
    this.index.delete(digest)
    this.stale.delete(key(digest))
    await this.appendIndex(encodeTombstone(digest))
  }

  /**
   * The current record of every block in the index file, newest first,
   * including records dropped for pointing past their pack's end: what an
   * integrity check reads.
   */
  async * records (): AsyncGenerator<{ cid: CID, loc: Location }> {
    // The in-memory index keeps only digest prefixes; full CIDs come from the log, latest record per block.
    await this.flush()
    const log = await readFile(this.indexPath)
    const seen = new Set<string>()
    for (let at = log.length - (log.length % RECORD_BYTES) - RECORD_BYTES; at >= 0; at -= RECORD_BYTES) {
      const rec = decodeRecord(log.subarray(at, at + RECORD_BYTES))
      if (rec === undefined) continue
      const k = key(rec.digest)
      if (seen.has(k)) continue
      seen.add(k)
      if (rec.loc === undefined) continue
      yield { cid: CID.createV1(rec.loc.codec, Digest.create(sha256.code, Uint8Array.from(rec.digest))), loc: rec.loc }
    }
  }

  /** The bytes at `loc` as its pack holds them: fewer than `loc.length` where the pack ends early. */
  async readLocation (loc: Location): Promise<Uint8Array> {
    return await this.handles.use(async handles => await readAt(handles, loc))
  }

  override async * getAll (): AsyncGenerator<{ cid: CID, bytes: AsyncGenerator<Uint8Array> }> {
    for await (const { cid } of this.records()) yield { cid, bytes: this.get(cid) }
  }

  /** An empty mark set over the blocks held now, for `compact` (valid until a block is added or removed). */
  marks (): BlockMarks {
    return new BlockMarks(this.index)
  }

  /**
   * Rewrites the store keeping only the blocks `keep` accepts (a predicate
   * must answer the same twice); crash-safe at every point. The caller holds
   * the repo lock. Afterwards the table is sized for the blocks kept.
   */
  async compact (keep: Keep, options: CompactOptions = {}): Promise<CompactResult> {
    await this.sync()
    if (keep instanceof BlockMarks && !keep.isFor(this.index)) {
      throw new StoreError('ERR_STORE_CHANGED', 'the block store was reloaded after its blocks were marked; mark them again')
    }
    try {
      return await compactPacks(this.dir, this.index, keep, { packLimitBytes: this.packLimit, ...options })
    } finally {
      await this.refresh() // takes up the new index if the compaction got as far as its rename
    }
  }

  /** Opens the pack store in `dir` (made if missing). */
  static async openAt (dir: string, options: PackStoreOptions = {}): Promise<PackStore> {
    const store = new PackStore(dir, options)
    await store.open()
    return store
  }

  /** Opens the pack store of a repo (`<repo>/packs`). */
  static async openRepo (repo: string, options: PackStoreOptions = {}): Promise<PackStore> {
    return await PackStore.openAt(packsDir(repo), options)
  }

  /** Number of blocks indexed. */
  get size (): number {
    return this.index.size
  }

  /** Memory held by the in-memory index. */
  get indexBytes (): number {
    return this.index.bytes
  }

  /** Flushes and closes every file (also when the flush fails, which it then throws). */
  async close (): Promise<void> {
    try {
      await this.sync()
    } finally {
      await this.writer?.fh.close().catch(() => {})
      this.writer = undefined
      await this.handles.retire()
      this.handles = new PackHandles(this.dir)
      await this.indexFile?.close()
      this.indexFile = undefined
    }
  }
}

/** The pack file appended to, and its logical end (batches in flight included). */
interface Writer { pack: number, fh: FileHandle, size: number }

/** Blocks written to a pack with one write, then indexed. */
interface Batch { w: Writer, data: Buffer[], records: Buffer[], keys: string[], offset: number, bytes: number, generation: number }

/** Reads one block at `loc` through a generation's handles. */
async function readAt (handles: PackHandles, loc: Location): Promise<Uint8Array> {
  const fh = await handles.get(loc.pack)
  const buf = Buffer.allocUnsafe(loc.length)
  // Small blocks (narinfos, directory shards) come from the page cache faster than a
  // thread-pool round trip; this is what keeps narinfo lookups' tail latency low.
  const bytesRead = loc.length <= SYNC_READ_BYTES
    ? readSync(fh.fd, buf, 0, loc.length, loc.offset)
    : (await fh.read(buf, 0, loc.length, loc.offset)).bytesRead
  return bytesRead === loc.length ? buf : buf.subarray(0, bytesRead) // a short read fails verification
}
