import { randomBytes } from 'node:crypto'
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

  it('agrees with the ipns package on every one-byte change of a record, and refuses every truncation', async () => {
    const seed = randomBytes(32)
    const good = await theirs(seed, 3n, validityAt(Date.now() + 3600_000))
    // Where the fields' tags are: the ipns package (protons) reads a known field whatever wire type its tag says.
    const tags = new Set<number>()
    for (let at = 0; at < good.length;) {
      tags.add(at)
      const wire = good[at++]! & 7
      let n = 0
      for (let shift = 0; ; shift += 7) { const b = good[at++]!; n |= (b & 0x7f) << shift; if (b < 0x80) break }
      if (wire === 2) at += n
    }
    let accepted = 0
    for (let i = 0; i < good.length; i++) {
      for (const flip of [0x01, 0x80]) {
        const bad = Uint8Array.from(good)
        bad[i]! ^= flip
        const ours = weAccept(seed, bad)
        const expected = await theyAccept(seed, bad) && !(tags.has(i) && (flip & 7) !== 0)
        expect([i, flip, ours]).toEqual([i, flip, expected])
        if (ours) accepted++
      }
    }
    // What passes is a change to the V1 signature, which neither checks (V2 is what counts).
    expect(accepted).toBe(2 * 64)
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
