import type { IncomingMessage } from 'node:http'
import { Readable, type Transform } from 'node:stream'
import type { CID } from 'multiformats/cid'
import { CODINGS, compressor, compressSync, negotiate, type Coding } from '../codings.js'
import { carHeader, sectionPrefix, type CarBlock } from '../ipfs/car.js'
import { inTurn } from '../turns.js'
import { FRAME_BYTES } from '../zstd.js'

// Compression of trustless-gateway responses, only where it pays: NARs of
// binaries shrink 2–3× (bench/compression-results.md), but blocks of data that
// is already compressed (tarballs, images, .gz manuals) do not shrink at all,
// and compressing them costs both ends CPU for nothing.

/** A response must shrink at least this much to go out compressed (below it, the saving is worth less than the CPU on both ends). */
export const MIN_RATIO = 1.1
/** Bytes at the start of a CAR compressed as a sample to decide whether the whole stream is compressed. */
export const SAMPLE_BYTES = 1024 * 1024

/** The coding the client asks for (Accept-Encoding) that this node writes, if any. */
export function wantedCoding (req: IncomingMessage): Coding | undefined {
  return negotiate(req.headers['accept-encoding'])
}

/** `input` (bytes, or pieces that follow each other) compressed with `coding` (in its turn) when that saves at least MIN_RATIO, else undefined (send them as they are). */
export async function compressedIfPays (coding: Coding, input: Uint8Array | Uint8Array[]): Promise<Buffer | undefined> {
  const size = Array.isArray(input) ? input.reduce((n, p) => n + p.length, 0) : input.length
  if (size === 0) return undefined
  const out = await inTurn(() => compressSync(coding, input))
  return out.length * MIN_RATIO <= size ? out : undefined
}

/** A stream to send: its coding (undefined: as it is) and its body. */
export interface Encoded { coding: Coding | undefined, body: Readable }

/**
 * `chunks` as a response body, compressed with `coding` when a sample of its
 * first SAMPLE_BYTES compresses by MIN_RATIO, else as they are. Only the
 * sample is held; the rest streams.
 */
export async function encodedStream (coding: Coding, chunks: AsyncIterable<Uint8Array>): Promise<Encoded> {
  const it = chunks[Symbol.asyncIterator]()
  const sample: Uint8Array[] = []
  let sampled = 0
  let done = false
  while (sampled < SAMPLE_BYTES) {
    const next = await it.next()
    if (next.done === true) { done = true; break }
    sample.push(next.value)
    sampled += next.value.length
  }
  const packed = await compressedIfPays(coding, sample)
  async function * rest (): AsyncGenerator<Uint8Array> {
    if (done) return
    // The iterator is ours from here: resuming a `for await` over it would end it early.
    for (let next = await it.next(); next.done !== true; next = await it.next()) yield next.value
  }
  async function * all (): AsyncGenerator<Uint8Array> {
    yield * sample
    yield * rest()
  }
  if (packed === undefined) return { coding: undefined, body: Readable.from(all(), { objectMode: false }) }
  if (coding !== 'zstd') return { coding, body: compressedStream(coding, Readable.from(all(), { objectMode: false })) }
  // A zstd stream is a series of frames: the sample, compressed once already, is the first (not compressed twice).
  const body = compressedStream(coding, Readable.from(rest(), { objectMode: false }))
  body.push(packed)
  return { coding, body }
}

/**
 * A CAR of `roots` and `blocks` as a zstd stream made of each block's frame
 * compressed ahead, where `frameOf` has one (sent as it is: zstd streams are
 * series of frames); the bytes between (headers, blocks without one) are
 * compressed here, in frames of up to FRAME_BYTES of input.
 */
export async function * zstdCarFrames (roots: CID[], blocks: AsyncIterable<CarBlock>, frameOf: (cid: CID) => Promise<Uint8Array | undefined>): AsyncGenerator<Uint8Array> {
  let pending: Uint8Array[] = [carHeader(roots)]
  let size = pending[0]!.length
  const flush = async (): Promise<Buffer> => {
    const input = pending
    pending = []
    size = 0
    return await inTurn(() => compressSync('zstd', input))
  }
  for await (const { cid, bytes } of blocks) {
    const prefix = sectionPrefix(cid, bytes.length)
    pending.push(prefix)
    size += prefix.length
    const frame = await frameOf(cid)
    if (frame === undefined) {
      pending.push(bytes)
      size += bytes.length
      if (size >= FRAME_BYTES) yield await flush()
      continue
    }
    yield await flush()
    yield frame
  }
  if (size > 0) yield await flush()
}

/** `body` piped through a compressor for `coding`; an error on either side destroys both. */
export function compressedStream (coding: Coding, body: Readable): Transform {
  const out = compressor(coding)
  body.on('error', err => out.destroy(err))
  out.on('close', () => { if (!body.readableEnded) body.destroy() })
  return body.pipe(out)
}

/** What `--compress-nar` asks for: `auto` (compressed towards other hosts, raw towards loopback), `none`, or one coding for every client. */
export type NarCompression = 'auto' | 'none' | Coding
export const NAR_COMPRESSIONS: readonly NarCompression[] = ['auto', 'none', ...CODINGS]

/** The extension of a compressed NAR's URL (`nar/<cid>.nar.<ext>`) by coding, as Nix's own caches name them. */
export const NAR_EXTENSIONS: Readonly<Record<Coding, string>> = { zstd: 'zst', br: 'br', gzip: 'gz' }

/** The coding of a compressed NAR's URL extension, if this Node writes it. */
export function codingOfExtension (extension: string): Coding | undefined {
  return CODINGS.find(c => NAR_EXTENSIONS[c] === extension)
}

/** True when the request comes from this machine (127.0.0.0/8, ::1, or either mapped into IPv6). */
export function fromLoopback (req: IncomingMessage): boolean {
  const address = req.socket.remoteAddress ?? ''
  return address === '::1' || /^(::ffff:)?127\./i.test(address)
}

/**
 * The coding narinfos point Nix at for this request, if any: `auto` compresses
 * for other hosts only (on loopback, bytes are free and compressing costs CPU),
 * with the best coding this Node writes (zstd, else brotli: Nix reads both).
 */
export function narCodingFor (mode: NarCompression, req: IncomingMessage): Coding | undefined {
  if (mode === 'none') return undefined
  if (mode === 'auto') return fromLoopback(req) ? undefined : CODINGS[0]
  return mode
}
