import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'

/** Prefix of what the rendezvous CID hashes; a new derivation gets a new prefix. */
export const RENDEZVOUS_PREFIX = 'nixipfs-narinfo-v1:'

const RAW_CODEC = 0x55
const SHA2_256 = 0x12

/**
 * The rendezvous CID of a store path, given its 32-character hash: CIDv1,
 * raw codec, sha2-256 of the UTF-8 bytes of "nixipfs-narinfo-v1:" + hash.
 * Every node that serves a narinfo for the path provides it, so "who has a
 * narinfo for this path?" is a DHT provider lookup. It names no block.
 */
export function rendezvousCid (storePathHash: string): CID {
  const digest = createHash('sha256').update(RENDEZVOUS_PREFIX + storePathHash, 'utf8').digest()
  return CID.createV1(RAW_CODEC, createDigest(SHA2_256, digest))
}
