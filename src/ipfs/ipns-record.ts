import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { publicKeyFromSeed, signWithSeed, verifySignature } from '../ed25519.js'

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
  const map = readCborMap(data)
  const value = map.get('Value')
  const validity = map.get('Validity')
  const sequence = map.get('Sequence')
  const ttlNs = map.get('TTL')
  if (!(value instanceof Uint8Array) || !(validity instanceof Uint8Array) || typeof sequence !== 'bigint' || typeof ttlNs !== 'bigint') {
    throw new Error('the record\'s data lacks Value, Validity, Sequence or TTL')
  }
  if (map.get('ValidityType') !== BigInt(EOL)) throw new Error('the record\'s validity type is not EOL')
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

/** The DAG-CBOR map V2 signs: keys sorted by length, then bytes. */
function encodeData (value: Uint8Array, validity: Uint8Array, sequence: bigint, ttlNs: bigint): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0xa5)]
  const head = (major: number, n: bigint): void => { parts.push(cborHead(major, n)) }
  const text = (s: string): void => { head(3, BigInt(s.length)); parts.push(Buffer.from(s)) }
  const bytes = (b: Uint8Array): void => { head(2, BigInt(b.length)); parts.push(b) }
  text('TTL'); head(0, ttlNs)
  text('Value'); bytes(value)
  text('Sequence'); head(0, sequence)
  text('Validity'); bytes(validity)
  text('ValidityType'); head(0, BigInt(EOL))
  return Buffer.concat(parts)
}

/** A CBOR head: major type and argument, in the fewest bytes. */
function cborHead (major: number, n: bigint): Uint8Array {
  const m = major << 5
  if (n < 24n) return Uint8Array.of(m | Number(n))
  if (n < 0x100n) return Uint8Array.of(m | 24, Number(n))
  if (n < 0x10000n) { const b = Buffer.alloc(3); b[0] = m | 25; b.writeUInt16BE(Number(n), 1); return b }
  if (n < 0x100000000n) { const b = Buffer.alloc(5); b[0] = m | 26; b.writeUInt32BE(Number(n), 1); return b }
  const b = Buffer.alloc(9); b[0] = m | 27; b.writeBigUInt64BE(n, 1); return b
}

/**
 * The text-keyed entries of a CBOR map whose values are unsigned integers
 * (as bigint) or byte strings; other values (extensions of the record) are
 * read past and left out. Indefinite lengths (not DAG-CBOR) are refused.
 */
function readCborMap (buf: Uint8Array): Map<string, bigint | Uint8Array> {
  let at = 0
  const head = (): { major: number, n: bigint } => {
    if (at >= buf.length) throw new Error('the record\'s data is truncated')
    const first = buf[at++]!
    const info = first & 0x1f
    const major = first >> 5
    if (info < 24) return { major, n: BigInt(info) }
    const size = info === 24 ? 1 : info === 25 ? 2 : info === 26 ? 4 : info === 27 ? 8 : 0
    if (size === 0 || at + size > buf.length) throw new Error('the record\'s data is not DAG-CBOR')
    let n = 0n
    for (let i = 0; i < size; i++) n = (n << 8n) | BigInt(buf[at++]!)
    return { major, n }
  }
  const take = (n: bigint): Uint8Array => {
    if (BigInt(at) + n > BigInt(buf.length)) throw new Error('the record\'s data is truncated')
    const out = buf.subarray(at, at + Number(n))
    at += Number(n)
    return out
  }
  // Reads one item; returns it when it is an unsigned integer or a byte string.
  const item = (depth: number): bigint | Uint8Array | undefined => {
    if (depth > 16) throw new Error('the record\'s data nests too deep')
    const { major, n } = head()
    switch (major) {
      case 0: return n
      case 1: return undefined
      case 2: return take(n)
      case 3: take(n); return undefined
      case 4: for (let i = 0n; i < n; i++) item(depth + 1); return undefined
      case 5: for (let i = 0n; i < 2n * n; i++) item(depth + 1); return undefined
      case 6: item(depth + 1); return undefined
      default: return undefined // simple values and floats: their bytes were the head's
    }
  }
  const { major, n } = head()
  if (major !== 5) throw new Error('the record\'s data is not a map')
  const map = new Map<string, bigint | Uint8Array>()
  for (let i = 0n; i < n; i++) {
    const k = head()
    if (k.major !== 3) throw new Error('the record\'s data has a key that is not text')
    const name = Buffer.from(take(k.n)).toString('utf8')
    const value = item(0)
    if (value !== undefined) map.set(name, value)
  }
  if (at !== buf.length) throw new Error('the record\'s data has bytes after its map')
  return map
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
