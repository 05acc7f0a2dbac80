import type { Readable } from 'node:stream'
import { collectAtMost } from '../bytes.js'
import { UpstreamError } from '../errors.js'
import { discard, HttpPool, type HttpResponse } from '../net/http-get.js'
import { MAX_NARINFO_BYTES } from '../nix/narinfo.js'

export interface UpstreamOptions {
  /** the upstream may send nothing (no answer, no next piece of a body) this long */
  timeoutMs?: number
  /** tries of a request that failed for a reason worth retrying (network, 5xx, 429) */
  attempts?: number
  /** most connections to the upstream at once */
  connections?: number
}

const DEFAULT_TIMEOUT_MS = 30_000
const DEFAULT_ATTEMPTS = 3

/** An HTTP(S) Nix binary cache (cache.nixos.org, Cachix, Attic, Harmonia, a `file://` cache behind a web server). */
export class HttpBinaryCache {
  readonly url: string
  private readonly pool: HttpPool
  private readonly attempts: number

  constructor (url: string, options: UpstreamOptions = {}) {
    this.url = url.replace(/\/+$/, '')
    this.pool = new HttpPool({ connections: options.connections ?? 8, idleMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS })
    this.attempts = options.attempts ?? DEFAULT_ATTEMPTS
  }

  /** The narinfo text for a store path hash; undefined when the upstream does not have it, UpstreamError when it could not say. */
  async narInfo (hash: string): Promise<string | undefined> {
    const res = await this.get(`/${hash}.narinfo`)
    if (res === undefined) return undefined
    const text = await collectAtMost(this.guarded(res.body, `/${hash}.narinfo`), MAX_NARINFO_BYTES,
      () => new UpstreamError('ERR_UPSTREAM_DATA', `${this.url}/${hash}.narinfo is larger than ${MAX_NARINFO_BYTES} bytes`))
    return text.toString('utf8')
  }

  /** The (compressed) NAR file a narinfo's URL names, as a stream. */
  async file (path: string): Promise<AsyncIterable<Uint8Array>> {
    if (path.includes('..') || path.startsWith('/')) throw new UpstreamError('ERR_UPSTREAM_DATA', `narinfo URL ${JSON.stringify(path)} points outside the cache`)
    const res = await this.get(`/${path}`)
    if (res === undefined) throw new UpstreamError('ERR_UPSTREAM_MISSING', `${this.url}/${path} is missing (404) although its narinfo names it`)
    return this.guarded(res.body, `/${path}`)
  }

  async close (): Promise<void> {
    this.pool.close()
  }

  /** A body whose network errors (reset, timeout) become UpstreamErrors that name the URL. */
  private async * guarded (body: Readable, path: string): AsyncGenerator<Uint8Array> {
    try {
      for await (const part of body) yield part as Buffer
    } catch (err) {
      throw new UpstreamError('ERR_UPSTREAM_NETWORK', `${this.url}${path}: the download broke off (${(err as Error).message})`)
    }
  }

  /** GET with retries and backoff; undefined on 404/410/403 (a miss; anything else failing is an UpstreamError). */
  private async get (path: string): Promise<HttpResponse | undefined> {
    let last: Error | undefined
    for (let attempt = 1; attempt <= this.attempts; attempt++) {
      if (attempt > 1) await new Promise(resolve => setTimeout(resolve, 200 * 2 ** (attempt - 2)))
      let res: HttpResponse
      try {
        res = await this.pool.get(this.url + path, { headers: { 'user-agent': 'nixipfs' } })
      } catch (err) {
        last = new UpstreamError('ERR_UPSTREAM_NETWORK', `${this.url}${path}: ${(err as Error).message}`)
        continue
      }
      if (res.status === 200) return res
      discard(res)
      // As Nix does: S3 buckets that may not be listed answer 403 for what they do not hold.
      if (res.status === 404 || res.status === 410 || res.status === 403) return undefined
      last = new UpstreamError('ERR_UPSTREAM_HTTP', `${this.url}${path} answered HTTP ${res.status}`)
      if (res.status < 500 && res.status !== 429) break
    }
    throw last!
  }
}
