import { PassThrough, Readable, pipeline } from 'node:stream'
import bunzip2 from 'unbzip2-stream'

/** Decompresses a bzip2 stream as it arrives; corrupt or cut input throws, and a reader that stops early stops the reading. */
export async function * bunzip2Chunks (source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const out = new PassThrough()
  // pipeline, not pipe: the decoder's error reaches the reader instead of going unhandled (which would end the process).
  pipeline(Readable.from(source), bunzip2(), out, () => {})
  yield * out
}
