import { execFileSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { rendezvousCid } from '../../src/net/rendezvous.js'

/** RFC 4648 base32, lower case, no padding: multibase prefix `b`, as CIDv1 strings are written. */
function base32 (bytes: Uint8Array): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  let bits = 0
  let value = 0
  let out = ''
  for (const b of bytes) {
    value = (value << 8) | b
    bits += 8
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31]
  return out
}

describe('rendezvous CID', () => {
  it('is CIDv1, raw, sha2-256 of "nixipfs-narinfo-v1:" + the store path hash (computed here with sha256sum)', () => {
    const hash = '7x5n2zc0h4n4vbfm7v0b0qhnfgj3ag8a'
    const hex = execFileSync('sh', ['-c', `printf '%s' 'nixipfs-narinfo-v1:${hash}' | sha256sum`], { encoding: 'utf8' }).split(' ')[0]!
    // version 1, codec raw (0x55), multihash sha2-256 (0x12) of 32 (0x20) bytes
    const bytes = Buffer.concat([Buffer.from([0x01, 0x55, 0x12, 0x20]), Buffer.from(hex, 'hex')])
    const expected = 'b' + base32(bytes)
    expect(rendezvousCid(hash).toString()).toBe(expected)
    // The fixed vector, as documented in the README.
    expect(expected).toBe('bafkreiey7bpjvkfuv2diz75cccrbpy4oa7yeohzokvfgrynyvacxndroyy')
  })

  it('differs per store path', () => {
    expect(rendezvousCid('0'.repeat(32)).equals(rendezvousCid('1'.repeat(32)))).toBe(false)
  })
})
