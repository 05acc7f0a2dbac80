import type { IncomingMessage, ServerResponse } from 'node:http'
import type { CacheIndex } from '../cache/index.js'
import type { BlockGetter } from '../ipfs/block.js'
import { serveCacheInfo } from './cache-info.js'
import { serveNar } from './nar.js'
import { serveNarInfo } from './narinfo.js'

/** What every handler gets. */
export interface RouteContext {
  req: IncomingMessage
  res: ServerResponse
  /** regexp captures of the path */
  params: string[]
  index: CacheIndex | undefined
  blocks: BlockGetter
  head: boolean
}

export type Handler = (ctx: RouteContext) => Promise<void> | void

/** The route table: every route answers GET and HEAD alike. */
export const ROUTES: Array<[RegExp, Handler]> = [
  [/^\/nix-cache-info$/, serveCacheInfo],
  [/^\/([0-9a-df-np-sv-z]{32})\.narinfo$/, serveNarInfo],
  [/^\/nar\/([a-z0-9]{1,128})\.nar$/, serveNar]
]
