import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { NarChecker } from '../../../src/nix/nar/check.js'
import { parseNar } from '../../../src/nix/nar/parse.js'
import { encodeNar } from '../../../src/nix/nar/encode.js'
import { narInt, narString } from '../../../src/nix/nar/wire.js'
import { NarFormatError } from '../../../src/errors.js'
import { nixAvailable } from '../../helpers/nix.js'
import { chunked, collect, dirTokens, fixture, materialize, NAR_CASES, narOf } from '../fixtures.js'

/** Parses all of `bytes` (reading file contents), fed in chunks of `size`. */
const parse = async (bytes: Uint8Array, size = 16): Promise<unknown> => await materialize(parseNar(chunked(bytes, size)))

/** Parses all of `bytes` without ever reading file contents (the parser skips them). */
const parseSkipping = async (bytes: Uint8Array): Promise<void> => { for await (const _ of parseNar(chunked(bytes, 16))) { /* skip */ } }

/** Pushes all of `bytes` through a NarChecker in chunks of `size`. */
const check = async (bytes: Uint8Array, size: number): Promise<void> => {
  const checker = new NarChecker()
  for await (const chunk of chunked(bytes, size)) await checker.update(chunk)
  await checker.end()
}

const MAGIC = 'nix-archive-1'
const file = (name: string | Uint8Array, ...node: Array<string | Uint8Array>): Array<string | Uint8Array> => ['entry', '(', 'name', name, 'node', '(', ...node, ')', ')']
const cat = (...parts: Uint8Array[]): Buffer => Buffer.concat(parts)
const valid = narOf(...dirTokens(['a', 'b']))

/** Sets byte `at` of a copy of `bytes` to `value`. */
const poke = (bytes: Uint8Array, at: number, value: number): Buffer => { const b = Buffer.from(bytes); b[at] = value; return b }

/**
 * Malformed NARs. `nix` says what Nix 2.8's `nix-store --restore` does with the
 * same bytes: we are stricter than Nix in places (only canonical NARs, as
 * `nix-store --dump` writes them, are accepted), never laxer. Nix 2.8 accepts
 * unsorted entries: its check compares with a `prevName` that is reset for
 * every entry (later Nix fixed it); duplicates fail only when the second file
 * is created.
 */
