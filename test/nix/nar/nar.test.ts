import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { walkPath } from '../../../src/nix/nar/walk.js'
import { encodeNar } from '../../../src/nix/nar/encode.js'
import { parseNar } from '../../../src/nix/nar/parse.js'
import type { NarEvent } from '../../../src/nix/nar/events.js'
import { NarHasher } from '../../../src/nix/hash.js'
import { parseNarInfo } from '../../../src/nix/narinfo.js'
import { NarFormatError, UnsupportedFileError } from '../../../src/errors.js'
import { nixAvailable } from '../../helpers/nix.js'
import { chunked, collect, digested, fixture, fixtureText, makeTrees, materialize, NAR_CASES, replay, type PlainEvent } from '../fixtures.js'

let trees: { dir: string, cleanup: () => void }
beforeAll(() => { trees = makeTrees() })
afterAll(() => trees.cleanup())

const narOfPath = async (path: string): Promise<Buffer> => await collect(encodeNar(walkPath(path)))
const roundTrip = async (bytes: Uint8Array, chunk: number): Promise<Buffer> => await collect(encodeNar(parseNar(chunked(bytes, chunk))))

/** The NARs `nix copy` wrote into the fixture binary cache, with their narinfos. */
const CACHE_NARS = ['dep', 'top', 'ca'].map(role => {
  const base = fixtureText('binary-cache/paths.txt').split('\n').find(l => l.startsWith(`${role} `))!.slice(role.length + 1)
  const info = parseNarInfo(fixtureText(`binary-cache/${base.slice(0, 32)}.narinfo`))
  return { role, info, bytes: fixture(`binary-cache/${info.url}`) }
})

describe('walkPath + encodeNar against the NARs of nix-store --dump (fixtures/nar)', () => {
  it('has a fixture for every tree make-trees.sh builds', () => {
    expect(NAR_CASES).toEqual(expect.arrayContaining(['mixed', 'deep', 'wide', 'unicode', 'nonutf8', 'large', 'file-root', 'file-root-8', 'exec-root', 'empty-file-root', 'symlink-root', 'empty-dir-root']))
  })

  it.each(NAR_CASES)('%s: same bytes', async name => {
    const ours = await narOfPath(join(trees.dir, name))
    const theirs = fixture(`nar/${name}.nar`)
    expect(ours.length).toBe(theirs.length)
    expect(ours.equals(theirs)).toBe(true)
    const h = new NarHasher()
    h.update(ours)
    expect(h.digest()).toBe(`sha256:${fixtureText(`nar/${name}.sha256`).trim()}`)
  })
})

describe('walkPath + encodeNar reusing their buffers', () => {
  /** The chunks of a reusing walk, each copied before the next is asked for (or kept as given). */
  const reusedNar = async (path: string, copy: boolean): Promise<Buffer> => {
    const parts: Uint8Array[] = []
    for await (const chunk of encodeNar(walkPath(path, { reuseBuffers: true }), { reuseBuffer: true })) parts.push(copy ? chunk.slice() : chunk)
    return Buffer.concat(parts)
  }

  it.each(NAR_CASES)('%s: same bytes when each chunk is used before the next', async name => {
    expect((await reusedNar(join(trees.dir, name), true)).equals(fixture(`nar/${name}.nar`))).toBe(true)
  })

  it('does reuse them: chunks kept without a copy are overwritten', async () => {
    // 'large' has files of several reads each, and small files batched by the encoder.
    expect((await reusedNar(join(trees.dir, 'large'), false)).equals(fixture('nar/large.nar'))).toBe(false)
  })
})

describe.runIf(nixAvailable)('walkPath + encodeNar against the live nix-store --dump', () => {
  it.each(NAR_CASES)('%s: same bytes', async name => {
    const path = join(trees.dir, name)
    const theirs = execFileSync('nix-store', ['--dump', path], { maxBuffer: 64 << 20 })
    expect((await narOfPath(path)).equals(theirs)).toBe(true)
  })

  it('a tree changed after the fixtures were made still matches', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixipfs-nar-'))
    try {
      writeFileSync(join(dir, 'z'), 'late\n', { mode: 0o755 })
      writeFileSync(join(dir, 'Z'), '')
      const theirs = execFileSync('nix-store', ['--dump', dir])
      expect((await narOfPath(dir)).equals(theirs)).toBe(true)
    } finally {
      rmSync(dir, { recursive: true })
    }
  })
})

