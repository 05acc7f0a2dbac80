import { TopicValidatorResult } from '@libp2p/gossipsub'
import { createTopicScoreParams, type PeerScore } from '@libp2p/gossipsub/score'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { Lru } from '../lru.js'
import type { P2pNode } from './p2p.js'

/** The gossipsub topic on which signed dispute statements (rebuild results of `nixipfs verify`) are announced. */
export const DISPUTES_TOPIC = '/nixipfs/disputes/1'

/**
 * The IPNS-over-pubsub topic of an IPNS name, as kubo and Helia use it
 * (specs.ipfs.tech/ipns/ipns-pubsub-router): `/record/` + unpadded base64url
 * of the routing key `/ipns/` + the name's multihash bytes.
 */
export function recordTopic (name: string): string {
  const key = Buffer.concat([Buffer.from('/ipns/'), peerIdFromString(name).toMultihash().bytes])
  return `/record/${key.toString('base64url')}`
}

/** What a node makes of an announcement: keep and relay it, drop it quietly (known, stale), or drop it as invalid (its sender is scored down). */
export type Hearing = 'accept' | 'ignore' | 'reject'

/** Checks (and keeps) one announcement heard on a topic, from peer `from`. */
export type Listener = (data: Uint8Array, from: string) => Promise<Hearing>

/** Largest announcement a node takes, gossiped or from a backlog: statements and records are a few KB. */
export const MAX_ANNOUNCEMENT_BYTES = 64 * 1024
/** Largest backlog a peer is asked for (see hear). */
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024
/** How long a peer may take to hand over its backlog. */
const BACKLOG_TIMEOUT_MS = 10_000
/** A peer's backlog of a topic is asked for at most this often (a peer that subscribes again and again gets no more of this node's work). */
const BACKLOG_EVERY_MS = 60_000

/** Invalid items a peer's backlog may hold before the rest of it is left unread (each costs a signature check). */
const BACKLOG_INVALID_MAX = 3

/**
 * How a topic scores its peers: only invalid announcements count, -10 × their
 * number squared, so a third one (-90) falls below gossipsub's graylist
 * threshold (-80) and the peer's messages are no longer even read. The
 * defaults score nothing at all for a topic without parameters, and their
 * delivery-rate penalties would push honest peers down on topics as quiet as disputes.
 */
const TOPIC_SCORE = createTopicScoreParams({
  topicWeight: 1,
  timeInMeshWeight: 0,
  firstMessageDeliveriesWeight: 0,
  meshMessageDeliveriesWeight: 0,
  meshFailurePenaltyWeight: 0,
  invalidMessageDeliveriesWeight: -10,
  // per second: the penalty halves in about a minute
  invalidMessageDeliveriesDecay: 0.99
})

const RESULT = { accept: TopicValidatorResult.Accept, ignore: TopicValidatorResult.Ignore, reject: TopicValidatorResult.Reject } as const

/**
 * Publishes and hears announcements on gossipsub topics. A topic heard may
 * come with a backlog (what the node holds for it): a peer that starts
 * hearing the topic asks for it, over libp2p fetch, so a node that joins
 * late learns what was announced before it came.
 */
export class Announcements {
  private readonly listeners = new Map<string, Listener>()
  /** when each peer's backlog of each topic was last asked for (`<peer> <topic>`) */
  private readonly asked = new Lru<number>(10_000)

  constructor (private readonly node: P2pNode, private readonly log: { debug: (m: string) => void }) {
    node.libp2p.services.pubsub.addEventListener('subscription-change', (event) => {
      for (const { topic, subscribe } of event.detail.subscriptions) {
        if (subscribe) this.catchUp(topic, event.detail.peerId)
      }
    })
  }

