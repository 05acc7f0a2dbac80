import { createHash, randomBytes } from 'node:crypto'
import { CarBlockIterator, CarReader, CarWriter } from '@ipld/car'
import * as dagCbor from '@ipld/dag-cbor'
import fc from 'fast-check'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { describe, expect, it } from 'vitest'
import { CarFormatError, IntegrityError } from '../../src/errors.js'
import { cidOf, DAG_PB_CODE, RAW_CODE } from '../../src/ipfs/block.js'
import { carBytes, DEFAULT_MAX_BLOCK_BYTES, readCar, type CarBlock, type CarReadOptions } from '../../src/ipfs/car.js'

const DAG_CBOR_CODE = 0x71

function block (bytes: Uint8Array, codec = RAW_CODE): CarBlock {
  return { cid: cidOf(codec, bytes), bytes }
}

async function concat (chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const c of chunks) parts.push(c)
  return Buffer.concat(parts)
}

async function * fromChunks (chunks: Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const c of chunks) yield c
}

/** `bytes` cut at `cuts` (sorted offsets). */
function split (bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = []
  let from = 0
  for (const at of [...cuts, bytes.length]) { out.push(bytes.subarray(from, at)); from = at }
  return out
}

const hex = (b: CarBlock): [string, string] => [b.cid.toString(), Buffer.from(b.bytes).toString('hex')]

/** Everything our reader makes of `chunks`. */
async function readAll (chunks: Uint8Array[], options?: CarReadOptions): Promise<{ roots: string[], blocks: Array<[string, string]> }> {
  const car = readCar(fromChunks(chunks), options)
  const roots = (await car.roots).map(String)
  const blocks: Array<[string, string]> = []
  for await (const b of car.blocks) blocks.push(hex(b))
  return { roots, blocks }
}

/** The error our reader raises on `chunks`, failing the test on a hang (5 s) or on success. */
async function readError (chunks: Uint8Array[], options?: CarReadOptions): Promise<Error> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('reader hung')), 5000) })
  const result = await Promise.race([readAll(chunks, options).then(() => undefined, (err: Error) => err), timeout]).finally(() => clearTimeout(timer))
  if (result === undefined) throw new Error('expected the reader to fail')
  return result
}

async function writeWithIpldCar (roots: CID[], blocks: CarBlock[]): Promise<Buffer> {
  const { writer, out } = CarWriter.create(roots)
  const bytes = concat(out)
  for (const b of blocks) await writer.put(b)
  await writer.close()
  return await bytes
}

// A small CAR: a raw leaf, a dag-cbor node, an empty block, a repeated block and a 3000-byte leaf.
const leaf = block(Buffer.from('hello car'))
const node = block(dagCbor.encode({ link: leaf.cid, n: 1 }), DAG_CBOR_CODE)
const empty = block(new Uint8Array(0))
const big = block(randomBytes(3000))
const BLOCKS = [node, leaf, empty, leaf, big]
const ROOTS = [node.cid, big.cid]
const expected = { roots: ROOTS.map(String), blocks: BLOCKS.map(hex) }

/** Offsets where a CAR of `blocks` may end cleanly: after the header and after each section. */
function boundaries (header: number, blocks: CarBlock[]): number[] {
  const out = [header]
  for (const b of blocks) {
    const len = b.cid.bytes.length + b.bytes.length
    out.push(out[out.length - 1]! + varint.encodingLength(len) + len)
  }
  return out
}

