import { existsSync } from 'node:fs'
import { crc32 } from 'node:zlib'
import type { CID } from 'multiformats/cid'
import { IntegrityError } from '../errors.js'
import { precompressedDir } from '../repo-layout.js'
import { compressFrame } from '../zstd.js'
import { checkBlock } from './block.js'
import type { CompactResult } from './pack-compact.js'
import { PackStore } from './pack-store.js'

// Blocks compressed ahead, for a mirror to send peers that ask for zstd
// without compressing on every request: a mirror serving one closure to
// three peers at once spent 4.2 CPU seconds compressing (bench/wan.mjs),
// while an HTTP cache sends files compressed once. Compressing ahead also
// affords a slower level than a response can: each block is a frame of its
// own (level 9, 2.89× on a libLLVM NAR against 2.78× for level 3 in 1 MiB
// frames), and zstd streams are series of frames, so a response is made of
// them as they are. The frames are kept in a pack store of their own under
// the block's CID; each starts with the CRC-32 of the frame, so a damaged
// one is left out (compressed again), never sent.

/** zstd level of frames compressed ahead (`nixipfs precompress --level`): near zstd's ratio at 9, at 25–45 MB/s on one core. */
export const PRECOMPRESS_LEVEL = 9

/** How often a server looks for frames another process (`nixipfs precompress`) added since. */
const RECHECK_MS = 2000

/** `bytes` (one block's data) as a stored record: the CRC-32 of its zstd frame at `level`, then the frame. */
export function precompressedRecord (bytes: Uint8Array, level = PRECOMPRESS_LEVEL): Buffer {
  const frame = compressFrame(bytes, level)
  const record = Buffer.allocUnsafe(4 + frame.length)
  record.writeUInt32LE(crc32(frame), 0)
  frame.copy(record, 4)
  return record
}

/** The zstd frame in a stored record, or undefined when it does not match its CRC-32. */
export function frameOfRecord (record: Uint8Array): Uint8Array | undefined {
  if (record.length < 4) return undefined
  const frame = record.subarray(4)
  return Buffer.from(record.buffer, record.byteOffset, 4).readUInt32LE(0) === crc32(frame) ? frame : undefined
}

/** The frames of a repo's blocks compressed ahead, for a server: none until `nixipfs precompress` made some; a failure to read one is a miss. */
export class PrecompressedFrames {
  private store?: PackStore
  private opening?: Promise<PackStore | undefined>
  private checkedAt = 0
  private warned = false

  constructor (private readonly repo: string, private readonly log?: { warn: (m: string) => void }) {}

  /** Whether the block `cid` was compressed ahead (its frame is checked when read). */
  async has (cid: CID): Promise<boolean> {
    try {
      return (await this.current())?.has(cid) === true
    } catch (err) {
      this.warn(`cannot read blocks compressed ahead: ${(err as Error).message}; compressing on the fly`)
      return false
    }
  }

  /** The zstd frame of the block `cid`'s data, if compressed ahead and intact. */
  async frame (cid: CID): Promise<Uint8Array | undefined> {
    if (!await this.has(cid)) return undefined
    try {
      const frame = frameOfRecord(await this.store!.read(cid))
      if (frame === undefined) this.warn(`the frame of block ${cid.toString()} compressed ahead is damaged (CRC-32 mismatch); compressing it on the fly (run nixipfs precompress again)`)
      return frame
    } catch (err) {
      this.warn(`cannot read blocks compressed ahead: ${(err as Error).message}; compressing on the fly`)
      return undefined
    }
  }

  /** The store, opened once its folder exists, caught up with other processes every RECHECK_MS. */
  private async current (): Promise<PackStore | undefined> {
    const now = Date.now()
    const due = now - this.checkedAt >= RECHECK_MS
    if (due) this.checkedAt = now
    if (this.store === undefined) {
      if (this.opening === undefined && due && existsSync(precompressedDir(this.repo))) {
        this.opening = PackStore.openAt(precompressedDir(this.repo)).then(s => { this.store = s; return s }).finally(() => { this.opening = undefined })
      }
      return await this.opening
    }
    if (due) await this.store.refresh()
    return this.store
  }

  private warn (message: string): void {
    if (this.warned) return
    this.warned = true
    this.log?.warn(message)
  }

  /** Closes the store (if it was opened). */
  async close (): Promise<void> {
    await this.opening?.catch(() => {})
    await this.store?.close()
  }
}

/** What a precompress run did. */
export interface PrecompressResult {
  /** blocks compressed now, their bytes, and the bytes of their frames */
  compressed: { blocks: number, bytes: number, frameBytes: number }
  /** blocks compressed ahead before */
  already: number
  /** frames that failed their CRC-32, compressed again */
  replaced: number
  /** CIDs of blocks whose bytes do not match them: not compressed (nixipfs fsck --repair mends them) */
  corrupt: string[]
}

/** Compresses ahead every block of `blocks` that has no intact frame yet, into the repo's store of frames (the caller holds the repo lock). */
export async function precompressBlocks (repo: string, blocks: PackStore, options: { level?: number, onBlock?: (bytes: number) => void } = {}): Promise<PrecompressResult> {
  const frames = await PackStore.openAt(precompressedDir(repo))
  const result: PrecompressResult = { compressed: { blocks: 0, bytes: 0, frameBytes: 0 }, already: 0, replaced: 0, corrupt: [] }
  try {
    await blocks.refresh()
    for await (const { cid } of blocks.records()) {
      if (!blocks.has(cid)) continue // a record dropped since
      if (frames.has(cid)) {
        if (frameOfRecord(await frames.read(cid)) !== undefined) { result.already++; continue }
        await frames.delete(cid)
        result.replaced++
      }
      const bytes = await blocks.read(cid)
      // A frame is sent in place of the block, unchecked by its sender: it is made only of bytes that match the CID.
      try { checkBlock(cid, bytes) } catch (err) {
        if (!(err instanceof IntegrityError)) throw err
        result.corrupt.push(cid.toString())
        continue
      }
      const record = precompressedRecord(bytes, options.level)
      await frames.put(cid, record)
      result.compressed.blocks++
      result.compressed.bytes += bytes.length
      result.compressed.frameBytes += record.length - 4
      options.onBlock?.(bytes.length)
    }
  } finally {
    await frames.close()
  }
  return result
}

/** Drops the frames of the blocks `kept` says are gone (after a gc): what it did, or undefined when the repo has no frames. */
export async function compactPrecompressed (repo: string, kept: (cid: CID) => boolean): Promise<CompactResult | undefined> {
  if (!existsSync(precompressedDir(repo))) return undefined
  const frames = await PackStore.openAt(precompressedDir(repo))
  try {
    return await frames.compact(kept)
  } finally {
    await frames.close()
  }
}
