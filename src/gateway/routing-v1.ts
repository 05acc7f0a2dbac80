import { createHash } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { base36 } from 'multiformats/bases/base36'
import { CID } from 'multiformats/cid'
import { NixipfsError } from '../errors.js'
import { recordTimes } from '../ipfs/ipns.js'
import type { PeerInfo, RoutingView } from '../net/routing-view.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

// Delegated Routing V1 HTTP API (https://specs.ipfs.tech/routing/http-routing-v1/), with IPIP-0513:
// "nothing found" is a 200 with no results, never a 404.

const JSON_TYPE = 'application/json'
const NDJSON = 'application/x-ndjson'
const IPNS_RECORD = 'application/vnd.ipfs.ipns-record'
/** The spec's limit for a JSON answer; NDJSON streams them all. */
const JSON_LIMIT = 100
/** An IPNS record is at most 10 KiB (IPNS spec). */
const MAX_RECORD_BYTES = 10 * 1024
/** A record's body must have come this long after its request head. */
const BODY_DEADLINE_MS = 5_000
/** Cache windows as the spec suggests: short for nothing found, longer for results; stale for the DHT's 48 h provider window. */
const FOUND_SECONDS = 300
const EMPTY_SECONDS = 15
const STALE_SECONDS = 48 * 3600
/** A record without a TTL is cached this long (the spec's default). */
const DEFAULT_RECORD_SECONDS = 60

const CORS = { 'access-control-allow-origin': '*', 'access-control-allow-methods': 'GET, PUT, OPTIONS' }

/** `/routing/v1/…`: providers, peers and IPNS records from the node's routing view. */
export async function serveRoutingV1 (ctx: RouteContext): Promise<void> {
  const { req, res } = ctx
  const method = req.method ?? 'GET'
  if (method === 'OPTIONS') {
    // CORS preflight: browsers may ask and PUT from any origin.
    res.writeHead(204, { ...CORS, 'access-control-allow-headers': 'Content-Type, Accept', 'access-control-max-age': '86400' })
    res.end()
    return
  }
  const routing = ctx.routing
  if (routing === undefined) throw new HttpError('ERR_NOT_IMPLEMENTED', 'this node does not answer routing requests')
  const [, kind, arg, ...more] = (ctx.params[0] ?? '').split('/')
  const read = method === 'GET' || method === 'HEAD'
  const single = arg !== undefined && arg !== '' && more.length === 0
  if (kind === 'providers' && read && single) return await servePeers(ctx, 'Providers', routing.providers(cidOf(arg), abortOnClose(ctx)))
  if (kind === 'peers' && read && single) return await servePeers(ctx, 'Peers', onePeer(routing, peerIdOf(arg), abortOnClose(ctx)))
  if (kind === 'ipns' && read && single) return await serveRecord(ctx, routing, nameOf(arg))
  if (kind === 'ipns' && method === 'PUT' && single) return await putRecord(ctx, routing, nameOf(arg))
  // The spec's other routes (provider and peer announcements, DHT walks) are not served here.
  if (kind === 'providers' || kind === 'peers' || kind === 'ipns' || kind === 'dht') throw new HttpError('ERR_NOT_IMPLEMENTED', `${method} ${new URL(req.url ?? '/', 'http://x').pathname} is not supported here`)
  throw new HttpError('ERR_BAD_REQUEST', `unknown routing path /${kind ?? ''}; this server answers /routing/v1/providers/{cid}, /routing/v1/peers/{peer-id} and /routing/v1/ipns/{name}`)
}

function cidOf (text: string): CID {
  try { return CID.parse(text) } catch { throw new HttpError('ERR_BAD_REQUEST', `${text} is not a CID`) }
}

/** A peer ID given as base58btc or as a CIDv1 (libp2p-key), as base58btc. */
function peerIdOf (text: string): string {
  try { return peerIdFromString(text).toString() } catch { throw new HttpError('ERR_BAD_REQUEST', `${text} is not a peer ID (12D3Koo… or a libp2p-key CID)`) }
}

