/** Splits a byte stream into chunks; the same input must always give the same chunks. */
export type Chunker = (source: AsyncIterable<Uint8Array>) => AsyncIterable<Uint8Array>

/** Cuts the stream every `size` bytes (the last chunk may be shorter). */
export function fixedChunker (size: number): Chunker {
  return async function * (source) {
    let buf = new Uint8Array(size)
    let used = 0
    for await (let bytes of source) {
      // Whole chunks straight from the input need no copy.
      while (used === 0 && bytes.length >= size) {
        yield bytes.subarray(0, size)
        bytes = bytes.subarray(size)
      }
      while (bytes.length > 0) {
        const take = Math.min(size - used, bytes.length)
        buf.set(bytes.subarray(0, take), used)
        used += take
        bytes = bytes.subarray(take)
        if (used === size) {
          yield buf
          buf = new Uint8Array(size)
          used = 0
        }
      }
    }
    if (used > 0) yield buf.subarray(0, used)
  }
}