describe('carBytes', () => {
  it('is read back by @ipld/car with the same roots and blocks', async () => {
    const car = await concat(carBytes(ROOTS, BLOCKS))
    const reader = await CarReader.fromIterable(fromChunks([car]))
    expect((await reader.getRoots()).map(String)).toEqual(expected.roots)
    const got: Array<[string, string]> = []
    for await (const b of (await CarBlockIterator.fromIterable(fromChunks([car])))) got.push(hex(b))
    expect(got).toEqual(expected.blocks)
  })

  it('writes the same bytes as @ipld/car\'s CarWriter', async () => {
    expect(Buffer.compare(await concat(carBytes(ROOTS, BLOCKS)), await writeWithIpldCar(ROOTS, BLOCKS))).toBe(0)
  })

  it('takes blocks from an async iterable and streams them without gathering', async () => {
    let pulled = 0
    async function * blocks (): AsyncGenerator<CarBlock> { for (const b of BLOCKS) { pulled++; yield b } }
    const out = carBytes(ROOTS, blocks())
    await out.next() // the header
    expect(pulled).toBe(0)
    await out.next() // the first section's prefix
    expect(pulled).toBe(1)
  })
})

describe('readCar', () => {
  it('reads a CAR written by @ipld/car\'s CarWriter', async () => {
    expect(await readAll([await writeWithIpldCar(ROOTS, BLOCKS)])).toEqual(expected)
  })

  it('reads a CAR with a CIDv0 (dag-pb) block', async () => {
    const pb = block(Buffer.from([0x0a, 0x02, 0x08, 0x01]), DAG_PB_CODE)
    const v0 = CID.createV0(pb.cid.multihash as Digest.Digest<0x12, number>)
    const car = await writeWithIpldCar([v0], [{ cid: v0, bytes: pb.bytes }])
    expect(await readAll([car])).toEqual({ roots: [v0.toString()], blocks: [[v0.toString(), Buffer.from(pb.bytes).toString('hex')]] })
  })

  it('handles the input split at every byte boundary, and one byte at a time', async () => {
    const car = await concat(carBytes(ROOTS, BLOCKS))
    for (let at = 0; at <= car.length; at++) expect(await readAll(split(car, [at]))).toEqual(expected)
    expect(await readAll(split(car, Array.from({ length: car.length }, (_, i) => i)))).toEqual(expected)
  })

  it('gives the roots as soon as the header is in, before the rest arrives', async () => {
    const car = await concat(carBytes(ROOTS, BLOCKS))
    const [headerLength, prefix] = varint.decode(car)
    const headerEnd = prefix + headerLength
    let release!: () => void
    const gate = new Promise<void>(resolve => { release = resolve })
    async function * source (): AsyncGenerator<Uint8Array> {
      yield car.subarray(0, headerEnd)
      await gate
      yield car.subarray(headerEnd)
    }
    const stream = readCar(source())
    expect((await stream.roots).map(String)).toEqual(expected.roots)
    release()
    const got: Array<[string, string]> = []
    for await (const b of stream.blocks) got.push(hex(b))
    expect(got).toEqual(expected.blocks)
  })

  it('closes the source when the caller stops early', async () => {
    const car = await concat(carBytes(ROOTS, BLOCKS))
    let closed = false
    async function * source (): AsyncGenerator<Uint8Array> {
      try { for (const c of split(car, [10, 100, 200])) yield c } finally { closed = true }
    }
    const stream = readCar(source())
    for await (const _ of stream.blocks) break
    expect(closed).toBe(true)
  })

  it('fails on truncation at every offset with CarFormatError, except at a section boundary', async () => {
    const car = await concat(carBytes(ROOTS, BLOCKS))
    const [headerLength, prefix] = varint.decode(car)
    const ends = boundaries(prefix + headerLength, BLOCKS)
    for (let n = 0; n < car.length; n++) {
      const k = ends.indexOf(n)
      if (k >= 0) {
        // A CARv1 has no trailer: a cut between sections is a shorter valid CAR (completeness is the caller's check).
        expect(await readAll([car.subarray(0, n)])).toEqual({ roots: expected.roots, blocks: expected.blocks.slice(0, k) })
        continue
      }
      const err = await readError(split(car.subarray(0, n), [Math.floor(n / 2)]))
      expect(err, `cut at ${n}`).toBeInstanceOf(CarFormatError)
      expect((err as CarFormatError).code).toBe('ERR_CAR_FORMAT')
      expect((err as CarFormatError).offset).toBeLessThanOrEqual(n)
      expect(err.message).toMatch(/\(at byte \d+\)$/)
    }
  })

  it('fails with IntegrityError on a flipped data byte or digest byte', async () => {
    const car = await concat(carBytes([leaf.cid], [leaf]))
    const data = Buffer.from(car)
    data[data.length - 1]! ^= 1
    const err = await readError([data])
    expect(err).toBeInstanceOf(IntegrityError)
    expect(err.message).toContain(leaf.cid.toString())
    // Named to the caller too: a peer's warning named the NAR's root instead of the block that failed.
    expect((err as IntegrityError).block).toBe(leaf.cid.toString())
    const digest = Buffer.from(car)
    digest[digest.length - leaf.bytes.length - 1]! ^= 0x80
    expect(await readError([digest])).toBeInstanceOf(IntegrityError)
  })

  it('fails with IntegrityError on hashes other than sha2-256', async () => {
    const bytes = Buffer.from('not sha2-256')
    const sha512 = CID.createV1(RAW_CODE, Digest.create(0x13, createHash('sha512').update(bytes).digest()))
    const identity = CID.createV1(RAW_CODE, Digest.create(0x00, bytes))
    for (const cid of [sha512, identity]) {
      const err = await readError([await writeWithIpldCar([cid], [{ cid, bytes }])])
      expect(err).toBeInstanceOf(IntegrityError)
      expect(err.message).toMatch(/only sha2-256/)
    }
  })

  it('refuses an oversized section from its declared length, without reading or allocating it', async () => {
    const header = await concat(carBytes([leaf.cid], []))
    for (const declared of [DEFAULT_MAX_BLOCK_BYTES + 129, 2 ** 40, Number.MAX_SAFE_INTEGER]) {
      let pulled = 0
      async function * endless (): AsyncGenerator<Uint8Array> {
        yield header
        yield Buffer.from(varint.encodeTo(declared, new Uint8Array(varint.encodingLength(declared))))
        for (;;) { pulled++; yield new Uint8Array(65536) }
      }
      const stream = readCar(endless())
      const err = await stream.blocks.next().then(() => undefined, (e: Error) => e)
      expect(err).toBeInstanceOf(CarFormatError)
      expect(err!.message).toMatch(new RegExp(`section declares ${declared} bytes.*\\(at byte ${header.length}\\)`))
      expect(pulled).toBe(0)
    }
    // A lower limit from the caller is kept too, also for the header.
    const car = await concat(carBytes([big.cid], [big]))
    expect((await readError([car], { maxBlockBytes: 1000 })).message).toMatch(/refused/)
    expect((await readError([car], { maxHeaderBytes: 10 })).message).toMatch(/header declares \d+ bytes; at most 10/)
    expect(await readAll([car], { maxBlockBytes: 3000 })).toEqual({ roots: [big.cid.toString()], blocks: [hex(big)] })
  })

  const section = (b: Uint8Array): Buffer => Buffer.concat([Buffer.from(varint.encodeTo(b.length, new Uint8Array(varint.encodingLength(b.length)))), b])
  const headerOf = (value: unknown): Buffer => section(dagCbor.encode(value))
  const badInputs: Array<[string, Uint8Array, RegExp]> = [
    ['empty input', new Uint8Array(0), /empty input.*at byte 0/],
    ['a zero-length header', Buffer.from([0]), /header length is 0/],
    ['a 10-byte varint', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /longer than 9 bytes/],
    ['a non-minimal varint', Buffer.from([0x81, 0x00]), /not minimally encoded/],
    ['a varint beyond 2^53', Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), /too large/],
    ['bytes that are not dag-cbor', section(Buffer.from([0xff, 0xfe])), /not valid dag-cbor/],
    ['a header that is a list', headerOf([1, 2]), /header is a list/],
    ['a header that is a CID', headerOf(leaf.cid), /not a map/],
    ['a CARv2 pragma', headerOf({ version: 2 }), /header version is 2; only CARv1/],
    ['a header without version', headerOf({ roots: [] }), /header version is undefined/],
    ['a header with a string version', headerOf({ version: '1', roots: [] }), /header version is "1"/],
    ['a header with a big-integer version', headerOf({ version: 2n ** 64n - 1n, roots: [] }), /header version is bigint/],
    ['roots that are not a list', headerOf({ version: 1, roots: leaf.cid }), /roots is object, not a list/],
    ['a root that is not a CID', headerOf({ version: 1, roots: [leaf.cid, 'x'] }), /header root 1 is "x", not a CID/],
    ['an unknown header field', headerOf({ version: 1, roots: [], extra: true }), /unexpected field "extra"/],
    ['deeply nested header', section(new Uint8Array(100_000).fill(0x81)), /not valid dag-cbor/],
    ['an empty section', Buffer.concat([headerOf({ version: 1, roots: [] }), Buffer.from([0])]), /empty section/],
    ['a section without a CID', Buffer.concat([headerOf({ version: 1, roots: [] }), section(Buffer.from([0x05, 0x01]))]), /does not start with a valid CID/],
    ['a section shorter than its CID', Buffer.concat([headerOf({ version: 1, roots: [] }), section(leaf.cid.bytes.subarray(0, 20))]), /does not start with a valid CID/]
  ]
  for (const [what, bytes, message] of badInputs) {
    it(`refuses ${what} with CarFormatError`, async () => {
      const err = await readError([bytes])
      expect(err).toBeInstanceOf(CarFormatError)
      expect(err.message).toMatch(message)
    })
  }

  it('accepts a header with no roots (the caller decides what that means)', async () => {
    expect(await readAll([await concat(carBytes([], [leaf]))])).toEqual({ roots: [], blocks: [hex(leaf)] })
  })
})

