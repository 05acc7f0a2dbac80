import type { HttpPeer } from './http-peer.js'

/** How long a peer that sent a corrupt block is skipped unless told otherwise. */
const DEFAULT_BAN_MS = 5 * 60_000

/** HTTP peers skipped for a while after sending a corrupt block; the others in turn. */
export class PeerBans {
  private readonly banned = new Map<string, number>()
  private next = 0

  constructor (private readonly peers: HttpPeer[], private readonly banMs = DEFAULT_BAN_MS) {}

  /** Peers not currently skipped, starting with a different one each call to spread load. */
  usable (): HttpPeer[] {
    const now = Date.now()
    const ok = this.peers.filter(p => (this.banned.get(p.url) ?? 0) <= now)
    const start = this.next++ % Math.max(1, ok.length)
    return [...ok.slice(start), ...ok.slice(0, start)]
  }

  /** Skips the peer at `url` for a while. */
  ban (url: string): void {
    this.banned.set(url, Date.now() + this.banMs)
  }
}
