import { execFileSync } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { walkPath } from '../../../src/nix/nar/walk.js'
import { encodeNar } from '../../../src/nix/nar/encode.js'
import { parseNar } from '../../../src/nix/nar/parse.js'
import type { NarEvent } from '../../../src/nix/nar/events.js'
import { NarFormatError } from '../../../src/errors.js'
import { nixAvailable } from '../../helpers/nix.js'
import { chunked, collect, narOf } from '../fixtures.js'

/** A filesystem tree as data. */
type Node =
  | { kind: 'file', executable: boolean, data: Uint8Array }
  | { kind: 'symlink', target: string }
  | { kind: 'dir', entries: Array<[string, Node]> }

// Characters chosen to make byte order, UTF-16 order and locale order disagree.
const nameChar = fc.constantFrom('a', 'b', 'B', 'z', '0', '.', '-', '_', ' ', '\n', '\u00e9', '\u65e5', '\uFF5E', '\u{1F600}', '\u{10FFFF}')
const name = fc.string({ unit: nameChar, minLength: 1, maxLength: 8 }).filter(n => n !== '.' && n !== '..')
const target = fc.string({ unit: fc.constantFrom('a', '/', '.', '\u00e9', 'x'), minLength: 1, maxLength: 20 })

const { node: treeArb } = fc.letrec<{ node: Node, file: Node, symlink: Node, dir: Node }>(tie => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('file'), tie('symlink'), tie('dir')),
  file: fc.record({ kind: fc.constant('file' as const), executable: fc.boolean(), data: fc.uint8Array({ maxLength: 40 }) }),
  symlink: fc.record({ kind: fc.constant('symlink' as const), target }),
  dir: fc.record({
    kind: fc.constant('dir' as const),
    entries: fc.uniqueArray(fc.tuple(name, tie('node')), { maxLength: 5, selector: ([n]) => n })
  })
}))

function write (path: string, node: Node): void {
  switch (node.kind) {
    case 'file':
      writeFileSync(path, node.data)
      chmodSync(path, node.executable ? 0o755 : 0o644)
      break
    case 'symlink': symlinkSync(node.target, path); break
    case 'dir':
      mkdirSync(path)
      for (const [n, child] of node.entries) write(join(path, n), child)
  }
}

/** The events a NAR of `node` must have: entries sorted by their UTF-8 bytes. */
function * events (node: Node, n?: string): Generator<NarEvent> {
  const nameBytes = n === undefined ? undefined : Buffer.from(n)
  switch (node.kind) {
    case 'file': yield { type: 'file', name: nameBytes, executable: node.executable, size: node.data.length, contents: chunked(node.data, 7) }; break
    case 'symlink': yield { type: 'symlink', name: nameBytes, target: Buffer.from(node.target) }; break
    case 'dir': {
      yield { type: 'directory', name: nameBytes }
      const sorted = [...node.entries].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      for (const [childName, child] of sorted) yield * events(child, childName)
      yield { type: 'end' }
    }
  }
}

/** The strings of the NAR of `node` (after the magic). */
function tokens (node: Node): Array<string | Uint8Array> {
  switch (node.kind) {
    case 'file': return ['(', 'type', 'regular', ...(node.executable ? ['executable', ''] : []), 'contents', node.data, ')']
    case 'symlink': return ['(', 'type', 'symlink', 'target', node.target, ')']
    case 'dir': {
      const sorted = [...node.entries].sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
      return ['(', 'type', 'directory', ...sorted.flatMap(([n, child]) => ['entry', '(', 'name', n, 'node', ...tokens(child), ')']), ')']
    }
  }
}

async function * fromSync (gen: Iterable<NarEvent>): AsyncGenerator<NarEvent> { yield * gen }

/** Parses `bytes`; returns the re-encoded NAR, or the error. */
async function reparse (bytes: Uint8Array, chunk: number): Promise<Buffer | Error> {
  try {
    return await collect(encodeNar(parseNar(chunked(bytes, chunk))))
  } catch (err) {
    return err as Error
  }
}

