/** Concatenates a stream's chunks, throwing `tooLarge()` as soon as more than `max` bytes came: an outside source cannot make it hold more. */
export async function collectAtMost (source: AsyncIterable<Uint8Array>, max: number, tooLarge: () => Error): Promise<Buffer> {
  const parts: Uint8Array[] = []
  let size = 0
  for await (const part of source) {
    size += part.length
    if (size > max) throw tooLarge()
    parts.push(part)
  }
  return Buffer.concat(parts)
}

/** `bytes` as a flat string of one character a byte: a compact Map key (a CID's base32 `toString()` is a rope of ~50 pieces, kept whole as a key). */
export function bytesKey (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
}
