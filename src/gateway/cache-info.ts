import { DEFAULT_PRIORITY, STORE_DIR } from '../constants.js'
import { formatCacheInfo } from '../nix/cache-info.js'
import type { RouteContext } from './routes.js'

const EMPTY_CACHE_INFO = formatCacheInfo({ storeDir: STORE_DIR, wantMassQuery: true, priority: DEFAULT_PRIORITY, extra: {} })

/** `GET /nix-cache-info`: the published cache's own, or a default before the first publish. */
export function serveCacheInfo ({ res, index, head }: RouteContext): void {
  const body = index?.cacheInfo !== undefined && index.cacheInfo !== '' ? index.cacheInfo : EMPTY_CACHE_INFO
  res.writeHead(200, { 'content-type': 'text/x-nix-cache-info', 'content-length': Buffer.byteLength(body) })
  res.end(head ? undefined : body)
}
