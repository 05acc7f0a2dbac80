import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Transform, type TransformCallback } from 'node:stream'
import * as zlib from 'node:zlib'
import { inTurn } from './turns.js'

// zstd on every Node: zlib has it from Node 22.15; before that, the zstd
// library compiled to WebAssembly by @bokuweb/zstd-wasm does the work. Its
// JavaScript wrapper only loads asynchronously, so its .wasm is instantiated
// here directly, synchronously on first use (about 3 ms).
//
// Streams are written as a series of independent frames of at most
// FRAME_BYTES of input: a valid zstd stream for any decoder (RFC 8878 §3.1:
// frames are concatenated), and one a decoder without a streaming API can
// take frame by frame within a bounded buffer.

/** Input bytes per frame of a compressed stream: most of the ratio of one long stream (3.30 against 3.35 with 4 MiB on a libLLVM NAR at level 3). */
export const FRAME_BYTES = 1024 * 1024
/** Compressed bytes a frame may take before a frame-by-frame decoder refuses it (its input must be held whole). */
export const MAX_FRAME_INPUT = 4 * 1024 * 1024

/** zlib's zstd (Node ≥ 22.15; absent from Node 20's types, so looked up by name). */
const native = zlib as unknown as {
  createZstdDecompress?: (o?: zlib.ZlibOptions) => Transform
  zstdCompressSync?: (b: Uint8Array, o?: { params?: Record<number, number> }) => Buffer
  zstdDecompressSync?: (b: Uint8Array, o?: { maxOutputLength?: number }) => Buffer
  constants: { ZSTD_c_compressionLevel?: number }
}
/** True when this Node's zlib has zstd (so streams of any framing decode natively). */
export const NATIVE_ZSTD = typeof native.createZstdDecompress === 'function' && typeof native.zstdCompressSync === 'function'

// Node has WebAssembly; this project's type libraries do not describe it (no DOM lib), so the little used is declared here.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> }
}
interface WasmMemory { readonly buffer: ArrayBuffer, grow: (pages: number) => number }

/** The exports of @bokuweb/zstd-wasm 0.0.27's zstd.wasm, by the names its generated wrapper gives them (the version is pinned for this). */
interface ZstdWasm {
  memory: WasmMemory
  isError: (code: number) => number
  compressBound: (size: number) => number
  createCCtx: () => number
  createDCtx: () => number
  /** ZSTD_compress_usingDict(cctx, dst, dstCapacity, src, srcSize, dict, dictSize, level) */
  compress: (cctx: number, dst: number, cap: number, src: number, size: number, dict: number, dictSize: number, level: number) => number
  /** ZSTD_decompress_usingDict(dctx, dst, dstCapacity, src, srcSize, dict, dictSize) */
  decompress: (dctx: number, dst: number, cap: number, src: number, size: number, dict: number, dictSize: number) => number
  malloc: (size: number) => number
  free: (ptr: number) => void
}

let wasm: { z: ZstdWasm, cctx: number, dctx: number, scratch: Map<string, { ptr: number, size: number }> } | undefined

function loadWasm (): NonNullable<typeof wasm> {
  if (wasm !== undefined) return wasm
  // The package exports only its wrapper; the .wasm sits beside it.
  const path = join(dirname(createRequire(import.meta.url).resolve('@bokuweb/zstd-wasm')), 'zstd.wasm')
  let memory: WasmMemory | undefined
  const fail = (what: string) => () => { throw new Error(`zstd (WebAssembly): ${what}`) }
  const imports = {
    a: {
      a: fail('exit'), // proc_exit
      b: () => {}, // emscripten_runtime_keepalive_clear
      c: fail('abort'), // abort
      d: () => 0, // setitimer (unused by zstd)
      // emscripten_resize_heap: grows the memory to at least `size` bytes
      e: (size: number) => {
        const pages = Math.ceil(((size >>> 0) - memory!.buffer.byteLength) / 65536)
        try { memory!.grow(Math.max(pages, 1)); return 1 } catch { return 0 }
      }
    }
  }
  const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(path)), imports)
  const e = instance.exports as Record<string, unknown>
  memory = e.f as WasmMemory
  ;(e.g as () => void)() // the C runtime's constructors
  const z: ZstdWasm = {
    memory,
    isError: e.h as ZstdWasm['isError'],
    compressBound: e.i as ZstdWasm['compressBound'],
    createCCtx: e.j as ZstdWasm['createCCtx'],
    compress: e.l as ZstdWasm['compress'],
    createDCtx: e.n as ZstdWasm['createDCtx'],
    decompress: e.q as ZstdWasm['decompress'],
    malloc: e.s as ZstdWasm['malloc'],
    free: e.t as ZstdWasm['free']
  }
  wasm = { z, cctx: z.createCCtx(), dctx: z.createDCtx(), scratch: new Map() }
  return wasm
}