describe('walkPath events', () => {
  it('a root file has no name', async () => {
    const events = await materialize(walkPath(join(trees.dir, 'exec-root')))
    expect(events).toEqual([{ type: 'file', executable: true, size: 17, contents: Buffer.from('#!/bin/sh\nexit 0\n') }])
  })

  it('a root symlink keeps its target as bytes', async () => {
    expect(await materialize(walkPath(join(trees.dir, 'symlink-root')))).toEqual([{ type: 'symlink', target: Buffer.from('some/target') }])
  })

  it('an empty directory is a directory and its end', async () => {
    expect(await materialize(walkPath(join(trees.dir, 'empty-dir-root')))).toEqual([{ type: 'directory' }, { type: 'end' }])
  })

  it('takes the executable bit from the owner only', async () => {
    const events = await materialize(walkPath(join(trees.dir, 'mixed', 'bin')))
    const exec = Object.fromEntries(events.flatMap(e => e.type === 'file' ? [[e.name!.toString(), e.executable]] : []))
    expect(exec).toEqual({ 'group-other-x': false, 'owner-x': true, 'read-only': false, run: true })
  })

  it('sorts entries by bytes, not by UTF-16 units or locale', async () => {
    const events = await materialize(walkPath(join(trees.dir, 'unicode')))
    const top: Buffer[] = []
    let depth = 0
    for (const e of events) {
      if (e.type === 'end') depth--
      else if (depth === 1 && e.name !== undefined) top.push(e.name)
      if (e.type === 'directory') depth++
    }
    expect(top).toEqual([...top].sort(Buffer.compare))
    const fullwidthTilde = top.findIndex(n => n.equals(Buffer.from('\uFF5E')))
    const emoji = top.findIndex(n => n.equals(Buffer.from('\u{1F600}')))
    expect(fullwidthTilde).toBeGreaterThanOrEqual(0)
    expect(fullwidthTilde).toBeLessThan(emoji) // in UTF-16 order the emoji would come first
    expect('\u{1F600}' < '\uFF5E').toBe(true)
  })

  it('keeps names that are not UTF-8 byte for byte', async () => {
    const events = await materialize(walkPath(join(trees.dir, 'nonutf8')))
    const names = events.flatMap(e => 'name' in e && e.name !== undefined ? [e.name.toString('hex')] : [])
    expect(names).toEqual(['6c696e6bfe', '706c61696e', '7472756e63c3', '78ff79', '80'])
  })

  it('streams a large file in more than one chunk', async () => {
    for await (const ev of walkPath(join(trees.dir, 'large', 'big'))) {
      expect(ev.type).toBe('file')
      if (ev.type !== 'file') continue
      const sizes: number[] = []
      for await (const c of ev.contents) sizes.push(c.length)
      expect(sizes.length).toBeGreaterThan(1)
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(1048579)
    }
  })

  it('refuses a FIFO', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nixipfs-fifo-'))
    try {
      execFileSync('mkfifo', [join(dir, 'pipe')])
      await expect(materialize(walkPath(dir))).rejects.toThrow(UnsupportedFileError)
      await expect(materialize(walkPath(join(dir, 'pipe')))).rejects.toThrow(/cannot be put into a NAR/)
    } finally {
      rmSync(dir, { recursive: true })
    }
  })

  it('fails on a missing path', async () => {
    await expect(materialize(walkPath(join(trees.dir, 'does-not-exist')))).rejects.toThrow(/ENOENT/)
  })
})

