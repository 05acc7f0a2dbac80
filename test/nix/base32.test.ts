import { spawnSync } from 'node:child_process'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { decodeNix32, encodeNix32, NIX32_ALPHABET, nix32Length } from '../../src/nix/base32.js'
import { InvalidHashError } from '../../src/errors.js'
import { nixAvailable } from '../helpers/nix.js'
import { fixtureText } from './fixtures.js'

/** Vectors made by `nix-hash --to-base32` (fixtures/make-fixtures.sh): 16, 20, 32 and 64-byte digests. */
const VECTORS = fixtureText('base32.tsv').split('\n')
  .filter(line => line !== '' && !line.startsWith('#'))
  .map(line => {
    const [hex, nix32] = line.split('\t') as [string, string]
    return { hex, nix32, bytes: Uint8Array.from(Buffer.from(hex, 'hex')) }
  })

const TYPE_OF_SIZE: Record<number, string> = { 16: 'md5', 20: 'sha1', 32: 'sha256', 64: 'sha512' }

describe('Nix base32 against vectors from nix-hash', () => {
  it('has vectors for every digest size', () => {
    const sizes = new Set(VECTORS.map(v => v.bytes.length))
    expect([...sizes].sort((a, b) => a - b)).toEqual([16, 20, 32, 64])
    expect(VECTORS.filter(v => v.bytes.length === 32).length).toBeGreaterThanOrEqual(30)
    expect(VECTORS.filter(v => v.bytes.length === 20).length).toBeGreaterThanOrEqual(30)
  })

  it.each(VECTORS)('encodes $hex', ({ bytes, nix32 }) => {
    expect(encodeNix32(bytes)).toBe(nix32)
    expect(nix32.length).toBe(nix32Length(bytes.length))
  })

  it.each(VECTORS)('decodes $nix32', ({ bytes, nix32 }) => {
    expect(decodeNix32(nix32, bytes.length)).toEqual(bytes)
    // Without a size, the size the length implies.
    expect(decodeNix32(nix32)).toEqual(bytes)
  })
})

describe('Nix base32', () => {
  it('uses the alphabet without e, o, u, t', () => {
    expect(NIX32_ALPHABET).toBe('0123456789abcdfghijklmnpqrsvwxyz')
    expect(NIX32_ALPHABET).toHaveLength(32)
  })

  it.each([[0, 0], [1, 2], [16, 26], [20, 32], [32, 52], [64, 103]])('%i bytes take %i characters', (bytes, chars) => {
    expect(nix32Length(bytes)).toBe(chars)
  })

  it('encodes nothing as nothing', () => {
    expect(encodeNix32(new Uint8Array(0))).toBe('')
    expect(decodeNix32('', 0)).toEqual(new Uint8Array(0))
  })

  it('prints the least significant group last', () => {
    expect(encodeNix32(Uint8Array.of(1))).toBe('01')
    expect(encodeNix32(Uint8Array.of(0x20))).toBe('10')
    expect(encodeNix32(Uint8Array.of(0xff))).toBe('7z')
  })

  it('round-trips any bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), bytes => {
      const text = encodeNix32(bytes)
      expect(text).toHaveLength(nix32Length(bytes.length))
      expect(decodeNix32(text, bytes.length)).toEqual(bytes)
    }), { numRuns: 300 })
  })

  describe('rejects', () => {
    const z51 = '0'.repeat(51)
    it.each([
      ['e (not in the alphabet)', 'e' + z51],
      ['o', 'o' + z51],
      ['u', 'u' + z51],
      ['t', 't' + z51],
      ['an upper-case letter', 'A' + z51],
      ['a non-ASCII character', '\u00e9' + z51],
      ['an emoji (two UTF-16 units)', '\u{1F600}' + '0'.repeat(50)],
      ['a space', ' ' + z51]
    ])('%s', (_, text) => {
      expect(() => decodeNix32(text, 32)).toThrow(InvalidHashError)
    })

    it('a length that does not match the size', () => {
      expect(() => decodeNix32('0'.repeat(51), 32)).toThrow(InvalidHashError)
      expect(() => decodeNix32('0'.repeat(53), 32)).toThrow(/cannot encode 32 bytes/)
      expect(() => decodeNix32('000')).toThrow(InvalidHashError) // 3 characters encode no whole size
    })

    // 52 characters carry 260 bits, 4 more than 32 bytes: the first character must be 0 or 1.
    it('bits set beyond the size', () => {
      expect(decodeNix32('1' + z51, 32)[31]).toBe(0x80)
      for (const c of '23456789abcdfghijklmnpqrsvwxyz') {
        expect(() => decodeNix32(c + z51, 32)).toThrow(/beyond its length/)
      }
      // 16 bytes in 26 characters: 2 spare bits, so the first character carries 3 bits.
      expect(decodeNix32('7' + '0'.repeat(25), 16)[15]).toBe(0xe0)
      expect(() => decodeNix32('8' + '0'.repeat(25), 16)).toThrow(InvalidHashError)
    })
  })
})

describe.runIf(nixAvailable)('Nix base32 against the live nix-hash', () => {
  const nixHash = (args: string[]): { status: number | null, out: string } => {
    const r = spawnSync('nix-hash', args, { encoding: 'utf8' })
    return { status: r.status, out: r.stdout.trim() }
  }

  it('agrees on random digests of every size', () => {
    const rnd = fc.sample(fc.constantFrom(16, 20, 32, 64).chain(n => fc.uint8Array({ minLength: n, maxLength: n })), { numRuns: 8, seed: 42 })
    for (const bytes of rnd) {
      const hex = Buffer.from(bytes).toString('hex')
      const type = TYPE_OF_SIZE[bytes.length]!
      const r = nixHash(['--to-base32', '--type', type, hex])
      expect(r.status).toBe(0)
      expect(encodeNix32(bytes)).toBe(r.out)
    }
  })

  it('rejects exactly the strings Nix rejects (spare bits, bad characters)', () => {
    const z51 = '0'.repeat(51)
    for (const text of ['1' + z51, '2' + z51, 'z' + z51, 'e' + z51, 'A' + z51]) {
      const nixOk = nixHash(['--to-base16', '--type', 'sha256', text]).status === 0
      let ours = true
      try { decodeNix32(text, 32) } catch { ours = false }
      expect(ours, text).toBe(nixOk)
    }
  })
})
