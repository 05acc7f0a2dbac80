import { open, readdir, rename, rm, stat, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { asDiskError, isDiskFull } from '../disk.js'
import { DiskError, IntegrityError } from '../errors.js'
import { formatBytes } from '../progress.js'
import { BlockMarks } from './block-marks.js'
import type { DigestIndex, Location } from './digest-index.js'
import { INDEX_FILE, PACK_LIMIT_BYTES, RECORD_BYTES, decodeRecord, encodeRecord, packName, packNumber, writeAll } from './pack-format.js'

/** The new index while it is written; it becomes `index.log` by one rename. */
export const NEW_INDEX_FILE = `${INDEX_FILE}.new`
/** Bytes of adjacent blocks copied with one read and one write. */
const RUN_BYTES = 8 * 1024 * 1024
/** Index records read, or written, per step. */
const CHUNK_RECORDS = 65536

/** A number of blocks and their bytes. */
export interface BlockCount { blocks: number, bytes: number }

/** What a compaction found and did. */
export interface CompactResult {
  before: BlockCount
  kept: BlockCount
  dropped: BlockCount
  /** bytes of pack files on disk, before and after (equal for a dry run) */
  packBytes: { before: number, after: number }
  /** false for a dry run, or when there was nothing to drop */
  rewritten: boolean
}

/** Points a compaction passes, each durable: a test stops there to act out a crash. */
export type CompactStep = 'scanned' | 'pack-written' | 'index-written' | 'committed' | 'pack-removed' | 'done'

export interface CompactOptions {
  /** count only; change nothing */
  dryRun?: boolean
  packLimitBytes?: number
  /** called at each step; throwing stops the compaction there, as a crash would */
  onStep?: (step: CompactStep) => void | Promise<void>
}

/** Which blocks a compaction keeps: a mark set of the same table, or a predicate. */
export type Keep = BlockMarks | ((cid: CID) => boolean)

interface LiveRecord { slot: number, digest: Buffer, loc: Location }

/**
 * The current record of every block in the table, once each, in the order
 * of the log (which is the order the blocks sit in their packs), a chunk at
 * a time: a record is current when the table holds the same location.
 */
async function * liveRecords (dir: string, index: DigestIndex): AsyncGenerator<LiveRecord[]> {
  const seen = new BlockMarks(index)
  const fh = await open(join(dir, INDEX_FILE), 'r')
  try {
    const { size } = await fh.stat()
    const end = size - (size % RECORD_BYTES)
    const buf = Buffer.alloc(Math.min(end, CHUNK_RECORDS * RECORD_BYTES))
    for (let at = 0; at < end;) {
      const n = Math.min(buf.length, end - at)
      const { bytesRead } = await fh.read(buf, 0, n, at)
      if (bytesRead !== n) throw new IntegrityError(`${join(dir, INDEX_FILE)} ended early while it was read`)
      const live: LiveRecord[] = []
      for (let i = 0; i < n; i += RECORD_BYTES) {
        const rec = decodeRecord(buf.subarray(i, i + RECORD_BYTES))
        if (rec?.loc === undefined) continue
        const slot = index.slotOf(rec.digest)
        if (slot < 0) continue
        const cur = index.at(slot)
        if (cur.pack !== rec.loc.pack || cur.offset !== rec.loc.offset || cur.length !== rec.loc.length) continue
        if (seen.addSlot(slot)) live.push({ slot, digest: rec.digest, loc: rec.loc })
      }
      yield live
      at += n
    }
  } finally {
    await fh.close()
  }
}

function keeper (keep: Keep): (r: LiveRecord) => boolean {
  if (keep instanceof BlockMarks) return r => keep.hasSlot(r.slot)
  return r => keep(CID.createV1(r.loc.codec, Digest.create(sha256.code, r.digest)))
}

/** The pack files in `dir`, by number, with their sizes. */
export async function packFiles (dir: string): Promise<Array<{ pack: number, bytes: number }>> {
  const out: Array<{ pack: number, bytes: number }> = []
  for (const f of await readdir(dir)) {
    const pack = packNumber(f)
    if (pack !== undefined) out.push({ pack, bytes: (await stat(join(dir, f))).size })
  }
  return out.sort((a, b) => a.pack - b.pack)
}

async function syncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

/**
 * Rewrites the pack store in `dir` so that it holds only the blocks of
 * `index` (the store's table, up to date) that `keep` accepts. The caller
 * holds the repo lock: nothing may append meanwhile.
 *
 * Crash-safe at every point: live blocks are copied, in long sequential
 * runs, into new pack files numbered above every existing one, a complete
 * new index is written beside the old, everything is fsynced, and only then
 * does one rename make the new index current; old packs are deleted after
 * that. Until the rename the store is exactly the old one (the new files are
 * unreferenced); after it, exactly the new one (the old packs are). Such
 * leftovers are removed when the next compaction starts. Pack numbers are
 * never reused, so a process still holding the old table never reads a
 * new file under an old number.
 */
export async function compactPacks (dir: string, index: DigestIndex, keep: Keep, options: CompactOptions = {}): Promise<CompactResult> {
  const keeps = keeper(keep)
  const before: BlockCount = { blocks: 0, bytes: 0 }
  const kept: BlockCount = { blocks: 0, bytes: 0 }
  const referenced = new Set<number>()
  for await (const chunk of liveRecords(dir, index)) {
    for (const r of chunk) {
      before.blocks++
      before.bytes += r.loc.length
      referenced.add(r.loc.pack)
      if (keeps(r)) { kept.blocks++; kept.bytes += r.loc.length }
    }
  }
  const dropped = { blocks: before.blocks - kept.blocks, bytes: before.bytes - kept.bytes }
  await options.onStep?.('scanned')
  let packs = await packFiles(dir)
  const diskBefore = packs.reduce((sum, p) => sum + p.bytes, 0)
  if (options.dryRun === true) return { before, kept, dropped, packBytes: { before: diskBefore, after: diskBefore }, rewritten: false }

  // Leftovers of an interrupted compaction: the unfinished new index, and packs the index does not
  // reference (the newest one stays, so that pack numbers keep rising).
  await rm(join(dir, NEW_INDEX_FILE), { force: true })
  const newest = packs.at(-1)?.pack ?? 0
  for (const p of packs) if (!referenced.has(p.pack) && p.pack !== newest) await rm(join(dir, packName(p.pack)), { force: true })
  packs = packs.filter(p => referenced.has(p.pack) || p.pack === newest)
  if (dropped.blocks === 0) {
    const after = packs.reduce((sum, p) => sum + p.bytes, 0)
    return { before, kept, dropped, packBytes: { before: diskBefore, after }, rewritten: false }
  }

  let after: number
  try {
    after = await copyLive(dir, index, keeps, newest + 1, options)
  } catch (err) {
    // The store is still the old one; the unreferenced new files would only hold the space a full disk lacks.
    await rm(join(dir, NEW_INDEX_FILE), { force: true })
    for (const p of await packFiles(dir)) if (p.pack > newest) await rm(join(dir, packName(p.pack)), { force: true })
    const disk = await asDiskError(err, dir)
    // The kept blocks are copied before the old packs go: on a disk without room for them, advising gc itself is no help.
    if (!(disk instanceof DiskError) || !isDiskFull(disk)) throw disk
    throw new DiskError(dir, disk.errno, kept.bytes, disk.freeBytes, { cause: err, advice: `gc copies the ${formatBytes(kept.bytes)} it keeps before it frees the rest, so free that much on this disk first (or move the repo to a larger one)` })
  }
  await options.onStep?.('index-written')
  await rename(join(dir, NEW_INDEX_FILE), join(dir, INDEX_FILE))
  await syncDir(dir)
  await options.onStep?.('committed')
  for (const p of packs) {
    await rm(join(dir, packName(p.pack)), { force: true })
    await options.onStep?.('pack-removed')
  }
  await syncDir(dir)
  await options.onStep?.('done')
  return { before, kept, dropped, packBytes: { before: diskBefore, after }, rewritten: true }
}

/** Copies the kept blocks into packs `first`, `first + 1`, … and writes their index as NEW_INDEX_FILE, all fsynced; returns the bytes written. */
async function copyLive (dir: string, index: DigestIndex, keeps: (r: LiveRecord) => boolean, first: number, options: CompactOptions): Promise<number> {
  const limit = options.packLimitBytes ?? PACK_LIMIT_BYTES
  const sources = new Map<number, FileHandle>()
  const log = await open(join(dir, NEW_INDEX_FILE), 'w')
  let logBytes = 0
  let records: Buffer[] = []
  let outPack = first
  // At least one new pack, even an empty one: the newest pack number must rise with every compaction.
  let out = await open(join(dir, packName(outPack)), 'w')
  let outBytes = 0 // written to `out`, or waiting in `run`
  let written = 0
  let run: { pack: number, offset: number, length: number, to: number } | undefined
  const runBuf = Buffer.allocUnsafe(RUN_BYTES)

  const flushRun = async (): Promise<void> => {
    if (run === undefined) return
    const { pack, offset, length, to } = run
    run = undefined
    let src = sources.get(pack)
    if (src === undefined) { src = await open(join(dir, packName(pack)), 'r'); sources.set(pack, src) }
    const buf = length <= runBuf.length ? runBuf : Buffer.allocUnsafe(length)
    const { bytesRead } = await src.read(buf, 0, length, offset)
    if (bytesRead !== length) throw new IntegrityError(`pack ${packName(pack)} is shorter than its index says (${offset + bytesRead} of ${offset + length} bytes); the store is damaged`)
    await writeAll(out, [buf.subarray(0, length)], to)
    written += length
  }
  const flushRecords = async (): Promise<void> => {
    const bytes = Buffer.concat(records)
    records = []
    await writeAll(log, [bytes], logBytes)
    logBytes += bytes.length
  }
  const closeOut = async (): Promise<void> => {
    await flushRun()
    await out.sync()
    await out.close()
    await options.onStep?.('pack-written')
  }

  try {
    for await (const chunk of liveRecords(dir, index)) {
      for (const r of chunk) {
        if (!keeps(r)) continue
        const { pack, offset, length, codec } = r.loc
        if (outBytes > 0 && outBytes + length > limit) {
          await closeOut()
          out = await open(join(dir, packName(++outPack)), 'w')
          outBytes = 0
        }
        if (run !== undefined && run.pack === pack && run.offset + run.length === offset && run.length + length <= RUN_BYTES) {
          run.length += length
        } else {
          await flushRun()
          run = { pack, offset, length, to: outBytes }
        }
        records.push(encodeRecord(r.digest, { pack: outPack, offset: outBytes, length, codec }))
        outBytes += length
      }
      if (records.length >= CHUNK_RECORDS) await flushRecords()
    }
    await closeOut()
    await flushRecords()
    await log.sync()
  } finally {
    await log.close()
    await out.close().catch(() => {}) // already closed unless a step failed
    for (const fh of sources.values()) await fh.close()
  }
  await syncDir(dir)
  return written
}
