import { crc32 } from 'node:zlib'
import type { FileHandle } from 'node:fs/promises'
import type { Location } from './digest-index.js'

/** The index file of a pack store directory. */
export const INDEX_FILE = 'index.log'
/** A pack file is closed for appends once it reaches this size. */
export const PACK_LIMIT_BYTES = 1024 * 1024 * 1024
/** One index record: digest(32) codec(4) pack(4) offset(8) length(4) crc32(4). */
export const RECORD_BYTES = 56
/** Length value marking a deleted block. */
export const TOMBSTONE = 0xffffffff

/** File name of pack number `n`. */
export const packName = (n: number): string => `${String(n).padStart(6, '0')}.pack`

/** The pack number a file name stands for, or undefined for any other file. */
export function packNumber (file: string): number | undefined {
  if (!/^\d+\.pack$/.test(file)) return undefined
  return Number(file.slice(0, -'.pack'.length))
}

/** An index record for `digest` at `loc`. */
export function encodeRecord (digest: Uint8Array, loc: Location): Buffer {
  const rec = Buffer.alloc(RECORD_BYTES)
  rec.set(digest, 0)
  rec.writeUInt32LE(loc.codec, 32)
  rec.writeUInt32LE(loc.pack, 36)
  rec.writeBigUInt64LE(BigInt(loc.offset), 40)
  rec.writeUInt32LE(loc.length, 48)
  rec.writeUInt32LE(crc32(rec.subarray(0, 52)), 52)
  return rec
}

/** A record deleting `digest`. */
export function encodeTombstone (digest: Uint8Array): Buffer {
  return encodeRecord(digest, { pack: 0, offset: 0, length: TOMBSTONE, codec: 0 })
}

/** A valid index record's digest and the block's location (undefined for a tombstone); undefined for a torn or damaged record. */
export function decodeRecord (rec: Buffer): { digest: Buffer, loc?: Location } | undefined {
  if (crc32(rec.subarray(0, 52)) !== rec.readUInt32LE(52)) return undefined
  const digest = rec.subarray(0, 32)
  const length = rec.readUInt32LE(48)
  if (length === TOMBSTONE) return { digest }
  return { digest, loc: { codec: rec.readUInt32LE(32), pack: rec.readUInt32LE(36), offset: Number(rec.readBigUInt64LE(40)), length } }
}

/**
 * Writes every byte of `parts` (appended, or at `position`): a short write,
 * as a filling disk gives, is continued until it completes or fails.
 */
export async function writeAll (fh: FileHandle, parts: Uint8Array[], position?: number): Promise<void> {
  let rest = parts.filter(p => p.length > 0)
  let at = position
  while (rest.length > 0) {
    const { bytesWritten } = await fh.writev(rest, at)
    if (bytesWritten === 0) throw Object.assign(new Error(`write to ${String(fh.fd)} made no progress`), { code: 'EIO' })
    if (at !== undefined) at += bytesWritten
    let skip = bytesWritten
    while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length
    if (skip > 0) rest = [rest[0]!.subarray(skip), ...rest.slice(1)]
  }
}