/** A buffer in the WebAssembly heap of at least `size` bytes, kept for the next call (calls are synchronous, so one per role suffices). */
function scratch (w: NonNullable<typeof wasm>, role: 'in' | 'out', size: number): number {
  const held = w.scratch.get(role)
  if (held !== undefined && held.size >= size) return held.ptr
  if (held !== undefined) w.z.free(held.ptr)
  const ptr = w.z.malloc(size)
  if (ptr === 0) throw new RangeError(`zstd (WebAssembly): cannot allocate ${size} bytes`)
  w.scratch.set(role, { ptr, size })
  return ptr
}

/** `pieces` copied one after another into the WebAssembly heap at `ptr` (no concatenation first). */
function copyIn (w: NonNullable<typeof wasm>, ptr: number, pieces: Uint8Array[]): void {
  const heap = new Uint8Array(w.z.memory.buffer)
  for (const p of pieces) { heap.set(p, ptr); ptr += p.length }
}

/** The bytes at `ptr` copied out of the WebAssembly heap (which the next call reuses). */
function copyOut (w: NonNullable<typeof wasm>, ptr: number, size: number): Buffer {
  // Not Buffer.from(view): that copies byte by byte (3.5% of the client's CPU in a 3-mirror swarm); set() is a memcpy.
  const out = Buffer.allocUnsafe(size)
  out.set(new Uint8Array(w.z.memory.buffer, ptr, size))
  return out
}

/** `input` (whole, or in pieces that follow each other) compressed as one zstd frame at `level`. */
export function compressFrame (input: Uint8Array | Uint8Array[], level: number): Buffer {
  const pieces = Array.isArray(input) ? input : [input]
  if (NATIVE_ZSTD) return native.zstdCompressSync!(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), { params: { [native.constants.ZSTD_c_compressionLevel!]: level } })
  const w = loadWasm()
  const size = pieces.reduce((n, p) => n + p.length, 0)
  const cap = w.z.compressBound(size)
  const src = scratch(w, 'in', size)
  const dst = scratch(w, 'out', cap)
  copyIn(w, src, pieces)
  const n = w.z.compress(w.cctx, dst, cap, src, size, 0, 0, level)
  if (w.z.isError(n) !== 0) throw new Error(`zstd could not compress ${size} bytes (error ${-n})`)
  return copyOut(w, dst, n)
}

/** One or more whole zstd frames (given whole or in pieces) decompressed; RangeError when they decode to more than `maxBytes`, Error when corrupt or cut. */
export function decompressFrames (input: Uint8Array | Uint8Array[], maxBytes: number): Buffer {
  const pieces = Array.isArray(input) ? input : [input]
  if (NATIVE_ZSTD) return native.zstdDecompressSync!(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), { maxOutputLength: maxBytes })
  const w = loadWasm()
  const size = pieces.reduce((n, p) => n + p.length, 0)
  const src = scratch(w, 'in', size)
  // One byte more than allowed: a result that fills it is too large (zstd says only "destination too small" otherwise).
  const dst = scratch(w, 'out', maxBytes + 1)
  copyIn(w, src, pieces)
  const n = w.z.decompress(w.dctx, dst, maxBytes + 1, src, size, 0, 0)
  if (w.z.isError(n) !== 0) {
    // ZSTD_error_dstSize_tooSmall is 70 (zstd_errors.h).
    if (-n === 70) throw new RangeError(`zstd data decodes to more than ${maxBytes} bytes`)
    throw new Error(`not valid zstd data (error ${-n})`)
  }
  if (n > maxBytes) throw new RangeError(`zstd data decodes to more than ${maxBytes} bytes`)
  return copyOut(w, dst, n)
}

/**
 * A stream compressor writing a frame per FRAME_BYTES of input (and one for
 * what is left at the end). Each frame is compressed in its turn (inTurn):
 * many streams at once leave the event loop free between frames.
 */
export function frameCompressor (level: number): Transform {
  let held: Buffer[] = []
  let size = 0
  const emit = async (t: Transform): Promise<void> => {
    if (size === 0) return
    const input = held
    held = []
    size = 0
    t.push(await inTurn(() => compressFrame(input, level)))
  }
  return new Transform({
    transform (chunk: Buffer, _enc, done: TransformCallback) {
      (async () => {
        let pos = 0
        while (pos < chunk.length) {
          const take = Math.min(chunk.length - pos, FRAME_BYTES - size)
          held.push(pos === 0 && take === chunk.length ? chunk : chunk.subarray(pos, pos + take))
          size += take
          pos += take
          if (size === FRAME_BYTES) await emit(this)
        }
      })().then(() => done(), done)
    },
    flush (done: TransformCallback) {
      emit(this).then(() => done(), done)
    }
  })
}

const FRAME_MAGIC = 0xFD2FB528
const SKIPPABLE_MASK = 0xFFFFFFF0
const SKIPPABLE_MAGIC = 0x184D2A50

