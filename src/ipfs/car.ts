import * as dagCbor from '@ipld/dag-cbor'
import { varint } from 'multiformats'
import { CID } from 'multiformats/cid'
import { CarFormatError, IntegrityError } from '../errors.js'
import { checkBlock } from './block.js'

// CARv1: https://ipld.io/specs/transport/car/carv1/
// varint(len(header)) dag-cbor{roots, version: 1}, then per block: varint(len(cid) + len(data)) cid data.

/** One block of a CAR. */
export interface CarBlock {
  cid: CID
  bytes: Uint8Array
}

/** Largest block accepted by default: the limit bitswap and trustless gateways keep to. */
export const DEFAULT_MAX_BLOCK_BYTES = 2 * 1024 * 1024
/** Largest header accepted by default: room for about 25,000 roots. */
export const DEFAULT_MAX_HEADER_BYTES = 1024 * 1024
/** Room for the CID in front of a block's data (a sha2-256 CIDv1 takes 36 to 44 bytes). */
const MAX_CID_BYTES = 128
/** Longest varint the multiformats unsigned-varint spec allows. */
const MAX_VARINT_BYTES = 9

function varintBytes (n: number): Uint8Array {
  const out = new Uint8Array(varint.encodingLength(n))
  varint.encodeTo(n, out)
  return out
}

/** A CARv1's header naming `roots`. */
export function carHeader (roots: CID[]): Buffer {
  const header = dagCbor.encode({ version: 1, roots })
  return Buffer.concat([varintBytes(header.length), header])
}

/** What precedes a block's `length` bytes of data in a CAR: the section's length and the CID. */
export function sectionPrefix (cid: CID, length: number): Buffer {
  return Buffer.concat([varintBytes(cid.bytes.length + length), cid.bytes])
}

/** Streams a CARv1 with `roots` and `blocks` (written in the order given, not checked). */
export async function * carBytes (roots: CID[], blocks: AsyncIterable<CarBlock> | Iterable<CarBlock>): AsyncGenerator<Uint8Array> {
  yield carHeader(roots)
  for await (const { cid, bytes } of blocks) {
    yield sectionPrefix(cid, bytes.length)
    yield bytes
  }
}

/** Limits for reading a CAR from an untrusted source. */
export interface CarReadOptions {
  /** largest block data accepted; a section declaring more is refused before it is read. @default 2 MiB */
  maxBlockBytes?: number
  /** largest header accepted. @default 1 MiB */
  maxHeaderBytes?: number
}

/** A CAR being read: the roots as soon as the header is in, then the blocks. */
export interface CarStream {
  /** the header's roots; rejects with CarFormatError (the same error `blocks` throws) */
  roots: Promise<CID[]>
  /**
   * Every block in order, each checked against its CID (IntegrityError) before
   * it is yielded. Ends cleanly only at a section boundary. Breaking out of it
   * closes the source. Block bytes may share memory with the source's chunks.
   */
  blocks: AsyncGenerator<CarBlock, void, undefined>
}

/**
 * Reads a CARv1 as it arrives, from chunks split anywhere: memory stays within
 * one block (plus one source chunk), every malformed input raises
 * CarFormatError (with its byte offset) or IntegrityError, and the header is
 * read as soon as this is called.
 */
export function readCar (source: AsyncIterable<Uint8Array>, options: CarReadOptions = {}): CarStream {
  const input = new ByteInput(source[Symbol.asyncIterator]())
  const roots = readHeader(input, options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES)
  // A caller that only iterates `blocks` sees the error there; it must not also surface as unhandled.
  roots.catch(() => {})
  return { roots, blocks: readSections(input, roots, options.maxBlockBytes ?? DEFAULT_MAX_BLOCK_BYTES) }
}

async function readHeader (input: ByteInput, maxHeaderBytes: number): Promise<CID[]> {
  const length = await readVarint(input, 'header length')
  if (length === undefined) throw new CarFormatError('empty input: a CAR starts with a header', 0)
  if (length === 0) throw new CarFormatError('header length is 0', 0)
  if (length > maxHeaderBytes) throw new CarFormatError(`header declares ${length} bytes; at most ${maxHeaderBytes} are accepted`, 0)
  const at = input.offset
  const bytes = await input.bytes(length)
  if (bytes.length < length) throw new CarFormatError(`input ends inside the header (${length} bytes declared, ${bytes.length} present)`, at + bytes.length)
  let header: unknown
  try {
    header = dagCbor.decode(bytes)
  } catch (err) {
    throw new CarFormatError(`header is not valid dag-cbor: ${(err as Error).message}`, at)
  }
  return rootsOf(header, at)
}

const describeValue = (v: unknown): string => typeof v === 'number' || typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'a list' : typeof v

