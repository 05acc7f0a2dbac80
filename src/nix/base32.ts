import { InvalidHashError } from '../errors.js'

/** Nix's base32 alphabet: digits and lowercase letters without e, o, u, t. */
export const NIX32_ALPHABET = '0123456789abcdfghijklmnpqrsvwxyz'

const DECODE = new Int8Array(128).fill(-1)
for (let i = 0; i < NIX32_ALPHABET.length; i++) DECODE[NIX32_ALPHABET.charCodeAt(i)] = i

/** Length of the Nix base32 encoding of `bytes` bytes. */
export function nix32Length (bytes: number): number {
  return Math.ceil(bytes * 8 / 5)
}

/** Encodes bytes in Nix base32 (least significant 5-bit group first, printed last-to-first). */
export function encodeNix32 (bytes: Uint8Array): string {
  const len = nix32Length(bytes.length)
  let out = ''
  for (let n = len - 1; n >= 0; n--) {
    const b = n * 5
    const i = b >> 3
    const j = b & 7
    const c = ((bytes[i] ?? 0) >> j) | (i + 1 < bytes.length ? (bytes[i + 1] ?? 0) << (8 - j) : 0)
    out += NIX32_ALPHABET[c & 0x1f]
  }
  return out
}

/** Decodes Nix base32 into `size` bytes (default: the size the string length implies). */
export function decodeNix32 (text: string, size = Math.floor(text.length * 5 / 8)): Uint8Array {
  if (text.length !== nix32Length(size)) {
    throw new InvalidHashError(`base32 string of ${text.length} characters cannot encode ${size} bytes`)
  }
  const out = new Uint8Array(size)
  for (let n = 0; n < text.length; n++) {
    const code = text.charCodeAt(text.length - 1 - n)
    const digit = code < 128 ? (DECODE[code] ?? -1) : -1
    if (digit < 0) throw new InvalidHashError(`invalid character ${JSON.stringify(text[text.length - 1 - n])} in Nix base32 string`)
    const b = n * 5
    const i = b >> 3
    const j = b & 7
    out[i] = (out[i] ?? 0) | ((digit << j) & 0xff)
    const carry = digit >> (8 - j)
    if (i + 1 < size) out[i + 1] = (out[i + 1] ?? 0) | carry
    else if (carry !== 0) throw new InvalidHashError('Nix base32 string has bits set beyond its length')
  }
  return out
}
