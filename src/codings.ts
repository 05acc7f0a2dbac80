import type { Transform } from 'node:stream'
import * as zlib from 'node:zlib'
import { compressFrame, decompressFrames, frameCompressor, zstdDecompressor } from './zstd.js'

// HTTP content codings (RFC 9110 §8.4.1) nixipfs speaks on the wire, with the
// levels chosen by bench/compression.mjs (bench/compression-results.md): the
// cheapest level that still takes most of the ratio, since a level costing more
// CPU than the link saves makes the transfer slower, not faster.

/** A content coding nixipfs can both write and read. */
export type Coding = 'zstd' | 'br' | 'gzip'

/** The codings this Node can write and read, best first: zstd (fast at a good ratio; WebAssembly before Node 22.15), then brotli, then gzip. */
export const CODINGS: readonly Coding[] = ['zstd', 'br', 'gzip']

/** zstd level 3 (its default) and brotli quality 1: both compress at well over 100 MB/s; gzip only as the last resort (slower for the same ratio). */
const ZSTD_LEVEL = 3
const BROTLI_QUALITY = 1
const GZIP_LEVEL = 1

/**
 * Output piece of the streaming coders: zlib's default of 16 KiB makes a
 * thread-pool round trip per 16 KiB; 256 KiB cut the CPU per byte of a
 * long brotli stream by a fifth (compressing) to a third (decompressing).
 */
const STREAM_CHUNK = 256 * 1024

/** Brotli's window for `size` bytes: no larger than the input needs (a 4 MiB window costs set-up time on every block). */
function brotliParams (size: number): Record<number, number> {
  const lgwin = Math.min(22, Math.max(16, Math.ceil(Math.log2(Math.max(size, 1)))))
  return { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_LGWIN]: lgwin, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: size }
}

/** A streaming compressor for `coding`. */
export function compressor (coding: Coding): Transform {
  switch (coding) {
    case 'zstd': return frameCompressor(ZSTD_LEVEL)
    case 'br': return zlib.createBrotliCompress({ chunkSize: STREAM_CHUNK, params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_LGWIN]: 22 } })
    case 'gzip': return zlib.createGzip({ chunkSize: STREAM_CHUNK, level: GZIP_LEVEL })
  }
}

/** A streaming decompressor for `coding` (it emits bounded pieces and waits for its reader, so memory stays bounded). */
export function decompressor (coding: Coding): Transform {
  switch (coding) {
    case 'zstd': return zstdDecompressor(STREAM_CHUNK)
    case 'br': return zlib.createBrotliDecompress({ chunkSize: STREAM_CHUNK })
    case 'gzip': return zlib.createGunzip({ chunkSize: STREAM_CHUNK })
  }
}

// One block at a time, the synchronous coders cost a third (compressing) to
// half (decompressing) the CPU of zlib's streams, which pay a stream's set-up
// and thread-pool round trips per block; a 256 KiB block takes about 1 ms.

/** `input` (one block, or a few pieces that follow each other: small) compressed whole with `coding`. */
export function compressSync (coding: Coding, input: Uint8Array | Uint8Array[]): Buffer {
  if (coding === 'zstd') return compressFrame(input, ZSTD_LEVEL)
  const bytes = Array.isArray(input) ? Buffer.concat(input) : input
  return coding === 'br' ? zlib.brotliCompressSync(bytes, { params: brotliParams(bytes.length) }) : zlib.gzipSync(bytes, { level: GZIP_LEVEL })
}

/** `bytes` (one compressed block) decompressed whole; throws a RangeError past `maxBytes` of output, and zlib's error when corrupt or cut. */
export function decompressSync (coding: Coding, bytes: Uint8Array, maxBytes: number): Buffer {
  switch (coding) {
    case 'zstd': return decompressFrames(bytes, maxBytes)
    case 'br': return zlib.brotliDecompressSync(bytes, { maxOutputLength: maxBytes })
    case 'gzip': return zlib.gunzipSync(bytes, { maxOutputLength: maxBytes })
  }
}

/** The coding an `Accept-Encoding` header lets us use (best of ours with q > 0), or undefined for none (identity). */
export function negotiate (header: string | undefined, offered: readonly Coding[] = CODINGS): Coding | undefined {
  if (header === undefined || header === '') return undefined
  const q = new Map<string, number>()
  for (const item of header.toLowerCase().split(',')) {
    const [name, ...params] = item.split(';').map(s => s.trim())
    if (name === undefined || name === '') continue
    const weight = params.map(p => /^q=([\d.]+)$/.exec(p)?.[1]).find(v => v !== undefined)
    q.set(name, weight === undefined ? 1 : Number(weight))
  }
  // `*` stands for every coding not named (RFC 9110 §12.5.3).
  return offered.find(c => (q.get(c) ?? q.get('*') ?? 0) > 0)
}

/** Parses a `Content-Encoding` header: undefined for none or identity, the coding if it is one of `known`, else the raw name (which the caller refuses). */
export function codingOf (header: string | undefined, known: readonly Coding[] = CODINGS): Coding | undefined | { unknown: string } {
  const name = (header ?? '').trim().toLowerCase()
  if (name === '' || name === 'identity') return undefined
  return (known as readonly string[]).includes(name) ? name as Coding : { unknown: name }
}
