import { setMaxListeners } from 'node:events'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import { CID } from 'multiformats/cid'
import { getVerified } from '../ipfs/block.js'
import { carBytes } from '../ipfs/car.js'
import { walkDag } from '../ipfs/dag.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

const RAW = 'application/vnd.ipld.raw'
const CAR = 'application/vnd.ipld.car'
const IPNS_RECORD = 'application/vnd.ipfs.ipns-record'

/** The response format asked for by `?format=` or the Accept header (trustless gateway spec). */
function formatOf (ctx: RouteContext): string | undefined {
  const query = new URL(ctx.req.url ?? '/', 'http://x').searchParams
  const format = query.get('format')
  if (format !== null) return format
  const accept = ctx.req.headers.accept ?? ''
  if (accept.includes(RAW)) return 'raw'
  if (accept.includes(CAR)) return 'car'
  if (accept.includes(IPNS_RECORD)) return 'ipns-record'
  return undefined
}

/**
 * `GET /ipfs/<cid>?format=raw|car` (IPFS trustless gateway): one block, or
 * the DAG under it as a CARv1 (order=dfs, dups=n; `dag-scope=block` for the
 * root alone). Only blocks this node holds are served — it never fetches on
 * a peer's behalf — and each is checked against its CID on the way out.
 */
export async function serveIpfs (ctx: RouteContext): Promise<void> {
  const { res, params, local, head } = ctx
  let cid: CID
  try { cid = CID.parse(params[0]!) } catch { throw new HttpError('ERR_BAD_REQUEST', `${params[0]!} is not a CID`) }
  const format = formatOf(ctx)
  if (format !== 'raw' && format !== 'car') throw new HttpError('ERR_NOT_ACCEPTABLE', 'this is a trustless gateway: ask for ?format=raw (one block) or ?format=car (a DAG)')
  if (!local.has(cid)) throw new HttpError('ERR_NOT_FOUND', `block ${cid.toString()} is not on this node`)
  const headers = { 'cache-control': 'public, max-age=29030400, immutable', 'x-content-type-options': 'nosniff', vary: 'Accept' }
  if (format === 'raw') {
    const bytes = await getVerified(local, cid)
    res.writeHead(200, { ...headers, 'content-type': RAW, 'content-length': bytes.length, etag: `"${cid.toString()}.raw"` })
    res.end(head ? undefined : bytes)
    return
  }
  const scope = new URL(ctx.req.url ?? '/', 'http://x').searchParams.get('dag-scope') ?? 'all'
  if (scope !== 'all' && scope !== 'block') throw new HttpError('ERR_BAD_REQUEST', `dag-scope=${scope} is not supported here; use all or block`)
  res.writeHead(200, { ...headers, 'content-type': `${CAR}; version=1; order=dfs; dups=n`, etag: `"${cid.toString()}.car.${scope}"` })
  if (head) { res.end(); return }
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal) // shared by the walk's read-ahead
  res.on('close', () => abort.abort())
  const blocks = scope === 'block'
    ? (async function * () { yield { cid, bytes: await getVerified(local, cid) } })()
    // Subtrees this node lacks are left out: the CAR is what it can vouch for, and the client fetches the rest elsewhere.
    : walkDag(local, cid, { signal: abort.signal, onMissing: () => {} })
  await pipeline(Readable.from(carBytes([cid], blocks)), res)
}

/** `GET /ipns/<name>?format=ipns-record`: the newest signed record this node holds for the name, as signed. */
export async function serveIpns (ctx: RouteContext): Promise<void> {
  const { res, params, head } = ctx
  if (formatOf(ctx) !== 'ipns-record') throw new HttpError('ERR_NOT_ACCEPTABLE', 'this is a trustless gateway: ask for ?format=ipns-record')
  const bytes = await ctx.record(params[0]!)
  if (bytes === undefined) throw new HttpError('ERR_NOT_FOUND', `no record for /ipns/${params[0]!} on this node`)
  res.writeHead(200, { 'content-type': IPNS_RECORD, 'content-length': bytes.length, 'cache-control': 'public, max-age=60', 'x-content-type-options': 'nosniff', vary: 'Accept' })
  res.end(head ? undefined : bytes)
}
