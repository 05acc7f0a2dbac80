import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { createIPNSRecord, marshalIPNSRecord, unmarshalIPNSRecord, type IPNSRecord } from 'ipns'
import { validate } from 'ipns/validator'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { RecordError } from '../errors.js'

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
  const key = publicKeyFromRaw(publicKey)
  if (key.type !== 'Ed25519') throw new RecordError('ERR_RECORD_KEY', 'IPNS names here come from Ed25519 keys only')
  return peerIdFromPublicKey(key).toCID().toString(base36)
}

/** Signs a record pointing to `/ipfs/<root>` with the key made from an Ed25519 seed. */
export async function signRecord (seed: Uint8Array, root: CID, sequence: bigint, lifetimeMs: number): Promise<CacheRecord> {
  const key = await generateKeyPairFromSeed('Ed25519', seed)
  const record = await createIPNSRecord(key, root, sequence, lifetimeMs, { v1Compatible: true })
  const bytes = marshalIPNSRecord(record)
  return { name: ipnsNameOf(key.publicKey.raw), root, sequence, validity: record.validity, bytes }
}

/**
 * Checks that `bytes` is a record for IPNS name `name`: signed by that name's
 * key and unexpired unless `allowExpired`, whatever value it points to.
 */
export async function checkRecord (name: string, bytes: Uint8Array, options: { allowExpired?: boolean } = {}): Promise<IPNSRecord> {
  let record: IPNSRecord
  let publicKey
  try {
    record = unmarshalIPNSRecord(bytes)
    const peer = peerIdFromString(name)
    if (peer.publicKey === undefined) throw new Error('name does not embed a public key')
    publicKey = peer.publicKey
  } catch (err) {
    throw new RecordError('ERR_RECORD_MALFORMED', `IPNS record for ${name} cannot be read: ${(err as Error).message}`)
  }
  try {
    await validate(publicKey, bytes)
  } catch (err) {
    const e = err as Error
    if (e.name === 'RecordExpiredError') {
      if (options.allowExpired !== true) throw new RecordError('ERR_RECORD_EXPIRED', `IPNS record for ${name} expired at ${record.validity}; the publisher must run \`nixipfs republish\``)
    } else {
      throw new RecordError('ERR_RECORD_SIGNATURE', `IPNS record for ${name} is not validly signed by that name's key (${e.message})`)
    }
  }
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
  let record: IPNSRecord
  try { record = unmarshalIPNSRecord(bytes) } catch { return { ttlSeconds: 0, validSeconds: 0 } }
  const until = Date.parse(record.validity)
  return {
    ttlSeconds: Math.max(0, Math.floor(Number(record.ttl ?? 0n) / 1e9)),
    validSeconds: Number.isNaN(until) ? 0 : Math.max(0, Math.floor((until - now) / 1000)),
    ...(Number.isNaN(until) ? {} : { validUntil: new Date(until) })
  }
}

/** How long a copy of a marshalled record may be cached, in seconds: its TTL, never past its validity (0 for an unreadable one). */
export function recordCacheSeconds (bytes: Uint8Array, now = Date.now()): number {
  const { ttlSeconds, validSeconds } = recordTimes(bytes, now)
  return Math.min(ttlSeconds, validSeconds)
}
