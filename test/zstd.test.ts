import { readFileSync } from 'node:fs'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { decompress as fzstd } from 'fzstd'
import { describe, expect, it } from 'vitest'
import { compressFrame, decompressFrames, FRAME_BYTES, frameCompressor, frameDecompressor, MAX_FRAME_INPUT } from '../src/zstd.js'

// Real machine code and text: what NARs hold.
const binary = readFileSync(process.execPath).subarray(0, 3 * FRAME_BYTES + 12_345)
const text = Buffer.from('a NAR is mostly ELF and text\n'.repeat(20_000))

/** `input` through `transform` as chunks of `size` bytes; the output joined, or the error. */
async function through (transform: NodeJS.ReadWriteStream, input: Uint8Array, size: number): Promise<Buffer> {
  const pieces: Uint8Array[] = []
  for (let i = 0; i < input.length; i += size) pieces.push(input.subarray(i, i + size))
  const out: Buffer[] = []
  await pipeline(Readable.from(pieces), transform, new Writable({ write (c: Buffer, _e, cb) { out.push(c); cb() } }))
  return Buffer.concat(out)
}

/** A zstd frame written by hand (RFC 8878): single segment, a 1-byte content size, a raw block "abc" then an RLE block of five "x". */
const handMade = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x20, 8, 3 << 3, 0, 0, ...Buffer.from('abc'), 1 | (1 << 1) | (5 << 3), 0, 0, 0x78])
/** A skippable frame of 3 bytes. */
const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3])

describe('zstd on every Node (WebAssembly before 22.15)', () => {
  it('writes frames another decoder (fzstd) reads back byte for byte, and reads them back itself', () => {
    for (const data of [binary.subarray(0, FRAME_BYTES), text, Buffer.alloc(0)]) {
      const frame = compressFrame(data, 3)
      expect(Buffer.compare(Buffer.from(fzstd(frame)), data)).toBe(0)
      expect(Buffer.compare(decompressFrames(frame, data.length), data)).toBe(0)
    }
    expect(compressFrame(text, 3).length).toBeLessThan(text.length / 100)
  })

  it('streams as a frame per MiB, a stream any zstd decoder reads whole', async () => {
    const packed = await through(frameCompressor(3), binary, 65_536)
    expect(Buffer.compare(Buffer.from(fzstd(packed)), binary)).toBe(0)
    // Four frames: 3 MiB and the rest; decoded in one call, the frames follow each other.
    expect(Buffer.compare(decompressFrames(packed, binary.length), binary)).toBe(0)
    let frames = 0
    for (let i = packed.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); i >= 0; i = packed.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), i + 1)) frames++
    expect(frames).toBeGreaterThanOrEqual(4)
  })

  it('decodes a stream frame by frame however it is cut, with raw, RLE and skippable frames among them', async () => {
    const packed = Buffer.concat([skippable, await through(frameCompressor(3), binary.subarray(0, 2 * FRAME_BYTES + 99), 1 << 20), handMade, skippable, compressFrame(text, 3)])
    const want = Buffer.concat([binary.subarray(0, 2 * FRAME_BYTES + 99), Buffer.from('abcxxxxx'), text])
    for (const size of [4096, 65_536, packed.length]) expect(Buffer.compare(await through(frameDecompressor(), packed, size), want), String(size)).toBe(0)
    // Byte by byte, on a short stream.
    const short = Buffer.concat([skippable, handMade, compressFrame(text.subarray(0, 5000), 3), handMade])
    for (const size of [1, 2, 3, 7]) expect((await through(frameDecompressor(), short, size)).toString(), String(size)).toBe(`abcxxxxx${text.subarray(0, 5000).toString()}abcxxxxx`)
  }, 60_000)

  it('decodes a frame sent a byte at a time with work that follows the bytes (a hostile peer froze a gateway for minutes)', async () => {
    // 300 KB of frame: piece by piece, the held pieces were walked for every header byte and shifted one by one (70 s here).
    const frame = compressFrame(binary.subarray(0, 300_000), 1)
    const decoder = frameDecompressor()
    const out: Buffer[] = []
    decoder.on('data', (c: Buffer) => out.push(c))
    for (let i = 0; i < frame.length; i++) decoder.write(frame.subarray(i, i + 1))
    decoder.end()
    await new Promise(resolve => decoder.on('end', resolve))
    expect(Buffer.compare(Buffer.concat(out), binary.subarray(0, 300_000))).toBe(0)
  }, 20_000)

  it('compresses the frames of many streams in turns, with other work between them (clients reading nothing held a narinfo for seconds)', async () => {
    const streams = Array.from({ length: 20 }, () => frameCompressor(3))
    let frames = 0
    let framesBeforeTimer: number | undefined
    const ended = streams.map(async z => { z.on('data', () => frames++); await new Promise(resolve => z.on('end', resolve)) })
    setTimeout(() => { framesBeforeTimer = frames }, 0)
    for (const z of streams) { z.write(binary.subarray(0, 2 * FRAME_BYTES)); z.end() }
    await Promise.all(ended)
    expect(frames).toBe(40)
    // Before, every frame was compressed inside write(): all 40 came before the timer could run.
    expect(framesBeforeTimer).toBeLessThanOrEqual(2)
  })

  it('refuses a cut stream, a corrupt one, bad magic, and frames past its bounds', async () => {
    const packed = compressFrame(binary.subarray(0, FRAME_BYTES), 3)
    await expect(through(frameDecompressor(), packed.subarray(0, packed.length - 1), 65_536)).rejects.toThrow(/cut inside a frame/)
    await expect(through(frameDecompressor(), Buffer.concat([packed, Buffer.from('not zstd')]), 65_536)).rejects.toThrow(/bad magic/)
    // A block type zstd reserves.
    const reserved = Buffer.from(handMade)
    reserved[6] = 3 << 1
    await expect(through(frameDecompressor(), reserved, 4)).rejects.toThrow(/reserved block type/)
    // Corrupt compressed bytes: zstd's own error, not wrong bytes (which only a CID check would catch).
    const corrupt = Buffer.from(packed)
    corrupt.fill(0xff, 100, 200)
    expect(() => decompressFrames(corrupt, FRAME_BYTES)).toThrow(/not valid zstd data/)
    // More output than allowed.
    expect(() => decompressFrames(packed, FRAME_BYTES - 1)).toThrow(RangeError)
    await expect(through(frameDecompressor(FRAME_BYTES - 1), packed, 65_536)).rejects.toThrow(RangeError)
    // A frame whose blocks never end: refused once it holds more than MAX_FRAME_INPUT, not held without bound.
    const rawBlock = Buffer.concat([Buffer.from([(100_000 << 3) & 0xff, (100_000 >> 5) & 0xff, (100_000 >> 13) & 0xff]), Buffer.alloc(100_000)])
    let fed = 0
    const endless = Readable.from((function * () {
      yield handMade.subarray(0, 6) // magic, descriptor (single segment), content size
      for (;;) { fed += rawBlock.length; yield rawBlock }
    })())
    await expect(pipeline(endless, frameDecompressor(), new Writable({ write (_c, _e, cb) { cb() } }))).rejects.toThrow(/longer than/)
    expect(fed).toBeLessThan(MAX_FRAME_INPUT + 2 * rawBlock.length)
  })
})