/** An IPNS name given as a libp2p-key CIDv1 (base36 or base32), as base36 (k51…). */
function nameOf (text: string): string {
  try {
    const peer = peerIdFromString(text)
    if (peer.publicKey === undefined) throw new Error('no inline key')
    return peer.toCID().toString(base36)
  } catch {
    throw new HttpError('ERR_BAD_REQUEST', `${text} is not an IPNS name with an inline Ed25519 key (k51…)`)
  }
}

async function * onePeer (routing: RoutingView, id: string, signal: AbortSignal): AsyncGenerator<PeerInfo> {
  const peer = await routing.peer(id, signal)
  if (peer !== undefined) yield peer
}

/** Aborted when the client goes away, so a slow lookup stops with it. */
function abortOnClose (ctx: RouteContext): AbortSignal {
  const abort = new AbortController()
  ctx.res.once('close', () => abort.abort())
  return abort.signal
}

/** True when the Accept header asks for NDJSON (the spec: only then may a response stream). */
function wantsNdjson (ctx: RouteContext): boolean {
  return (ctx.req.headers.accept ?? '').split(',').some(item => {
    const [type, ...params] = item.split(';').map(s => s.trim().toLowerCase())
    return type === NDJSON && !params.some(p => /^q=0(\.0*)?$/.test(p))
  })
}

function cacheControl (found: boolean): string {
  return `public, max-age=${found ? FOUND_SECONDS : EMPTY_SECONDS}, stale-while-revalidate=${STALE_SECONDS}, stale-if-error=${STALE_SECONDS}`
}

/** The peer-schema object the spec defines (IDs as base58btc multihashes, which every client reads). */
function peerJson (peer: PeerInfo): { Schema: 'peer', ID: string, Addrs: string[], Protocols: string[] } {
  return { Schema: 'peer', ID: peer.id, Addrs: peer.addresses, Protocols: peer.protocols }
}

