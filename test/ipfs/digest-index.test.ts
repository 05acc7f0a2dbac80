import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { DigestIndex, type Location } from '../../src/ipfs/digest-index.js'

const digest = (i: number): Uint8Array => createHash('sha256').update(`block ${i}`).digest()

describe('DigestIndex', () => {
  it('agrees with a Map through inserts, updates, deletes and growth', () => {
    const index = new DigestIndex(16)
    const model = new Map<number, Location>()
    let seed = 42
    const rand = (n: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
    for (let step = 0; step < 60_000; step++) {
      const i = rand(20_000)
      const op = rand(10)
      if (op < 7) {
        const loc = { pack: rand(5) + 1, offset: rand(2 ** 30), length: rand(1 << 20), codec: op < 4 ? 0x55 : 0x70 }
        index.set(digest(i), loc)
        model.set(i, loc)
      } else if (op < 9) {
        expect(index.get(digest(i))).toEqual(model.get(i))
        expect(index.has(digest(i))).toBe(model.has(i))
      } else {
        index.delete(digest(i))
        model.delete(i)
      }
    }
    expect(index.size).toBe(model.size)
    for (let i = 0; i < 20_000; i++) expect(index.get(digest(i))).toEqual(model.get(i))
  })

  it('keeps a million blocks in well under 64 MB', () => {
    const index = new DigestIndex()
    for (let i = 0; i < 1_000_000; i++) index.set(digest(i), { pack: 1, offset: i, length: 262144, codec: 0x55 })
    expect(index.size).toBe(1_000_000)
    expect(index.bytes).toBeLessThan(64 * 2 ** 20)
    expect(index.get(digest(123_456))?.offset).toBe(123_456)
  })
})
