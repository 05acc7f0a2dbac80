import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { formatSha256, NarHasher, parseSha256 } from '../../src/nix/hash.js'
import { InvalidHashError } from '../../src/errors.js'
import { nix, nixAvailable } from '../helpers/nix.js'
import { fixture, fixtureText, NAR_CASES } from './fixtures.js'

const sha256 = (data: string | Uint8Array): Uint8Array => Uint8Array.from(createHash('sha256').update(data).digest())

/** Each fixture NAR with the hash `nix-hash --flat --base32` gave for it. */
const NARS = NAR_CASES.map(name => ({ name, bytes: fixture(`nar/${name}.nar`), nix32: fixtureText(`nar/${name}.sha256`).trim() }))

interface RawPathInfo { path: string, narHash: string, narSize: number }
/** `nix path-info --json` (Nix 2.8 prints SRI hashes) beside the narinfos `nix copy` wrote (nix32 hashes). */
const PATH_INFOS = JSON.parse(fixtureText('binary-cache/path-info.json')) as RawPathInfo[]

describe('formatSha256', () => {
  it('formats as sha256:<nix32>', () => {
    // sha256("") in Nix notation, as printed by `nix-hash --type sha256 --flat --base32 /dev/null`.
    expect(formatSha256(sha256(''))).toBe('sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73')
  })

  it('rejects digests that are not 32 bytes', () => {
    expect(() => formatSha256(new Uint8Array(20))).toThrow(InvalidHashError)
    expect(() => formatSha256(new Uint8Array(33))).toThrow(/32 bytes, got 33/)
  })
})

describe('parseSha256', () => {
  const digest = sha256('nixipfs')
  const hex = Buffer.from(digest).toString('hex')
  const b64 = Buffer.from(digest).toString('base64')
  const nix32 = formatSha256(digest).slice('sha256:'.length)

  it.each([
    ['nix32', `sha256:${nix32}`],
    ['base16', `sha256:${hex}`],
    ['base64', `sha256:${b64}`],
    ['SRI', `sha256-${b64}`]
  ])('reads %s', (_, text) => {
    expect(parseSha256(text)).toEqual(digest)
  })

  it.each([
    ['no algorithm', nix32],
    ['another algorithm', `sha512:${nix32}`],
    ['sha1', 'sha1:' + '0'.repeat(32)],
    ['a short nix32 hash', `sha256:${nix32.slice(1)}`],
    ['a long nix32 hash', `sha256:0${nix32}`],
    ['a nix32 hash with a bad character', `sha256:e${nix32.slice(1)}`],
    ['a short hex hash', `sha256:${hex.slice(2)}`],
    ['hex in SRI form', `sha256-${hex}`],
    ['nix32 in SRI form', `sha256-${nix32}`],
    ['base64 without padding', `sha256-${b64.slice(0, -1)}`],
    ['base64 of 33 bytes', `sha256-${Buffer.alloc(33).toString('base64')}`],
    ['an empty hash', 'sha256:'],
    ['nothing', '']
  ])('rejects %s', (_, text) => {
    expect(() => parseSha256(text)).toThrow(InvalidHashError)
  })

  it('round-trips through formatSha256', () => {
    for (const { nix32 } of NARS) expect(formatSha256(parseSha256(`sha256:${nix32}`))).toBe(`sha256:${nix32}`)
  })

  it('reads the SRI hashes of `nix path-info --json` as the nix32 hashes of the narinfos', () => {
    for (const info of PATH_INFOS) {
      const hashPart = info.path.slice('/nix/store/'.length, '/nix/store/'.length + 32)
      const narinfo = fixtureText(`binary-cache/${hashPart}.narinfo`)
      const narHash = /^NarHash: (.*)$/m.exec(narinfo)![1]!
      expect(formatSha256(parseSha256(info.narHash))).toBe(narHash)
    }
  })
})

describe('NarHasher', () => {
  it.each(NARS)('hashes $name.nar as nix-hash did', ({ bytes, nix32 }) => {
    const h = new NarHasher()
    h.update(bytes)
    expect(h.digest()).toBe(`sha256:${nix32}`)
    expect(h.size).toBe(bytes.length)
  })

  it('gives the same digest whatever the chunking', () => {
    const { bytes, nix32 } = NARS.find(n => n.name === 'mixed')!
    for (const size of [1, 7, 8, 4096]) {
      const h = new NarHasher()
      for (let i = 0; i < bytes.length; i += size) h.update(bytes.subarray(i, i + size))
      expect(h.digest()).toBe(`sha256:${nix32}`)
      expect(h.size).toBe(bytes.length)
    }
  })

  it('hashes nothing as the empty string', () => {
    const h = new NarHasher()
    expect(h.size).toBe(0)
    expect(h.digest()).toBe(formatSha256(sha256('')))
  })
})

describe.runIf(nixAvailable)('parseSha256 against the live nix hash', () => {
  it('reads every notation Nix prints for the fixture hashes', () => {
    const hashes = NARS.slice(0, 4).map(n => `sha256:${n.nix32}`)
    const notations = [['to-base16'], ['to-base64'], ['to-sri']].map(cmd =>
      nix(['hash', ...cmd, '--type', 'sha256', ...hashes.map(h => h.slice(7))]).stdout.trim().split('\n'))
    for (const printed of notations) {
      expect(printed).toHaveLength(hashes.length)
      printed.forEach((text, i) => {
        const withType = text.startsWith('sha256-') ? text : `sha256:${text}`
        expect(formatSha256(parseSha256(withType))).toBe(hashes[i])
      })
    }
  })
})