describe('carBytes + readCar (property)', () => {
  const blockArb = fc.record({ data: fc.uint8Array({ maxLength: 300 }), codec: fc.constantFrom(RAW_CODE, DAG_PB_CODE, DAG_CBOR_CODE) })
    .map(({ data, codec }) => block(data, codec))
  const carArb = fc.record({ blocks: fc.array(blockArb, { maxLength: 8 }), rootCount: fc.nat(3) })

  it('round-trips any blocks and roots, cut into any chunks, and matches @ipld/car', async () => {
    await fc.assert(fc.asyncProperty(carArb, fc.array(fc.nat(), { maxLength: 12 }), async ({ blocks, rootCount }, cutSeeds) => {
      const roots = [...blocks.slice(0, rootCount).map(b => b.cid), ...(blocks.length === 0 ? [leaf.cid] : [])]
      const car = await concat(carBytes(roots, blocks))
      const cuts = [...new Set(cutSeeds.map(s => s % (car.length + 1)))].sort((a, b) => a - b)
      expect(await readAll(split(car, cuts))).toEqual({ roots: roots.map(String), blocks: blocks.map(hex) })
      expect(Buffer.compare(car, await writeWithIpldCar(roots, blocks))).toBe(0)
    }), { numRuns: 200 })
  })

  it('raises only CarFormatError or IntegrityError on any corrupted byte, and never hangs', async () => {
    await fc.assert(fc.asyncProperty(carArb, fc.nat(), fc.integer({ min: 1, max: 255 }), async ({ blocks, rootCount }, at, xor) => {
      const car = Buffer.from(await concat(carBytes(blocks.slice(0, rootCount).map(b => b.cid), blocks)))
      car[at % car.length]! ^= xor
      // A flip inside a root CID or a codec gives another valid CAR; anything else must be a typed error.
      const err = await readError([car]).catch((e: Error) => e.message === 'expected the reader to fail' ? undefined : e)
      if (err !== undefined) expect(err instanceof CarFormatError || err instanceof IntegrityError, String(err)).toBe(true)
    }), { numRuns: 300 })
  })
})
