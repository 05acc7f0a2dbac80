import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto'

/*
 * Ed25519 with Node's own crypto (OpenSSL), for keys kept raw as Nix and
 * libp2p keep them: a 32-byte seed, a 32-byte public key. A pure-JS curve
 * took longer to load and to warm up than a small publish takes to run.
 */

/** PKCS#8 and SPKI DER prefixes of a raw Ed25519 seed and public key (RFC 8410). */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

const privateKeys = new WeakMap<Uint8Array, KeyObject>()

function privateKeyOf (seed: Uint8Array): KeyObject {
  let key = privateKeys.get(seed)
  if (key === undefined) {
    key = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, seed]), format: 'der', type: 'pkcs8' })
    privateKeys.set(seed, key)
  }
  return key
}

/** The public key of a 32-byte seed. */
export function publicKeyFromSeed (seed: Uint8Array): Uint8Array {
  return new Uint8Array(createPublicKey(privateKeyOf(seed)).export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length))
}

/** The 64-byte signature of `message` by the key of `seed`. */
export function signWithSeed (seed: Uint8Array, message: Uint8Array): Uint8Array {
  return new Uint8Array(sign(null, message, privateKeyOf(seed)))
}

// By key array (callers never change a key's bytes): a gateway checks every narinfo against the same trusted keys,
// and making the key object was half of a check.
const publicKeys = new WeakMap<Uint8Array, KeyObject>()

/** True when `signature` is by `publicKey` over `message`; false also for a malformed key or signature. */
export function verifySignature (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  try {
    let key = publicKeys.get(publicKey)
    if (key === undefined) {
      key = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, publicKey]), format: 'der', type: 'spki' })
      publicKeys.set(publicKey, key)
    }
    return verify(null, message, key, signature)
  } catch {
    return false
  }
}
