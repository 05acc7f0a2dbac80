import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import { collectAtMost } from '../bytes.js'
import { IntegrityError } from '../errors.js'
import { DAG_WIDTH } from '../constants.js'
import { DAG_PB_CODE, RAW_CODE, cidOf, getVerified, type BlockGetter, type BlockPutter } from './block.js'
import type { Chunker } from './chunker.js'

/** A built node: its CID, the file bytes below it, and its cumulative DAG size (Tsize). */
interface Built { cid: CID, fileSize: number, tsize: number }

/** The root of an imported byte stream. */
export interface ImportResult {
  cid: CID
  /** bytes of content */
  size: number
  /** cumulative size of the DAG (what a directory link to it records as Tsize) */
  tsize: number
}

async function putFileNode (blocks: BlockPutter, children: Built[]): Promise<Built> {
  const unixfs = new UnixFS({ type: 'file' })
  for (const c of children) unixfs.addBlockSize(BigInt(c.fileSize))
  const bytes = dagPb.encode(dagPb.prepare({
    Data: unixfs.marshal(),
    Links: children.map(c => ({ Name: '', Tsize: c.tsize, Hash: c.cid }))
  }))
  const cid = cidOf(DAG_PB_CODE, bytes)
  await blocks.put(cid, bytes)
  return {
    cid,
    fileSize: children.reduce((n, c) => n + c.fileSize, 0),
    tsize: children.reduce((n, c) => n + c.tsize, bytes.length)
  }
}

/**
 * Imports a byte stream as a UnixFS file: CIDv1, raw leaves, sha2-256, a
 * balanced DAG of `width` links per node. Gives the same CID as
 * ipfs-unixfs-importer with the same chunker and `layout: balanced`.
 */
export async function importFile (blocks: BlockPutter, source: AsyncIterable<Uint8Array>, chunker: Chunker, width = DAG_WIDTH): Promise<ImportResult> {
  // levels[i] holds finished nodes of height i not yet given a parent.
  const levels: Built[][] = [[]]
  const add = async (level: number, node: Built): Promise<void> => {
    const row = (levels[level] ??= [])
    row.push(node)
    if (row.length > width) {
      // A full row of `width` gets its parent once one more sibling proves it is not the last.
      const full = row.splice(0, width)
      await add(level + 1, await putFileNode(blocks, full))
    }
  }
  let size = 0
  for await (const chunk of chunker(source)) {
    const cid = cidOf(RAW_CODE, chunk)
    await blocks.put(cid, chunk)
    size += chunk.length
    await add(0, { cid, fileSize: chunk.length, tsize: chunk.length })
  }
  if (size === 0) {
    const cid = cidOf(RAW_CODE, new Uint8Array(0))
    await blocks.put(cid, new Uint8Array(0))
    return { cid, size: 0, tsize: 0 }
  }
  // Close the tree bottom-up: each level's leftovers become one parent, until one root remains.
  for (let level = 0; ; level++) {
    const row = levels[level] ?? []
    const above = levels.slice(level + 1).some(r => r.length > 0)
    if (!above && row.length === 1) return { cid: row[0]!.cid, size, tsize: row[0]!.tsize }
    if (row.length > 0) await add(level + 1, await putFileNode(blocks, row.splice(0)))
  }
}

/** Leaf blocks read ahead of the consumer. */
const READ_AHEAD = 16

/**
 * Bytes of leaves read ahead (fetched, not yet taken) across all reads of this
 * process at once. A consumer that stops taking bytes (a client that never
 * reads its response) keeps what was read ahead for it; without a shared
 * bound thousands of them held 16 blocks each. Beyond it reads go on without
 * reading ahead: one block at a time, as the consumer asks.
 */
const READ_AHEAD_BUDGET = 32 * 1024 * 1024
let readAheadBytes = 0

/** Options for reading part of a file. */
export interface ReadOptions {
  offset?: number
  length?: number
  signal?: AbortSignal
}

/**
 * Streams the bytes of a UnixFS file (raw leaves or dag-pb), optionally a
 * byte range of it. Every block is checked against its CID before its bytes
 * are yielded, so corrupt blocks raise `IntegrityError`, never wrong bytes.
 */
export async function * readFile (blocks: BlockGetter, cid: CID, options: ReadOptions = {}): AsyncGenerator<Uint8Array> {
  const start = options.offset ?? 0
  const end = options.length === undefined ? Infinity : start + options.length
  yield * readRange(blocks, cid, start, end, 0, options.signal)
}

