import { encodeHoldings } from '../net/rendezvous.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/**
 * `GET /nixipfs/narinfo/<hash>`: which of the served caches hold a narinfo for the store path, and its text (what
 * libp2p peers get under the same fetch key; see net/rendezvous.ts); 404 when none does. Asked by discovering peers
 * that found this node among the providers of the path's rendezvous CID.
 */
export async function serveHoldings ({ res, params, holdings, head }: RouteContext): Promise<void> {
  const held = await holdings?.(params[0]!) ?? []
  if (held.length === 0) throw new HttpError('ERR_NOT_FOUND', `no served cache holds a narinfo for ${params[0]!}`)
  const body = encodeHoldings(held)
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}