describe('parseNar', () => {
  const SMALL = NAR_CASES.filter(n => n !== 'large')

  it.each(NAR_CASES)('%s: parse then encode gives the same bytes', async name => {
    const bytes = fixture(`nar/${name}.nar`)
    expect((await roundTrip(bytes, bytes.length)).equals(bytes)).toBe(true)
    expect((await roundTrip(bytes, 4096)).equals(bytes)).toBe(true)
  })

  it.each(SMALL)('%s: the same bytes when fed 1, 3 or 8 bytes at a time', async name => {
    const bytes = fixture(`nar/${name}.nar`)
    for (const size of [1, 3, 8]) expect((await roundTrip(bytes, size)).equals(bytes), `chunks of ${size}`).toBe(true)
  })

  it.each(NAR_CASES)('%s: the same events as walking the tree', async name => {
    const walked = digested(await materialize(walkPath(join(trees.dir, name))))
    const parsed = digested(await materialize(parseNar(chunked(fixture(`nar/${name}.nar`), 1000))))
    expect(parsed).toEqual(walked)
  })

  it.each(CACHE_NARS)('the NAR of $role in the binary cache matches its narinfo and round-trips', async ({ info, bytes }) => {
    expect(bytes.length).toBe(info.narSize)
    const h = new NarHasher()
    h.update(bytes)
    expect(h.digest()).toBe(info.narHash)
    expect((await roundTrip(bytes, 7)).equals(bytes)).toBe(true)
  })

  it('lets the consumer skip file contents', async () => {
    const bytes = fixture('nar/mixed.nar')
    const skipped: unknown[] = []
    for await (const ev of parseNar(chunked(bytes, 5))) {
      if (ev.type === 'file') skipped.push({ type: 'file', name: Buffer.from(ev.name!), executable: ev.executable, size: ev.size })
      else skipped.push((await materialize((async function * () { yield ev })()))[0]!)
    }
    const full = await materialize(parseNar(chunked(bytes, 5)))
    expect(skipped).toEqual(full.map(e => e.type === 'file' ? { type: e.type, name: e.name, executable: e.executable, size: e.size } : e))
  })

  it('reports the offset of an error', async () => {
    const bytes = Buffer.from(fixture('nar/file-root.nar'))
    bytes[bytes.length - 1] = 1 // the padding of ")" is the last byte
    const err = await materialize(parseNar(chunked(bytes, 64))).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NarFormatError)
    expect((err as NarFormatError).offset).toBe(bytes.length - 7)
  })
})

describe('encodeNar', () => {
  /** Every event of the mixed tree, from the committed NAR. */
  let events: PlainEvent[]
  beforeAll(async () => { events = await materialize(parseNar(chunked(fixture('nar/mixed.nar'), 1 << 16))) })

  it('gives the same bytes whatever the chunking of file contents', async () => {
    const bytes = fixture('nar/mixed.nar')
    for (const size of [1, 2, 8, 1 << 20]) expect((await collect(encodeNar(replay(events, size)))).equals(bytes)).toBe(true)
  })

  it('passes a large file through in chunks of bounded size', async () => {
    const bytes = fixture('nar/large.nar')
    const parsed = await materialize(parseNar(chunked(bytes, 1 << 20)))
    const chunks: number[] = []
    let total = 0
    for await (const c of encodeNar(replay(parsed, 100_000))) { chunks.push(c.length); total += c.length }
    expect(total).toBe(bytes.length)
    expect(chunks.length).toBeGreaterThan(2)
    expect(Math.max(...chunks)).toBeLessThanOrEqual(512 * 1024)
    expect((await collect(encodeNar(replay(parsed, 3)))).equals(bytes)).toBe(true)
  })

  it('encodes a hand-made directory like nix-store --dump', async () => {
    const name = (s: string): Uint8Array => Buffer.from(s)
    const ev: NarEvent[] = [
      { type: 'directory' },
      { type: 'file', name: name('a'), executable: true, size: 0, contents: chunked(new Uint8Array(0), 1) },
      { type: 'directory', name: name('b') },
      { type: 'symlink', name: name('c'), target: name('../a') },
      { type: 'end' },
      { type: 'end' }
    ]
    const bytes = await collect(encodeNar((async function * () { yield * ev })()))
    const dir = mkdtempSync(join(tmpdir(), 'nixipfs-enc-'))
    try {
      if (nixAvailable) { // and Nix restores it into the same tree
        execFileSync('nix-store', ['--restore', join(dir, 'out')], { input: bytes })
        expect(execFileSync('nix-store', ['--dump', join(dir, 'out')]).equals(bytes)).toBe(true)
      }
      expect(await materialize(parseNar(chunked(bytes, 8)))).toEqual(await materialize(replay([
        { type: 'directory' },
        { type: 'file', name: Buffer.from('a'), executable: true, size: 0, contents: Buffer.alloc(0) },
        { type: 'directory', name: Buffer.from('b') },
        { type: 'symlink', name: Buffer.from('c'), target: Buffer.from('../a') },
        { type: 'end' },
        { type: 'end' }
      ])))
    } finally {
      rmSync(dir, { recursive: true })
    }
  })
})
