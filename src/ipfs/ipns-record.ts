import * as dagCbor from '@ipld/dag-cbor'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { signWithSeed, verifySignature } from '../ed25519.js'

/*
 * IPNS records of Ed25519 keys, as the IPNS Record specification gives them
 * (V1+V2: the signed DAG-CBOR `data`, and the V1 fields beside it): names,
 * signing, reading and checking, without libp2p. Loading the `ipns` package
 * and libp2p's keys took longer than a small `publish` takes to run; the
 * tests check these bytes against that package's.
 */

/** libp2p's PublicKey protobuf of an Ed25519 key: Type = 1 (Ed25519), then the 32-byte Data. */
const ED25519_KEY_PREFIX = Uint8Array.from([0x08, 0x01, 0x12, 0x20])
const LIBP2P_KEY_CODEC = 0x72
const IDENTITY_HASH = 0x00
const V2_SIGNATURE_PREFIX = Buffer.from('ipns-signature:')
/** The only validity type there is: the record is valid until `validity` (End Of Life). */
const EOL = 0

/** What a record says. */
export interface IpnsFields {
  /** a content path, e.g. `/ipfs/<cid>` */
  value: string
  /** RFC 3339 time, with nanoseconds, after which the record is invalid */
  validity: string
  sequence: bigint
  /** how long others may cache the record, in nanoseconds */
  ttlNs: bigint
}

/** A record read from its bytes, with what its V2 signature covers. */
export interface IpnsRecord extends IpnsFields {
  data: Uint8Array
  signatureV2: Uint8Array
}

/** The IPNS name (`k51…`, a CIDv1 libp2p-key in base36) of an Ed25519 public key. */
export function ipnsName (publicKey: Uint8Array): string {
  return CID.createV1(LIBP2P_KEY_CODEC, Digest.create(IDENTITY_HASH, Buffer.concat([ED25519_KEY_PREFIX, publicKey]))).toString(base36)
}

/** The Ed25519 public key an IPNS name embeds (`k51…`, `bafz…` or a `12D3Koo…` peer ID); throws for any other name. */
export function publicKeyOfName (name: string): Uint8Array {
  let multihash: Uint8Array
  if (name.startsWith('1') || name.startsWith('Q')) multihash = base58btc.baseDecode(name)
  else {
    const cid = CID.parse(name, name.startsWith('k') ? base36 : undefined)
    if (cid.code !== LIBP2P_KEY_CODEC) throw new Error(`${name} is a CID, but not of a libp2p key`)
    multihash = cid.multihash.bytes
  }
  const digest = Digest.decode(multihash)
  const key = digest.digest
  if (digest.code !== IDENTITY_HASH || key.length !== ED25519_KEY_PREFIX.length + 32 || !ED25519_KEY_PREFIX.every((b, i) => key[i] === b)) {
    throw new Error(`${name} does not embed an Ed25519 public key`)
  }
  return key.subarray(ED25519_KEY_PREFIX.length)
}

/** A signed, marshalled record of `fields` by the key of an Ed25519 seed. */
export function createRecord (seed: Uint8Array, fields: IpnsFields): Uint8Array {
  const value = Buffer.from(fields.value)
  const validity = Buffer.from(fields.validity)
  const data = encodeData(value, validity, fields.sequence, fields.ttlNs)
  const pb = new ProtoWriter()
  pb.bytes(1, value)
  pb.bytes(2, signWithSeed(seed, Buffer.concat([value, validity, Buffer.from('EOL')])))
  pb.varint(3, BigInt(EOL))
  pb.bytes(4, validity)
  pb.varint(5, fields.sequence)
  pb.varint(6, fields.ttlNs)
  pb.bytes(8, signWithSeed(seed, Buffer.concat([V2_SIGNATURE_PREFIX, data])))
  pb.bytes(9, data)
  return pb.finish()
}

/**
 * Reads a marshalled record: its signed `data` is what counts, and V1 fields
 * beside it must say the same. Throws for anything else (no signature check).
 */
