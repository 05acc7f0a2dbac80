import { createHash, timingSafeEqual } from 'node:crypto'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import { PIN_STATES, type NameMatch, type PinQuery, type PinRequest, type PinState, type RemotePinStore, type StoredPin } from '../cache/remote-pins.js'
import type { RouteContext } from './routes.js'

// The IPFS Pinning Service API v1.0.0 (ipfs/pinning-services-api-spec, ipfs-pinning-service.yaml),
// served under /psa: kubo's `ipfs pin remote service add NAME http://HOST:PORT/psa TOKEN` speaks to it.
// Every answer, errors included, is JSON; errors in the spec's Failure shape.

/** What the route needs of the node: its pin requests, who may use them, and where the node can be reached. */
export interface PinningApi {
  store: RemotePinStore
  /** bearer tokens that may use the API (from --pin-token-file) */
  tokens: string[]
  /** the node's own multiaddrs (ending in /p2p/<id>): the spec's `delegates` */
  delegates: () => string[]
  /** a request was added, replaced or removed */
  changed: () => void
}

/** Largest request body taken: a Pin with 20 origins and a generous `meta`. */
export const MAX_PIN_BODY_BYTES = 64 * 1024
/** Past the limit a body is read on (and dropped) up to this much, so the client gets its 400 rather than a reset. */
const DRAIN_BYTES = 8 * 2 ** 20
/** A body must have arrived this long after its request head. */
const BODY_DEADLINE_MS = 5_000
/** The spec's limits. */
const MAX_NAME = 255
const MAX_ORIGINS = 20
const MAX_META = 1000
const MAX_LIMIT = 1000
const MAX_CIDS = 10
/** RFC 3339 section 5.6 date-time. */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

/** A failure answered in the spec's shape: `{"error": {"reason", "details"}}`. */
class Failure extends Error {
  constructor (readonly status: number, readonly reason: string, details: string) { super(details) }
}

const bad = (details: string): Failure => new Failure(400, 'BAD_REQUEST', details)

function send (ctx: RouteContext, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body)
  ctx.res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store', ...headers })
  ctx.res.end(ctx.head ? undefined : text)
}

/** `/psa/…`: the Pinning Service API over the node's pin requests. */
export async function servePinning (ctx: RouteContext): Promise<void> {
  try {
    await route(ctx)
  } catch (err) {
    if (ctx.res.headersSent) { ctx.res.destroy(); return }
    const f = err instanceof Failure ? err : new Failure(500, 'INTERNAL_SERVER_ERROR', (err as Error).message)
    send(ctx, f.status, { error: { reason: f.reason, details: f.message } }, {
      ...(f.status === 401 ? { 'www-authenticate': 'Bearer' } : {}),
      // A body left unread past the limit: the connection cannot carry another request.
      ...(f.reason === 'BAD_REQUEST' && ctx.req.readableEnded === false ? { connection: 'close' } : {})
    })
  }
}

