import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'

// HTTP GETs to servers outside this process (upstream caches, HTTP peers) go
// through node:http, not undici: undici 7 throws an AssertionError from a
// socket event, where no caller can catch it, when a server closes the
// connection right after a body the reader has paused (nodejs/undici#5360,
// fixed only in undici 8, which needs Node 22). `python3 -m http.server` and
// any `Connection: close` server do that, and it ended the whole process.

export interface HttpPoolOptions {
  /** connections to one origin at once; further requests wait for one */
  connections: number
  /** a request fails when the server sends nothing (no head, no next piece of body) for this long */
  idleMs: number
}

/** A response whose head arrived; `body` must be read to its end or discarded. */
export interface HttpResponse {
  status: number
  headers: IncomingHttpHeaders
  body: IncomingMessage
}

/** How long an unused keep-alive connection is kept: below the idle timeouts of common servers (Node 5 s), so a reused one is rarely closed under us. */
const FREE_SOCKET_MS = 4_000
/** An error answer this small is read to its end so its connection can be reused; a larger one is cut off. */
const DRAIN_MAX_BYTES = 64 * 1024

/** Keep-alive connections to HTTP(S) servers for GETs, a bounded number per origin. */
export class HttpPool {
  private readonly http: HttpAgent
  private readonly https: HttpsAgent

  constructor (private readonly options: HttpPoolOptions) {
    const agent = { keepAlive: true, maxSockets: options.connections, timeout: FREE_SOCKET_MS, scheduling: 'lifo' as const }
    this.http = new HttpAgent(agent)
    this.https = new HttpsAgent(agent)
  }

  /** GETs `url`; resolves once the response head is in (any status). */
  async get (url: string, options: { headers?: Record<string, string>, signal?: AbortSignal } = {}): Promise<HttpResponse> {
    const { signal } = options
    signal?.throwIfAborted()
    const target = new URL(url)
    const https = target.protocol === 'https:'
    return await new Promise<HttpResponse>((resolve, reject) => {
      let body: IncomingMessage | undefined
      const req = (https ? httpsRequest : httpRequest)(target, { agent: https ? this.https : this.http, headers: options.headers })
      // Errors after the head belong to the body, whose reader sees them; an unread body's must not end the process.
      const fail = (err: Error): void => { if (body === undefined) req.destroy(err); else body.destroy(err) }
      const onAbort = (): void => fail(signal!.reason as Error)
      signal?.addEventListener('abort', onAbort, { once: true })
      req.setTimeout(this.options.idleMs, () => fail(new Error(`timeout: ${target.origin} sent nothing for ${this.options.idleMs / 1000} s`)))
      req.on('error', err => { signal?.removeEventListener('abort', onAbort); reject(err) })
      req.on('response', res => {
        body = res
        res.on('error', () => {})
        res.on('close', () => signal?.removeEventListener('abort', onAbort))
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res })
      })
      req.end()
    })
  }

  /** Closes every connection, also those in use. */
  close (): void {
    this.http.destroy()
    this.https.destroy()
  }
}

/** Drops an unwanted response body: a small one is read out (keeping its connection), a large or unsized one is cut off. */
export function discard (res: HttpResponse): void {
  const length = Number(res.headers['content-length'])
  if (Number.isFinite(length) && length <= DRAIN_MAX_BYTES) res.body.resume()
  else res.body.destroy()
}
