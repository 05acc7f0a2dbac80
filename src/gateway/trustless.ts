import { createHash } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import type { OutgoingHttpHeaders } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { CID } from 'multiformats/cid'
import { getVerified } from '../ipfs/block.js'
import { carBytes, type CarBlock } from '../ipfs/car.js'
import { walkDag } from '../ipfs/dag.js'
import { fileSizeOf, walkEntity, type ByteRange } from '../ipfs/entity.js'
import { resolvePath } from '../ipfs/hamt.js'
import { recordCacheSeconds } from '../ipfs/ipns.js'
import { CODINGS, type Coding } from '../codings.js'
import { compressedIfPays, encodedStream, MIN_RATIO, wantedCoding, zstdCarFrames } from './encode.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

const RAW = 'application/vnd.ipld.raw'
const CAR = 'application/vnd.ipld.car'
const IPNS_RECORD = 'application/vnd.ipfs.ipns-record'
const SCOPES = new Set(['all', 'entity', 'block'])

/** The response asked for by `?format=` or the Accept header, and the CAR version (`car-version=` or Accept's `version=`; 1 when unsaid). */
function wantedOf (ctx: RouteContext, query: URLSearchParams): { format?: string, carVersion: string } {
  const accepted = (ctx.req.headers.accept ?? '').split(',').map(item => {
    const [type, ...params] = item.split(';').map(s => s.trim())
    return { type: type!.toLowerCase(), version: params.map(p => /^version=(.*)$/i.exec(p)?.[1]).find(v => v !== undefined) }
  })
  const cars = accepted.filter(a => a.type === CAR)
  // A client that accepts several CAR versions gets version 1 when it is one of them.
  const car = cars.find(a => a.version === undefined || a.version === '1') ?? cars[0]
  const carVersion = query.get('car-version') ?? car?.version ?? '1'
  const format = query.get('format') ?? accepted.map(a => a.type === RAW ? 'raw' : a.type === CAR ? 'car' : a.type === IPNS_RECORD ? 'ipns-record' : undefined).find(f => f !== undefined)
  return { format, carVersion }
}