/**
 * Holds a zstd stream's bytes until a frame (or skippable frame) is whole,
 * reading only its headers (RFC 8878 §3.1.1: a frame header, blocks with
 * 3-byte headers, an optional checksum) as the bytes come. The bytes are kept
 * in one buffer, so work and memory follow the bytes, however finely a peer
 * cuts them (a frame sent a byte at a time once took minutes and gigabytes).
 */
class FrameScanner {
  /** the bytes held: a view of `storage` (or of the last chunk given, while nothing else is held) */
  private held: Buffer = Buffer.alloc(0)
  /** buffer this scanner owns and appends to; `held` ends where its used part ends */
  private storage?: Buffer
  /** where the next header to read starts; undefined until the frame header is read */
  private next?: number
  private checksum = 0
  /** where the frame ends, once known */
  private end?: number

  /** bytes held */
  get total (): number {
    return this.held.length
  }

  /** Appends `chunk` (copied, unless nothing is held). */
  push (chunk: Buffer): void {
    const held = this.held
    if (held.length === 0) { this.held = chunk; this.storage = undefined; return }
    const s = this.storage
    // With storage, what is held is in it (a chunk held as it came clears it).
    const end = s === undefined ? 0 : held.byteOffset - s.byteOffset + held.length
    if (s !== undefined && end + chunk.length <= s.length) {
      chunk.copy(s, end)
      this.held = s.subarray(end - held.length, end + chunk.length)
      return
    }
    const storage = Buffer.allocUnsafe(Math.max(64 * 1024, 2 * (held.length + chunk.length)))
    held.copy(storage, 0)
    chunk.copy(storage, held.length)
    this.storage = storage
    this.held = storage.subarray(0, held.length + chunk.length)
  }

  private u32 (i: number): number {
    return this.held.readUInt32LE(i)
  }

  /** The frame's length once it is all held, else undefined; Error when the bytes are not a zstd frame. */
  complete (): number | undefined {
    const h = this.held
    if (this.end === undefined && this.next === undefined) {
      if (h.length < 8) return undefined
      const magic = this.u32(0)
      if (((magic & SKIPPABLE_MASK) >>> 0) === SKIPPABLE_MAGIC) this.end = 8 + this.u32(4)
      else if (magic !== FRAME_MAGIC) throw new Error('not a zstd frame (bad magic number)')
      else {
        const descriptor = h[4]!
        const singleSegment = (descriptor >> 5) & 1
        this.checksum = ((descriptor >> 2) & 1) * 4
        this.next = 5 + (singleSegment === 1 ? 0 : 1) + [0, 1, 2, 4][descriptor & 3]! + [singleSegment, 2, 4, 8][descriptor >> 6]!
      }
    }
    while (this.end === undefined && this.next! + 3 <= h.length) {
      const header = h.readUIntLE(this.next!, 3)
      const type = (header >> 1) & 3
      if (type === 3) throw new Error('not a zstd frame (reserved block type)')
      this.next! += 3 + (type === 1 ? 1 : header >>> 3)
      if ((header & 1) === 1) this.end = this.next! + this.checksum
    }
    return this.end !== undefined && this.end <= h.length ? this.end : undefined
  }

  /** Takes the first `n` bytes held (a whole frame; valid until the next push) and starts on the next frame. */
  take (n: number): Buffer {
    const frame = this.held.subarray(0, n)
    this.held = this.held.subarray(n)
    this.next = undefined
    this.end = undefined
    return frame
  }
}

/** A stream decoder for zstd: zlib's where Node has it (any framing), else frame by frame (frameDecompressor). */
export function zstdDecompressor (chunkSize: number): Transform {
  return NATIVE_ZSTD ? native.createZstdDecompress!({ chunkSize }) : frameDecompressor()
}

/**
 * A stream decoder for Nodes without zlib zstd: takes the input frame by
 * frame, each decoded whole. A frame that takes more than MAX_FRAME_INPUT
 * compressed bytes, or decodes to more than `maxFrameOutput`, is an error:
 * this decoder is for streams of bounded frames, as frameCompressor writes.
 */
export function frameDecompressor (maxFrameOutput = MAX_FRAME_INPUT): Transform {
  const frames = new FrameScanner()
  return new Transform({
    transform (chunk: Buffer, _enc, done: TransformCallback) {
      try {
        if (chunk.length > 0) frames.push(chunk)
        for (let n = frames.complete(); n !== undefined; n = frames.complete()) {
          const out = decompressFrames(frames.take(n), maxFrameOutput)
          if (out.length > 0) this.push(out)
        }
        if (frames.total > MAX_FRAME_INPUT) throw new RangeError(`a zstd frame longer than ${MAX_FRAME_INPUT} bytes (this Node decodes zstd streams frame by frame)`)
        done()
      } catch (err) { done(err as Error) }
    },
    flush (done: TransformCallback) {
      done(frames.total === 0 ? null : new Error('unexpected end of the zstd stream (cut inside a frame)'))
    }
  })
}
