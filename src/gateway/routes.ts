import type { IncomingMessage, ServerResponse } from 'node:http'
import type { ServedCaches } from '../cache/union.js'
import type { BlockGetter } from '../ipfs/block.js'
import { serveCacheInfo } from './cache-info.js'
import { serveNar } from './nar.js'
import { serveNarInfo } from './narinfo.js'
import { serveIpfs, serveIpns } from './trustless.js'
import { serveDisputes } from './disputes.js'
import { serveHealth, serveMetrics, serveStats } from './stats.js'
import { serveUpstreamNar } from './upstream.js'
import type { UpstreamFallback } from '../upstream/fallback.js'
import { serveRealisation } from './realisation.js'
import { serveLog } from './log.js'
import type { CID } from 'multiformats/cid'
import type { NarCompression } from './encode.js'
import type { RoutingView } from '../net/routing-view.js'
import { serveRoutingV1 } from './routing-v1.js'
import { servePinning, type PinningApi } from './pinning.js'
import { serveHoldings } from './holdings.js'
import type { Holding } from '../net/rendezvous.js'

/** What every handler gets. */
export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  /** regexp captures of the path */
  params: string[]
  /** the caches served to Nix (undefined while none is servable) */
  index: ServedCaches | undefined
  /** why no cache can be opened, for the routes that answer without one (health, metrics, trustless) */
  indexError?: Error
  /** the served caches after a look at their stored records, if one changed since `index` (for a miss) */
  fresher?: () => Promise<ServedCaches | undefined>
  /** where NAR blocks come from: the repo, then peers */
  blocks: BlockGetter & { prefetch?: (root: CID, signal?: AbortSignal) => Promise<void>, touch?: (root: CID, size: number) => void }
  /** the repo's own blocks: what the trustless gateway hands to peers */
  local: BlockGetter & { has: (cid: CID) => boolean }
  /** the zstd frames of the repo's blocks compressed ahead (`nixipfs precompress`), for peers that ask for zstd */
  precompressed?: { has: (cid: CID) => Promise<boolean>, frame: (cid: CID) => Promise<Uint8Array | undefined> }
  /** the stored IPNS record for a name, as signed */
  record: (name: string) => Promise<Uint8Array | undefined>
  /** the disputes this node recorded */
  disputes: () => Promise<unknown[]>
  /** what /routing/v1 answers from (undefined: not served) */
  routing?: RoutingView
  /** which served caches hold a narinfo for a store path hash, with its text (undefined: not answered) */
  holdings?: (hash: string) => Promise<Holding[]>
  /** the Pinning Service API's pin requests (undefined: the API is off) */
  pinning?: PinningApi
  /** HTTP binary caches asked for what the served caches miss */
  upstream?: UpstreamFallback
  /** counters, as JSON */
  stats: () => unknown
  /** every metric, in the Prometheus text format */
  metrics: () => Promise<string>
  head: boolean
  /** which narinfos point Nix at NARs compressed on the fly (--compress-nar) */
  compressNar: NarCompression
}

export type Handler = (ctx: RouteContext) => Promise<void> | void

/** The route table: every route answers GET and HEAD alike. */
export const ROUTES: Array<[RegExp, Handler]> = [
  [/^\/nix-cache-info$/, serveCacheInfo],
  [/^\/([0-9a-df-np-sv-z]{32})\.narinfo$/, serveNarInfo],
  [/^\/nar\/([a-z0-9]{1,128})\.nar(?:\.(zst|br|gz))?$/, serveNar],
  [/^\/nar\/upstream\/([0-9a-df-np-sv-z]{32})\.nar$/, serveUpstreamNar],
  [/^\/ipfs\/([a-zA-Z0-9]{1,128})(\/.*)?$/, serveIpfs],
  [/^\/ipns\/([a-z0-9]{1,128})\/?$/, serveIpns],
  [/^\/realisations\/([^/]{1,200})\.doi$/, serveRealisation],
  [/^\/log\/([^/]{1,300})$/, serveLog],
  [/^\/disputes$/, serveDisputes],
  [/^\/stats$/, serveStats],
  [/^\/metrics$/, serveMetrics],
  [/^\/healthz$/, serveHealth],
  [/^\/routing\/v1(\/.*)?$/, serveRoutingV1],
  [/^\/nixipfs\/narinfo\/([0-9a-df-np-sv-z]{32})$/, serveHoldings],
  [/^\/psa(\/.*)?$/, servePinning]
]

/**
 * The name each route is counted and logged under (its handler's, without
 * "serve"), by its index in ROUTES, then `unmatched` for every other path:
 * a fixed set, so no path a client sends adds a metric label value.
 */
export const ROUTE_NAMES: readonly string[] = [...ROUTES.map(([, handler]) => handler.name.replace(/^serve/, '').toLowerCase()), 'unmatched']

/** The index in ROUTE_NAMES of paths no route takes. */
export const UNMATCHED = ROUTES.length

/** Routes that answer without the served caches, so they still work when none can be opened. */
export const INDEX_FREE: ReadonlySet<Handler> = new Set([serveIpfs, serveIpns, serveDisputes, serveStats, serveMetrics, serveHealth, serveRoutingV1, servePinning])

/** Routes that take more methods than GET and HEAD, checking the method themselves. */
export const ANY_METHOD: ReadonlySet<Handler> = new Set([serveRoutingV1, servePinning])
