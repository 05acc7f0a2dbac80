import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { decodeHoldings, encodeHoldings, rendezvousCid } from '../../src/net/rendezvous.js'
import { IPNS_NAME } from '../../src/repo-layout.js'

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

// What a provider of a rendezvous CID answers: each cache's name, then the narinfo it holds there (narinfos made by
// `nix copy --to file://…`, see fixtures/make-fixtures.sh).
describe('the answer to /nixipfs/narinfo/<hash>', () => {
  const names = ['k51qzi5uqu5dlh7cc6xqn21dqsr896i6i34zvwqqw2vv39m3ckvj5436pu2rjg', 'k51qzi5uqu5dhvkiyfe7npiy8u2lk4vs2271xv465ymyhsxzqo2vpr0jjbqhcm']
  const dir = 'fixtures/binary-cache'
  const texts = readdirSync(dir).filter(f => f.endsWith('.narinfo')).slice(0, 2).map(f => readFileSync(join(dir, f), 'utf8'))

  it('carries each cache\'s narinfo byte for byte', () => {
    expect(texts).toHaveLength(2)
    const holdings = names.map((name, i) => ({ name, narinfo: texts[i]! }))
    expect(decodeHoldings(encodeHoldings(holdings))).toEqual(holdings)
  })

  it('reads an answer of names alone (the first format), and such a reader finds the names alone in it', () => {
    expect(decodeHoldings(names.join('\n'))).toEqual(names.map(name => ({ name, narinfo: '' })))
    const answer = encodeHoldings(names.map((name, i) => ({ name, narinfo: texts[i]! })))
    expect(answer.split('\n').filter(line => IPNS_NAME.test(line))).toEqual(names) // what the first format's reader kept
  })

  it('sends names alone past a bound on narinfo text, so that a path with huge narinfos still has an answer', () => {
    const huge = `StorePath: /nix/store/x\nReferences: ${'a'.repeat(300 * 1024)}\n`
    expect(decodeHoldings(encodeHoldings([{ name: names[0]!, narinfo: huge }, { name: names[1]!, narinfo: texts[0]! }])))
      .toEqual([{ name: names[0], narinfo: '' }, { name: names[1], narinfo: texts[0] }])
  })
})
