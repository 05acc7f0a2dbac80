import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  formatPublicKey, formatSecretKey, generateSecretKey, parsePublicKey, parseSecretKey, publicKeyOf,
  signFingerprint, verifyFingerprint, type SecretKey
} from '../../src/nix/signing.js'
import { fingerprint } from '../../src/nix/narinfo.js'
import { formatSha256, parseSha256 } from '../../src/nix/hash.js'
import { readSecretKeyFile } from '../../src/repo.js'
import { InsecureKeyFileError, InvalidKeyError } from '../../src/errors.js'
import { nix, nixAvailable, nixBuild, shellDerivation } from '../helpers/nix.js'
import { fixtureText } from './fixtures.js'

/** Key files made by `nix-store --generate-binary-cache-key` (no trailing newline, as Nix writes them). */
const KEYS = ['fixture-1', 'fixture-2'].map(name => ({ name, sec: fixtureText(`keys/${name}.sec`), pub: fixtureText(`keys/${name}.pub`) }))

const b64 = (hex: string): string => Buffer.from(hex, 'hex').toString('base64')

describe('Nix key files', () => {
  it.each(KEYS)('parses and reformats $name exactly', ({ name, sec, pub }) => {
    const secret = parseSecretKey(sec)
    const publicKey = parsePublicKey(pub)
    expect(secret.name).toBe(name)
    expect(publicKey.name).toBe(name)
    expect(secret.seed).toHaveLength(32)
    expect(Buffer.from(secret.publicKey).equals(Buffer.from(publicKey.key))).toBe(true)
    expect(formatSecretKey(secret)).toBe(sec)
    expect(formatPublicKey(publicKey)).toBe(pub)
    expect(formatPublicKey(publicKeyOf(secret))).toBe(pub)
  })

  it('accepts surrounding whitespace (a key file with a newline)', () => {
    const { sec, pub } = KEYS[0]!
    expect(parseSecretKey(sec + '\n')).toEqual(parseSecretKey(sec))
    expect(parsePublicKey(`  ${pub}\n`)).toEqual(parsePublicKey(pub))
  })

  const { sec, pub } = KEYS[0]!
  const secBytes = Buffer.from(sec.slice(sec.indexOf(':') + 1), 'base64')
  it.each([
    ['no name', sec.slice(sec.indexOf(':'))],
    ['no colon', sec.replace(':', '')],
    ['bad base64', 'fixture-1:abc!def'],
    ['63 bytes', `fixture-1:${secBytes.subarray(1).toString('base64')}`],
    ['a public key', pub],
    ['a public half that is not the seed\'s', `fixture-1:${Buffer.concat([secBytes.subarray(0, 32), parsePublicKey(KEYS[1]!.pub).key]).toString('base64')}`],
    ['nothing', '']
  ])('rejects a secret key with %s', (_, text) => {
    expect(() => parseSecretKey(text)).toThrow(InvalidKeyError)
  })

  it.each([
    ['no colon', pub.replace(':', '')],
    ['31 bytes', `fixture-1:${Buffer.alloc(31).toString('base64')}`],
    ['a secret key', sec],
    ['bad base64', 'fixture-1:%%%']
  ])('rejects a public key with %s', (_, text) => {
    expect(() => parsePublicKey(text)).toThrow(InvalidKeyError)
  })

  it('says which half of a corrupt secret key is wrong', () => {
    const bad = `fixture-1:${Buffer.concat([secBytes.subarray(0, 32), Buffer.alloc(32)]).toString('base64')}`
    expect(() => parseSecretKey(bad)).toThrow(/corrupt/)
  })
})

describe('generateSecretKey', () => {
  it('makes a fresh key pair that survives its file format', () => {
    const a = generateSecretKey('host-1')
    const b = generateSecretKey('host-1')
    expect(Buffer.from(a.seed).equals(Buffer.from(b.seed))).toBe(false)
    expect(parseSecretKey(formatSecretKey(a))).toEqual(a)
    expect(parsePublicKey(formatPublicKey(publicKeyOf(a)))).toEqual(publicKeyOf(a))
  })

  it.each(['', 'a:b', 'a b', 'tab\there'])('rejects the name %j', name => {
    expect(() => generateSecretKey(name)).toThrow(InvalidKeyError)
  })
})

