/** The first string of every NAR. */
export const NAR_MAGIC = 'nix-archive-1'

const encoder = new TextEncoder()

/** Bytes of zero padding after a string of `length` bytes (NAR strings align to 8). */
export function padding (length: number): number {
  return (8 - (length % 8)) % 8
}

/** Encodes one NAR string: u64 little-endian length, bytes, zero padding. */
export function narString (value: string | Uint8Array): Uint8Array {
  const bytes = typeof value === 'string' ? encoder.encode(value) : value
  const out = new Uint8Array(8 + bytes.length + padding(bytes.length))
  new DataView(out.buffer).setBigUint64(0, BigInt(bytes.length), true)
  out.set(bytes, 8)
  return out
}

/** Encodes a u64 little-endian integer. */
export function narInt (value: number): Uint8Array {
  const out = new Uint8Array(8)
  new DataView(out.buffer).setBigUint64(0, BigInt(value), true)
  return out
}