  /**
   * Hears `topic`: every message goes to `listener` before it is relayed
   * (only 'accept' is relayed). `backlog` is what this node hands peers
   * that ask (each item as it would announce it).
   */
  hear (topic: string, listener: Listener, backlog?: () => Promise<Uint8Array[]>): void {
    const { pubsub, fetch } = this.node.libp2p.services
    this.listeners.set(topic, listener)
    // Topics are scored by name; IPNS topics come and go, so parameters are added as topics are heard (the interface does not show the scorer).
    ;(pubsub as unknown as { score: PeerScore }).score.params.topics[topic] = TOPIC_SCORE
    pubsub.topicValidators.set(topic, async (peer, message) => RESULT[await this.check(topic, message.data, peer.toString())])
    if (backlog !== undefined) {
      fetch.registerLookupFunction(topic, async () => {
        const items: string[] = []
        let bytes = 0
        for (const item of await backlog()) {
          bytes += item.length
          if (bytes > MAX_BACKLOG_BYTES / 2) break // base64 grows it by a third
          items.push(Buffer.from(item).toString('base64'))
        }
        return new TextEncoder().encode(JSON.stringify(items))
      })
    }
    pubsub.subscribe(topic)
    // Peers already connected told their subscriptions before this listener was there.
    for (const peer of pubsub.getSubscribers(topic)) this.catchUp(topic, peer)
  }

  /** Announces `data` on `topic`; with `waitMs`, first waits (at most that long) until a peer hears the topic. Returns how many peers it was sent to. */
  async announce (topic: string, data: Uint8Array, waitMs = 0): Promise<number> {
    const { pubsub } = this.node.libp2p.services
    for (const deadline = Date.now() + waitMs; pubsub.getSubscribers(topic).length === 0 && Date.now() < deadline;) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const { recipients } = await pubsub.publish(topic, data)
    return recipients.length
  }

  /**
   * Waits (at most `timeoutMs`) until a peer hearing `topic` holds `data` in its backlog: a publish only queues
   * the message, and a command that stops its node right after it may take the message down with it.
   * Returns whether one did.
   */
  async heldByPeer (topic: string, data: Uint8Array, timeoutMs: number): Promise<boolean> {
    const wanted = Buffer.from(data).toString('base64')
    for (const deadline = Date.now() + timeoutMs; Date.now() < deadline;) {
      const held = await Promise.all(this.node.libp2p.services.pubsub.getSubscribers(topic).map(async peer =>
        (await this.backlogOf(topic, peer, AbortSignal.timeout(Math.max(1, deadline - Date.now()))).catch((): string[] => [])).includes(wanted)))
      if (held.includes(true)) return true
      await new Promise(resolve => setTimeout(resolve, 200))
    }
    return false
  }

  /** A peer's backlog of `topic`: the items it holds, each base64. */
  private async backlogOf (topic: string, peer: PeerId, signal: AbortSignal): Promise<string[]> {
    const bytes = await this.node.libp2p.services.fetch.fetch(peer, topic, { signal })
    if (bytes === undefined || bytes.length > MAX_BACKLOG_BYTES) return []
    const items = JSON.parse(new TextDecoder().decode(bytes)) as unknown
    return Array.isArray(items) ? items.filter((item): item is string => typeof item === 'string') : []
  }

  /** What the listener makes of one announcement; a listener that fails (a full disk) drops it without blaming the sender. */
  private async check (topic: string, data: Uint8Array, from: string): Promise<Hearing> {
    const listener = this.listeners.get(topic)
    if (listener === undefined) return 'ignore'
    if (data.length > MAX_ANNOUNCEMENT_BYTES) return 'reject'
    return await listener(data, from).catch((err: Error) => {
      this.log.debug(`an announcement on ${topic} from ${from} could not be kept: ${err.message}`)
      return 'ignore' as const
    })
  }

  /** Asks `peer` for its backlog of `topic` and hears each item as if gossiped (it is not relayed: every peer asks for itself). */
  private catchUp (topic: string, peer: PeerId): void {
    if (!this.listeners.has(topic)) return
    const key = `${peer.toString()} ${topic}`
    if (Date.now() - (this.asked.get(key) ?? -Infinity) < BACKLOG_EVERY_MS) return
    this.asked.set(key, Date.now())
    void (async () => {
      let invalid = 0
      for (const item of await this.backlogOf(topic, peer, AbortSignal.timeout(BACKLOG_TIMEOUT_MS))) {
        if (await this.check(topic, Buffer.from(item, 'base64'), peer.toString()) === 'reject' && ++invalid >= BACKLOG_INVALID_MAX) {
          this.log.debug(`the backlog of ${topic} from ${peer.toString()} holds ${invalid} invalid items; the rest is left unread`)
          break
        }
      }
    })().catch((err: Error) => this.log.debug(`backlog of ${topic} from ${peer.toString()}: ${err.message}`))
  }
}
