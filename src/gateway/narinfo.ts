import { UnavailableError } from '../errors.js'
import { withCompressedNar } from '../nix/narinfo.js'
import { NAR_EXTENSIONS, narCodingFor } from './encode.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/** `GET|HEAD /<hash>.narinfo`: from the local index, else from an upstream binary cache (if configured); 404 when unknown, 503 when a cache that has it cannot be served now. */
export async function serveNarInfo ({ req, res, params, index, fresher, upstream, head, compressNar }: RouteContext): Promise<void> {
  let unavailable: UnavailableError | undefined
  const lookup = async (caches: RouteContext['index']) => await caches?.narInfo(params[0]!).catch(err => {
    if (!(err instanceof UnavailableError)) throw err
    unavailable = err // the upstream may still have it
    return undefined
  })
  let local = await lookup(index)
  if (local === undefined && unavailable === undefined) {
    const fresh = await fresher?.()
    if (fresh !== undefined) local = await lookup(fresh)
  }
  // A NAR of the served caches goes to other hosts compressed on the fly (--compress-nar); upstream ones as they are.
  const coding = local === undefined ? undefined : narCodingFor(compressNar, req)
  const text = (coding === undefined ? undefined : withCompressedNar(local!.text, coding, NAR_EXTENSIONS[coding])) ?? local?.text ?? await upstream?.narInfo(params[0]!)
  if (text === undefined) throw unavailable ?? new HttpError('ERR_NOT_FOUND', `no narinfo for ${params[0]!}`)
  res.writeHead(200, { 'content-type': 'text/x-nix-narinfo', 'content-length': Buffer.byteLength(text) })
  res.end(head ? undefined : text)
}