const BAD: Array<{ what: string, bytes: Buffer, error: RegExp, nix: 'rejects' | 'accepts' }> = [
  { what: 'no bytes at all', bytes: Buffer.alloc(0), error: /bad magic/, nix: 'rejects' },
  { what: 'another magic', bytes: narOf('nix-archive-2', '(', 'type', 'regular', 'contents', '', ')'), error: /bad magic/, nix: 'rejects' },
  { what: 'a magic length of 2^64-1', bytes: cat(Buffer.alloc(8, 0xff), valid.subarray(24)), error: /bad magic/, nix: 'rejects' },
  { what: 'a short magic', bytes: Buffer.from(MAGIC), error: /bad magic/, nix: 'rejects' },
  { what: 'non-zero padding after the magic', bytes: poke(valid, 8 + 13, 1), error: /bad magic/, nix: 'rejects' },
  { what: 'unsorted entries', bytes: narOf(...dirTokens(['b', 'a'])), error: /"a" is out of order/, nix: 'accepts' },
  { what: 'duplicate entries', bytes: narOf(...dirTokens(['a', 'a'])), error: /"a" is a duplicate/, nix: 'rejects' },
  { what: 'entries in case-insensitive order', bytes: narOf(...dirTokens(['a', 'B'])), error: /out of order/, nix: 'accepts' },
  { what: 'entries in UTF-16 order (U+1F600 before U+FF5E)', bytes: narOf(...dirTokens(['\u{1F600}', '\uFF5E'])), error: /out of order/, nix: 'accepts' },
  { what: 'an entry named "."', bytes: narOf(...dirTokens(['.'])), error: /"\." is not allowed/, nix: 'rejects' },
  { what: 'an entry named ".."', bytes: narOf(...dirTokens(['..'])), error: /"\.\." is not allowed/, nix: 'rejects' },
  { what: 'an entry name with "/"', bytes: narOf(...dirTokens(['a/b'])), error: /contains "\/"/, nix: 'rejects' },
  { what: 'an entry name with NUL', bytes: narOf(...dirTokens(['a\0b'])), error: /contains NUL/, nix: 'rejects' },
  { what: 'an empty entry name', bytes: narOf(...dirTokens([''])), error: /empty entry name/, nix: 'rejects' },
  { what: 'an entry name of 256 bytes', bytes: narOf(...dirTokens(['n'.repeat(256)])), error: /longer than 255/, nix: 'rejects' },
  { what: 'non-zero padding after a name', bytes: poke(narOf(...dirTokens(['a'])), narOf(MAGIC, '(', 'type', 'directory', 'entry', '(', 'name').length + 9, 1), error: /non-zero padding/, nix: 'rejects' },
  { what: 'non-zero padding after file contents', bytes: poke(narOf(MAGIC, '(', 'type', 'regular', 'contents', 'abc', ')'), narOf(MAGIC, '(', 'type', 'regular', 'contents').length + 8 + 4, 0x80), error: /non-zero padding/, nix: 'rejects' },
  { what: 'an unknown node type', bytes: narOf(MAGIC, '(', 'type', 'fifo', ')'), error: /unknown node type "fifo"/, nix: 'rejects' },
  { what: 'no type', bytes: narOf(MAGIC, '(', 'contents', 'x', ')'), error: /expected "type"/, nix: 'rejects' },
  { what: 'no "(" at the root', bytes: narOf(MAGIC, 'type', 'regular', 'contents', 'x', ')'), error: /expected "\("/, nix: 'rejects' },
  { what: 'a token of 65 bytes', bytes: narOf(MAGIC, '(', 'type', 'r'.repeat(65), ')'), error: /token is 65 bytes/, nix: 'rejects' },
  { what: 'trailing bytes after a file', bytes: cat(narOf(MAGIC, '(', 'type', 'regular', 'contents', 'x', ')'), Buffer.alloc(1)), error: /trailing bytes/, nix: 'accepts' },
  { what: 'trailing bytes after a directory', bytes: cat(valid, narString(')')), error: /trailing bytes/, nix: 'accepts' },
  { what: 'a second NAR after the first', bytes: cat(valid, valid), error: /trailing bytes/, nix: 'accepts' },
  { what: '"executable" with a value', bytes: narOf(MAGIC, '(', 'type', 'regular', 'executable', 'yes', 'contents', 'x', ')'), error: /expected ""/, nix: 'rejects' },
  { what: '"executable" after the contents', bytes: narOf(MAGIC, '(', 'type', 'regular', 'contents', 'x', 'executable', '', ')'), error: /expected "\)", got "executable"/, nix: 'accepts' },
  { what: 'a regular file without contents', bytes: narOf(MAGIC, '(', 'type', 'regular', ')'), error: /expected "contents", got "\)"/, nix: 'accepts' },
  { what: 'a file size of 2^63', bytes: cat(narOf(MAGIC, '(', 'type', 'regular', 'contents'), Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x80]), narString(')')), error: /file size 9223372036854775808 is too large/, nix: 'rejects' },
  { what: 'a file shorter than its size', bytes: cat(narOf(MAGIC, '(', 'type', 'regular', 'contents'), narInt(100), Buffer.alloc(16)), error: /truncated/, nix: 'rejects' },
  { what: 'a symlink without target', bytes: narOf(MAGIC, '(', 'type', 'symlink', ')'), error: /expected "target"/, nix: 'accepts' },
  { what: 'an empty symlink target', bytes: narOf(MAGIC, '(', 'type', 'symlink', 'target', '', ')'), error: /symlink target is empty/, nix: 'rejects' },
  { what: 'a symlink target with NUL', bytes: narOf(MAGIC, '(', 'type', 'symlink', 'target', 'a\0b', ')'), error: /contains NUL/, nix: 'accepts' },
  { what: 'a symlink target of 4097 bytes', bytes: narOf(MAGIC, '(', 'type', 'symlink', 'target', 'a/'.repeat(2048) + 'b', ')'), error: /longer than 4096/, nix: 'rejects' },
  { what: '"entry" without "("', bytes: narOf(MAGIC, '(', 'type', 'directory', 'entry', 'name', 'a', 'node', '(', 'type', 'regular', 'contents', '', ')', ')', ')'), error: /expected "\(", got "name"/, nix: 'rejects' },
  { what: 'an entry without a name', bytes: narOf(MAGIC, '(', 'type', 'directory', 'entry', '(', 'node', '(', 'type', 'regular', 'contents', '', ')', ')', ')'), error: /expected "name", got "node"/, nix: 'rejects' },
  { what: 'an entry without "node"', bytes: narOf(MAGIC, '(', 'type', 'directory', 'entry', '(', 'name', 'a', '(', 'type', 'regular', 'contents', '', ')', ')', ')'), error: /expected "node"/, nix: 'rejects' },
  { what: 'an unclosed entry', bytes: narOf(MAGIC, '(', 'type', 'directory', 'entry', '(', 'name', 'a', 'node', '(', 'type', 'regular', 'contents', '', ')', ')'), error: /truncated/, nix: 'rejects' },
  { what: 'a directory with contents', bytes: narOf(MAGIC, '(', 'type', 'directory', 'contents', 'x', ')'), error: /expected "entry" or "\)", got "contents"/, nix: 'rejects' },
  { what: 'a nested directory whose entry is not closed', bytes: narOf(MAGIC, '(', 'type', 'directory', 'entry', '(', 'name', 'd', 'node', '(', 'type', 'directory', ')', ...file('e', 'type', 'regular', 'contents', ''), ')'), error: /expected "\)", got "entry"/, nix: 'rejects' },
  { what: 'a second type', bytes: narOf(MAGIC, '(', 'type', 'regular', 'type', 'regular', 'contents', 'x', ')'), error: /expected "contents", got "type"/, nix: 'rejects' }
]

