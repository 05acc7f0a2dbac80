import { delegatedRoutingV1HttpApiClient, type DelegatedRoutingV1HttpApiClient } from '@helia/delegated-routing-v1-http-api-client'
import type { ComponentLogger, Logger } from '@libp2p/interface'
import { peerIdFromCID, peerIdFromString } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import { UsageError } from '../errors.js'
import type { PeerInfo } from './routing-view.js'
import { withoutPeerId } from './routing-view.js'

/** How long one request to a routing server may take. */
const REQUEST_TIMEOUT_MS = 10_000

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

/** A Delegated Routing V1 server (`--routing URL`) as a record store and provider index. */
export class DelegatedRouting {
  readonly url: string
  private readonly client: DelegatedRoutingV1HttpApiClient

  constructor (url: string, log: { debug: (m: string) => void } = { debug: () => {} }) {
    this.url = routingBaseOf(url)
    // cacheTTL 0: Node has no Cache API anyway, and records must be fresh.
    this.client = delegatedRoutingV1HttpApiClient({ url: this.url, timeout: REQUEST_TIMEOUT_MS, cacheTTL: 0 })({ logger: loggerOf(log.debug) })
  }

  /** The server's record for IPNS name `name` (k51…), as signed and unverified; undefined when it has none. */
  async getRecord (name: string, signal?: AbortSignal): Promise<Uint8Array | undefined> {
    try {
      return await this.client.getIPNS(nameCid(name), { signal })
    } catch (err) {
      if ((err as Error).name === 'NotFoundError') return undefined
      throw err
    }
  }

  /** Hands a signed record for `name` to the server (which checks it). */
  async putRecord (name: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.client.putIPNS(nameCid(name), bytes, { signal })
  }

  /** The providers the server knows for `cid`. */
  async * findProviders (cid: CID, signal?: AbortSignal): AsyncGenerator<PeerInfo> {
    for await (const record of this.client.getProviders(cid, { signal })) {
      yield {
        id: peerIdFromCID(record.ID).toString(),
        addrs: record.Addrs.map(a => withoutPeerId(a.toString())),
        protocols: record.Protocols
      }
    }
  }

  async stop (): Promise<void> {
    await this.client.stop()
  }
}

/** An IPNS name (k51… or any libp2p-key CID) as the CID the client takes. */
function nameCid (name: string): CID {
  return peerIdFromString(name).toCID()
}

/** The trustless gateway URLs a routing record gives for a peer: `/ip4/…/tcp/<port>/http(s)` (ip6, dns too) as http(s)://host:port. */
export function gatewayUrlsOf (peer: PeerInfo): string[] {
  if (!peer.protocols.includes('transport-ipfs-gateway-http')) return []
  return peer.addrs.flatMap(address => {
    const m = /^\/(ip4|ip6|dns|dns4|dns6)\/([^/]+)\/tcp\/(\d+)(?:\/tls)?\/(https?)$/.exec(address)
    if (m === null) return []
    const host = m[1] === 'ip6' ? `[${m[2]!}]` : m[2]!
    return [`${m[4]!}://${host}:${m[3]!}`]
  })
}
