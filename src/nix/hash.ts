import { createHash, type Hash } from 'node:crypto'
import { InvalidHashError } from '../errors.js'
import { decodeNix32, encodeNix32, nix32Length } from './base32.js'

/** Bytes of a SHA-256 digest. */
export const SHA256_BYTES = 32

/** A SHA-256 digest in Nix notation: `sha256:<nix32>`. */
export function formatSha256 (digest: Uint8Array): string {
  if (digest.length !== SHA256_BYTES) throw new InvalidHashError(`sha256 digest must be 32 bytes, got ${digest.length}`)
  return `sha256:${encodeNix32(digest)}`
}

/** Parses `sha256:<nix32|base16|base64>` or SRI `sha256-<base64>` into the raw digest. */
export function parseSha256 (text: string): Uint8Array {
  let body: string
  let sri = false
  if (text.startsWith('sha256:')) body = text.slice(7)
  else if (text.startsWith('sha256-')) { body = text.slice(7); sri = true } else throw new InvalidHashError(`expected a sha256 hash, got ${JSON.stringify(text.slice(0, 80))}`)
  if (!sri && body.length === nix32Length(SHA256_BYTES)) return decodeNix32(body, SHA256_BYTES)
  if (!sri && body.length === 64 && /^[0-9a-f]+$/i.test(body)) return Uint8Array.from(Buffer.from(body, 'hex'))
  if (body.length === 44 && /^[A-Za-z0-9+/]{43}=$/.test(body)) return Uint8Array.from(Buffer.from(body, 'base64'))
  throw new InvalidHashError(`malformed sha256 hash ${JSON.stringify(text.slice(0, 80))}`)
}

/** Incremental SHA-256 that also counts bytes: what NarHash and NarSize are made of. */
export class NarHasher {
  private readonly hash: Hash = createHash('sha256')
  size = 0

  update (chunk: Uint8Array): void {
    this.hash.update(chunk)
    this.size += chunk.length
  }

  /** The digest in Nix notation, `sha256:<nix32>`. */
  digest (): string {
    return formatSha256(this.hash.digest())
  }
}