/** True when an If-None-Match header names `etag`, one of its compressed variants (`"….br"`), or is `*`: the client already holds this response. */
function notModified (ctx: RouteContext, etag: string): boolean {
  const header = ctx.req.headers['if-none-match']
  if (header === undefined) return false
  const variants = new Set([etag, ...CODINGS.map(c => etag.replace(/"$/, `.${c}"`))])
  return header.split(',').map(t => t.trim().replace(/^W\//, '')).some(t => t === '*' || variants.has(t))
}

/** Answers 304 when the client holds the response already; true when it did. */
function answeredNotModified (ctx: RouteContext, headers: OutgoingHttpHeaders & { etag: string }): boolean {
  if (!notModified(ctx, headers.etag)) return false
  ctx.res.writeHead(304, headers)
  ctx.res.end()
  return true
}

/** The path segments after the CID, decoded. */
function namesOf (path: string | undefined): string[] {
  try {
    return (path ?? '').split('/').filter(s => s !== '').map(decodeURIComponent)
  } catch {
    throw new HttpError('ERR_BAD_REQUEST', `${path ?? ''} is not a valid path`)
  }
}

/** Bytes `from:to` of `entity-bytes` in a file of `size` bytes (inclusive `to`, `*` for the end, negatives from the end). */
function byteRangeOf (text: string, size: number): ByteRange {
  const m = /^(-?\d+):(-?\d+|\*)$/.exec(text)
  if (m === null) throw new HttpError('ERR_BAD_REQUEST', `entity-bytes=${text} is not from:to (integers, to may be *; negatives count from the end)`)
  const from = Number(m[1])
  const start = from < 0 ? Math.max(0, size + from) : from
  const to = m[2] === '*' ? size - 1 : Number(m[2]) < 0 ? size + Number(m[2]) : Number(m[2])
  if (start > 0 && start >= size) throw new HttpError('ERR_BAD_REQUEST', `entity-bytes=${text} starts past the end of the ${size}-byte file`)
  return { start, end: Math.max(start, Math.min(size, to + 1)) }
}

/**
 * `GET /ipfs/<cid>[/<path>]?format=raw|car` (IPFS trustless gateway): one
 * block, or a CARv1 (order=dfs, dups=n) of the blocks on the way through
 * `path` then the DAG at its end as `dag-scope` (all, entity, block) and
 * `entity-bytes` say. Only blocks this node holds are served — it never
 * fetches on a peer's behalf — and each is checked against its CID on the way out.
 */
export async function serveIpfs (ctx: RouteContext): Promise<void> {
  const { res, params, local, head } = ctx
  let cid: CID
  try { cid = CID.parse(params[0]!) } catch { throw new HttpError('ERR_BAD_REQUEST', `${params[0]!} is not a CID`) }
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams
  const { format, carVersion } = wantedOf(ctx, query)
  if (format !== 'raw' && format !== 'car') throw new HttpError('ERR_NOT_ACCEPTABLE', 'this is a trustless gateway: ask for ?format=raw (one block) or ?format=car (a DAG)')
  if (format === 'car' && carVersion !== '1') throw new HttpError('ERR_NOT_ACCEPTABLE', `CAR version ${carVersion} is not served here; ask for application/vnd.ipld.car; version=1`)
  const names = namesOf(params[1])
  if (format === 'raw' && names.length > 0) throw new HttpError('ERR_BAD_REQUEST', 'a raw block has no path: ask for /ipfs/<cid>?format=raw, or for the path with ?format=car')
  if (!local.has(cid)) throw new HttpError('ERR_NOT_FOUND', `block ${cid.toString()} is not on this node`)
  const common = { 'cache-control': 'public, max-age=29030400, immutable', 'x-content-type-options': 'nosniff', vary: 'Accept, Accept-Encoding' }
  // Compressed only when the client asks (Accept-Encoding) and it pays; HEAD answers as for an uncompressed GET.
  const coding = head ? undefined : wantedCoding(ctx.req)
  if (format === 'raw') {
    const headers = { ...common, etag: `"${cid.toString()}.raw"`, 'content-disposition': `attachment; filename="${cid.toString()}.bin"` }
    if (answeredNotModified(ctx, headers)) return
    const bytes = await getVerified(local, cid)
    const packed = coding === undefined ? undefined : await packedBlock(ctx, coding, cid, bytes)
    if (packed !== undefined) {
      // Each coding of a response is its own representation, with its own ETag (RFC 9110 §8.8.3); a frame compressed ahead is another.
      res.writeHead(200, { ...headers, etag: `"${cid.toString()}.raw.${coding!}${packed.ahead ? AHEAD : ''}"`, 'content-type': RAW, 'content-encoding': coding!, 'content-length': packed.bytes.length })
      res.end(packed.bytes)
      return
    }
    res.writeHead(200, { ...headers, 'content-type': RAW, 'content-length': bytes.length })
    res.end(head ? undefined : bytes)
    return
  }
  const entityBytes = query.get('entity-bytes')
  const scope = entityBytes !== null ? 'entity' : query.get('dag-scope') ?? 'all'
  if (!SCOPES.has(scope)) throw new HttpError('ERR_BAD_REQUEST', `dag-scope=${scope} is not one of all, entity, block`)
  // One ETag per distinct CAR: the path and what is taken at its end.
  const variant = createHash('sha256').update(JSON.stringify([names, scope, entityBytes])).digest('base64url').slice(0, 16)
  const headers = { ...common, etag: `"${cid.toString()}.car.${variant}"`, 'content-disposition': `attachment; filename="${cid.toString()}.car"` }
  if (answeredNotModified(ctx, headers)) return
  const resolved = await resolvePath(local, cid, names)
  if (resolved === undefined) throw new HttpError('ERR_NOT_FOUND', `${cid.toString()}/${names.join('/')} does not exist on this node`)
  let range: ByteRange | undefined
  if (entityBytes !== null) {
    // Only a file has bytes to take a range of; for anything else the parameter means dag-scope=entity.
    const size = await fileSizeOf(local, resolved.cid)
    if (size !== undefined) range = byteRangeOf(entityBytes, size)
  }
  const type = `${CAR}; version=1; order=dfs; dups=n`
  if (head) { res.writeHead(200, { ...headers, 'content-type': type }); res.end(); return }
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal) // shared by the walk's read-ahead
  res.on('close', () => abort.abort())
  const blocks = pathThenTarget(local, resolved, scope, range, abort.signal)
  const precompressed = ctx.precompressed
  if (coding === 'zstd' && precompressed !== undefined && await precompressed.has(resolved.cid)) {
    // Compressed ahead (nixipfs precompress): its frames go out as they are.
    res.writeHead(200, { ...headers, etag: headers.etag.replace(/"$/, `.${coding}${AHEAD}"`), 'content-type': type, 'content-encoding': coding })
    await pipeline(Readable.from(zstdCarFrames([cid], blocks, async c => await precompressed.frame(c))), res)
    return
  }
  const car = carBytes([cid], blocks)
  if (coding === undefined) {
    res.writeHead(200, { ...headers, 'content-type': type })
    await pipeline(Readable.from(car), res)
    return
  }
  // The first blocks decide: a DAG of already-compressed data goes out as it is.
  const encoded = await encodedStream(coding, car)
  const etag = encoded.coding === undefined ? headers.etag : headers.etag.replace(/"$/, `.${encoded.coding}"`)
  res.writeHead(200, { ...headers, etag, 'content-type': type, ...(encoded.coding === undefined ? {} : { 'content-encoding': encoded.coding }) })
  await pipeline(encoded.body, res)
}

/** What the ETag of a response made of frames compressed ahead ends in: other bytes than the same coding made on the fly. */
const AHEAD = '.ahead'

/** A block's bytes compressed with `coding` if that saves MIN_RATIO: its frame compressed ahead (`ahead`) when there is one, else compressed now. */
async function packedBlock (ctx: RouteContext, coding: Coding, cid: CID, bytes: Uint8Array): Promise<{ bytes: Uint8Array, ahead: boolean } | undefined> {
  const frame = coding === 'zstd' ? await ctx.precompressed?.frame(cid) : undefined
  if (frame !== undefined) return frame.length * MIN_RATIO <= bytes.length ? { bytes: frame, ahead: true } : undefined
  const packed = await compressedIfPays(coding, bytes)
  return packed === undefined ? undefined : { bytes: packed, ahead: false }
}

/** The blocks on the way through the path, then the target's as `scope` says, each block once (dups=n). */
async function * pathThenTarget (local: RouteContext['local'], { cid, via }: { cid: CID, via: CarBlock[] }, scope: string, range: ByteRange | undefined, signal: AbortSignal): AsyncGenerator<CarBlock> {
  const sent = new Set<string>()
  const visited = { has: (c: CID) => sent.has(c.toString()), add: (c: CID) => { sent.add(c.toString()) } }
  for (const block of via) { visited.add(block.cid); yield block }
  if (scope === 'all') {
    // Subtrees this node lacks are left out: the CAR is what it can vouch for, and the client fetches the rest elsewhere.
    yield * walkDag(local, cid, { signal, visited, onMissing: () => {} })
    return
  }
  const blocks = scope === 'block' ? [{ cid, bytes: await getVerified(local, cid, { signal }) }] : walkEntity(local, cid, { range, signal })
  for await (const block of blocks) {
    if (visited.has(block.cid)) continue
    visited.add(block.cid)
    yield block
  }
}

/** `GET /ipns/<name>?format=ipns-record`: the newest signed record this node holds for the name, as signed, cacheable for the record's TTL. */
export async function serveIpns (ctx: RouteContext): Promise<void> {
  const { res, params, head } = ctx
  if (wantedOf(ctx, new URL(ctx.req.url ?? '/', 'http://x').searchParams).format !== 'ipns-record') throw new HttpError('ERR_NOT_ACCEPTABLE', 'this is a trustless gateway: ask for ?format=ipns-record')
  const bytes = await ctx.record(params[0]!)
  if (bytes === undefined) throw new HttpError('ERR_NOT_FOUND', `no record for /ipns/${params[0]!} on this node`)
  res.writeHead(200, { 'content-type': IPNS_RECORD, 'content-length': bytes.length, 'cache-control': `public, max-age=${recordCacheSeconds(bytes)}`, 'x-content-type-options': 'nosniff', vary: 'Accept' })
  res.end(head ? undefined : bytes)
}