describe('NAR properties', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nixipfs-prop-'))
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  let n = 0

  it('random trees: walk + encode is the NAR of the model, and parse + encode gives it back', async () => {
    let entries = 0
    await fc.assert(fc.asyncProperty(treeArb, fc.integer({ min: 1, max: 300 }), async (tree, chunk) => {
      const root = join(dir, `t${n++}`)
      write(root, tree)
      const walked = await collect(encodeNar(walkPath(root)))
      const modelled = await collect(encodeNar(fromSync(events(tree))))
      expect(walked.equals(modelled)).toBe(true)
      expect(walked.equals(narOf('nix-archive-1', ...tokens(tree)))).toBe(true)
      const again = await reparse(walked, chunk)
      expect(again).toBeInstanceOf(Buffer)
      expect((again as Buffer).equals(walked)).toBe(true)
      entries += tokens(tree).filter(t => t === 'entry').length
    }), { numRuns: 150 })
    expect(entries).toBeGreaterThan(150) // the trees are not all trivial
  })

  it.runIf(nixAvailable)('random trees: walk + encode equals the live nix-store --dump', async () => {
    await fc.assert(fc.asyncProperty(treeArb, async tree => {
      const root = join(dir, `t${n++}`)
      write(root, tree)
      const ours = await collect(encodeNar(walkPath(root)))
      expect(ours.equals(execFileSync('nix-store', ['--dump', root]))).toBe(true)
    }), { numRuns: 25 })
  })

  it('random bytes only ever fail with NarFormatError', async () => {
    const magic = narOf('nix-archive-1')
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), fc.boolean(), fc.integer({ min: 1, max: 64 }), async (random, withMagic, chunk) => {
      const bytes = withMagic ? Buffer.concat([magic, random]) : random
      const r = await reparse(bytes, chunk)
      if (r instanceof Error) expect(r).toBeInstanceOf(NarFormatError)
      else expect(r.equals(bytes)).toBe(true)
    }), { numRuns: 200 })
  })

  // Edits at the level of the format's words (strings) reach much deeper than random bytes.
  const word = fc.oneof(
    fc.constantFrom('(', ')', 'type', 'regular', 'directory', 'symlink', 'entry', 'name', 'node', 'contents', 'executable', 'target', ''),
    fc.constantFrom('a', 'b', '.', '..', 'a/b', 'x\0', '\u{1F600}', '\uFF5E')
  )
  const edit = fc.tuple(fc.constantFrom('insert', 'delete', 'replace'), fc.nat(), word)

  it('word-level edits of random NARs either re-encode to the same bytes or fail with NarFormatError', async () => {
    let parsed = 0
    let failed = 0
    await fc.assert(fc.asyncProperty(treeArb, fc.array(edit, { maxLength: 2 }), async (tree, edits) => {
      const words = ['nix-archive-1', ...tokens(tree)]
      for (const [op, at, w] of edits) {
        const i = at % (words.length + 1)
        if (op === 'insert') words.splice(i, 0, w)
        else if (op === 'delete') words.splice(i, 1)
        else words.splice(i, 1, w)
      }
      const bytes = narOf(...words)
      const r = await reparse(bytes, 8)
      if (r instanceof Error) { failed++; expect(r).toBeInstanceOf(NarFormatError) } else { parsed++; expect(r.equals(bytes)).toBe(true) }
    }), { numRuns: 300 })
    expect(parsed).toBeGreaterThan(30)
    expect(failed).toBeGreaterThan(30)
  })

  it('mutations of a valid NAR either re-encode to themselves or fail with NarFormatError', async () => {
    const valid = await collect(encodeNar(fromSync(events({
      kind: 'dir',
      entries: [
        ['bin', { kind: 'dir', entries: [['run', { kind: 'file', executable: true, data: Buffer.from('#!/bin/sh\n') }]] }],
        ['link', { kind: 'symlink', target: 'bin/run' }],
        ['data', { kind: 'file', executable: false, data: Buffer.from('0123456789') }]
      ]
    }))))
    await fc.assert(fc.asyncProperty(fc.array(fc.tuple(fc.nat({ max: valid.length - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), async edits => {
      const bytes = Buffer.from(valid)
      for (const [at, value] of edits) bytes[at] = value
      const r = await reparse(bytes, 16)
      if (r instanceof Error) expect(r).toBeInstanceOf(NarFormatError)
      else expect(r.equals(bytes)).toBe(true)
    }), { numRuns: 300 })
  })
})
