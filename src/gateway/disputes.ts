import type { RouteContext } from './routes.js'

/** `GET /disputes`: every dispute this node recorded (trusted builders that signed different NARs for one path), as JSON. */
export async function serveDisputes ({ res, disputes, head }: RouteContext): Promise<void> {
  const body = JSON.stringify(await disputes(), null, 2) + '\n'
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'cache-control': 'no-cache' })
  res.end(head ? undefined : body)
}