async function route (ctx: RouteContext): Promise<void> {
  const api = ctx.pinning
  if (api === undefined) throw new Failure(501, 'NOT_IMPLEMENTED', 'this node serves no Pinning Service API; its operator starts it with --pin-token-file FILE (bearer tokens, one per line)')
  authorize(ctx.req.headers.authorization, api.tokens)
  const url = new URL(ctx.req.url ?? '/', 'http://x')
  const method = ctx.req.method ?? 'GET'
  const m = /^\/psa\/pins(?:\/([^/]+))?\/?$/.exec(url.pathname)
  if (m === null) throw new Failure(404, 'NOT_FOUND', `${url.pathname} is no route of the Pinning Service API; it answers /psa/pins and /psa/pins/{requestid}`)
  const id = m[1] === undefined ? undefined : decodeURIComponent(m[1])
  const reading = method === 'GET' || method === 'HEAD'
  if (id === undefined && reading) {
    const { count, results } = api.store.list(queryOf(url.searchParams))
    return send(ctx, 200, { count, results: results.map(p => statusOf(p, api)) })
  }
  if (id === undefined && method === 'POST') {
    const stored = await api.store.add(pinOf(await bodyOf(ctx.req)))
    api.changed()
    return send(ctx, 202, statusOf(stored, api))
  }
  if (id !== undefined && reading) return send(ctx, 200, statusOf(found(api.store.get(id), id), api))
  if (id !== undefined && method === 'POST') {
    const pin = pinOf(await bodyOf(ctx.req))
    const stored = found(await api.store.replace(id, pin), id)
    api.changed()
    return send(ctx, 202, statusOf(stored, api))
  }
  if (id !== undefined && method === 'DELETE') {
    if (!await api.store.remove(id)) throw notFound(id)
    api.changed()
    ctx.res.writeHead(202, { 'content-length': 0 })
    ctx.res.end()
    return
  }
  throw new Failure(405, 'METHOD_NOT_ALLOWED', `${method} ${url.pathname} is not part of the Pinning Service API`)
}

const notFound = (id: string): Failure => new Failure(404, 'NOT_FOUND', `no pin request ${JSON.stringify(id)}`)

function found<T> (value: T | undefined, id: string): T {
  if (value === undefined) throw notFound(id)
  return value
}

/** Checks the bearer token in constant time (digests of equal length are compared). */
function authorize (header: string | undefined, tokens: string[]): void {
  const token = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1]
  if (token === undefined) throw new Failure(401, 'UNAUTHORIZED', 'send an access token: Authorization: Bearer <token> (one of the lines of the node\'s --pin-token-file)')
  const digest = createHash('sha256').update(token).digest()
  let ok = false
  for (const t of tokens) ok = timingSafeEqual(digest, createHash('sha256').update(t).digest()) || ok
  if (!ok) throw new Failure(401, 'UNAUTHORIZED', 'the access token is not valid here')
}

/** A stored request as the spec's PinStatus. */
function statusOf (p: StoredPin, api: PinningApi): Record<string, unknown> {
  const delegates = [...new Set(api.delegates())].slice(0, 20)
  return { requestid: p.requestid, status: p.status, created: p.created, pin: p.pin, delegates, ...(p.info === undefined ? {} : { info: p.info }) }
}

function cidOf (text: string): string {
  try {
    CID.parse(text)
    return text
  } catch {
    throw bad(`${JSON.stringify(text.slice(0, 200))} is not a CID (CIDv0 Qm…, or CIDv1 in base32 b… or base58btc z…)`)
  }
}

function stringMap (value: unknown, what: string): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad(`${what} must be an object of strings`)
  const entries = Object.entries(value)
  if (entries.length > MAX_META) throw bad(`${what} has ${entries.length} keys; at most ${MAX_META}`)
  for (const [k, v] of entries) if (typeof v !== 'string') throw bad(`${what}.${k} must be a string`)
  return Object.fromEntries(entries) as Record<string, string>
}

