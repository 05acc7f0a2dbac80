import { writeDrained } from './drain.js'
import { HttpError } from './http-errors.js'
import { serveNar } from './nar.js'
import type { RouteContext } from './routes.js'

/**
 * `GET /nar/upstream/<hash>.nar`: the NAR of a narinfo found upstream, streamed
 * while it is checked and imported; a failure cuts the connection, and the
 * last chunk only goes out once the NAR matched its NarHash.
 */
export async function serveUpstreamNar (ctx: RouteContext): Promise<void> {
  const { res, params, index, upstream, head } = ctx
  // Nix keeps narinfos for weeks: once imported, the NAR behind an upstream URL is served from the own cache.
  const local = await index?.narInfo(params[0]!)
  if (local !== undefined) { await serveNar({ ...ctx, params: [local.nar.toString()] }); return }
  const nar = upstream?.nar(params[0]!)
  if (nar === undefined) throw new HttpError('ERR_NOT_FOUND', `no upstream NAR for ${params[0]!}; ask for its narinfo first`)
  res.writeHead(200, { 'content-type': 'application/x-nix-nar', 'content-length': nar.narSize })
  if (head) { res.end(); return }
  try {
    await nar.stream(async chunk => { await writeDrained(res, chunk) })
    res.end()
  } catch (err) {
    res.destroy(err as Error)
    throw err
  }
}
