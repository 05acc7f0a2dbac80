import { setTimeout as delay } from 'node:timers/promises'
import type { P2pNode } from './p2p.js'

/**
 * The public IPFS network's bootstrap peers (kubo's default list), for
 * `--bootstrap public`. Never dialled by the tests here (no internet).
 */
export const PUBLIC_BOOTSTRAP = [
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt',
  '/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ'
]

/** First wait before a bootstrap peer is dialled again; doubled after each failure up to BACKOFF_MAX_MS. */
const BACKOFF_MIN_MS = 500
const BACKOFF_MAX_MS = 30_000
/** How long one dial may take. */
const DIAL_TIMEOUT_MS = 5_000

/**
 * Waits `ms`, or less when `signal` aborts. It leaves no listener on the
 * signal (a listener per wait, never removed, grew by one every 30 s per peer).
 */
export async function pause (ms: number, signal: AbortSignal): Promise<void> {
  await delay(ms, undefined, { signal }).catch(() => {})
}

/**
 * Dials each bootstrap peer until it answers, retrying with exponential
 * backoff (libp2p's own bootstrap module dials once: under load, nodes never
 * joined). Once connected, the DHT fills its routing table through it. A
 * peer that is lost is dialled again, with the same backoff.
 */
export function startBootstrap (node: P2pNode, addresses: string[], log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }): { joined: Promise<void>, stop: () => void } {
  const abort = new AbortController()
  let joinedResolve!: () => void
  const joined = new Promise<void>(resolve => { joinedResolve = resolve })
  const sleep = async (ms: number): Promise<void> => { await pause(ms, abort.signal) }
  const connected = (peer: string): boolean => node.libp2p.getConnections().some(c => c.remotePeer.toString() === peer)

  async function keepDialling (address: string): Promise<void> {
    const peer = address.split('/p2p/').at(-1) ?? ''
    let wait = BACKOFF_MIN_MS
    /** a failure was reported since the last success: later ones are not (a stopped bootstrap peer must not flood the log) */
    let warned = false
    while (!abort.signal.aborted) {
      if (connected(peer)) {
        await sleep(BACKOFF_MAX_MS)
        continue
      }
      try {
        // Loaded here: commands that only name PUBLIC_BOOTSTRAP must not load the libp2p stack.
        const { dialPeer } = await import('./p2p.js')
        await dialPeer(node, address, AbortSignal.any([abort.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)]))
        log.info(`bootstrap: connected to ${address}`)
        warned = false
        wait = BACKOFF_MIN_MS
        joinedResolve()
        // Fill the routing table now rather than at kad-dht's next refresh.
        node.libp2p.services.dht.refreshRoutingTable().catch((err: Error) => log.debug(`bootstrap: refreshing the routing table: ${err.message}`))
      } catch (err) {
        if (abort.signal.aborted) return
        if (!warned) log.warn(`bootstrap: cannot reach ${address} (${(err as Error).message.split('\n')[0]!}); retrying, backing off up to ${BACKOFF_MAX_MS / 1000} s`)
        warned = true
        await sleep(wait)
        wait = Math.min(wait * 2, BACKOFF_MAX_MS)
      }
    }
  }
  for (const address of addresses) keepDialling(address).catch((err: Error) => log.warn(`bootstrap: ${err.message}`))
  return { joined, stop: () => abort.abort() }
}
