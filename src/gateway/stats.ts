import { METRICS_CONTENT_TYPE } from './metrics.js'
import type { RouteContext } from './routes.js'

/** `GET /stats`: where served blocks and narinfos came from, as JSON. */
export function serveStats ({ res, stats, head }: RouteContext): void {
  const body = JSON.stringify(stats(), null, 2) + '\n'
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}

/** `GET /metrics`: Prometheus text format (requests and their durations by route, bytes, blocks by source, verification failures, quorum refusals, records, peers, the process's own). */
export async function serveMetrics ({ res, metrics, head }: RouteContext): Promise<void> {
  const body = await metrics()
  res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}

/** `GET /healthz`: 200 while the server answers, saying whether a cache is servable yet; 503 when none can be opened. */
export async function serveHealth ({ res, index, indexError, head }: RouteContext): Promise<void> {
  const body = indexError !== undefined ? `failing: ${indexError.message}\n` : `ok: ${index === undefined ? 'no cache servable yet' : 'serving'}\n`
  res.writeHead(indexError === undefined ? 200 : 503, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}
