import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import * as raw from 'multiformats/codecs/raw'
import { IntegrityError } from '../errors.js'

/** Codec of UnixFS directory and file nodes. */
export const DAG_PB_CODE = 0x70
/** Codec of raw leaves. */
export const RAW_CODE = raw.code

/** The CIDv1 (sha2-256) of `bytes` under `codec`. */
export function cidOf (codec: number, bytes: Uint8Array): CID {
  const digest = createHash('sha256').update(bytes).digest()
  return CID.createV1(codec, Digest.create(sha256.code, digest))
}

/** Where blocks are read from; Helia's blockstore fits. */
export interface BlockGetter {
  get: (cid: CID, options?: { signal?: AbortSignal }) => Iterable<Uint8Array> | AsyncIterable<Uint8Array>
  /** the block, already checked against its CID by the source (so it is not hashed twice) */
  getChecked?: (cid: CID, options?: { signal?: AbortSignal }) => Promise<Uint8Array>
}

/** Where blocks are written to; Helia's blockstore fits. */
export interface BlockPutter {
  put: (cid: CID, bytes: Uint8Array, options?: { signal?: AbortSignal }) => Promise<CID> | CID
}

/** Reads one whole block and checks it against its CID. */
export async function getVerified (blocks: BlockGetter, cid: CID, options?: { signal?: AbortSignal }): Promise<Uint8Array> {
  if (blocks.getChecked !== undefined) return await blocks.getChecked(cid, options)
  const parts: Uint8Array[] = []
  for await (const part of blocks.get(cid, options)) parts.push(part)
  const bytes = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
  checkBlock(cid, bytes)
  return bytes
}

/** Throws IntegrityError unless `bytes` hash (sha2-256, the only hash accepted) to `cid`. */
export function checkBlock (cid: CID, bytes: Uint8Array): void {
  if (cid.multihash.code !== sha256.code) throw new IntegrityError(`block ${cid.toString()} uses a hash nixipfs does not verify (only sha2-256)`)
  // Hashed inline: a round trip to a worker thread measured slower than hashing here.
  const digest = createHash('sha256').update(bytes).digest()
  if (Buffer.compare(digest, cid.multihash.digest) !== 0) {
    throw new IntegrityError(`block ${cid.toString()} is corrupt: its bytes do not hash to its CID`, cid.toString())
  }
}

/** True when `bytes` hash to `cid` (checkBlock, as a test). */
export function hashesTo (cid: CID, bytes: Uint8Array): boolean {
  try {
    checkBlock(cid, bytes)
    return true
  } catch {
    return false
  }
}
