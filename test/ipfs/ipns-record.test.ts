import { createHash, randomBytes } from 'node:crypto'
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { peerIdFromPublicKey } from '@libp2p/peer-id'
import { createIPNSRecordWithExpiration, marshalIPNSRecord, unmarshalIPNSRecord } from 'ipns'
import { validate } from 'ipns/validator'
import { base32 } from 'multiformats/bases/base32'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import NanoDate from 'timestamp-nano'
import { describe, expect, it } from 'vitest'
import { publicKeyFromSeed } from '../../src/ed25519.js'
import { createRecord, decodeRecord, ipnsName, publicKeyOfName, signedBy, validityAt } from '../../src/ipfs/ipns-record.js'

// The reference: the `ipns` package and libp2p's keys, which kubo and Helia interoperate with.
const ROOT = CID.parse('bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi')
const TTL_NS = 300_000_000_000n

async function theirs (seed: Uint8Array, sequence: bigint, validity: string): Promise<Uint8Array> {
  const key = await generateKeyPairFromSeed('Ed25519', seed)
  return marshalIPNSRecord(await createIPNSRecordWithExpiration(key, ROOT, sequence, validity, { v1Compatible: true, ttlNs: TTL_NS }))
}

/** Whether the `ipns` package takes `bytes` as a valid record of the seed's key. */
async function theyAccept (seed: Uint8Array, bytes: Uint8Array): Promise<boolean> {
  const key = await generateKeyPairFromSeed('Ed25519', seed)
  try {
    unmarshalIPNSRecord(bytes)
    await validate(key.publicKey, bytes)
    return true
  } catch {
    return false
  }
}

const weAccept = (seed: Uint8Array, bytes: Uint8Array): boolean => {
  try {
    return signedBy(decodeRecord(bytes), publicKeyFromSeed(seed)) && Date.parse(decodeRecord(bytes).validity) > Date.now()
  } catch {
    return false
  }
}

describe('IPNS records of Ed25519 keys, against the ipns package and libp2p', () => {
  it('names a key as libp2p does, and reads the key back from each form of its name', async () => {
    for (let i = 0; i < 20; i++) {
      const seed = randomBytes(32)
      const key = await generateKeyPairFromSeed('Ed25519', seed)
      expect(Buffer.from(publicKeyFromSeed(seed))).toEqual(Buffer.from(key.publicKey.raw))
      const peer = peerIdFromPublicKey(publicKeyFromRaw(key.publicKey.raw))
      const name = ipnsName(key.publicKey.raw)
      expect(name).toBe(peer.toCID().toString(base36))
      for (const form of [name, peer.toCID().toString(base32), peer.toString()]) {
        expect(Buffer.from(publicKeyOfName(form))).toEqual(Buffer.from(key.publicKey.raw))
      }
    }
  })

  it('refuses names that embed no Ed25519 key', () => {
    expect(() => publicKeyOfName('QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N')).toThrow(/Ed25519/) // an RSA key's hash
    expect(() => publicKeyOfName(ROOT.toString())).toThrow(/libp2p key/)
    expect(() => publicKeyOfName('k51-not-a-name')).toThrow()
  })

  it('writes the validity as js-ipns does', () => {
    for (const ms of [0, Date.UTC(2026, 11, 7, 1, 2, 3, 456), Date.UTC(2099, 0, 1)]) expect(validityAt(ms)).toBe(new NanoDate(ms).toString())
  })

  it.each([0n, 1n, 255n, 65_536n, 2n ** 40n])('signs the same bytes as the ipns package (sequence %s)', async sequence => {
    const seed = randomBytes(32)
    const validity = validityAt(Date.now() + 48 * 3600_000)
    const ours = createRecord(seed, { value: `/ipfs/${ROOT.toString()}`, validity, sequence, ttlNs: TTL_NS })
    expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(await theirs(seed, sequence, validity)).toString('hex'))
    expect(await theyAccept(seed, ours)).toBe(true)
  })

  it('reads and accepts what the ipns package signs', async () => {
    const seed = randomBytes(32)
    const validity = validityAt(Date.now() + 3600_000)
    const record = decodeRecord(await theirs(seed, 7n, validity))
    expect(record).toMatchObject({ value: `/ipfs/${ROOT.toString()}`, validity, sequence: 7n, ttlNs: TTL_NS })
    expect(signedBy(record, publicKeyFromSeed(seed))).toBe(true)
    expect(signedBy(record, publicKeyFromSeed(randomBytes(32)))).toBe(false)
  })

  it('takes no one-byte change of what is signed or of its signature, reads nothing else from any change, and refuses every truncation', async () => {
    // A fixed seed: which changes of the unsigned framing still parse depends on the signature's bytes.
    const seed = createHash('sha256').update('ipns-record.test').digest()
    const good = await theirs(seed, 3n, validityAt(Date.now() + 3600_000))
    const fields = decodeRecord(good)
    // Where each field's bytes are (after its tag and length).
    const payload = new Map<number, [number, number]>()
    for (let at = 0; at < good.length;) {
      const tag = good[at++]!
      let n = 0
      for (let shift = 0; ; shift += 7) { const b = good[at++]!; n |= (b & 0x7f) << shift; if (b < 0x80) break }
      if ((tag & 7) === 2) { payload.set(tag >> 3, [at, at + n]); at += n }
    }
    const inField = (field: number, i: number): boolean => { const [from, to] = payload.get(field)!; return i >= from && i < to }
    for (let i = 0; i < good.length; i++) {
      for (const flip of [0x01, 0x80]) {
        const bad = Uint8Array.from(good)
        bad[i]! ^= flip
        const ours = weAccept(seed, bad)
        if (inField(8, i) || inField(9, i)) {
          // The V2 signature or the data it signs: neither implementation takes it.
          expect([i, flip, ours]).toEqual([i, flip, false])
          expect([i, flip, await theyAccept(seed, bad)]).toEqual([i, flip, false])
        } else if (inField(2, i)) {
          // The V1 signature, which neither checks (V2 is what counts).
          expect([i, flip, ours, await theyAccept(seed, bad)]).toEqual([i, flip, true, true])
        }
        // Whatever else still parses says what the signed data says.
        if (ours) expect(decodeRecord(bad)).toMatchObject({ value: fields.value, validity: fields.validity, sequence: fields.sequence, ttlNs: fields.ttlNs })
      }
    }
    for (let n = 0; n < good.length; n++) expect(weAccept(seed, good.subarray(0, n))).toBe(false)
  })

  it('refuses a record whose V1 fields differ from its signed data, as the ipns package does', async () => {
    const seed = randomBytes(32)
    const validity = validityAt(Date.now() + 3600_000)
    const other = await theirs(seed, 4n, validity)
    const good = await theirs(seed, 5n, validity)
    // The V2 signature and data of sequence 5 under the V1 fields of sequence 4.
    const v1 = unmarshalIPNSRecord(other)
    const v2 = unmarshalIPNSRecord(good)
    const mixed = marshalIPNSRecord({ ...v1, signatureV2: v2.signatureV2, data: v2.data })
    expect(weAccept(seed, mixed)).toBe(false)
    expect(await theyAccept(seed, mixed)).toBe(false)
    expect(() => decodeRecord(mixed)).toThrow(/V1 fields differ/)
  })
})
