import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { isStoreHash, MAX_NAME_LENGTH, parseStoreBaseName, parseStorePath, STORE_HASH_LENGTH } from '../../src/nix/store-path.js'
import { InvalidStorePathError } from '../../src/errors.js'
import { nixAvailable } from '../helpers/nix.js'
import { fixturePaths } from './fixtures.js'

const HASH = '0123456789abcdfghijklmnpqrsvwxyz'

/** Names every Nix version accepts. */
const VALID_NAMES = [
  'hello-2.12.1',
  'a',
  'A-Z_0.9+?=',
  'glibc-2.38-44',
  'source',
  'foo.drv',
  // Leading dots: `${./.envrc}` makes such paths; only ".", ".." and ".-…", "..-…" are refused (by newer Nix).
  '.envrc',
  '.hidden-file',
  '...',
  '.a-b',
  '-leading-dash',
  'x'.repeat(MAX_NAME_LENGTH)
]

/** Names Nix refuses. */
const INVALID_NAMES = [
  ['empty', ''],
  ['too long', 'x'.repeat(MAX_NAME_LENGTH + 1)],
  ['a space', 'a b'],
  ['a slash', 'a/b'],
  ['a colon', 'a:b'],
  ['a tilde', 'a~b'],
  ['a non-ASCII letter', 'caf\u00e9'],
  ['a NUL', 'a\0b'],
  ['a newline', 'a\nb'],
  ['"."', '.'],
  ['".."', '..'],
  ['a first component "."', '.-foo'],
  ['a first component ".."', '..-foo']
]

describe('isStoreHash', () => {
  it('accepts 32 characters of the Nix alphabet', () => {
    expect(STORE_HASH_LENGTH).toBe(32)
    expect(isStoreHash(HASH)).toBe(true)
    expect(isStoreHash('0'.repeat(32))).toBe(true)
  })

  it.each(['', HASH.slice(1), HASH + '0', 'e' + HASH.slice(1), 'o' + HASH.slice(1), 'u' + HASH.slice(1), 't' + HASH.slice(1), HASH.toUpperCase(), '-' + HASH.slice(1)])('rejects %j', hash => {
    expect(isStoreHash(hash)).toBe(false)
  })
})

describe('parseStoreBaseName', () => {
  it('splits hash and name', () => {
    expect(parseStoreBaseName(`${HASH}-hello-2.12`)).toEqual({
      hash: HASH,
      name: 'hello-2.12',
      baseName: `${HASH}-hello-2.12`,
      path: `/nix/store/${HASH}-hello-2.12`
    })
  })

  it.each(VALID_NAMES)('accepts the name %j', name => {
    expect(parseStoreBaseName(`${HASH}-${name}`).name).toBe(name)
  })

  it.each(INVALID_NAMES)('rejects a name with %s', (_, name) => {
    expect(() => parseStoreBaseName(`${HASH}-${name}`)).toThrow(InvalidStorePathError)
  })

  it.each([
    ['no name', HASH],
    ['no dash', `${HASH}hello`],
    ['an underscore for the dash', `${HASH}_hello`],
    ['a short hash', `${HASH.slice(1)}-hello`],
    ['a hash with "e"', `e${HASH.slice(1)}-hello`],
    ['an upper-case hash', `${HASH.toUpperCase()}-hello`],
    ['nothing', '']
  ])('rejects a base name with %s', (_, base) => {
    expect(() => parseStoreBaseName(base)).toThrow(InvalidStorePathError)
  })

  it('accepts the base names of the fixture closure', () => {
    for (const base of Object.values(fixturePaths())) expect(parseStoreBaseName(base).baseName).toBe(base)
  })
})

describe('parseStorePath', () => {
  it('parses an absolute store path', () => {
    const p = parseStorePath(`/nix/store/${HASH}-hello`)
    expect(p.path).toBe(`/nix/store/${HASH}-hello`)
    expect(p.name).toBe('hello')
  })

  it.each([
    ['a relative path', `nix/store/${HASH}-hello`],
    ['a base name', `${HASH}-hello`],
    ['another store dir', `/gnu/store/${HASH}-hello`],
    ['the store dir itself', '/nix/store'],
    ['the store dir with a slash', '/nix/store/'],
    ['a path inside a store path', `/nix/store/${HASH}-hello/bin/hello`],
    ['a trailing slash', `/nix/store/${HASH}-hello/`],
    ['a doubled slash', `/nix/store//${HASH}-hello`],
    ['dots', `/nix/store/../store/${HASH}-hello`]
  ])('rejects %s', (_, path) => {
    expect(() => parseStorePath(path)).toThrow(InvalidStorePathError)
  })
})

describe.runIf(nixAvailable)('store path names against the live Nix', () => {
  // `nix-store --print-fixed-path` builds a store path from a name and checks the name as Nix does.
  // Its argument parser knows no `--`, so names starting with "-" cannot be checked this way.
  const nixAccepts = (name: string): boolean =>
    spawnSync('nix-store', ['--print-fixed-path', '--recursive', 'sha256', '0'.repeat(52), name], { encoding: 'utf8' }).status === 0

  it('accepts the names Nix accepts', () => {
    for (const name of VALID_NAMES) if (!name.startsWith('-')) expect(nixAccepts(name), name).toBe(true)
  })

  it('rejects the names Nix rejects', () => {
    // Nix 2.8 still accepts ".", ".." and ".-…" (newer Nix refuses them, as we do); NUL cannot be an argument.
    const older = new Set(['.', '..', '.-foo', '..-foo', 'a\0b'])
    for (const [, name] of INVALID_NAMES) if (!older.has(name!)) expect(nixAccepts(name!), name).toBe(false)
  })
})