describe('parseNar rejects malformed NARs with NarFormatError', () => {
  it('accepts the well-formed variants of these cases', async () => {
    for (const ok of [
      narOf(...dirTokens(['B', 'a'])),
      narOf(...dirTokens(['\uFF5E', '\u{1F600}'])),
      narOf(...dirTokens(['...', '.a', 'a.', 'n'.repeat(255)])),
      narOf(MAGIC, '(', 'type', 'symlink', 'target', 'a/'.repeat(2047) + 'bc', ')')
    ]) await expect(parse(ok)).resolves.toBeDefined()
  })

  it.each(BAD)('$what', async ({ bytes, error }) => {
    for (const size of [1, 16, 1 << 16]) {
      const err = await parse(bytes, size).then(() => undefined, (e: unknown) => e)
      expect(err, `chunks of ${size}`).toBeInstanceOf(NarFormatError)
      expect((err as Error).message).toMatch(error)
      expect((err as NarFormatError).code).toBe('ERR_NAR_FORMAT')
    }
    await expect(parseSkipping(bytes)).rejects.toThrow(NarFormatError)
    for (const size of [1, 16, 1 << 16]) await expect(check(bytes, size), `NarChecker, chunks of ${size}`).rejects.toThrow(error)
  })
})

describe('NarChecker passes every NAR real Nix made', () => {
  it.each(NAR_CASES)('%s', async name => {
    for (const size of [3, 4096, 1 << 20]) await expect(check(fixture(`nar/${name}.nar`), size)).resolves.toBeUndefined()
  })
})

