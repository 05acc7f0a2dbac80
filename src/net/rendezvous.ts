import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { create as createDigest } from 'multiformats/hashes/digest'
import { IPNS_NAME } from '../repo-layout.js'

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

/** A cache a node holds a narinfo for a path in, as it answers a discovering peer. */
export interface Holding {
  /** the cache's IPNS name */
  name: string
  /** the narinfo's text (unverified); empty when the node sent the name alone */
  narinfo: string
}

/** Largest answer accepted to "which caches hold this narinfo" (some hundred names, a few hundred KiB of narinfos). */
export const MAX_HOLDINGS_BYTES = 1024 * 1024

/** Narinfo text sent along in one answer at most: beyond it, names only (a narinfo may list thousands of references). */
const MAX_NARINFO_TEXT = 256 * 1024

/**
 * The answer to `/nixipfs/narinfo/<hash>`: per cache, a line with its IPNS name, then the narinfo's text. A node
 * that sends names only (the first format) is read the same way, and such a node reads the names of this one,
 * as no narinfo line looks like an IPNS name.
 */
export function encodeHoldings (holdings: Holding[]): string {
  let budget = MAX_NARINFO_TEXT
  return holdings.map(({ name, narinfo }) => {
    const text = narinfo.length <= budget ? narinfo : ''
    budget -= text.length
    return text === '' ? `${name}\n` : `${name}\n${text.endsWith('\n') ? text : `${text}\n`}`
  }).join('')
}

/** The caches named in an answer (see encodeHoldings), each with the narinfo text that followed its name. */
export function decodeHoldings (answer: string): Holding[] {
  const holdings: Holding[] = []
  for (const line of answer.split('\n')) {
    if (IPNS_NAME.test(line)) holdings.push({ name: line, narinfo: '' })
    else if (holdings.length > 0 && line !== '') holdings[holdings.length - 1]!.narinfo += `${line}\n`
  }
  return holdings
}
