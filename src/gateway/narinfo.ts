import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/** `GET|HEAD /<hash>.narinfo`: from the local index, else from an upstream binary cache (if configured); 404 when unknown. */
export async function serveNarInfo ({ res, params, index, upstream, head }: RouteContext): Promise<void> {
  const text = (await index?.narInfo(params[0]!))?.text ?? await upstream?.narInfo(params[0]!)
  if (text === undefined) throw new HttpError('ERR_NOT_FOUND', `no narinfo for ${params[0]!}`)
  res.writeHead(200, { 'content-type': 'text/x-nix-narinfo', 'content-length': Buffer.byteLength(text) })
  res.end(head ? undefined : text)
}
