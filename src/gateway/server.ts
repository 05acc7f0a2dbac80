import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { ServedCaches } from '../cache/union.js'
import { connectionCapWithin, limitConnections, openFileLimit, type ConnectionCounters } from './connections.js'
import { InconsistentCacheError, ListenError, NixipfsError } from '../errors.js'
import { Lru } from '../lru.js'
import { stalledResponsesCut } from './drain.js'
import { statusOf } from './http-errors.js'
import { Registry } from 'prom-client'
import { DEFAULT_HEAD_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEADER_BYTES } from '../constants.js'
import { HttpMetrics, counterOf, gaugeOf, metricsText, processMetrics } from './metrics.js'
import type { NarCompression } from './encode.js'
import { ANY_METHOD, INDEX_FREE, ROUTE_NAMES, ROUTES, UNMATCHED, type Handler, type RouteContext } from './routes.js'

export interface GatewayOptions {
  /** the caches served to Nix, as they stand now (undefined while none is servable) */
  caches: () => Promise<ServedCaches | undefined>
  /** looks at the stored records again now; true when one changed (then `caches` serves it) */
  refresh?: () => Promise<boolean>
  /** the disputes this node recorded */
  disputes: RouteContext['disputes']
  upstream?: RouteContext['upstream']
  stats: RouteContext['stats']
  /** most connections at once (beyond it the longest-idle one is closed), default 8192 */
  maxConnections?: number
  /** a new connection must send a whole request head within this time, default 10 s */
  headTimeoutMs?: number
  /** largest request head (request line and headers) accepted, default 16 KiB */
  maxHeaderBytes?: number
  /** called once per answered request (by default a debug log line) */
  onRequest?: (r: RequestLog) => void
  /** registers metrics beside the HTTP ones (fetches, verification, records…) in the gateway's registry */
  metrics?: (registry: Registry) => void
  blocks: RouteContext['blocks']
  local: RouteContext['local']
  precompressed?: RouteContext['precompressed']
  record: RouteContext['record']
  routing?: RouteContext['routing']
  holdings?: RouteContext['holdings']
  /** the Pinning Service API at /psa (off without it) */
  pinning?: RouteContext['pinning']
  /** which narinfos point Nix at NARs compressed on the fly. @default 'auto' (for clients on other hosts) */
  compressNar?: NarCompression
  host: string
  /** 0 picks a free port */
  port: number
  logger?: { debug: (m: string) => void, warn: (m: string) => void }
}

/** A kept-alive connection that sends nothing for this long is closed (told to clients in `Keep-Alive: timeout=`, which they keep to). */
const KEEP_ALIVE_MS = 60_000

/** NARs whose inconsistent narinfos were already logged (a hostile cache could name millions). */
const REPORTED_NARS = 10_000

/** How long shutdown waits for responses in flight. */
const CLOSE_GRACE_MS = 10_000

/** Counts the body bytes handed to `res` (headers aside); returns the count so far. */
function countBodyBytes (res: ServerResponse): () => number {
  let bytes = 0
  const size = (chunk: unknown): number => typeof chunk === 'string' ? Buffer.byteLength(chunk) : (chunk as Uint8Array | undefined)?.length ?? 0
  const write = res.write.bind(res) as (...a: unknown[]) => boolean
  const end = res.end.bind(res) as (...a: unknown[]) => ServerResponse
  res.write = ((chunk: unknown, ...rest: unknown[]) => { bytes += size(chunk); return write(chunk, ...rest) }) as typeof res.write
  res.end = ((chunk?: unknown, ...rest: unknown[]) => { if (typeof chunk !== 'function') bytes += size(chunk); return end(chunk, ...rest) }) as typeof res.end
  return () => bytes
}

/** Registers the connection limits' metrics: what is open, and what they closed (a flood shows here). */
function registerConnectionMetrics (registry: Registry, c: ConnectionCounters): void {
  gaugeOf(registry, 'nixipfs_http_connections_open', 'HTTP connections open now.', [], () => [[{}, c.open]])
  counterOf(registry, 'nixipfs_http_connections_closed_total', 'HTTP connections closed by the limits: head_timeout (no whole request head in time), shed (idle longest, closed at --max-connections for a new one), refused (new, at --max-connections while all were answering), stalled (a response whose client took nothing for 30 s, or longest while waiting responses held too much memory).', ['reason'],
    () => [[{ reason: 'head_timeout' }, c.headTimeouts], [{ reason: 'shed' }, c.shed], [{ reason: 'refused' }, c.refused], [{ reason: 'stalled' }, stalledResponsesCut()]])
}

/** What is logged of one request. */
export interface RequestLog {
  method: string
  path: string
  route: string
  status: number
  bytes: number
  ms: number
  error?: string
  /** the error's code (ERR_…), for errors nixipfs raises on purpose */
  code?: string
}

/** A running gateway. */
export interface Gateway {
  url: string
  close: () => Promise<void>
}

