import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/** `GET|HEAD /<hash>.narinfo`: from the local index; 404 when unknown. */
export async function serveNarInfo ({ res, params, index, head }: RouteContext): Promise<void> {
  const entry = await index?.narInfo(params[0]!)
  if (entry === undefined) throw new HttpError('ERR_NOT_FOUND', `no narinfo for ${params[0]!}`)
  res.writeHead(200, { 'content-type': 'text/x-nix-narinfo', 'content-length': Buffer.byteLength(entry.text) })
  res.end(head ? undefined : entry.text)
}