/** Providers or peers as JSON (at most 100) or, when asked for, as an NDJSON stream; IPIP-484 filters applied. */
async function servePeers (ctx: RouteContext, key: 'Providers' | 'Peers', peers: AsyncIterable<PeerInfo>): Promise<void> {
  const { res, head } = ctx
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams
  const filtered = filterPeers(peers, listOf(query.get('filter-addrs')), listOf(query.get('filter-protocols')))
  const common = { ...CORS, vary: 'Accept', 'last-modified': new Date().toUTCString() }
  if (wantsNdjson(ctx)) {
    // Headers go out with the first result, so the cache window can say whether there was one.
    let first = true
    for await (const peer of filtered) {
      if (first) { res.writeHead(200, { ...common, 'content-type': NDJSON, 'cache-control': cacheControl(true) }); first = false }
      if (head) break
      res.write(JSON.stringify(peerJson(peer)) + '\n')
    }
    if (first) res.writeHead(200, { ...common, 'content-type': NDJSON, 'cache-control': cacheControl(false) })
    res.end()
    return
  }
  const list: PeerInfo[] = []
  for await (const peer of filtered) {
    list.push(peer)
    if (list.length >= JSON_LIMIT) break
  }
  const body = JSON.stringify({ [key]: list.map(peerJson) })
  res.writeHead(200, { ...common, 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': cacheControl(list.length > 0) })
  res.end(head ? undefined : body)
}

/** A comma-separated query value as lowercase names, or undefined when absent. */
function listOf (value: string | null): string[] | undefined {
  return value === null ? undefined : value.split(',').map(s => s.trim().toLowerCase()).filter(s => s !== '')
}

/** IPIP-484: keep peers with a wanted transfer protocol, and of each peer only the addresses with a wanted transport. */
async function * filterPeers (peers: AsyncIterable<PeerInfo>, addrFilter: string[] | undefined, protocolFilter: string[] | undefined): AsyncGenerator<PeerInfo> {
  for await (const peer of peers) {
    if (protocolFilter !== undefined) {
      const protocols = peer.protocols.map(p => p.toLowerCase())
      const known = protocols.length > 0
      if (!(known ? protocols.some(p => protocolFilter.includes(p)) : protocolFilter.includes('unknown'))) continue
    }
    if (addrFilter === undefined) { yield peer; continue }
    if (peer.addresses.length === 0) { if (addrFilter.includes('unknown')) yield peer; continue }
    const addresses = peer.addresses.filter(a => addressPasses(a, addrFilter))
    if (addresses.length > 0) yield { ...peer, addresses }
  }
}

function addressPasses (address: string, filter: string[]): boolean {
  let names: string[]
  try { names = multiaddr(address).getComponents().map(c => c.name.toLowerCase()) } catch { return false }
  const positive = filter.filter(f => !f.startsWith('!') && f !== 'unknown')
  const negative = filter.filter(f => f.startsWith('!')).map(f => f.slice(1))
  if (negative.some(n => names.includes(n))) return false
  return positive.length === 0 || positive.some(p => names.includes(p))
}

/** `GET /routing/v1/ipns/{name}`: the newest valid record, cacheable for its TTL; no record is a 200 that is not a record (IPIP-0513). */
async function serveRecord (ctx: RouteContext, routing: RoutingView, name: string): Promise<void> {
  const { res, head } = ctx
  const accept = (ctx.req.headers.accept ?? '').toLowerCase()
  if (!accept.includes(IPNS_RECORD)) throw new HttpError('ERR_NOT_ACCEPTABLE', `ask for the record with Accept: ${IPNS_RECORD}`)
  const bytes = await routing.record(name, abortOnClose(ctx))
  const common = { ...CORS, vary: 'Accept', 'last-modified': new Date().toUTCString() }
  if (bytes === undefined) {
    const body = `no record for /ipns/${name} is known here\n`
    res.writeHead(200, { ...common, 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': cacheControl(false) })
    res.end(head ? undefined : body)
    return
  }
  const { ttlSeconds, validSeconds, validUntil } = recordTimes(bytes)
  const maxAge = Math.min(ttlSeconds > 0 ? ttlSeconds : DEFAULT_RECORD_SECONDS, validSeconds)
  res.writeHead(200, {
    ...common,
    'content-type': IPNS_RECORD,
    'content-length': bytes.length,
    etag: `"${createHash('sha256').update(bytes).digest('base64url')}"`,
    'cache-control': `public, max-age=${maxAge}, stale-while-revalidate=${validSeconds}, stale-if-error=${validSeconds}`,
    ...(validUntil === undefined ? {} : { expires: validUntil.toUTCString() }),
    'x-content-type-options': 'nosniff'
  })
  res.end(head ? undefined : bytes)
}

/** `PUT /routing/v1/ipns/{name}`: a record signed by the name's key, not older than one known, is taken (and passed on by the view). */
async function putRecord (ctx: RouteContext, routing: RoutingView, name: string): Promise<void> {
  const { req, res } = ctx
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase()
  if (type !== IPNS_RECORD) throw new HttpError('ERR_NOT_ACCEPTABLE', `send the record with Content-Type: ${IPNS_RECORD}`)
  const bytes = await bodyOf(req, MAX_RECORD_BYTES)
  try {
    await routing.putRecord(name, bytes, abortOnClose(ctx))
  } catch (err) {
    // Any record the view refuses (forged, wrong name, expired, a rollback) is the client's error.
    if (err instanceof NixipfsError && err.code.startsWith('ERR_RECORD')) throw new HttpError('ERR_BAD_REQUEST', err.message)
    throw err
  }
  res.writeHead(200, { ...CORS, 'content-type': 'text/plain', 'content-length': 3 })
  res.end('ok\n')
}

/** The request body, refused past `max` bytes or when it has not all come within BODY_DEADLINE_MS (a trickling client holds a connection). */
async function bodyOf (req: RouteContext['req'], max: number): Promise<Uint8Array> {
  const parts: Buffer[] = []
  let size = 0
  const deadline = setTimeout(() => req.destroy(new HttpError('ERR_BAD_REQUEST', `the record did not arrive within ${BODY_DEADLINE_MS / 1000} s`)), BODY_DEADLINE_MS)
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > max) throw new HttpError('ERR_BAD_REQUEST', `an IPNS record is at most ${max} bytes`)
      parts.push(chunk as Buffer)
    }
  } finally {
    clearTimeout(deadline)
  }
  return Buffer.concat(parts)
}
