import { UnavailableError } from '../errors.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/** `GET|HEAD /<hash>.narinfo`: from the local index, else from an upstream binary cache (if configured); 404 when unknown, 503 when a cache that has it cannot be served now. */
export async function serveNarInfo ({ res, params, index, upstream, head }: RouteContext): Promise<void> {
  let unavailable: UnavailableError | undefined
  const local = await index?.narInfo(params[0]!).catch(err => {
    if (!(err instanceof UnavailableError)) throw err
    unavailable = err // the upstream may still have it
  })
  const text = local?.text ?? await upstream?.narInfo(params[0]!)
  if (text === undefined) throw unavailable ?? new HttpError('ERR_NOT_FOUND', `no narinfo for ${params[0]!}`)
  res.writeHead(200, { 'content-type': 'text/x-nix-narinfo', 'content-length': Buffer.byteLength(text) })
  res.end(head ? undefined : text)
}
