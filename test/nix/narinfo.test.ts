import { chmodSync, copyFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { fingerprint, formatNarInfo, MAX_NARINFO_BYTES, parseNarInfo, withCompressedNar, type NarInfo } from '../../src/nix/narinfo.js'
import { parsePublicKey, parseSecretKey, signFingerprint, verifyFingerprint } from '../../src/nix/signing.js'
import { formatSha256, parseSha256 } from '../../src/nix/hash.js'
import { readSecretKeyFile } from '../../src/repo.js'
import { NarInfoParseError } from '../../src/errors.js'
import { FIXTURES, fixturePaths, fixtureText } from './fixtures.js'

/** Every narinfo Nix wrote (`nix copy --to file://…`), and the real ones from cache.nixos.org. */
const NARINFOS = [
  ...readdirSync(join(FIXTURES, 'binary-cache')).filter(f => f.endsWith('.narinfo')).map(f => `binary-cache/${f}`),
  'narinfo/xz.narinfo',
  ...readdirSync(join(FIXTURES, 'narinfo/cache.nixos.org')).filter(f => f.endsWith('.narinfo')).map(f => `narinfo/cache.nixos.org/${f}`)
].map(file => ({ file, text: fixtureText(file) }))

const PATHS = fixturePaths()
const narinfoOf = (role: 'dep' | 'top' | 'ca'): string => fixtureText(`binary-cache/${PATHS[role].slice(0, 32)}.narinfo`)
const KEY1 = parseSecretKey(fixtureText('keys/fixture-1.sec'))
const KEY2 = parseSecretKey(fixtureText('keys/fixture-2.sec'))
const PUB1 = parsePublicKey(fixtureText('keys/fixture-1.pub'))
const PUB2 = parsePublicKey(fixtureText('keys/fixture-2.pub'))
const NIXOS = parsePublicKey(fixtureText('narinfo/cache.nixos.org/key.pub'))

interface RawPathInfo { path: string, narHash: string, narSize: number, references: string[], deriver?: string, ca?: string, signatures?: string[] }
const PATH_INFOS = JSON.parse(fixtureText('binary-cache/path-info.json')) as RawPathInfo[]

const sigsBy = (info: NarInfo, name: string): string[] => info.sigs.filter(s => s.startsWith(`${name}:`))

describe('parseNarInfo + formatNarInfo', () => {
  it('has the narinfos it should', () => {
    expect(NARINFOS.length).toBeGreaterThanOrEqual(7)
  })

  it.each(NARINFOS)('$file: format(parse(text)) is the text, byte for byte', ({ text }) => {
    expect(formatNarInfo(parseNarInfo(text))).toBe(text)
  })

  it('reads every field', () => {
    const top = parseNarInfo(narinfoOf('top'))
    expect(top).toEqual({
      storePath: `/nix/store/${PATHS.top}`,
      url: expect.stringMatching(/^nar\/[0-9a-z]{52}\.nar$/),
      compression: 'none',
      fileHash: top.narHash,
      fileSize: 1024,
      narHash: expect.stringMatching(/^sha256:[0-9a-z]{52}$/),
      narSize: 1024,
      references: [PATHS.dep, PATHS.top], // itself too
      deriver: expect.stringMatching(/^[0-9a-z]{32}-nixipfs-fixture-top\.drv$/),
      sigs: [expect.stringMatching(/^fixture-1:/), expect.stringMatching(/^fixture-2:/)]
    })
    const ca = parseNarInfo(narinfoOf('ca'))
    expect(ca.ca).toBe(`fixed:r:${ca.narHash}`)
    expect(ca.deriver).toBeUndefined()
    expect(ca.references).toEqual([])
  })

  it('reads a compressed narinfo, where FileHash and FileSize are not the NAR\'s', () => {
    const xz = parseNarInfo(fixtureText('narinfo/xz.narinfo'))
    const none = parseNarInfo(narinfoOf('dep'))
    expect(xz.compression).toBe('xz')
    expect(xz.url).toMatch(/\.nar\.xz$/)
    expect(xz.fileHash).not.toBe(xz.narHash)
    expect(xz.fileSize).toBeLessThan(xz.narSize)
    expect({ ...xz, url: none.url, compression: none.compression, fileHash: none.fileHash, fileSize: none.fileSize }).toEqual(none)
  })

  it('agrees with `nix path-info --json` about the same paths', () => {
    for (const raw of PATH_INFOS) {
      const info = parseNarInfo(fixtureText(`binary-cache/${raw.path.slice(11, 43)}.narinfo`))
      expect(info.storePath).toBe(raw.path)
      expect(info.narHash).toBe(formatSha256(parseSha256(raw.narHash)))
      expect(info.narSize).toBe(raw.narSize)
      expect(info.references.map(r => `/nix/store/${r}`)).toEqual(raw.references)
      expect(info.deriver === undefined ? undefined : `/nix/store/${info.deriver}`).toBe(raw.deriver)
      expect(info.ca).toBe(raw.ca)
      expect(info.sigs).toEqual(raw.signatures)
    }
  })

  it('defaults Compression to bzip2 and ignores unknown fields, as Nix does', () => {
    const text = narinfoOf('dep').replace('Compression: none\n', '') + 'X-Unknown: whatever\nSystem: x86_64-linux\n'
    const info = parseNarInfo(text)
    expect(info.compression).toBe('bzip2')
    expect(info).toEqual({ ...parseNarInfo(narinfoOf('dep')), compression: 'bzip2' })
  })

  it('normalizes hashes to sha256:<nix32> and accepts "unknown-deriver"', () => {
    const dep = parseNarInfo(narinfoOf('dep'))
    const hex = Buffer.from(parseSha256(dep.narHash)).toString('hex')
    const sri = 'sha256-' + Buffer.from(parseSha256(dep.narHash)).toString('base64')
    const text = narinfoOf('dep')
      .replace(/^NarHash: .*$/m, `NarHash: sha256:${hex}`)
      .replace(/^FileHash: .*$/m, `FileHash: ${sri}`)
      .replace(/^Deriver: .*$/m, 'Deriver: unknown-deriver')
    const info = parseNarInfo(text)
    expect(info.narHash).toBe(dep.narHash)
    expect(info.fileHash).toBe(dep.fileHash)
    expect(info.deriver).toBeUndefined()
  })

  it('accepts a text without the final newline', () => {
    const text = narinfoOf('dep')
    expect(parseNarInfo(text.slice(0, -1))).toEqual(parseNarInfo(text))
  })

  it('formats signatures sorted and once, as Nix keeps them in a set', () => {
    const top = parseNarInfo(narinfoOf('top'))
    const shuffled = { ...top, sigs: [top.sigs[1]!, top.sigs[0]!, top.sigs[1]!] }
    expect(formatNarInfo(shuffled)).toBe(narinfoOf('top'))
  })
})

describe('malformed narinfos give NarInfoParseError naming line and field', () => {
  const dep = narinfoOf('dep')
  const lines = dep.split('\n')
  const lineOf = (field: string): number => lines.findIndex(l => l.startsWith(`${field}: `)) + 1
  /** The dep narinfo with the line of `field` replaced (or removed, for null). */
  const edit = (field: string, line: string | null): string => {
    const out = [...lines]
    out.splice(lineOf(field) - 1, 1, ...(line === null ? [] : [line]))
    return out.join('\n')
  }

  it('the dep narinfo is laid out as Nix writes it', () => {
    expect(lines.slice(0, 10).map(l => l.slice(0, l.indexOf(':')))).toEqual(
      ['StorePath', 'URL', 'Compression', 'FileHash', 'FileSize', 'NarHash', 'NarSize', 'References', 'Deriver', 'Sig'])
  })

  it.each([
    ['NarSize: abc', 'NarSize', /^line 7: invalid NarSize \(not a byte count: "abc"\)$/],
    ['NarSize: -1', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize: 1e3', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize: ', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize:  704', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize: 704\r', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize: 99999999999999999', 'NarSize', /^line 7: invalid NarSize/],
    ['NarSize: 9007199254740993', 'NarSize', /^line 7: invalid NarSize/],
    ['FileSize: 7.5', 'FileSize', /^line 5: invalid FileSize/],
    ['NarHash: sha256:xyz', 'NarHash', /^line 6: invalid NarHash \(malformed sha256 hash/],
    ['NarHash: md5:00000000000000000000000000000000', 'NarHash', /^line 6: invalid NarHash/],
    ['NarHash: ' + '0'.repeat(52), 'NarHash', /^line 6: invalid NarHash/],
    ['FileHash: sha256:' + 'e'.repeat(52), 'FileHash', /^line 4: invalid FileHash/],
    ['StorePath: /tmp/foo', 'StorePath', /^line 1: invalid StorePath \(.*is not in \/nix\/store\)$/],
    ['StorePath: /nix/store/short-name', 'StorePath', /^line 1: invalid StorePath/],
    ['References: not-a-store-path', 'References', /^line 8: invalid References/],
    ['References: /nix/store/4lmvfah6rqsqfd4w5kjxdhfqn62rwx8r-nixipfs-fixture-dep', 'References', /^line 8: invalid References/],
    ['Deriver: x.drv', 'Deriver', /^line 9: invalid Deriver/],
    ['URL: ', 'URL', /^line 2: invalid URL \(empty\)$/],
    ['NarSize 704', 'NarSize', /^line 7: invalid line \(expected "Field: value", got "NarSize 704"\)$/],
    ['NarSize:704', 'NarSize', /^line 7: invalid line/],
    ['', 'Deriver', /^line 9: invalid line/]
  ])('%j', (line, field, message) => {
    const err = (() => { try { parseNarInfo(edit(field, line)) } catch (e) { return e } })()
    expect(err).toBeInstanceOf(NarInfoParseError)
    expect((err as Error).message).toMatch(message)
    const at = Number(/^line (\d+)/.exec((err as Error).message)![1])
    expect((err as NarInfoParseError).line).toBe(at)
    expect((err as NarInfoParseError).code).toBe('ERR_NARINFO_PARSE')
  })

  it.each(['StorePath', 'URL', 'NarHash', 'NarSize'])('a missing %s', field => {
    expect(() => parseNarInfo(edit(field, null))).toThrow(new RegExp(`^line \\d+: invalid ${field} \\(missing\\)$`))
  })

  it('an empty text', () => {
    expect(() => parseNarInfo('')).toThrow(/invalid StorePath \(missing\)/)
  })

  it('a text longer than the limit', () => {
    expect(() => parseNarInfo(dep + 'X: ' + 'x'.repeat(MAX_NARINFO_BYTES) + '\n')).toThrow(NarInfoParseError)
  })
})

describe('fingerprint and signatures', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nixipfs-keys-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('the fingerprint covers path, NarHash, NarSize and the sorted full reference paths', () => {
    const top = parseNarInfo(narinfoOf('top'))
    expect(fingerprint(top)).toBe(`1;/nix/store/${PATHS.top};${top.narHash};1024;/nix/store/${PATHS.dep},/nix/store/${PATHS.top}`)
    expect(fingerprint({ ...top, references: [...top.references].reverse() })).toBe(fingerprint(top))
    const dep = parseNarInfo(narinfoOf('dep'))
    expect(fingerprint(dep)).toBe(`1;/nix/store/${PATHS.dep};${dep.narHash};704;`)
  })

  it.each(['dep', 'top', 'ca'] as const)('signing the fingerprint of %s gives exactly Nix\'s Sig line', role => {
    const info = parseNarInfo(narinfoOf(role))
    expect(sigsBy(info, 'fixture-1')).toEqual([signFingerprint(KEY1, fingerprint(info))])
    if (role === 'top') expect(sigsBy(info, 'fixture-2')).toEqual([signFingerprint(KEY2, fingerprint(info))])
  })

  it('reads the secret key from a 0600 copy of the key file', async () => {
    const path = join(dir, 'fixture-1.sec')
    copyFileSync(join(FIXTURES, 'keys/fixture-1.sec'), path)
    chmodSync(path, 0o600)
    const key = await readSecretKeyFile(path)
    const info = parseNarInfo(narinfoOf('dep'))
    expect(signFingerprint(key, fingerprint(info))).toBe(info.sigs[0])
  })

  it.each(NARINFOS)('$file: every signature verifies with its public key', ({ file, text }) => {
    const info = parseNarInfo(text)
    const keys = file.includes('cache.nixos.org') ? [NIXOS] : [PUB1, PUB2]
    expect(info.sigs.length).toBeGreaterThan(0)
    for (const sig of info.sigs) expect(verifyFingerprint(keys, fingerprint(info), sig)).toBe(true)
  })

  it('the signature does not cover URL, Compression, FileHash or FileSize', () => {
    const info = parseNarInfo(fixtureText('narinfo/xz.narinfo'))
    const moved = { ...info, url: 'nar/bafy-something.nar', compression: 'none', fileHash: info.narHash, fileSize: info.narSize }
    expect(verifyFingerprint([PUB1], fingerprint(moved), info.sigs[0]!)).toBe(true)
  })

  describe('fails to verify', () => {
    const info = parseNarInfo(narinfoOf('top'))
    const fp = fingerprint(info)
    const sig = sigsBy(info, 'fixture-1')[0]!

    it('with the wrong key', () => {
      expect(verifyFingerprint([PUB2], fp, sig)).toBe(false)
      expect(verifyFingerprint([{ name: 'fixture-1', key: PUB2.key }], fp, sig)).toBe(false)
      expect(verifyFingerprint([NIXOS], fp, sig)).toBe(false)
      expect(verifyFingerprint([], fp, sig)).toBe(false)
    })

    it('with the right key under another name', () => {
      expect(verifyFingerprint([{ name: 'fixture-2', key: PUB1.key }], fp, sig)).toBe(false)
    })

    it.each([
      ['NarSize', { narSize: info.narSize + 1 }],
      ['NarHash', { narHash: parseNarInfo(narinfoOf('dep')).narHash }],
      ['StorePath', { storePath: `/nix/store/${PATHS.dep}` }],
      ['References', { references: [PATHS.dep] }]
    ])('when %s changed', (_, change) => {
      expect(verifyFingerprint([PUB1], fingerprint({ ...info, ...change }), sig)).toBe(false)
    })

    it.each([
      ['no colon', sig.replace(':', '')],
      ['an empty name', sig.slice(sig.indexOf(':'))],
      ['a truncated signature', sig.slice(0, -4)],
      ['one flipped byte', `fixture-1:${(() => { const b = Buffer.from(sig.slice(10), 'base64'); b[5]! ^= 1; return b.toString('base64') })()}`],
      ['garbage', 'fixture-1:not base64 at all'],
      ['64 bytes of 0xff', `fixture-1:${Buffer.alloc(64, 0xff).toString('base64')}`],
      ['nothing', '']
    ])('with a signature with %s', (_, bad) => {
      expect(verifyFingerprint([PUB1], fp, bad)).toBe(false)
    })
  })
})

describe('parseNarInfo: edge cases Nix decides', () => {
  const base = 'StorePath: /nix/store/ag7lhjpn4zjmmlf7557wdw9llzvshsww-t1\nURL: nar/x.nar\nNarHash: sha256:0m8shp0cqq4w1sgd1hxnh91d66nr0k664hcwzag8y5qskgrd162c\n'
  it('rejects NarSize 0, as Nix does', () => {
    expect(() => parseNarInfo(`${base}NarSize: 0\n`)).toThrow(/line 4: invalid NarSize \(zero\)/)
  })
  it('reports an empty narinfo at line 1', () => {
    expect(() => parseNarInfo('')).toThrow(/^line 1: invalid StorePath \(missing\)/)
  })
  it('ignores empty reference tokens and accepts upper-case base16 hashes', () => {
    const info = parseNarInfo(`${base}NarSize: 8\nReferences:  ag7lhjpn4zjmmlf7557wdw9llzvshsww-t1  \nFileHash: sha256:${'AB'.repeat(32)}\n`)
    expect(info.references).toEqual(['ag7lhjpn4zjmmlf7557wdw9llzvshsww-t1'])
    expect(info.fileHash).toBe(formatSha256(parseSha256(`sha256:${'ab'.repeat(32)}`)))
  })
})

describe('withCompressedNar', () => {
  const text = 'StorePath: /nix/store/0c7yh7q0prw63kcrk7rvhwp3jfrxczc3-hello\nURL: nar/bafkreiabc.nar\nCompression: none\nFileHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nFileSize: 120\nNarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nNarSize: 120\nReferences: \nSig: k:c2ln\nX-Unknown: kept\n'
  it('points at the compressed NAR, drops FileHash/FileSize, keeps the rest (the fingerprint unchanged)', () => {
    const out = withCompressedNar(text, 'zstd', 'zst')!
    expect(out).toBe('StorePath: /nix/store/0c7yh7q0prw63kcrk7rvhwp3jfrxczc3-hello\nURL: nar/bafkreiabc.nar.zst\nCompression: zstd\nNarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\nNarSize: 120\nReferences: \nSig: k:c2ln\nX-Unknown: kept\n')
    expect(fingerprint(parseNarInfo(out))).toBe(fingerprint(parseNarInfo(text)))
  })
  it('leaves alone what is compressed already or not a nar/….nar', () => {
    expect(withCompressedNar(text.replace('Compression: none', 'Compression: xz'), 'br', 'br')).toBeUndefined()
    expect(withCompressedNar(text.replace('URL: nar/bafkreiabc.nar', 'URL: nar/upstream/abc.nar'), 'br', 'br')).toBeUndefined()
  })
})
