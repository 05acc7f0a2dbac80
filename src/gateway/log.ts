import { once, setMaxListeners } from 'node:events'
import { bunzip2Chunks } from '../bunzip2.js'
import { readFile } from '../ipfs/file-dag.js'
import { DRV_BASE_NAME } from '../nix/build-log.js'
import { HttpError } from './http-errors.js'
import type { RouteContext } from './routes.js'

/**
 * True when the client takes `Content-Encoding: bzip2`: it lists bzip2 (or
 * `*`) with a nonzero q, or sends no Accept-Encoding at all — which means any
 * coding (RFC 9110, 12.5.3), and is what Nix sends: its file transfer decodes
 * whatever Content-Encoding comes (bzip2 included).
 */
export function acceptsBzip2 (header: string | undefined): boolean {
  if (header === undefined) return true
  const codings = new Map(header.split(',').map(part => {
    const [coding = '', ...params] = part.split(';').map(p => p.trim())
    const q = params.find(p => /^q=/i.test(p))
    return [coding.toLowerCase(), q === undefined ? 1 : Number(q.slice(2))] as const
  }))
  const q = codings.get('bzip2') ?? codings.get('*')
  return q !== undefined && q > 0
}

/**
 * `GET|HEAD /log/<drv>`: the build log of a derivation (what `nix log` asks a
 * binary cache for), streamed: its bzip2 bytes as stored, with
 * `Content-Encoding: bzip2`, or decompressed to plain text for a client that
 * does not take bzip2.
 */
export async function serveLog ({ req, res, params, index, blocks, head }: RouteContext): Promise<void> {
  let drv: string
  try { drv = decodeURIComponent(params[0]!) } catch { throw new HttpError('ERR_BAD_REQUEST', 'malformed derivation name') }
  if (!DRV_BASE_NAME.test(drv)) throw new HttpError('ERR_NOT_FOUND', `${drv} is not a derivation (<hash>-<name>.drv)`)
  const entry = await index?.log(drv)
  if (entry === undefined) throw new HttpError('ERR_NOT_FOUND', `no build log of ${drv} in this cache`)
  blocks.touch?.(entry.cid, entry.size)
  const compressed = acceptsBzip2(req.headers['accept-encoding'])
  const headers: Record<string, string | number> = {
    'content-type': 'text/plain; charset=utf-8',
    vary: 'accept-encoding',
    ...(compressed ? { 'content-encoding': 'bzip2', 'content-length': entry.size } : {})
  }
  if (head) {
    res.writeHead(200, headers)
    res.end()
    return
  }
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal) // shared by the read-ahead and the prefetch
  res.on('close', () => abort.abort())
  // A log not held locally (a follower's index leaves logs out) is pulled as one stream from a peer while it is read.
  blocks.prefetch?.(entry.cid, abort.signal).catch(() => {})
  const source = readFile(blocks, entry.cid, { signal: abort.signal })
  const chunks = (compressed ? source : bunzip2Chunks(source, `the bzip2 build log of ${drv}`))[Symbol.asyncIterator]()
  // Read the first chunk before committing to a status, so early failures get a proper error response.
  let next = await chunks.next()
  res.writeHead(200, headers)
  try {
    while (next.done !== true) {
      if (!res.write(next.value)) await once(res, 'drain', { signal: abort.signal })
      next = await chunks.next()
    }
    res.end()
  } catch (err) {
    res.destroy(err as Error)
    throw err
  } finally {
    await chunks.return?.(undefined)
  }
}
