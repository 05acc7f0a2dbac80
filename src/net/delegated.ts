import { delegatedRoutingV1HttpApiClient, type DelegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { PeerError, UsageError } from '../errors.js'
import { discard, HttpPool, type HttpResponse } from './http-get.js'
import type { PeerInfo } from './routing-view.js'
import { withoutPeerId } from './routing-view.js'

/** How long one request to a routing server may take. */
const REQUEST_TIMEOUT_MS = 10_000
/** Largest JSON answer, and NDJSON line, read from a routing server (100 providers take about 30 KiB). */
const MAX_JSON_BYTES = 1024 * 1024

/** The base URL the client wants (it appends `routing/v1/…`), from `http://host:port` or `http://host:port/routing/v1`. */
export function routingBaseOf (url: string): string {
  if (!/^https?:\/\/[^/]/.test(url)) throw new UsageError(`--routing takes an http(s) URL of a Delegated Routing V1 server, got ${JSON.stringify(url)}`)
  return url.replace(/\/+$/, '').replace(/\/routing\/v1$/, '') + '/'
}

/** The client's debug lines go to `debug` (errors included: a routing server that fails is not this node's error). */
function loggerOf (debug: (m: string) => void): ComponentLogger {
  const forComponent = (name: string): Logger => {
    const log = ((...args: unknown[]) => debug(`${name}: ${args.map(String).join(' ')}`)) as Logger
    return Object.assign(log, { enabled: false, error: log, trace: log, newScope: forComponent })
  }
  return { forComponent }
}

/** A Delegated Routing V1 server (`--routing URL`) as a record store and provider index (a router beside the DHT). */
export class DelegatedRouting {
  /** the server's base URL, as logs name it */
  readonly name: string
  private readonly client: DelegatedRoutingV1HttpApiClient
  private readonly pool = new HttpPool({ connections: 4, idleMs: REQUEST_TIMEOUT_MS })

  constructor (url: string, log: { debug: (m: string) => void } = { debug: () => {} }) {
    this.name = routingBaseOf(url)
    // cacheTTL 0: Node has no Cache API anyway, and records must be fresh.
    this.client = delegatedRoutingV1HttpApiClient({ url: this.name, timeout: REQUEST_TIMEOUT_MS, cacheTTL: 0 })({ logger: loggerOf(log.debug) })
  }

  /** The server's record for IPNS name `name` (k51…), as signed and unverified; undefined when it has none. */
  async getRecord (name: string, options: { signal?: AbortSignal } = {}): Promise<Uint8Array | undefined> {
    try {
      return await this.client.getIPNS(nameCid(name), options)
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
  }

  /** Hands a signed record for `name` to the server (which checks it). */
  async putRecord (name: string, bytes: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.client.putIPNS(nameCid(name), bytes, options)
  }

  /**
   * The providers the server knows for `cid`. Read here rather than by the
   * stock client, which drops records whose ID is a CID string (as
   * @helia/delegated-routing-v1-http-api-server 5.2 writes them).
   */
  async * findProviders (cid: CID, options: { signal?: AbortSignal } = {}): AsyncGenerator<PeerInfo> {
    const url = `${this.name}routing/v1/providers/${cid.toV1().toString()}`
    const res = await this.pool.get(url, { headers: { accept: 'application/x-ndjson, application/json;q=0.8' }, signal: options.signal })
    // 404 is how servers from before IPIP-0513 say "none".
    if (res.status === 404) { discard(res); return }
    if (res.status !== 200) { discard(res); throw new PeerError(this.name, `${url} answered HTTP ${res.status}`) }
    const ndjson = String(res.headers['content-type'] ?? '').startsWith('application/x-ndjson')
    for await (const record of ndjson ? ndjsonOf(res, url) : providersOf(res, url)) {
      const peer = peerInfoOf(record)
      if (peer !== undefined) yield peer
    }
  }

  async stop (): Promise<void> {
    this.pool.close()
    await this.client.stop()
  }
}

/** The objects of an NDJSON body, one a line (each line bounded). */
async function * ndjsonOf (res: HttpResponse, url: string): AsyncGenerator<unknown> {
  let rest = ''
  for await (const chunk of res.body) {
    rest += (chunk as Buffer).toString('utf8')
    const lines = rest.split('\n')
    rest = lines.pop()!
    if (rest.length > MAX_JSON_BYTES) { res.body.destroy(); throw new PeerError(url, `${url} sent an NDJSON line longer than ${MAX_JSON_BYTES} bytes`) }
    for (const line of lines) if (line.trim() !== '') yield JSON.parse(line)
  }
  if (rest.trim() !== '') yield JSON.parse(rest)
}

/** The `Providers` of a JSON body (bounded). */
async function * providersOf (res: HttpResponse, url: string): AsyncGenerator<unknown> {
  const parts: Buffer[] = []
  let size = 0
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length
    if (size > MAX_JSON_BYTES) { res.body.destroy(); throw new PeerError(url, `${url} sent more than ${MAX_JSON_BYTES} bytes of JSON`) }
    parts.push(chunk as Buffer)
  }
  const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { Providers?: unknown }
  if (Array.isArray(body.Providers)) yield * body.Providers
}

/** A provider record (the peer schema, or a legacy one with `Protocol`) as a PeerInfo; undefined when its ID is no peer ID. */
function peerInfoOf (record: unknown): PeerInfo | undefined {
  if (typeof record !== 'object' || record === null) return undefined
  const { ID, Addrs, Protocols, Protocol } = record as Record<string, unknown>
  let id: string
  try { id = peerIdFromString(String(ID)).toString() } catch { return undefined }
  const strings = (v: unknown): string[] => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
  return {
    id,
    addresses: strings(Addrs).map(withoutPeerId),
    protocols: [...new Set([...strings(Protocols), ...(typeof Protocol === 'string' ? [Protocol] : [])])]
  }
}

/** An IPNS name (k51… or any libp2p-key CID) as the CID the client takes. */
function nameCid (name: string): CID {
  return peerIdFromString(name).toCID()
}