describe('parseNar rejects a NAR truncated at any byte', () => {
  /** A small NAR with every node kind, padding of every length and a nested directory. */
  const SMALL = narOf(MAGIC, '(', 'type', 'directory',
    ...file('a', 'type', 'regular', 'executable', '', 'contents', '#!/bin/sh\n'),
    'entry', '(', 'name', 'd', 'node', '(', 'type', 'directory',
    ...file('e', 'type', 'regular', 'contents', ''),
    ')', ')',
    ...file('l', 'type', 'symlink', 'target', '../a'),
    ')')

  const cases = [
    { name: 'a small directory', bytes: SMALL },
    { name: 'file-root.nar', bytes: fixture('nar/file-root.nar') },
    { name: 'symlink-root.nar', bytes: fixture('nar/symlink-root.nar') },
    { name: 'empty-dir-root.nar', bytes: fixture('nar/empty-dir-root.nar') }
  ]

  it.each(cases)('$name', async ({ bytes }) => {
    await expect(parse(bytes)).resolves.toBeDefined()
    await expect(check(bytes, 7)).resolves.toBeUndefined()
    expect((await collect(encodeNar(parseNar(chunked(bytes, 8))))).equals(bytes)).toBe(true)
    for (let n = 0; n < bytes.length; n++) {
      const cut = bytes.subarray(0, n)
      const err = await parse(cut, 5).then(() => undefined, (e: unknown) => e)
      expect(err, `truncated to ${n} bytes`).toBeInstanceOf(NarFormatError)
      await expect(parseSkipping(cut), `truncated to ${n} bytes, skipping contents`).rejects.toThrow(NarFormatError)
      await expect(check(cut, 5), `truncated to ${n} bytes, NarChecker`).rejects.toThrow(NarFormatError)
    }
  })
})

describe.runIf(nixAvailable)('the same NARs given to the live nix-store --restore', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nixipfs-restore-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  let n = 0
  const restores = (bytes: Uint8Array): boolean =>
    spawnSync('nix-store', ['--restore', join(dir, `out-${n++}`)], { input: bytes, stdio: ['pipe', 'ignore', 'ignore'] }).status === 0

  const version = spawnSync('nix-store', ['--version'], { encoding: 'utf8' }).stdout ?? ''

  it('nix-store is there', () => {
    expect(version).toMatch(/Nix/)
  })

  it('Nix rejects what the table says it rejects (we never accept what Nix refuses)', () => {
    expect(BAD.filter(c => c.nix === 'rejects' && restores(c.bytes)).map(c => c.what)).toEqual([])
  })

  it.runIf(/ 2\.8\./.test(version))('Nix 2.8 accepts what the table says it accepts (where we are stricter)', () => {
    expect(BAD.filter(c => c.nix === 'accepts' && !restores(c.bytes)).map(c => c.what)).toEqual([])
  })

  it('Nix accepts the byte-sorted variants', () => {
    expect(restores(narOf(...dirTokens(['B', 'a'])))).toBe(true)
    expect(restores(narOf(...dirTokens(['\uFF5E', '\u{1F600}'])))).toBe(true)
  })
})

describe('parseNar with consumers that stop early', () => {
  const nar = narOf('nix-archive-1', '(', 'type', 'directory',
    'entry', '(', 'name', 'a', 'node', '(', 'type', 'regular', 'contents', 'abcdefghijklmnopqrstuvwxyz', ')', ')',
    'entry', '(', 'name', 'b', 'node', '(', 'type', 'regular', 'contents', 'x', ')', ')', ')')

  it('skips the unread rest of a file, so the next event is still right', async () => {
    const seen: string[] = []
    for await (const ev of parseNar(chunked(nar, 4))) {
      if (ev.type === 'file') {
        for await (const part of ev.contents) { seen.push(`${new TextDecoder().decode(ev.name)}:${new TextDecoder().decode(part)}`); break }
      }
    }
    expect(seen).toEqual(['a:abcd', 'b:x'])
  })

  it('refuses to read file contents twice', async () => {
    for await (const ev of parseNar(chunked(nar, 64))) {
      if (ev.type !== 'file') continue
      await collect(ev.contents)
      await expect(collect(ev.contents)).rejects.toThrow(/only be read once|already/)
      break
    }
  })
})

describe('encodeNar checks what producers announce', () => {
  async function * events (actual: string): AsyncGenerator<import('../../../src/nix/nar/events.js').NarEvent> {
    yield { type: 'file', executable: false, size: 3, contents: (async function * () { yield new TextEncoder().encode(actual) })() }
  }
  it('rejects contents shorter or longer than the size', async () => {
    await expect(collect(encodeNar(events('ab')))).rejects.toBeInstanceOf(NarFormatError)
    await expect(collect(encodeNar(events('abcd')))).rejects.toBeInstanceOf(NarFormatError)
    expect((await collect(encodeNar(events('abc')))).length).toBeGreaterThan(0)
  })
})
