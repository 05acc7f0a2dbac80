import { Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip } from 'node:zlib'
import { Decompress as ZstdDecompress } from 'fzstd'
import xz from 'xz-decompress'
import { bunzip2Chunks } from '../bunzip2.js'
import { IntegrityError, UpstreamError } from '../errors.js'

/** Compressions Nix writes into binary caches, as named by the narinfo's `Compression:` field. */
export const COMPRESSIONS = ['none', 'xz', 'zstd', 'bzip2', 'br', 'gzip'] as const

/** Decompresses a NAR as it arrives; a missing `Compression:` field means bzip2, as in Nix. */
export async function * decompress (compression: string | undefined, source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const kind = compression ?? 'bzip2'
  try {
    switch (kind) {
      case 'none': yield * source; return
      case 'xz': yield * owned(new xz.XzReadableStream(Readable.toWeb(Readable.from(source)) as ReadableStream<Uint8Array>)); return
      case 'zstd': yield * zstd(source); return
      case 'bzip2': yield * bunzip2Chunks(source, 'the bzip2-compressed NAR'); return
      case 'br': yield * Readable.from(source).pipe(createBrotliDecompress()); return
      case 'gzip': yield * Readable.from(source).pipe(createGunzip()); return
    }
  } catch (err) {
    if (err instanceof UpstreamError) throw err
    // bunzip2Chunks words its own failure (IntegrityError); the other decoders' errors are bare.
    throw new UpstreamError('ERR_UPSTREAM_DATA', err instanceof IntegrityError ? err.message : `the ${kind}-compressed NAR does not decompress: ${(err as Error).message}`)
  }
  throw new UpstreamError('ERR_UPSTREAM_COMPRESSION', `compression ${JSON.stringify(kind)} is not supported (only ${COMPRESSIONS.join(', ')})`)
}

/** Copies of the chunks: the xz decoder hands out views of its WebAssembly memory, which the next chunk overwrites. */
async function * owned (chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const chunk of chunks) yield Uint8Array.prototype.slice.call(chunk)
}

/** zstd through fzstd's push decoder, one input chunk at a time (so memory stays bounded by what one chunk expands to). */
async function * zstd (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  let out: Uint8Array[] = []
  let ended = false
  const decoder = new ZstdDecompress((data, final) => { out.push(data); if (final === true) ended = true })
  for await (const chunk of source) {
    decoder.push(chunk)
    yield * out
    out = []
  }
  decoder.push(new Uint8Array(0), true)
  yield * out
  if (!ended) throw new UpstreamError('ERR_UPSTREAM_DATA', 'the zstd stream ends early')
}
