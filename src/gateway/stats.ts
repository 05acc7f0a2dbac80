import type { RouteContext } from './routes.js'

/** `GET /stats`: where served blocks and narinfos came from, as JSON. */
export function serveStats ({ res, stats, head }: RouteContext): void {
  const body = JSON.stringify(stats(), null, 2) + '\n'
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}
