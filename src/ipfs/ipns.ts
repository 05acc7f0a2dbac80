import { CID } from 'multiformats/cid'
import { RecordError } from '../errors.js'
import { publicKeyFromSeed } from '../ed25519.js'
import { createRecord, decodeRecord, ipnsName, publicKeyOfName, signedBy, validityAt, type IpnsRecord } from './ipns-record.js'

/** How long others may cache a record: 5 minutes, what the IPNS spec suggests (and js-ipns writes). */
const RECORD_TTL_NS = 5n * 60n * 1_000_000_000n

/** A validated IPNS record and what it says. */
export interface CacheRecord {
  /** IPNS name (`k51…`) of the key that signed it */
  name: string
  /** the cache root it points to */
  root: CID
  sequence: bigint
  /** RFC 3339 validity (expiry) */
  validity: string
  /** the marshalled record, as stored and sent */
  bytes: Uint8Array
}

/** The IPNS name (`k51…`, CIDv1 libp2p-key in base36) of a 32-byte Ed25519 public key. */
export function ipnsNameOf (publicKey: Uint8Array): string {
  if (publicKey.length !== 32) throw new RecordError('ERR_RECORD_KEY', 'IPNS names here come from Ed25519 keys only')
  return ipnsName(publicKey)
}

/** Signs a record pointing to `/ipfs/<root>` with the key made from an Ed25519 seed. */
export async function signRecord (seed: Uint8Array, root: CID, sequence: bigint, lifetimeMs: number): Promise<CacheRecord> {
  const validity = validityAt(Date.now() + lifetimeMs)
  const bytes = createRecord(seed, { value: `/ipfs/${root.toV1().toString()}`, validity, sequence, ttlNs: RECORD_TTL_NS })
  return { name: ipnsNameOf(publicKeyFromSeed(seed)), root, sequence, validity, bytes }
}

/**
 * Checks that `bytes` is a record for IPNS name `name`: signed by that name's
 * key and unexpired unless `allowExpired`, whatever value it points to.
 */
export async function checkRecord (name: string, bytes: Uint8Array, options: { allowExpired?: boolean } = {}): Promise<IpnsRecord> {
  let record: IpnsRecord
  let publicKey: Uint8Array
  try {
    record = decodeRecord(bytes)
    publicKey = publicKeyOfName(name)
  } catch (err) {
    throw new RecordError('ERR_RECORD_MALFORMED', `IPNS record for ${name} cannot be read: ${(err as Error).message}`)
  }
  if (!signedBy(record, publicKey)) throw new RecordError('ERR_RECORD_SIGNATURE', `IPNS record for ${name} is not validly signed by that name's key`)
  const until = Date.parse(record.validity)
  if (Number.isNaN(until)) throw new RecordError('ERR_RECORD_MALFORMED', `IPNS record for ${name} has a validity that is no time: ${JSON.stringify(record.validity.slice(0, 64))}`)
  if (until < Date.now() && options.allowExpired !== true) throw new RecordError('ERR_RECORD_EXPIRED', `IPNS record for ${name} expired at ${record.validity}; the publisher must run \`nixipfs republish\``)
  return record
}

/**
 * Checks that `bytes` is a record for IPNS name `name`: signed by that name's
 * key, unexpired unless `allowExpired`, and pointing at an `/ipfs/<cid>` path.
 */
export async function openRecord (name: string, bytes: Uint8Array, options: { allowExpired?: boolean } = {}): Promise<CacheRecord> {
  const record = await checkRecord(name, bytes, options)
  const match = /^\/ipfs\/([^/]+)$/.exec(record.value)
  let root: CID | undefined
  try { root = match === null ? undefined : CID.parse(match[1]!) } catch { root = undefined }
  if (root === undefined) throw new RecordError('ERR_RECORD_VALUE', `IPNS record for ${name} points to ${JSON.stringify(record.value.slice(0, 100))}, not to /ipfs/<cid>`)
  return { name, root, sequence: record.sequence, validity: record.validity, bytes }
}

/** A marshalled record's TTL and the seconds left until its validity ends (both 0 for an unreadable record), and that end. */
export function recordTimes (bytes: Uint8Array, now = Date.now()): { ttlSeconds: number, validSeconds: number, validUntil?: Date } {
  let record: IpnsRecord
  try { record = decodeRecord(bytes) } catch { return { ttlSeconds: 0, validSeconds: 0 } }
  const until = Date.parse(record.validity)
  return {
    ttlSeconds: Math.max(0, Math.floor(Number(record.ttlNs) / 1e9)),
    validSeconds: Number.isNaN(until) ? 0 : Math.max(0, Math.floor((until - now) / 1000)),
    ...(Number.isNaN(until) ? {} : { validUntil: new Date(until) })
  }
}

/** How long a copy of a marshalled record may be cached, in seconds: its TTL, never past its validity (0 for an unreadable one). */
export function recordCacheSeconds (bytes: Uint8Array, now = Date.now()): number {
  const { ttlSeconds, validSeconds } = recordTimes(bytes, now)
  return Math.min(ttlSeconds, validSeconds)
}
