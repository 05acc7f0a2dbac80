import { randomBytes } from 'node:crypto'
import { publicKeyFromSeed, signWithSeed, verifySignature } from '../ed25519.js'
import { InvalidKeyError } from '../errors.js'

/** A Nix signing key: `name:base64(seed ‖ public)` on disk. */
export interface SecretKey {
  name: string
  /** 32-byte Ed25519 seed */
  seed: Uint8Array
  /** 32-byte Ed25519 public key */
  publicKey: Uint8Array
}

/** A Nix public key: `name:base64(public)`. */
export interface PublicKey {
  name: string
  key: Uint8Array
}

const NAME_RE = /^[^:\s]+$/

function splitKey (text: string, what: string): [string, Uint8Array] {
  const trimmed = text.trim()
  const colon = trimmed.indexOf(':')
  if (colon <= 0) throw new InvalidKeyError(`${what} must look like "name:base64", got ${JSON.stringify(trimmed.slice(0, 40))}`)
  const name = trimmed.slice(0, colon)
  const b64 = trimmed.slice(colon + 1)
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new InvalidKeyError(`${what} ${JSON.stringify(name)} is not valid base64`)
  return [name, Uint8Array.from(Buffer.from(b64, 'base64'))]
}

/** Parses a Nix secret key (`nix-store --generate-binary-cache-key` format). */
export function parseSecretKey (text: string): SecretKey {
  const [name, bytes] = splitKey(text, 'secret key')
  if (bytes.length !== 64) throw new InvalidKeyError(`secret key ${JSON.stringify(name)} must be 64 bytes, got ${bytes.length}`)
  const seed = bytes.slice(0, 32)
  const publicKey = bytes.slice(32)
  if (Buffer.compare(publicKeyFromSeed(seed), publicKey) !== 0) throw new InvalidKeyError(`secret key ${JSON.stringify(name)} is corrupt: its public half does not match its seed`)
  return { name, seed, publicKey }
}

/** Parses a Nix public key (`name:base64`). */
export function parsePublicKey (text: string): PublicKey {
  const [name, key] = splitKey(text, 'public key')
  if (key.length !== 32) throw new InvalidKeyError(`public key ${JSON.stringify(name)} must be 32 bytes, got ${key.length}`)
  return { name, key }
}

/** Makes a fresh key pair named `name` (Nix convention: `host-1`). */
export function generateSecretKey (name: string): SecretKey {
  if (!NAME_RE.test(name)) throw new InvalidKeyError(`key name ${JSON.stringify(name)} must be non-empty without ":" or spaces`)
  const seed = new Uint8Array(randomBytes(32))
  return { name, seed, publicKey: publicKeyFromSeed(seed) }
}

/** The secret key in Nix's file format. */
export function formatSecretKey (key: SecretKey): string {
  return `${key.name}:${Buffer.concat([key.seed, key.publicKey]).toString('base64')}`
}

/** The public key in Nix's format. */
export function formatPublicKey (key: PublicKey): string {
  return `${key.name}:${Buffer.from(key.key).toString('base64')}`
}

/** The public half of a secret key. */
export function publicKeyOf (key: SecretKey): PublicKey {
  return { name: key.name, key: key.publicKey }
}

/** Signs a fingerprint: returns a Nix `Sig:` value, `name:base64(signature)`. */
export function signFingerprint (key: SecretKey, fingerprint: string): string {
  const sig = signWithSeed(key.seed, Buffer.from(fingerprint))
  return `${key.name}:${Buffer.from(sig).toString('base64')}`
}

/** True when `sig` (`name:base64`) is a valid signature of `fingerprint` by one of `keys`. */
export function verifyFingerprint (keys: PublicKey[], fingerprint: string, sig: string): boolean {
  const colon = sig.indexOf(':')
  if (colon <= 0) return false
  const name = sig.slice(0, colon)
  const bytes = Buffer.from(sig.slice(colon + 1), 'base64')
  if (bytes.length !== 64) return false
  const msg = Buffer.from(fingerprint)
  return keys.some(k => k.name === name && verifySignature(k.key, msg, bytes))
}
