import { once, setMaxListeners } from 'node:events'
import type { ServerResponse } from 'node:http'
import { compressor, type Coding } from '../codings.js'
import { IntegrityError } from '../errors.js'
import { readFile } from '../ipfs/file-dag.js'
import { checkedNar } from '../nix/nar/check.js'
import { writeDrained } from './drain.js'
import { codingOfExtension } from './encode.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/** Parses a single `bytes=a-b` range against `size`; undefined for none (or one to ignore), throws for unsatisfiable. */
export function parseRange (header: string | undefined, size: number): { start: number, end: number } | undefined {
  if (header === undefined) return undefined
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return undefined // multiple or malformed ranges: serve it all
  if (m[1] !== '' && m[2] !== '' && Number(m[2]) < Number(m[1])) return undefined // invalid (RFC 9110 §14.1.1), so ignored (§14.2)
  let start: number, end: number
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]))
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (start >= size || start > end) throw new HttpError('ERR_RANGE', `range ${header} is outside the NAR's ${size} bytes`)
  return { start, end }
}

/**
 * `GET|HEAD /nar/<cid>.nar[.zst|.br|.gz]`: streams a NAR the index knows,
 * verifying every block against its CID and (on its first full read, or
 * before its first range) the whole NAR against its narinfo (structure,
 * NarHash). A failure after the headers went out aborts the connection, so
 * Nix sees a short read (or a cut compressed stream), never wrong bytes. With
 * an extension, the NAR is compressed as it is sent (no Range, no length).
 */
export async function serveNar ({ req, res, params, index, blocks, head }: RouteContext): Promise<void> {
  const coding = params[1] === undefined ? undefined : codingOfExtension(params[1])
  if (params[1] !== undefined && coding === undefined) throw new HttpError('ERR_NOT_FOUND', `NARs compressed as .${params[1]} are not served by this gateway (this Node cannot write that coding)`)
  const entry = await index?.nar(params[0]!)
  if (entry === undefined) throw new HttpError('ERR_NOT_FOUND', `no NAR ${params[0]!} in this cache`)
  blocks.touch?.(entry.cid, entry.narSize)
  // A compressed stream has no byte offsets to resume from: it is sent whole.
  const range = coding === undefined ? parseRange(req.headers.range, entry.narSize) : undefined
  const start = range?.start ?? 0
  const length = range === undefined ? entry.narSize : range.end - range.start + 1
  const headers: Record<string, string | number> = coding === undefined
    ? { 'content-type': 'application/x-nix-nar', 'content-length': length, 'accept-ranges': 'bytes' }
    : { 'content-type': 'application/x-nix-nar', 'accept-ranges': 'none' }
  if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${entry.narSize}`
  if (head) {
    res.writeHead(range === undefined ? 200 : 206, headers)
    res.end()
    return
  }
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal) // shared by the read-ahead and the prefetch
  res.on('close', () => abort.abort())
  const what = `NAR ${entry.cid.toString()}`
  // A NAR not held locally is pulled as one stream from a peer while it is read (whole reads, and the check before a range).
  if (range === undefined || entry.verified !== true) blocks.prefetch?.(entry.cid, abort.signal).catch(() => {})
  // A range is never a NAR's first, unchecked read (Nix resumes cut downloads with one): the whole NAR is checked first.
  if (range !== undefined && entry.verified !== true) {
    for await (const _ of checkedNar(readFile(blocks, entry.cid, { signal: abort.signal }), entry, what)) { /* checked, not sent */ }
    if (entry.narHash !== undefined) entry.verified = true
  }
  const source = readFile(blocks, entry.cid, { offset: start, length, signal: abort.signal })
  // A NAR's first full read is checked against its narinfo: structure, size, NarHash (once a narinfo named it).
  const verify = range === undefined && entry.verified !== true
  const chunks = heldBack((verify ? checkedNar(source, entry, what) : source)[Symbol.asyncIterator](), length, what)
  // Read the first block before committing to a status, so early failures get a proper error response.
  const first = await chunks.next()
  res.writeHead(range === undefined ? 200 : 206, headers)
  try {
    if (coding === undefined) {
      // Every chunk goes out before the next is read, so a client that stops reading holds one.
      for (let next = first; next.done !== true; next = await chunks.next()) await writeDrained(res, next.value)
    } else {
      await sendCompressed(res, coding, first, chunks)
    }
    if (verify && entry.narHash !== undefined) entry.verified = true
    res.end()
  } catch (err) {
    res.destroy(err as Error)
    throw err
  }
}

/**
 * The chunks of `source`, the one completing `length` bytes held back until
 * the source has ended (so until the whole NAR has verified): a complete
 * response is a correct one. Throws IntegrityError for any other length.
 */
async function * heldBack (source: AsyncIterator<Uint8Array>, length: number, what: string): AsyncGenerator<Uint8Array> {
  let held: Uint8Array | undefined
  let sent = 0
  for (let next = await source.next(); next.done !== true; next = await source.next()) {
    sent += next.value.length
    if (sent < length) yield next.value
    else held ??= next.value // bytes beyond `length` fail the check below
  }
  if (sent !== length) throw new IntegrityError(`${what} has ${sent} bytes, its narinfo says ${length}`)
  if (held !== undefined) yield held
}

/** Compresses `first` and the rest of `chunks` with `coding` into `res`, at the pace the client reads. */
async function sendCompressed (res: ServerResponse, coding: Coding, first: IteratorResult<Uint8Array>, chunks: AsyncIterator<Uint8Array>): Promise<void> {
  const z = compressor(coding)
  const sending = (async () => { for await (const piece of z) await writeDrained(res, piece as Uint8Array) })()
  sending.catch(() => {}) // awaited below; a client gone early rejects it first
  try {
    for (let next = first; next.done !== true; next = await chunks.next()) {
      if (!z.write(next.value)) await Promise.race([once(z, 'drain'), sending])
    }
    z.end()
    await sending
  } finally {
    z.destroy()
  }
}
