import { openIndex, type CacheIndex } from '../cache/index.js'
import { startFollowing } from '../cache/follow.js'
import { publish, publishDisputes } from '../cache/publish.js'
import { loadRecord } from '../cache/records.js'
import { RECIPES } from '../cache/recipes.js'
import { PackStore } from '../ipfs/pack-store.js'
import type { SecretKey } from '../nix/signing.js'
import { startNetwork, type NetworkOptions } from '../net/network.js'
import { signStatement } from './statement.js'
import { Announcements, DISPUTES_TOPIC } from '../net/pubsub.js'
import { NarHasher } from '../nix/hash.js'
import { encodeNar } from '../nix/nar/encode.js'
import { walkPath } from '../nix/nar/walk.js'
import { parseStorePath } from '../nix/store-path.js'
import { queryPathInfos, rebuildAndCompare } from '../nix/store.js'
import { NixCommandError, PeerError } from '../errors.js'

/** How long verify waits for a peer that hears dispute statements before it announces them. */
const ANNOUNCE_WAIT_MS = 5_000

/** What followed builders signed for a path, per cache. */
export interface Signed { cache: string, key: string, narHash: string, narSize: number }

/** The outcome of rebuilding one store path. */
export interface Verification {
  storePath: string
  deriver: string
  rebuilt: { narHash: string, narSize: number }
  signed: Signed[]
  /** every followed builder that has the path signed exactly what the rebuild gave */
  agrees: boolean
}

/** NarHash and NarSize of a directory tree as Nix would serialize it. */
async function narHashOf (path: string): Promise<{ narHash: string, narSize: number }> {
  const hasher = new NarHasher()
  for await (const chunk of encodeNar(walkPath(path, { reuseBuffers: true }), { reuseBuffer: true })) hasher.update(chunk)
  return { narHash: hasher.digest(), narSize: hasher.size }
}

/**
 * Rebuilds `storePath` from its derivation on this machine and compares the
 * result with what each followed cache signed for it.
 */
export async function verifyPath (storePath: string, caches: Array<{ name: string, index: CacheIndex }>): Promise<Verification> {
  const [info] = await queryPathInfos([storePath])
  if (info?.deriver === undefined) throw new NixCommandError(`Nix knows no derivation for ${storePath}; only paths built (or substituted with their .drv) on this machine can be rebuilt`)
  const deriver = `/nix/store/${info.deriver}`
  const rebuild = await rebuildAndCompare(deriver, storePath)
  const rebuilt = rebuild.same ? { narHash: info.narHash, narSize: info.narSize } : await narHashOf(rebuild.checkPath!)
  const { hash } = parseStorePath(storePath)
  const signed: Signed[] = []
  for (const { name, index } of caches) {
    const entry = await index.narInfo(hash)
    if (entry === undefined) continue
    const sig = entry.info.sigs[entry.info.sigs.length - 1] ?? ''
    signed.push({ cache: name, key: sig.slice(0, sig.indexOf(':')), narHash: entry.info.narHash, narSize: entry.info.narSize })
  }
  return { storePath, deriver, rebuilt, signed, agrees: signed.every(s => s.narHash === rebuilt.narHash && s.narSize === rebuilt.narSize) }
}

export interface VerifyOptions {
  repo: string
  paths: string[]
  follow: string[]
  network: Omit<NetworkOptions, 'log'>
  key: SecretKey
  /** publish paths whose rebuild matches into the own cache, signed by the own key */
  cosign: boolean
  recordLifetimeMs: number
  log: NetworkOptions['log']
}

/** Record lookups a verify makes on a DHT before a cache counts as not found. */
const RECORD_ATTEMPTS = 3

/**
 * Fetches the followed caches' records and indexes, rebuilds each path, and
 * publishes the outcome in the own cache: a co-signature when the rebuild
 * matches (with `cosign`), a signed dispute statement when it does not.
 */
export async function verifyAndPublish (options: VerifyOptions): Promise<Verification[]> {
  const { repo, log } = options
  const local = await PackStore.openRepo(repo)
  const network = await startNetwork(repo, local, { ...options.network, log })
  try {
    const follower = startFollowing(repo, options.follow, network.records, network.blocks, { intervalMs: 3_600_000, fetch: 'index', log })
    // A node that has just joined a DHT may not reach a record's holders at its first query (seen under load): ask again.
    for (let attempt = 1; attempt <= RECORD_ATTEMPTS; attempt++) {
      await follower.poll()
      const missing = await Promise.all(options.follow.map(async name => await loadRecord(repo, name) === undefined))
      if (!missing.includes(true) || network.routing === undefined) break
    }
    follower.stop()
    const caches: Array<{ name: string, index: CacheIndex }> = []
    for (const name of options.follow) {
      const record = await loadRecord(repo, name)
      if (record === undefined) throw new PeerError(name, `no record for /ipns/${name} could be found; check --http-gateway / --peer / --bootstrap / --routing`)
      caches.push({ name, index: await openIndex(network.blocks, record.root) })
    }
    const results: Verification[] = []
    for (const path of options.paths) results.push(await verifyPath(path, caches))
    const disputes = results.filter(r => !r.agrees)
    if (disputes.length > 0) {
      const statements = disputes.map(r => ({
        hash: parseStorePath(r.storePath).hash,
        text: signStatement(options.key, { storePath: r.storePath, deriver: r.deriver, rebuilt: r.rebuilt, signed: r.signed.map(s => ({ key: s.key, narHash: s.narHash, narSize: s.narSize })), date: new Date().toISOString() })
      }))
      await publishDisputes({ repo, blocks: local }, { key: options.key, recordLifetimeMs: options.recordLifetimeMs, recipe: RECIPES.cdc.name, statements })
      // Only a node that reached peers (--peer, or whatever else joined it to a network) has anyone to tell.
      if (network.p2p !== undefined && network.p2p.libp2p.getConnections().length > 0) {
        const announcements = new Announcements(network.p2p, log)
        const sent: number[] = []
        for (const { text } of statements) sent.push(await announcements.announce(DISPUTES_TOPIC, new TextEncoder().encode(text), ANNOUNCE_WAIT_MS))
        const last = new TextEncoder().encode(statements.at(-1)!.text)
        if (sent.every(n => n === 0)) log.warn(`no peer hears ${DISPUTES_TOPIC} yet; a gateway serving this cache announces the statements, and hands them to peers as they join`)
        else if (!await announcements.heldByPeer(DISPUTES_TOPIC, last, ANNOUNCE_WAIT_MS)) log.warn(`sent ${statements.length} dispute statement(s) on ${DISPUTES_TOPIC} to ${Math.max(...sent)} peer(s), but none confirmed it within ${ANNOUNCE_WAIT_MS / 1000} s; a gateway serving this cache announces the statements again`)
        else log.info(`announced ${statements.length} dispute statement(s) on ${DISPUTES_TOPIC} to ${Math.max(...sent)} peer(s)`)
      }
    }
    const matching = results.filter(r => r.agrees && r.signed.length > 0).map(r => r.storePath)
    if (options.cosign && matching.length > 0) {
      await publish({ repo, blocks: local }, { paths: matching, recursive: false, key: options.key, recipe: RECIPES.cdc, recordLifetimeMs: options.recordLifetimeMs })
    }
    return results
  } finally {
    await network.stop()
    await local.close()
  }
}