/** The roots of a decoded header that must be exactly `{version: 1, roots: [CID…]}`. */
function rootsOf (header: unknown, at: number): CID[] {
  if (typeof header !== 'object' || header === null || Array.isArray(header) || header instanceof Uint8Array || CID.asCID(header) !== null) {
    throw new CarFormatError(`header is ${describeValue(header)}, not a map {version, roots}`, at)
  }
  const fields = header as Record<string, unknown>
  const extra = Object.keys(fields).filter(k => k !== 'version' && k !== 'roots')
  if (extra.length > 0) throw new CarFormatError(`header has unexpected field ${JSON.stringify(extra[0])}`, at)
  if (fields.version !== 1) throw new CarFormatError(`header version is ${describeValue(fields.version)}; only CARv1 (version 1) is read`, at)
  const roots = fields.roots
  if (!Array.isArray(roots)) throw new CarFormatError(`header roots is ${describeValue(roots)}, not a list of CIDs`, at)
  return roots.map((r, i) => {
    const cid = CID.asCID(r)
    if (cid === null) throw new CarFormatError(`header root ${i} is ${describeValue(r)}, not a CID`, at)
    return cid
  })
}

async function * readSections (input: ByteInput, header: Promise<CID[]>, maxBlockBytes: number): AsyncGenerator<CarBlock, void, undefined> {
  try {
    await header
    for (;;) {
      const start = input.offset
      const length = await readVarint(input, 'section length')
      if (length === undefined) return
      if (length === 0) throw new CarFormatError('empty section (a section holds at least a CID)', start)
      if (length > maxBlockBytes + MAX_CID_BYTES) throw new CarFormatError(`section declares ${length} bytes; blocks over ${maxBlockBytes} bytes are refused`, start)
      const at = input.offset
      const body = await input.bytes(length)
      if (body.length < length) throw new CarFormatError(`input ends inside the section starting at byte ${start} (${length} bytes declared, ${body.length} present)`, at + body.length)
      let cid: CID
      let bytes: Uint8Array
      try {
        [cid, bytes] = CID.decodeFirst(body)
      } catch (err) {
        throw new CarFormatError(`section does not start with a valid CID: ${(err as Error).message}`, at)
      }
      if (bytes.length > maxBlockBytes) throw new CarFormatError(`block ${cid.toString()} has ${bytes.length} bytes; blocks over ${maxBlockBytes} bytes are refused`, start)
      try {
        checkBlock(cid, bytes)
      } catch (err) {
        throw new IntegrityError(`${(err as Error).message} (CAR section at byte ${start})`, cid.toString())
      }
      yield { cid, bytes }
    }
  } finally {
    await input.close()
  }
}

/** Reads an unsigned varint (minimal, at most 9 bytes, a safe integer); undefined when the input ends before it starts. */
async function readVarint (input: ByteInput, what: string): Promise<number | undefined> {
  const start = input.offset
  let value = 0
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    const b = await input.byte()
    if (b < 0) {
      if (i === 0) return undefined
      throw new CarFormatError(`input ends inside the ${what} varint`, input.offset)
    }
    value += (b & 0x7f) * 2 ** (7 * i)
    if (b < 0x80) {
      if (b === 0 && i > 0) throw new CarFormatError(`${what} varint is not minimally encoded`, start)
      if (!Number.isSafeInteger(value)) throw new CarFormatError(`${what} varint is too large`, start)
      return value
    }
  }
  throw new CarFormatError(`${what} varint is longer than ${MAX_VARINT_BYTES} bytes`, start)
}

const EMPTY: Uint8Array = new Uint8Array(0)

/** Pulls bytes from chunks of any size, holding at most the current chunk. */
class ByteInput {
  /** offset in the whole input of the next unread byte */
  offset = 0
  private chunk = EMPTY
  private pos = 0
  private done = false

  constructor (private readonly source: AsyncIterator<Uint8Array>) {}

  /** Makes the next non-empty chunk current; false at the end of the input. */
  private async pull (): Promise<boolean> {
    while (!this.done) {
      const r = await this.source.next()
      if (r.done === true) { this.done = true; break }
      if (r.value.length > 0) { this.chunk = r.value; this.pos = 0; return true }
    }
    this.chunk = EMPTY
    this.pos = 0
    return false
  }

  /** The next byte, or -1 at the end of the input. */
  async byte (): Promise<number> {
    if (this.pos === this.chunk.length && !await this.pull()) return -1
    this.offset++
    return this.chunk[this.pos++]!
  }

  /** The next `n` bytes (n is bounded by the caller); fewer only at the end of the input. */
  async bytes (n: number): Promise<Uint8Array> {
    // A block that starts a chunk (its data a zstd frame of its own, say) is taken whole from it, not copied.
    if (this.pos === this.chunk.length && n > 0) await this.pull()
    if (this.chunk.length - this.pos >= n) {
      const out = this.chunk.subarray(this.pos, this.pos + n)
      this.pos += n
      this.offset += n
      return out
    }
    // Spans chunks: copied as they come, so tiny chunks never pile up in a list.
    const out = new Uint8Array(n)
    let filled = 0
    while (filled < n) {
      if (this.pos === this.chunk.length && !await this.pull()) return out.subarray(0, filled)
      const take = Math.min(n - filled, this.chunk.length - this.pos)
      out.set(this.chunk.subarray(this.pos, this.pos + take), filled)
      this.pos += take
      this.offset += take
      filled += take
    }
    return out
  }

  /** Closes the source early (a no-op once it has ended). */
  async close (): Promise<void> {
    if (this.done) return
    this.done = true
    await this.source.return?.()
  }
}