async function * readRange (blocks: BlockGetter, cid: CID, start: number, end: number, base: number, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
  const bytes = await getVerified(blocks, cid, { signal })
  if (cid.code === RAW_CODE) {
    const from = Math.max(0, start - base)
    const to = Math.min(bytes.length, end - base)
    if (to > from) yield from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to)
    return
  }
  if (cid.code !== DAG_PB_CODE) throw new IntegrityError(`block ${cid.toString()} is neither raw nor dag-pb`)
  const node = dagPb.decode(bytes)
  const unixfs = node.Data === undefined ? undefined : UnixFS.unmarshal(node.Data)
  if (unixfs === undefined || (unixfs.type !== 'file' && unixfs.type !== 'raw')) throw new IntegrityError(`block ${cid.toString()} is not a UnixFS file node`)
  let pos = base
  if (unixfs.data !== undefined && unixfs.data.length > 0) {
    const d = unixfs.data
    const from = Math.max(0, start - pos)
    const to = Math.min(d.length, end - pos)
    if (to > from) yield d.subarray(from, to)
    pos += d.length
  }
  if (unixfs.blockSizes.length !== node.Links.length) throw new IntegrityError(`block ${cid.toString()} has ${node.Links.length} links but ${unixfs.blockSizes.length} block sizes`)
  // Children inside the range, with their offsets.
  const wanted: Array<{ cid: CID, base: number, size: number }> = []
  for (let i = 0; i < node.Links.length && pos < end; i++) {
    const childSize = Number(unixfs.blockSizes[i])
    if (pos + childSize > start) wanted.push({ cid: node.Links[i]!.Hash, base: pos, size: childSize })
    pos += childSize
  }
  // Raw leaves are fetched up to READ_AHEAD at a time, so storage reads and hashing overlap; those beyond
  // the one asked for now take their declared size from the shared budget until they are taken.
  const ahead: Array<Promise<Uint8Array> | undefined> = []
  const reserved: number[] = []
  const release = (i: number): void => { readAheadBytes -= reserved[i] ?? 0; reserved[i] = 0 }
  const prefetch = (i: number, now: boolean): boolean => {
    const child = wanted[i]
    if (child === undefined || child.cid.code !== RAW_CODE || ahead[i] !== undefined) return true
    if (!now) {
      if (readAheadBytes + child.size > READ_AHEAD_BUDGET) return false
      readAheadBytes += child.size
      reserved[i] = child.size
    }
    const p = getVerified(blocks, child.cid, { signal })
    p.catch(() => {}) // observed when awaited in order below
    ahead[i] = p
    return true
  }
  try {
    for (let i = 0; i < wanted.length; i++) {
      prefetch(i, true)
      for (let j = i + 1; j < i + READ_AHEAD && prefetch(j, false); j++) { /* read ahead while the budget allows */ }
      const child = wanted[i]!
      const leaf = ahead[i]
      ahead[i] = undefined
      release(i)
      if (leaf === undefined) {
        yield * readRange(blocks, child.cid, start, end, child.base, signal)
        continue
      }
      const bytes = await leaf
      if (bytes.length !== child.size) throw new IntegrityError(`block ${child.cid.toString()} has ${bytes.length} bytes where its parent ${cid.toString()} says ${child.size}`)
      const from = Math.max(0, start - child.base)
      const to = Math.min(bytes.length, end - child.base)
      if (to > from) yield from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to)
    }
  } finally {
    for (let i = 0; i < reserved.length; i++) release(i)
    await Promise.allSettled(ahead.filter(p => p !== undefined))
  }
}

/** The size a dag-pb UnixFS node says its file has (0 for a node that says nothing: reading it fails then). */
function declaredSize (node: Uint8Array): number {
  try {
    const data = dagPb.decode(node).Data
    return data === undefined ? 0 : Number(UnixFS.unmarshal(data).fileSize())
  } catch {
    return 0
  }
}

/** The whole of a small file; one larger than `max` bytes is refused (IntegrityError) before it is held in memory. */
export async function readSmallFile (blocks: BlockGetter, cid: CID, max: number, what = 'file'): Promise<Uint8Array> {
  const tooLarge = (): IntegrityError => new IntegrityError(`${what} ${cid.toString()} is larger than ${max} bytes; refusing it`)
  // One that says so is refused before any more of its blocks is fetched.
  if (cid.code === DAG_PB_CODE && declaredSize(await getVerified(blocks, cid)) > max) throw tooLarge()
  return await collectAtMost(readFile(blocks, cid), max, tooLarge)
}