describe('signFingerprint / verifyFingerprint', () => {
  // RFC 8032, section 7.1, TEST 1 and TEST 2.
  const RFC = [
    {
      seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
      pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
      msg: '',
      sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b'
    },
    {
      seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
      pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
      msg: 'r',
      sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00'
    }
  ]

  it.each(RFC)('signs the RFC 8032 vector with public key $pub', ({ seed, pub, msg, sig }) => {
    const key: SecretKey = parseSecretKey(`rfc:${b64(seed + pub)}`)
    expect(signFingerprint(key, msg)).toBe(`rfc:${b64(sig)}`)
    expect(verifyFingerprint([{ name: 'rfc', key: key.publicKey }], msg, `rfc:${b64(sig)}`)).toBe(true)
  })

  it('is deterministic and verifies with the matching key only', () => {
    const key = parseSecretKey(KEYS[0]!.sec)
    const fp = '1;/nix/store/0123456789abcdfghijklmnpqrsvwxyz-x;sha256:' + '0'.repeat(52) + ';8;'
    const sig = signFingerprint(key, fp)
    expect(signFingerprint(key, fp)).toBe(sig)
    expect(sig).toMatch(/^fixture-1:[A-Za-z0-9+/]{86}==$/)
    expect(verifyFingerprint([parsePublicKey(KEYS[1]!.pub), parsePublicKey(KEYS[0]!.pub)], fp, sig)).toBe(true)
    expect(verifyFingerprint([parsePublicKey(KEYS[1]!.pub)], fp, sig)).toBe(false)
    expect(verifyFingerprint([parsePublicKey(KEYS[0]!.pub)], fp + ' ', sig)).toBe(false)
  })
})

describe('readSecretKeyFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nixipfs-keyfile-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('reads a 0600 file', async () => {
    const path = join(dir, 'ok.sec')
    writeFileSync(path, KEYS[0]!.sec, { mode: 0o600 })
    expect(await readSecretKeyFile(path)).toEqual(parseSecretKey(KEYS[0]!.sec))
  })

  it('refuses a file others can read', async () => {
    const path = join(dir, 'open.sec')
    writeFileSync(path, KEYS[0]!.sec, { mode: 0o644 })
    await expect(readSecretKeyFile(path)).rejects.toThrow(InsecureKeyFileError)
    await expect(readSecretKeyFile(path)).rejects.toThrow(/chmod 600/)
  })
})

describe.runIf(nixAvailable)('our keys with the live Nix', () => {
  let dir: string
  let path: string
  let store: string
  const key = generateSecretKey('nixipfs-test-1')
  const pub = formatPublicKey(publicKeyOf(key))

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nixipfs-sign-'))
    writeFileSync(join(dir, 'key.sec'), formatSecretKey(key), { mode: 0o600 })
    // An input-addressed path (content-addressed ones need no signature), copied
    // into a throw-away store so that signing leaves the real store untouched.
    path = nixBuild(shellDerivation('nixipfs-signing-test', 'echo signed > $out'))[0]!
    store = join(dir, 'store')
    nix(['copy', '--no-check-sigs', '--to', store, path])
    nix(['store', 'sign', '--store', store, '-k', join(dir, 'key.sec'), path])
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('Nix reads our key file, signs with it, and accepts the path with our public key', () => {
    nix(['store', 'verify', '--store', store, '--trusted-public-keys', pub, path])
    // …and not with another key.
    const other = nix(['store', 'verify', '--store', store, '--trusted-public-keys', KEYS[0]!.pub, path], { allowFail: true })
    expect(other.status).not.toBe(0)
    expect(other.stderr).toMatch(/untrusted/)
  })

  it('Nix\'s signature is ours, bit for bit, and verifies with our code', () => {
    const [info] = JSON.parse(nix(['path-info', '--json', '--store', store, path]).stdout) as Array<{ narHash: string, narSize: number, references: string[], signatures: string[] }>
    const fp = fingerprint({ storePath: path, narHash: formatSha256(parseSha256(info!.narHash)), narSize: info!.narSize, references: info!.references.map(r => r.slice(11)) })
    const ours = info!.signatures.filter(s => s.startsWith('nixipfs-test-1:'))
    expect(ours).toEqual([signFingerprint(key, fp)])
    expect(verifyFingerprint([publicKeyOf(key)], fp, ours[0]!)).toBe(true)
  })

  it('Nix makes keys we read', () => {
    const sec = join(dir, 'nix.sec')
    const pubFile = join(dir, 'nix.pub')
    execFileSync('nix-store', ['--generate-binary-cache-key', 'made-by-nix-1', sec, pubFile])
    const secret = parseSecretKey(readFileSync(sec, 'utf8'))
    expect(secret.name).toBe('made-by-nix-1')
    expect(formatPublicKey(publicKeyOf(secret))).toBe(readFileSync(pubFile, 'utf8'))
    expect(formatSecretKey(secret)).toBe(readFileSync(sec, 'utf8'))
  })
})