/** Starts the HTTP server: a Nix binary cache over the served caches, and a trustless IPFS gateway over the repo. */
export async function startGateway (options: GatewayOptions): Promise<Gateway> {
  const { caches, blocks, local, precompressed, record, routing, holdings, pinning, disputes, upstream, stats, logger } = options
  // Each gateway has its own registry (several can run in one process, as in the tests); process metrics are shared.
  const registry = new Registry()
  processMetrics()
  const http = new HttpMetrics(registry, ROUTE_NAMES)

  /** The route a path takes: its handler, and its index in ROUTES (and ROUTE_NAMES, the names metrics count it under). */
  function routeOf (path: string): { handler: Handler, params: string[], index: number } | undefined {
    for (let index = 0; index < ROUTES.length; index++) {
      const [pattern, handler] = ROUTES[index]!
      const m = pattern.exec(path)
      if (m !== null) return { handler, params: m.slice(1), index }
    }
    return undefined
  }

  async function handle (req: IncomingMessage, res: ServerResponse, route: ReturnType<typeof routeOf>): Promise<void> {
    const method = req.method ?? 'GET'
    if (method !== 'GET' && method !== 'HEAD' && (route === undefined || !ANY_METHOD.has(route.handler))) {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' })
      res.end('only GET and HEAD are served\n')
      return
    }
    if (route === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' })
      res.end('not found\n')
      return
    }
    let indexError: Error | undefined
    const index = await caches().catch((err: Error) => {
      if (!INDEX_FREE.has(route.handler)) throw err
      indexError = err
      return undefined
    })
    // A miss looks again at once: a path published a moment ago must not be a 404 that Nix remembers for an hour.
    const fresher = options.refresh === undefined ? undefined : async () => await options.refresh!() ? await caches() : undefined
    await route.handler({ req, res, params: route.params, index, indexError, fresher, blocks, local, precompressed, record, routing, holdings, pinning, disputes, upstream, stats, metrics, head: method === 'HEAD', compressNar: options.compressNar ?? 'auto' })
  }

  // A refused narinfo is logged once per NAR, not on every request Nix repeats.
  const reported = new Lru<true>(REPORTED_NARS)
  const worthLogging = (err: Error): boolean => {
    if (!(err instanceof InconsistentCacheError)) return true
    if (reported.get(err.nar) !== undefined) return false
    reported.set(err.nar, true)
    return true
  }

  let active = 0
  let closing: (() => void) | undefined
  const server = createServer({ maxHeaderSize: options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES }, (req, res) => {
    active++
    const started = performance.now()
    const route = routeOf((req.url ?? '/').split('?')[0]!)
    const sent = countBodyBytes(res)
    let error: string | undefined
    let code: string | undefined
    res.once('close', () => {
      const ms = performance.now() - started
      const index = route?.index ?? UNMATCHED
      http.observe(index, res.statusCode, sent(), ms / 1000, code)
      if (options.onRequest !== undefined) options.onRequest({ method: req.method ?? 'GET', path: req.url ?? '/', route: ROUTE_NAMES[index]!, status: res.statusCode, bytes: sent(), ms: Math.round(ms * 10) / 10, ...(error === undefined ? {} : { error }), ...(code === undefined ? {} : { code }) })
      else logger?.debug(`${req.method ?? 'GET'} ${req.url ?? '/'} ${res.statusCode}${error === undefined ? '' : `: ${error}`}`)
      if (--active === 0) closing?.()
    })
    handle(req, res, route).then(
      () => {},
      (err: Error) => {
        const status = statusOf(err)
        error = err.message
        code = err instanceof NixipfsError ? err.code : undefined
        if (status >= 500 && worthLogging(err)) logger?.warn(`${req.method} ${req.url}: ${err.message}`)
        if (res.headersSent) { res.destroy(); return }
        res.writeHead(status, { 'content-type': 'text/plain' })
        res.end(req.method === 'HEAD' ? undefined : `${err.message}\n`)
      })
  })
  const wanted = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  const fileLimit = openFileLimit()
  const maxConnections = connectionCapWithin(wanted, fileLimit)
  if (maxConnections < wanted) logger?.warn(`serving at most ${maxConnections} HTTP connections at once, not ${wanted}: the open-file limit is ${fileLimit}; raise it (ulimit -n, or LimitNOFILE= for a service) to allow more`)
  const connections = limitConnections(server, { maxConnections, headTimeoutMs: options.headTimeoutMs ?? DEFAULT_HEAD_TIMEOUT_MS, keepAliveMs: KEEP_ALIVE_MS })
  registerConnectionMetrics(registry, connections)
  options.metrics?.(registry)
  const metrics = async (): Promise<string> => await metricsText(registry)
  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => reject(listenError(err, options.host, options.port))
    server.once('error', failed)
    server.listen(options.port, options.host, () => { server.off('error', failed); resolve() })
  })
  const { address, port } = server.address() as AddressInfo
  const host = address.includes(':') ? `[${address}]` : address
  return {
    url: `http://${host}:${port}`,
    close: async () => {
      // Stop accepting, let responses in flight finish (up to a grace period), then drop keep-alive connections.
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      server.closeIdleConnections()
      await new Promise<void>(resolve => {
        if (active === 0) { resolve(); return }
        closing = resolve
        setTimeout(resolve, CLOSE_GRACE_MS).unref()
      })
      server.closeAllConnections()
      await closed
    }
  }
}

/** What to do when the server cannot listen on HOST:PORT, as a ListenError (other errors as they are). */
function listenError (err: NodeJS.ErrnoException, host: string, port: number): Error {
  const at = `${host.includes(':') ? `[${host}]` : host}:${port}`
  switch (err.code) {
    case 'EADDRINUSE': return new ListenError(`${at} is in use (another gateway or mirror?); stop it, or listen elsewhere with --listen HOST:PORT (port 0 picks a free one)`)
    case 'EADDRNOTAVAIL': return new ListenError(`${host} is no address of this machine, so nothing can listen on ${at}; use one of its addresses with --listen (127.0.0.1:PORT for this machine only)`)
    case 'EACCES': return new ListenError(`listening on ${at} needs privileges (ports below 1024); use a port from 1024 up with --listen`)
    default: return err
  }
}
