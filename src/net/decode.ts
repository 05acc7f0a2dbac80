import type { IncomingHttpHeaders } from 'node:http'
import { Transform, type Readable } from 'node:stream'
import { codingOf, decompressor, decompressSync, type Coding } from '../codings.js'
import { PeerError } from '../errors.js'

/** A peer's response body that does not decode as its Content-Encoding says (unknown coding, corrupt stream, or too large once decoded). */
export class PeerEncodingError extends PeerError {
  override name = 'PeerEncodingError'
  override readonly code = 'ERR_PEER_ENCODING'
}

/** Limits on what a compressed body may decode to: a few bytes of zstd or brotli can stand for gigabytes. */
export interface DecodeLimits {
  /** most decoded bytes in all (a single block's largest size) */
  maxBytes?: number
  /** most decoded bytes per received byte, past the first `maxBytes`-free allowance of SLACK_BYTES (a CAR stream: unbounded in length, bounded in expansion) */
  maxRatio?: number
}

/** Decoded bytes always allowed before `maxRatio` applies: one large block, so a small response is never refused for compressing well. */
const SLACK_BYTES = 4 * 1024 * 1024

/**
 * The response body decoded as its `Content-Encoding` says, as a stream that
 * errors with PeerEncodingError when the coding is unknown or `accepted` did
 * not include it, when the compressed stream is corrupt or cut, or when it
 * decodes to more than `limits` allow. Destroying it destroys `body`.
 */
export function decodedBody (peer: string, what: string, headers: IncomingHttpHeaders, body: Readable, accepted: readonly Coding[], limits: DecodeLimits): Readable {
  const coding = responseCoding(peer, what, headers, body, accepted)
  if (coding === undefined) return body
  let received = 0
  body.on('data', (c: Buffer) => { received += c.length })
  let decoded = 0
  const bound = new Transform({
    transform (chunk: Buffer, _enc, done) {
      decoded += chunk.length
      if (limits.maxBytes !== undefined && decoded > limits.maxBytes) { done(new PeerEncodingError(peer, `${what} decodes (${coding}) to more than ${limits.maxBytes} bytes`)); return }
      if (limits.maxRatio !== undefined && decoded > SLACK_BYTES + limits.maxRatio * received) { done(new PeerEncodingError(peer, `${what} decodes (${coding}) to more than ${limits.maxRatio}× what was sent (${decoded} bytes from ${received}): a decompression bomb?`)); return }
      done(null, chunk)
    }
  })
  const inflate = decompressor(coding)
  // Wired by hand, not with pipeline(): the decoder's own errors ("incorrect header check", "unexpected end of file")
  // say nothing of whom or what, and reach the reader reworded; the connection's errors reach it as they are.
  body.on('error', err => bound.destroy(err))
  inflate.on('error', err => bound.destroy(err instanceof PeerError ? err : new PeerEncodingError(peer, `${what} does not decode as ${coding}: ${err.message}`)))
  bound.on('close', () => { inflate.destroy(); if (!body.readableEnded) body.destroy() })
  return body.pipe(inflate).pipe(bound)
}

/** The Content-Encoding of a peer's response (undefined: none); PeerEncodingError, and `body` destroyed, for one `accepted` does not include. */
export function responseCoding (peer: string, what: string, headers: IncomingHttpHeaders, body: Readable, accepted: readonly Coding[]): Coding | undefined {
  const coding = codingOf(headers['content-encoding'], accepted)
  if (typeof coding !== 'object') return coding
  body.destroy()
  throw new PeerEncodingError(peer, `${what} came with Content-Encoding ${JSON.stringify(coding.unknown)}, which was not asked for (asked: ${accepted.length === 0 ? 'none' : accepted.join(', ')})`)
}

/** A whole compressed body (one block or record) decoded; PeerEncodingError when it is corrupt, cut, or decodes to more than `maxBytes`. */
export function decodedBytes (peer: string, what: string, coding: Coding, bytes: Uint8Array, maxBytes: number): Uint8Array {
  try {
    return decompressSync(coding, bytes, maxBytes)
  } catch (err) {
    if (err instanceof RangeError) throw new PeerEncodingError(peer, `${what} decodes (${coding}) to more than ${maxBytes} bytes`)
    throw new PeerEncodingError(peer, `${what} does not decode as ${coding}: ${(err as Error).message}`)
  }
}
