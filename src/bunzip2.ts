import { PassThrough, Readable, pipeline } from 'node:stream'
import bunzip2 from 'unbzip2-stream'
import { IntegrityError, NixipfsError } from './errors.js'

/**
 * Decompresses a bzip2 stream as it arrives. Input that does not decompress
 * (corrupt, cut short) throws IntegrityError naming `what`; the source's own
 * errors pass through; a reader that stops early stops the reading.
 */
export async function * bunzip2Chunks (source: AsyncIterable<Uint8Array>, what = 'the bzip2 stream'): AsyncGenerator<Uint8Array> {
  const out = new PassThrough()
  // pipeline, not pipe: the decoder's error reaches the reader instead of going unhandled (which would end the process).
  pipeline(Readable.from(source), bunzip2(), out, () => {})
  try {
    yield * out
  } catch (err) {
    if (err instanceof NixipfsError) throw err
    throw new IntegrityError(`${what} does not decompress: ${(err as Error).message}`)
  }
}
