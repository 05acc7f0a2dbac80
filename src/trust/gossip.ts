import { stat } from 'node:fs/promises'
import type { Follower } from '../cache/follow.js'
import { loadRecord } from '../cache/records.js'
import { NixipfsError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import type { UnixfsBlocks } from '../ipfs/blocks.js'
import { Announcements, DISPUTES_TOPIC, recordTopic, type Hearing } from '../net/pubsub.js'
import type { P2pNode } from '../net/p2p.js'
import { loadRecordBytes, recordPath } from '../repo-layout.js'
import { cacheStatements } from './disputes.js'
import type { HeardStatements } from './heard.js'

export interface GossipOptions {
  repo: string
  /** the repo's own cache: its record and dispute statements are announced whenever its record changes */
  own?: string
  /** followed caches: records announced for them go to `follower`, and their records are announced (relayed) when they change */
  follow: string[]
  follower?: Follower
  /** where statements heard are kept */
  heard: HeardStatements
  /** the repo's blocks (the own cache's statements are read from them) */
  local: UnixfsBlocks & BlockGetter
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** How often the stored records are looked at for a change (a stat each): a publish by another process shows within this. */
const WATCH_MS = 1_000

/** Record refusals that are no fault of the sender (it may just be behind): dropped without scoring it down. */
const STALE = new Set(['ERR_RECORD_ROLLBACK', 'ERR_RECORD_CONFLICT', 'ERR_RECORD_EXPIRED'])

/**
 * Takes part in the network's announcements: hears dispute statements
 * (checked, kept, relayed when new) and the records of followed caches
 * (IPNS over pubsub, checked as records from peers are), and announces the
 * own cache's statements and every record the repo stores anew.
 */
export function startGossip (node: P2pNode, options: GossipOptions): { stop: () => void } {
  const { repo, heard, log } = options
  const announcements = new Announcements(node, log)
  const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

  announcements.hear(DISPUTES_TOPIC, async (data, from) => {
    try {
      const kept = await heard.offer(new TextDecoder().decode(data))
      if (kept === 'new') log.info(`dispute statement heard from ${from} (nixipfs disputes, GET /disputes)`)
      return kept === 'new' ? 'accept' : 'ignore'
    } catch (err) {
      if (err instanceof NixipfsError) {
        log.warn(`refused a dispute statement from ${from}: ${err.message}`)
        return 'reject'
      }
      throw err
    }
  }, async () => heard.texts().map(encode))

  const backlogOf = (name: string) => async (): Promise<Uint8Array[]> => {
    const bytes = await loadRecordBytes(repo, name)
    return bytes === undefined ? [] : [bytes]
  }
  for (const name of options.follow.filter(n => n !== options.own)) {
    announcements.hear(recordTopic(name), async (data, from): Promise<Hearing> => {
      if (options.follower === undefined) return 'ignore'
      try {
        return await options.follower.offer(name, from, data) === 'newer' ? 'accept' : 'ignore'
      } catch (err) {
        if (err instanceof NixipfsError) return STALE.has(err.code) ? 'ignore' : 'reject'
        throw err
      }
    }, backlogOf(name))
  }
  // The own records come from this repo only; hearing the topic lets peers ask for the current one.
  if (options.own !== undefined) announcements.hear(recordTopic(options.own), async () => 'ignore', backlogOf(options.own))

  /** Announces the own cache's statements that this node did not know yet. */
  const announceOwnStatements = async (name: string): Promise<void> => {
    const record = await loadRecord(repo, name)
    if (record === undefined) return
    for (const text of await cacheStatements(options.local, record.root)) {
      if (await heard.offer(text) === 'new') await announcements.announce(DISPUTES_TOPIC, encode(text))
    }
  }

  const seen = new Map<string, number>()
  let busy = false
  const watch = async (): Promise<void> => {
    for (const name of new Set([...(options.own === undefined ? [] : [options.own]), ...options.follow])) {
      const mtimeMs = await stat(recordPath(repo, name)).then(s => s.mtimeMs, () => 0)
      if (mtimeMs === 0 || seen.get(name) === mtimeMs) continue
      seen.set(name, mtimeMs)
      const bytes = await loadRecordBytes(repo, name)
      if (bytes !== undefined) await announcements.announce(recordTopic(name), bytes)
      if (name === options.own) await announceOwnStatements(name)
    }
  }
  const timer = setInterval(() => {
    if (busy) return
    busy = true
    watch().catch((err: Error) => log.warn(`announcing records and statements failed: ${err.message}`)).finally(() => { busy = false })
  }, WATCH_MS)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}