export function decodeRecord (bytes: Uint8Array): IpnsRecord {
  const pb = readProto(bytes)
  const signatureV2 = pb.get(8)
  const data = pb.get(9)
  if (!(signatureV2 instanceof Uint8Array) || !(data instanceof Uint8Array)) throw new Error('the record has no V2 signature or data')
  let map: Record<string, unknown>
  try {
    map = dagCbor.decode(data)
  } catch (err) {
    throw new Error(`the record's data is not DAG-CBOR: ${(err as Error).message}`)
  }
  if (typeof map !== 'object' || map === null) throw new Error('the record\'s data is not a map')
  const { Value: value, Validity: validity } = map
  const sequence = uintOf(map.Sequence)
  const ttlNs = uintOf(map.TTL)
  if (!(value instanceof Uint8Array) || !(validity instanceof Uint8Array) || sequence === undefined || ttlNs === undefined) {
    throw new Error('the record\'s data lacks Value, Validity, Sequence or TTL')
  }
  if (uintOf(map.ValidityType) !== BigInt(EOL)) throw new Error('the record\'s validity type is not EOL')
  if (pb.has(1) && pb.has(2)) {
    // A V1+V2 record: what V1 clients read must be what V2 signed.
    const same = (a: unknown, b: unknown): boolean => a instanceof Uint8Array && b instanceof Uint8Array ? Buffer.compare(a, b) === 0 : a === b
    if (!same(pb.get(1), value) || !same(pb.get(4), validity) || pb.get(3) !== BigInt(EOL) || pb.get(5) !== sequence || pb.get(6) !== ttlNs) {
      throw new Error('the record\'s V1 fields differ from its signed data')
    }
  }
  const text = (b: Uint8Array): string => Buffer.from(b).toString('utf8')
  return { value: text(value), validity: text(validity), sequence, ttlNs, data, signatureV2 }
}

/** True when the record's V2 signature is by `publicKey` (32 bytes, Ed25519). */
export function signedBy (record: IpnsRecord, publicKey: Uint8Array): boolean {
  return verifySignature(publicKey, Buffer.concat([V2_SIGNATURE_PREFIX, record.data]), record.signatureV2)
}

/** The validity of a record that ends `ms` from the Unix epoch: RFC 3339 with nanoseconds, as go-ipns and js-ipns write it. */
export function validityAt (ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')
}

/** The DAG-CBOR map V2 signs (the encoder sorts its keys as DAG-CBOR wants: by length, then bytes). */
function encodeData (value: Uint8Array, validity: Uint8Array, sequence: bigint, ttlNs: bigint): Uint8Array {
  return dagCbor.encode({ Value: value, Validity: validity, ValidityType: EOL, Sequence: sequence, TTL: ttlNs })
}

/** A whole number in the signed data: DAG-CBOR gives numbers up to 2^53 and bigints above. */
function uintOf (value: unknown): bigint | undefined {
  const n = typeof value === 'number' && Number.isInteger(value) ? BigInt(value) : value
  return typeof n === 'bigint' && n >= 0n ? n : undefined
}

/** The fields of a protobuf message by number (the last of repeated ones), varints as bigint, byte fields as bytes. */
function readProto (buf: Uint8Array): Map<number, bigint | Uint8Array> {
  const fields = new Map<number, bigint | Uint8Array>()
  let at = 0
  const varint = (): bigint => {
    let n = 0n
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (at >= buf.length) throw new Error('the record is truncated')
      const b = buf[at++]!
      n |= BigInt(b & 0x7f) << shift
      if (b < 0x80) return n
    }
    throw new Error('the record has an overlong varint')
  }
  // Reads one field's value; in a group (wire type 3, deprecated but read past as protobuf readers do) nothing is kept.
  const field = (wire: number): bigint | Uint8Array | undefined => {
    if (wire === 0) return varint()
    if (wire === 2) {
      const n = Number(varint())
      if (at + n > buf.length) throw new Error('the record is truncated')
      at += n
      return buf.subarray(at - n, at)
    }
    if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4
      if (at > buf.length) throw new Error('the record is truncated')
      return undefined
    }
    if (wire === 3) {
      for (let inner = Number(varint() & 7n); inner !== 4; inner = Number(varint() & 7n)) field(inner)
      return undefined
    }
    throw new Error(`the record has a field of wire type ${wire}`)
  }
  while (at < buf.length) {
    const tag = varint()
    const value = field(Number(tag & 7n))
    if (value !== undefined) fields.set(Number(tag >> 3n), value)
  }
  return fields
}

/** Writes protobuf fields in the order given. */
class ProtoWriter {
  private readonly parts: Uint8Array[] = []

  private varintBytes (n: bigint): Uint8Array {
    const out: number[] = []
    do {
      const b = Number(n & 0x7fn)
      n >>= 7n
      out.push(n > 0n ? b | 0x80 : b)
    } while (n > 0n)
    return Uint8Array.from(out)
  }

  varint (field: number, n: bigint): void {
    this.parts.push(this.varintBytes(BigInt(field << 3)), this.varintBytes(n))
  }

  bytes (field: number, b: Uint8Array): void {
    this.parts.push(this.varintBytes(BigInt((field << 3) | 2)), this.varintBytes(BigInt(b.length)), b)
  }

  finish (): Uint8Array {
    return Buffer.concat(this.parts)
  }
}
