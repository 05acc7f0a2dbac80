import { setMaxListeners } from 'node:events'
import { IntegrityError } from '../errors.js'
import { readFile } from '../ipfs/file-dag.js'
import { checkedNar } from '../nix/nar/check.js'
import { writeDrained } from './drain.js'
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
 * `GET|HEAD /nar/<cid>.nar`: streams a NAR the index knows, verifying every
 * block against its CID and (on its first full read, or before its first
 * range) the whole NAR against its narinfo (structure, NarHash). A failure after
 * the headers went out aborts the connection, so Nix sees a short read, never
 * wrong bytes.
 */
export async function serveNar ({ req, res, params, index, blocks, head }: RouteContext): Promise<void> {
  const entry = await index?.nar(params[0]!)
  if (entry === undefined) throw new HttpError('ERR_NOT_FOUND', `no NAR ${params[0]!} in this cache`)
  blocks.touch?.(entry.cid, entry.narSize)
  const range = parseRange(req.headers.range, entry.narSize)
  const start = range?.start ?? 0
  const length = range === undefined ? entry.narSize : range.end - range.start + 1
  const headers: Record<string, string | number> = {
    'content-type': 'application/x-nix-nar',
    'content-length': length,
    'accept-ranges': 'bytes'
  }
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
  const chunks = (verify ? checkedNar(source, entry, what) : source)[Symbol.asyncIterator]()
  // Read the first block before committing to a status, so early failures get a proper error response.
  let next = await chunks.next()
  res.writeHead(range === undefined ? 200 : 206, headers)
  // The chunk that completes the response is held back until the whole NAR has verified: a complete response is a
  // correct one. Every other chunk goes out before the next is read, so a client that stops reading holds one.
  let held: Uint8Array | undefined
  let sent = 0
  try {
    while (next.done !== true) {
      sent += next.value.length
      if (sent < length) await writeDrained(res, next.value)
      else held ??= next.value // bytes beyond `length` fail the check below
      next = await chunks.next()
    }
    if (sent !== length) throw new IntegrityError(`NAR ${entry.cid.toString()} has ${sent} bytes, its narinfo says ${length}`)
    if (verify && entry.narHash !== undefined) entry.verified = true
    res.end(held)
  } catch (err) {
    res.destroy(err as Error)
    throw err
  }
}
