import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { exporter } from 'ipfs-unixfs-exporter'
import { describe, expect, it } from 'vitest'
import { CDC_V1, cdcChunker, gearTable } from '../../src/ipfs/cdc.js'
import { importFile } from '../../src/ipfs/file-dag.js'

/** Deterministic, compressible-but-not-trivial bytes: a text-like stream from a counter-mode hash. */
function corpus (bytes: number, seed = 'corpus'): Uint8Array {
  const out = new Uint8Array(bytes)
  const words = ['nix', 'store', 'derivation', 'closure', 'ipfs', 'block', '\n', ' ', 'lib', 'bin', '/', '.so', '-', '0', '1']
  let at = 0
  for (let i = 0; at < bytes; i++) {
    const h = createHash('sha256').update(`${seed}${i}`).digest()
    for (let j = 0; j < 32 && at < bytes; j++) {
      const w = words[h[j]! % words.length]!
      for (let k = 0; k < w.length && at < bytes; k++) out[at++] = w.charCodeAt(k)
      if (h[j]! > 200 && at < bytes) out[at++] = h[(j + 1) % 32]!
    }
  }
  return out
}

async function chunks (bytes: Uint8Array, piece = 100_000): Promise<Uint8Array[]> {
  async function * src (): AsyncGenerator<Uint8Array> { for (let i = 0; i < bytes.length; i += piece) yield bytes.subarray(i, i + piece) }
  const out: Uint8Array[] = []
  for await (const c of cdcChunker()(src())) out.push(Uint8Array.from(c))
  return out
}

const digest = (c: Uint8Array): string => createHash('sha256').update(c).digest('hex')

describe('cdc-v1 chunker', () => {
  const data = corpus(12 * 1024 * 1024)

  it('has a gear table that is a pure function of the recipe seed', () => {
    const t = gearTable(CDC_V1.seed)
    expect(t).toEqual(gearTable('nixipfs-cdc-v1'))
    expect(t).not.toEqual(gearTable('other'))
    // Pinned: the first entry of the cdc-v1 table (any change is a new recipe).
    expect(t[0]! >>> 0).toBe(createHash('sha256').update('nixipfs-cdc-v1:0').digest().readUInt32BE(0))
  })

  it('cuts the same input into the same chunks whatever the input piece sizes', async () => {
    const a = await chunks(data, 100_000)
    const b = await chunks(data, 1 << 20)
    const c = await chunks(data, 4097)
    expect(a.map(digest)).toEqual(b.map(digest))
    expect(a.map(digest)).toEqual(c.map(digest))
    expect(Buffer.concat(a).equals(Buffer.from(data))).toBe(true)
  })

  it('keeps chunk sizes within [min, max] (only the last may be shorter) and averages near 256 KiB', async () => {
    const cs = await chunks(data)
    for (const c of cs.slice(0, -1)) {
      expect(c.length).toBeGreaterThanOrEqual(CDC_V1.minBytes)
      expect(c.length).toBeLessThanOrEqual(CDC_V1.maxBytes)
    }
    const avg = data.length / cs.length
    expect(avg).toBeGreaterThan(160 * 1024)
    expect(avg).toBeLessThan(400 * 1024)
  })

  it('changes only a few chunks when bytes are inserted near the start', async () => {
    const before = await chunks(data)
    const inserted = new Uint8Array(data.length + 777)
    inserted.set(data.subarray(0, 5000))
    inserted.set(corpus(777, 'insert'), 5000)
    inserted.set(data.subarray(5000), 5777)
    const after = await chunks(inserted)
    const known = new Set(before.map(digest))
    const fresh = after.filter(c => !known.has(digest(c)))
    expect(fresh.length).toBeLessThanOrEqual(3)
    expect(after.length - fresh.length).toBeGreaterThan(before.length - 4)
  })

  it('cuts exactly where a plain reading of the README recipe says', async () => {
    // The recipe as written in the README, byte by byte, with no optimization.
    const gear = gearTable('nixipfs-cdc-v1')
    const reference = (bytes: Uint8Array): number[] => {
      const out: number[] = []
      for (let start = 0; start < bytes.length;) {
        const n = bytes.length - start
        let len = Math.min(n, 1024 * 1024)
        if (n > 64 * 1024) {
          let fp = 0
          for (let j = start + 64 * 1024 - 32; j < start + 64 * 1024; j++) fp = ((fp << 1) + gear[bytes[j]!]!) | 0
          for (let i = start + 64 * 1024; i < start + len; i++) {
            fp = ((fp << 1) + gear[bytes[i]!]!) | 0
            const mask = i - start < 256 * 1024 ? 0xfffff000 : 0xffff0000
            if (((fp >>> 0) & mask) === 0) { len = i - start + 1; break }
          }
        }
        out.push(len)
        start += len
      }
      return out
    }
    const sample = Buffer.concat([data.subarray(0, 3 * 1024 * 1024), readFileSync(process.execPath).subarray(0, 3 * 1024 * 1024)])
    expect((await chunks(sample)).map(c => c.length)).toEqual(reference(sample))
  })

  it('cuts real binaries into a DAG the standard UnixFS exporter reads back', async () => {
    const lib = readFileSync(process.execPath).subarray(0, 8 * 1024 * 1024)
    const blocks = new MemoryBlockstore()
    async function * src (): AsyncGenerator<Uint8Array> { yield lib }
    const { cid } = await importFile(blocks, src(), cdcChunker())
    const parts: Uint8Array[] = []
    for await (const p of (await exporter(cid, blocks)).content()) parts.push(p)
    expect(Buffer.concat(parts).equals(lib)).toBe(true)
  })
})
