import type { Transform } from 'node:stream'
import * as zlib from 'node:zlib'

// HTTP content codings (RFC 9110 §8.4.1) nixipfs speaks on the wire, with the
// levels chosen by bench/compression.mjs (bench/compression-results.md): the
// cheapest level that still takes most of the ratio, since a level costing more
// CPU than the link saves makes the transfer slower, not faster.

/** A content coding nixipfs can both write and read. */
export type Coding = 'zstd' | 'br' | 'gzip'

/** zlib's zstd streams (Node ≥ 22.15; absent from Node 20's types, so looked up by name). */
const zstdOf = zlib as unknown as {
  createZstdCompress?: (o?: { params?: Record<number, number> }) => Transform
  createZstdDecompress?: () => Transform
  constants: { ZSTD_c_compressionLevel?: number }
}

/** True when this Node has zstd built in. */
export const HAS_ZSTD = typeof zstdOf.createZstdCompress === 'function' && typeof zstdOf.createZstdDecompress === 'function'

/** The codings this Node can write and read, best first: zstd (fast at a good ratio), then brotli, then gzip. */
export const CODINGS: readonly Coding[] = HAS_ZSTD ? ['zstd', 'br', 'gzip'] : ['br', 'gzip']

/** zstd level 3 (its default) and brotli quality 1: both compress at well over 100 MB/s; gzip only as the last resort (slower for the same ratio). */
const ZSTD_LEVEL = 3
const BROTLI_QUALITY = 1
const GZIP_LEVEL = 1

/** A streaming compressor for `coding`. */
export function compressor (coding: Coding): Transform {
  switch (coding) {
    case 'zstd': return zstdOf.createZstdCompress!({ params: { [zstdOf.constants.ZSTD_c_compressionLevel!]: ZSTD_LEVEL } })
    case 'br': return zlib.createBrotliCompress({ params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.constants.BROTLI_PARAM_LGWIN]: 22 } })
    case 'gzip': return zlib.createGzip({ level: GZIP_LEVEL })
  }
}

/** A streaming decompressor for `coding` (it emits bounded pieces and waits for its reader, so memory stays bounded). */
export function decompressor (coding: Coding): Transform {
  switch (coding) {
    case 'zstd': return zstdOf.createZstdDecompress!()
    case 'br': return zlib.createBrotliDecompress()
    case 'gzip': return zlib.createGunzip()
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