/** The Pin object of a request body, checked field by field. */
export function pinOf (body: Uint8Array): PinRequest {
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body))
  } catch (err) {
    throw bad(`the body is not JSON (${(err as Error).message}); send a Pin object: {"cid": "…", "name": "…", "origins": […], "meta": {…}}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw bad('the body must be a Pin object: {"cid": "…"}')
  const v = value as Record<string, unknown>
  if (typeof v.cid !== 'string') throw bad('the Pin object needs "cid", a string')
  const pin: PinRequest = { cid: cidOf(v.cid) }
  if (v.name !== undefined) {
    if (typeof v.name !== 'string' || v.name.length > MAX_NAME) throw bad(`"name" must be a string of at most ${MAX_NAME} characters`)
    pin.name = v.name
  }
  if (v.origins !== undefined) {
    if (!Array.isArray(v.origins) || v.origins.length > MAX_ORIGINS) throw bad(`"origins" must be an array of at most ${MAX_ORIGINS} multiaddrs`)
    for (const o of v.origins) {
      if (typeof o !== 'string') throw bad('each origin must be a multiaddr string')
      try { multiaddr(o) } catch { throw bad(`origin ${JSON.stringify(o.slice(0, 200))} is not a multiaddr`) }
    }
    if (new Set(v.origins).size !== v.origins.length) throw bad('"origins" must not repeat an address')
    pin.origins = v.origins as string[]
  }
  if (v.meta !== undefined) pin.meta = stringMap(v.meta, '"meta"')
  return pin
}

/** The filters of `GET /pins`, checked. */
export function queryOf (params: URLSearchParams): PinQuery {
  const query: PinQuery = {}
  const list = (key: string): string[] | undefined => params.get(key)?.split(',').filter(s => s !== '')
  const cids = list('cid')
  if (cids !== undefined) {
    if (cids.length < 1 || cids.length > MAX_CIDS) throw bad(`"cid" takes 1 to ${MAX_CIDS} CIDs, comma-separated`)
    query.cid = cids.map(cidOf)
  }
  const name = params.get('name')
  if (name !== null) {
    if (name.length > MAX_NAME) throw bad(`"name" is at most ${MAX_NAME} characters`)
    query.name = name
  }
  const match = params.get('match')
  if (match !== null) {
    if (!['exact', 'iexact', 'partial', 'ipartial'].includes(match)) throw bad('"match" is one of exact, iexact, partial, ipartial')
    query.match = match as NameMatch
  }
  const status = list('status')
  if (status !== undefined) {
    const unknown = status.find(s => !PIN_STATES.includes(s as PinState))
    if (unknown !== undefined || status.length === 0) throw bad(`"status" takes ${PIN_STATES.join(', ')} (comma-separated), got ${JSON.stringify(unknown ?? '')}`)
    query.status = status as PinState[]
  }
  for (const key of ['before', 'after'] as const) {
    const text = params.get(key)
    if (text === null) continue
    if (!DATE_TIME.test(text) || Number.isNaN(Date.parse(text))) throw bad(`"${key}" must be an RFC 3339 date-time, e.g. 2020-07-27T17:32:28.276Z`)
    query[key] = new Date(text)
  }
  const limit = params.get('limit')
  if (limit !== null) {
    const n = Number(limit)
    if (!/^\d+$/.test(limit) || n < 1 || n > MAX_LIMIT) throw bad(`"limit" must be a whole number from 1 to ${MAX_LIMIT}`)
    query.limit = n
  }
  const meta = params.get('meta')
  if (meta !== null) {
    let parsed: unknown
    try { parsed = JSON.parse(meta) } catch { throw bad('"meta" must be a JSON object of strings') }
    query.meta = stringMap(parsed, '"meta"')
  }
  return query
}

/** The request body, at most MAX_PIN_BODY_BYTES, within BODY_DEADLINE_MS. */
async function bodyOf (req: RouteContext['req']): Promise<Uint8Array> {
  const declared = Number(req.headers['content-length'])
  if (declared > DRAIN_BYTES) throw bad(`the body is ${declared} bytes; a Pin object is at most ${MAX_PIN_BODY_BYTES}`)
  const parts: Buffer[] = []
  let size = 0
  const deadline = setTimeout(() => req.destroy(new Error(`the body did not arrive within ${BODY_DEADLINE_MS / 1000} s`)), BODY_DEADLINE_MS)
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > DRAIN_BYTES) break
      if (size <= MAX_PIN_BODY_BYTES) parts.push(chunk as Buffer)
    }
  } finally {
    clearTimeout(deadline)
  }
  if (size > MAX_PIN_BODY_BYTES) throw bad(`the body is more than ${MAX_PIN_BODY_BYTES} bytes; a Pin object is at most that`)
  return Buffer.concat(parts)
}
