import { randomBytes } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { narCidOfUrl, type NarEntry, type NarInfoEntry, type ServedIndex } from '../cache/index.js'
import type { ServedCaches } from '../cache/union.js'
import { startFollowing, type Follower, type FollowOptions } from '../cache/follow.js'
import { acceptRecord, loadRecord } from '../cache/records.js'
import { markOpening, type IndexSource } from '../cache/source.js'
import { cidOf, RAW_CODE } from '../ipfs/block.js'
import { ipnsNameOf } from '../ipfs/ipns.js'
import { encodeNix32 } from '../nix/base32.js'
import { MAX_NARINFO_BYTES, parseNarInfo, signersOf } from '../nix/narinfo.js'
import { parseStorePath } from '../nix/store-path.js'
import { Lru } from '../lru.js'
import type { PublicKey } from '../nix/signing.js'
import type { CID } from 'multiformats/cid'
import { UnavailableError } from '../errors.js'
import type { Network } from '../net/network.js'
import { rendezvousCid, type Holding } from '../net/rendezvous.js'
import { httpUrlsOf } from '../net/routing-view.js'
import type { Provider } from '../net/routing.js'

/** How long one lookup may take before the narinfo counts as a miss. */
export const DEFAULT_DISCOVER_DEADLINE_MS = 3_000
/** Caches followed on demand at most; the least recently useful one is dropped first. */
export const DEFAULT_DISCOVERED_CACHES = 16
/** How long a path nobody trusted was found for is not looked up again. */
const MISS_MS = 5 * 60_000
/** A provider search ends when none came for this long, once enough trusted caches were named. */
const QUIET_MS = 300
/**
 * How long a discovered cache's record lookup goes on after the first record came (the DHT's default is a second,
 * a floor under every discovered narinfo): the follower asks again for newer ones, and the provider that named
 * the cache, asked beside the DHT, hands over its current one.
 */
const RECORD_SETTLE_MS = 200
/** Peers holding a discovered cache's root that are connected: their trustless gateways join the block sources, or they are dialled (bitswap asks only connected peers for blocks). */
const HOLDERS = 2
/** How long finding and dialling them may take. */
const HOLDERS_MS = 10_000
/**
 * How long following waits for a first holder before it fetches the index anyway. Fetched before, the index
 * went to bitswap alone: wants for eight caches' blocks filled its slots, each unanswered one for its whole
 * timeout, and indexes of 11 blocks took 4–34 s (24-node bench).
 */
const FIRST_HOLDER_MS = 3_000
/**
 * How long past its deadline a narinfo request waits for a lookup: each step of a lookup honours the deadline,
 * but under load they overran it (seen: 12.4 s on a 50-node bench); the lookup goes on, and a later request gains by it.
 */
const DEADLINE_GRACE_MS = 500
/**
 * How long following a trusted cache (its record from the network) may take. It outlives the lookup's deadline:
 * a record that comes late still serves the next request, and a request for a path a trusted cache was named for
 * waits for it (a 404 makes Nix build from source and remember the miss for an hour).
 */
const FOLLOW_MS = 10_000
/**
 * How long asking a provider found late may take: the provider search stops this long before the deadline, and a
 * provider is given at least this long to answer, past the deadline if need be (the request waits for it). It
 * stopped at half the deadline when the record had to follow; the 50-node bench had 404s after 1.5 s of search
 * that found no provider (first provider p99 4.9 s into a lookup under load 6 on 2 cores), and 404s for paths a
 * provider found at 2.4 s was still being asked for at the deadline.
 */
const ASK_MS = 750
/** Providers asked per lookup at most (a thousand Sybils must not cost a thousand requests). */
const MAX_PROVIDERS = 20
/**
 * How long a narinfo a provider handed over for a discovered cache is served from memory. It is served before the
 * cache's index is fetched (following took 4 s at p50 on the 50-node bench, the provider's answer 0.6 s); the index
 * then says what the cache holds now.
 */
const VOUCHED_MS = 10 * 60_000
/** Narinfos handed over kept per discovered cache at most. */
const VOUCHED_PER_CACHE = 1_000
/** How long after the last lookup the node counts as busy (Nix asks for a closure's paths in bursts). */
const BUSY_AFTER_MS = 5_000
/** How long background work waits for the node to be idle at most (lookups every few seconds must not starve it). */
const IDLE_WAIT_MS = 60_000

export interface DiscoveryOptions {
  repo: string
  network: Network
  /** caches whose IPNS name comes from one of these keys may be followed (Sybils' are never followed) */
  keys: PublicKey[]
  /** serve only narinfos signed by one of `keys` (no --trust: the local Nix's keys; with --trust the quorum judges) */
  requireSignature: boolean
  /** the caches the node serves, by name and in order (discovered ones are added to and dropped from both), and how one is opened */
  caches: { sources: Map<string, IndexSource>, served: IndexSource[], open: (name: string) => IndexSource }
  /** how a discovered cache's index is fetched in the background (later lookups are local) */
  followOptions: FollowOptions
  deadlineMs?: number
  maxCaches?: number
  /** trusted caches that can settle a path (the --threshold; 1 without --trust): a provider search does not end early with fewer */
  enough?: number
  /** look up the trusted caches by name at start (default true, when they fit `maxCaches`) */
  warmUp?: boolean
  log: { info: (m: string) => void, warn: (m: string) => void, debug: (m: string) => void }
}

/** How a lookup under way is doing: a trusted cache was named as holding the path; providers being asked. */
interface LookupState { hopeful: boolean, asking: number }

/** Finds caches that hold a store path, among those whose keys are trusted. */
export interface Discovery {
  /** looks for trusted caches holding a narinfo for `hash` and starts serving them; true when one was added */
  find: (hash: string) => Promise<boolean>
  /** true for a cache discovery found (on the DHT) and serves */
  isDiscovered: (name: string) => boolean
  /** remembers `hash` as a miss: the caches a lookup added (by name, say) were asked and lack it */
  missed: (hash: string) => void
  /** resolves once no lookup has been under way for a while (or after a minute, or when `signal` aborts): background network work waits for it */
  idle: (signal: AbortSignal) => Promise<void>
  stop: () => void
}

/**
 * Discovery (gateway --discover): for a narinfo no served cache has, asks the
 * DHT and the --routing servers who provides the path's rendezvous CID, asks each provider (a bounded
 * number) which caches it holds the narinfo in, and follows those whose key
 * is trusted, on demand: their record comes from the network and is checked
 * as any followed cache's. A narinfo a provider hands over with a cache's name
 * is served before that cache's index, when a trusted key signed it for the
 * path. Discovery finds candidates, never trust: what they
 * serve goes through the same union or quorum as followed caches. A lookup
 * has a deadline and a miss is remembered for a while.
 */
export function startDiscovery (options: DiscoveryOptions): Discovery {
  const deadlineMs = options.deadlineMs ?? DEFAULT_DISCOVER_DEADLINE_MS
  const maxCaches = options.maxCaches ?? DEFAULT_DISCOVERED_CACHES
  const enough = options.enough ?? 1
  const allowed = new Map(options.keys.map(k => [ipnsNameOf(k.key), k]))
  const misses = new Map<string, number>()
  /** trusted names whose record the network did not have, and until when they are not asked for again */
  const absent = new Map<string, number>()
  const inflight = new Map<string, { result: Promise<boolean>, hopeful: () => boolean }>()
  /** when the last lookup ended */
  let lastLookup = 0
  /** follows under way, by name: concurrent lookups share one (two lookups naming one cache had each added it) */
  const joining = new Map<string, Promise<boolean>>()
  /** discovered caches, least recently useful first (a Map keeps insertion order) */
  const discovered = new Map<string, true>()
  const abort = new AbortController()
  setMaxListeners(Infinity, abort.signal)

  const touch = (name: string): void => { discovered.delete(name); discovered.set(name, true) }
  const followers = new Map<string, Follower>()
  const { sources, served: servedList } = options.caches

  /** narinfos that providers handed over, by discovered cache (see `withVouched`) */
  const vouched = new Map<string, Vouched>()

  /** Serves discovered cache `name` (once): the narinfos handed over for it, and its index once it is followed. */
  function serve (name: string): void {
    if (sources.has(name)) return
    const handed: Vouched = { narInfos: new Lru(VOUCHED_PER_CACHE), nars: new Lru(VOUCHED_PER_CACHE) }
    vouched.set(name, handed)
    // Lookups of what was not handed over wait for the cache's follow under way, if any: before it, no record is stored.
    const opened = withVouched(options.caches.open(name), handed, () => joining.get(name))
    const source = options.requireSignature ? signedOnly(opened, options.keys) : opened
    sources.set(name, source)
    servedList.push(source)
    touch(name)
    while (discovered.size > maxCaches) {
      const oldest = discovered.keys().next().value!
      discovered.delete(oldest)
      remove(oldest)
      options.log.info(`discovery: stopped following /ipns/${oldest} (more than ${maxCaches} discovered caches; least recently useful)`)
    }
  }

  /** Serves discovered cache `name` and keeps its index in step with its record, from the network. */
  function add (name: string): void {
    serve(name)
    const source = sources.get(name)!
    const follower = startFollowing(options.repo, [name], options.network.records, options.network.blocks, { ...options.followOptions, onRecord: () => source.recheck() })
    // Its record was just looked up (see follow): asking the network again at once doubled the DHT walks of every discovered cache.
    follower.sync(name).catch(() => {})
    followers.set(name, follower)
    source.recheck() // the record follow() just stored
    options.log.info(`discovery: following /ipns/${name}`)
  }

  /** True when cache `name` is followed: given with --follow, or discovered and followed (not only served from what was handed over). */
  const isFollowed = (name: string): boolean => followers.has(name) || (sources.has(name) && !vouched.has(name))

  function remove (name: string): void {
    followers.get(name)?.stop()
    followers.delete(name)
    vouched.delete(name)
    const source = sources.get(name)
    sources.delete(name)
    if (source !== undefined) servedList.splice(servedList.indexOf(source), 1)
  }

  /**
   * Keeps `text`, handed over by a provider as cache `name`'s narinfo for `hash`, when a trusted key signed it for that
   * path; the names of the trusted keys that signed it when kept.
   */
  function vouch (name: string, hash: string, text: string): string[] {
    const signed = signedNarInfo(text, hash, options.keys)
    if (signed === undefined) return []
    serve(name)
    const handed = vouched.get(name)
    if (handed === undefined) return [] // a cache followed otherwise (--follow): its index answers
    const { entry, signers } = signed
    const until = Date.now() + VOUCHED_MS
    handed.narInfos.set(hash, { entry, until })
    handed.nars.set(entry.nar.toString(), { entry: { cid: entry.nar, narSize: entry.info.narSize, narHash: entry.info.narHash, narHashFrom: entry.info.storePath }, until })
    return signers
  }

  /** Starts following trusted cache `name` (once, however many lookups ask); true once it is served. A lookup's failure is remembered (`absent`). */
  function join (name: string, remember = true, via?: Provider): Promise<boolean> {
    let running = joining.get(name)
    if (running === undefined) {
      running = follow(name, AbortSignal.any([abort.signal, AbortSignal.timeout(FOLLOW_MS)]), remember, via)
        .catch((err: Error) => { options.log.debug(`discovery: following /ipns/${name}: ${err.message}`); return false })
        .finally(() => joining.delete(name))
      joining.set(name, running)
    }
    return running
  }

  async function follow (name: string, signal: AbortSignal, remember: boolean, via?: Provider): Promise<boolean> {
    setMaxListeners(Infinity, signal)
    // The provider that named the cache holds it, so its record: asked first (among many connections it was often not
    // among the few asked, and the DHT query took seconds: 2–8 s from "named" to "followed" on the 50-node bench).
    for (const { from, bytes } of await options.network.records(name, signal, RECORD_SETTLE_MS, via === undefined ? [] : [via.id])) {
      await acceptRecord(options.repo, name, bytes).catch((err: Error) => options.log.debug(`discovery: a record of /ipns/${name} from ${from} refused: ${err.message}`))
    }
    const record = await loadRecord(options.repo, name)
    if (record === undefined) {
      if (remember) absent.set(name, Date.now() + MISS_MS)
      return false
    }
    if (isFollowed(name)) { if (discovered.has(name)) touch(name); return true } // another lookup's follow added it meanwhile
    // A cache found by its name (or named by a peer that lacks its blocks) has no block source connected yet:
    // without one, bitswap wants for its index go unanswered until they time out.
    let holderFound!: () => void
    const firstHolder = new Promise<void>(resolve => { holderFound = resolve })
    connectHolders(record.root, via, holderFound, () => sources.has(name))
      .catch((err: Error) => options.log.debug(`discovery: connecting holders of ${record.root.toString()}: ${err.message}`))
      .finally(holderFound)
    await Promise.race([firstHolder, new Promise(resolve => setTimeout(resolve, FIRST_HOLDER_MS).unref())])
    if (!isFollowed(name)) add(name)
    if (discovered.has(name)) touch(name)
    return true
  }

  /** the search for a discovered cache's second holder under way (see connectHolders) */
  let secondHolders = Promise.resolve()

  /**
   * Connects up to HOLDERS peers that provide `root` (`via` first, then those the routing names, once no lookup is
   * under way when `via` is one, and while the cache is `served`): adds their trustless gateways, checked, to the
   * block sources, or dials them over libp2p. Calls `connected` when the first one is.
   */
  async function connectHolders (root: CID, via: Provider | undefined, connected: () => void, served: () => boolean): Promise<void> {
    const { p2p } = options.network
    const dialProvider = p2p === undefined ? undefined : (await import('../net/p2p.js')).dialProvider
    let signal = AbortSignal.any([abort.signal, AbortSignal.timeout(HOLDERS_MS)])
    const started = Date.now()
    const network = options.network
    const seen = new Set<string>()
    let holders = 0
    async function * candidates (): AsyncGenerator<Provider> {
      if (via !== undefined) yield via
      if (holders === 0) { yield * network.findProviders(root, signal); return }
      // With one holder the index comes; a second is for when it goes, and is searched for once no lookup waits, one
      // cache at a time: a DHT walk for every cache found ran beside the next lookups Nix waited for (50-node bench).
      await idle(abort.signal)
      const before = secondHolders
      let done!: () => void
      secondHolders = new Promise<void>(resolve => { done = resolve })
      try {
        await before
        if (abort.signal.aborted || !served()) return
        signal = AbortSignal.any([abort.signal, AbortSignal.timeout(HOLDERS_MS)])
        yield * network.findProviders(root, signal)
      } finally {
        done()
      }
    }
    try {
      for await (const provider of candidates()) {
        if (seen.has(provider.id)) continue
        seen.add(provider.id)
        // Over its trustless gateway when the routing named one: the index comes over either, and a plain HTTP
        // connection costs both sides less than a libp2p one (a Noise handshake, identify), one per cache found.
        const namedGateway = httpUrlsOf(provider.addresses).length > 0
        const overHttp = namedGateway && await network.addHolder(provider, root, signal)
        if (!overHttp) {
          const ok = dialProvider !== undefined && await dialProvider(p2p!, provider, signal).then(() => true, (err: Error) => { options.log.debug(`discovery: dialling ${provider.id}: ${err.message}`); return false })
          // After the dial, identify has told the peer's addresses, its gateway's among them (when the routing named none).
          const serves = !namedGateway && await network.addHolder(provider, root, signal)
          if (!ok && !serves) continue
        }
        connected()
        if (++holders >= HOLDERS) break
      }
    } catch (err) {
      if (!signal.aborted) throw err
    }
    const found = seen.size
    const outcome = `${holders} of ${found} peer(s) holding ${root.toString()} connected in ${Date.now() - started} ms`
    if (holders === 0) options.log.warn(`discovery: ${outcome}: its index can come only from peers connected otherwise`)
    else options.log.debug(`discovery: ${outcome}`)
  }

  async function lookup (hash: string, state: LookupState): Promise<boolean> {
    const { routing, delegated } = options.network
    if (routing === undefined && delegated.length === 0) return false
    const started = Date.now()
    const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(deadlineMs)])
    setMaxListeners(Infinity, signal)
    // A node that has just started may not have its first DHT peer yet (a --routing server is asked at once).
    while (delegated.length === 0 && routing!.size() === 0 && !signal.aborted) await new Promise(resolve => setTimeout(resolve, 50))
    const served = new Set(sources.keys())
    // Each provider is asked as soon as it is found, and each trusted cache it names is followed at once:
    // the DHT query may go on for a while after the first providers came in.
    const asks: Array<Promise<void>> = []
    const names = new Set<string>()
    const following = new Map<string, Promise<boolean>>()
    /** trusted caches this lookup began to follow, and those whose record could not be had (yet) */
    const followed = new Set<string>()
    const failed = new Set<string>()
    /**
     * trusted caches whose narinfo for the path a provider handed over, signed: served at once (their index comes
     * later); and the trusted keys that signed them, which settle the request once they are `enough` (the quorum counts keys)
     */
    const handedOver = new Set<string>()
    const signers = new Set<string>()
    let haveEnough!: () => void
    const enoughHandedOver = new Promise<void>(resolve => { haveEnough = resolve })
    /** when (ms into the lookup) each step first succeeded, for the log: where a slow lookup spent its time */
    const marks: Record<string, number> = {}
    const mark = (step: string): void => { marks[step] ??= Date.now() - started }
    const startFollow = (name: string, via?: Provider): void => {
      failed.delete(name)
      following.set(name, join(name, true, via).then(ok => { (ok ? followed : failed).add(name); if (ok) mark('followed'); return ok }))
    }
    // The search ends ASK_MS before the deadline (a provider found then can still hand its narinfo over; not before
    // half of it), at MAX_PROVIDERS, once every trusted cache is
    // served or followed, or once no new provider came for a while after enough trusted caches were named:
    // Sybils answering first must not end it before the trusted caches were heard of.
    const quiet = new AbortController()
    const search = AbortSignal.any([signal, quiet.signal, AbortSignal.timeout(Math.max(deadlineMs / 2, deadlineMs - ASK_MS))])
    let lastProvider = Date.now()
    const unknown = (name: string): boolean => !served.has(name) && !following.has(name) && (absent.get(name) ?? 0) <= Date.now()
    const maybeEnd = (): void => {
      const named = [...names].filter(n => allowed.has(n)).length
      const all = [...allowed.keys()].every(n => served.has(n) || followed.has(n))
      if (all || (named >= enough && Date.now() - lastProvider >= QUIET_MS)) quiet.abort()
    }
    const ask = async (provider: Provider): Promise<void> => {
      const asking = AbortSignal.any([abort.signal, AbortSignal.timeout(Math.max(started + deadlineMs - Date.now(), ASK_MS))])
      state.asking++
      const holdings = await options.network.cachesHolding(provider, hash, asking).catch((): Holding[] => []).finally(() => { state.asking-- })
      for (const { name, narinfo } of holdings) {
        names.add(name)
        if (!allowed.has(name)) continue
        mark('trusted named')
        state.hopeful = true
        const signedBy = narinfo === '' ? [] : vouch(name, hash, narinfo)
        if (signedBy.length > 0) {
          mark('narinfo handed over')
          handedOver.add(name)
          for (const key of signedBy) signers.add(key)
          if (signers.size >= enough) { quiet.abort(); haveEnough() }
        }
        if (served.has(name)) { if (discovered.has(name)) touch(name); continue }
        // A provider that names a cache also hands over its record (it is connected now): try once more, or share the
        // try another lookup started meanwhile.
        if (!following.has(name) || failed.has(name)) startFollow(name, provider)
      }
      maybeEnd()
    }
    // A trusted cache is also looked up by its own name, so that Sybils crowding the rendezvous CID's
    // providers cannot hide it (bounded: only while all trusted caches fit the followed ones).
    const direct = allowed.size <= maxCaches ? [...allowed.keys()].filter(unknown) : []
    for (const name of direct) startFollow(name)
    const timer = setInterval(maybeEnd, QUIET_MS / 3)
    try {
      maybeEnd()
      for await (const provider of options.network.findProviders(rendezvousCid(hash), search)) {
        mark('provider')
        asks.push(ask(provider))
        lastProvider = Date.now()
        if (asks.length >= MAX_PROVIDERS) break
      }
    } catch (err) {
      if (!search.aborted) throw err
    } finally {
      clearInterval(timer)
    }
    // Enough narinfos handed over settle the request; following their caches goes on (later lookups are local).
    const settled = Promise.all(asks).then(async () => (await Promise.all(following.values())).filter(Boolean).length)
    settled.catch(() => {})
    const added = await Promise.race([settled, enoughHandedOver.then(() => 0)])
    const trusted = [...names].filter(n => allowed.has(n)).length
    options.log.info(`discovery: ${hash}: ${asks.length} providers, ${names.size} caches, ${trusted} trusted, ${direct.length} trusted asked by name, ${handedOver.size} handed the narinfo over, ${added} newly followed, in ${Date.now() - started} ms${Object.keys(marks).length === 0 ? '' : ` (first ${Object.entries(marks).map(([step, ms]) => `${step} at ${ms} ms`).join(', ')})`}`)
    return added > 0 || handedOver.size > 0
  }

  /** Resolves once no lookup has been under way for BUSY_AFTER_MS (or after IDLE_WAIT_MS, or when `signal` aborts). */
  async function idle (signal: AbortSignal): Promise<void> {
    const until = Date.now() + IDLE_WAIT_MS
    while ((inflight.size > 0 || Date.now() - lastLookup < BUSY_AFTER_MS) && Date.now() < until && !signal.aborted && !abort.signal.aborted) {
      await new Promise(resolve => setTimeout(resolve, 250).unref())
    }
  }

  // Trusted caches that fit the bound are looked up by name from the start, as the first lookup would do:
  // Nix's first requests then find them followed. Not finding one now (the node has just joined) is not
  // remembered as a miss: lookups still ask for it by name. When more are trusted than fit, one walk for a path
  // nobody has instead, so that Nix's first request finds connections open and the code warm (each client's first
  // lookup was its slowest on the 50-node bench, 0.66 s and 1.37 s against 0.25 s at p50).
  async function warmUp (): Promise<void> {
    const { routing, delegated } = options.network
    if (routing === undefined && delegated.length === 0) return
    while (delegated.length === 0 && routing!.size() === 0 && !abort.signal.aborted) await new Promise(resolve => setTimeout(resolve, 100))
    if (allowed.size > maxCaches) {
      const started = Date.now()
      for await (const _ of options.network.findProviders(rendezvousCid(encodeNix32(randomBytes(20))), AbortSignal.any([abort.signal, AbortSignal.timeout(deadlineMs)]))) { /* a random path: nobody has it */ }
      if (!abort.signal.aborted) options.log.info(`discovery: ready (a first provider search took ${Date.now() - started} ms)`)
      return
    }
    const names = [...allowed.keys()].filter(name => !sources.has(name))
    const found = (await Promise.all(names.map(async name => await join(name, false)))).filter(Boolean).length
    // Stopped meanwhile (the lookups were cut short): the count says nothing.
    if (names.length > 0 && !abort.signal.aborted) options.log.info(`discovery: ${found} of ${names.length} trusted cache(s) found by name at start`)
  }
  if (options.warmUp !== false) warmUp().catch((err: Error) => options.log.debug(`discovery: warming up at start: ${err.message}`))

  return {
    find: async (hash) => {
      const missUntil = misses.get(hash)
      if (missUntil !== undefined && missUntil > Date.now()) return false
      let running = inflight.get(hash)
      if (running === undefined) {
        const state: LookupState = { hopeful: false, asking: 0 }
        const result = lookup(hash, state).catch((err: Error) => { options.log.warn(`discovery: ${hash}: ${err.message}`); return false })
          .then(found => { if (!found) misses.set(hash, Date.now() + MISS_MS); else misses.delete(hash); return found })
          .finally(() => { inflight.delete(hash); lastLookup = Date.now() })
        running = { result, hopeful: () => state.hopeful || state.asking > 0 }
        inflight.set(hash, running)
      }
      // The deadline holds unless a trusted cache was named as holding the path, or a provider is still being asked:
      // then they are waited for.
      const wait = async (ms: number): Promise<boolean | undefined> => {
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<undefined>(resolve => { timer = setTimeout(() => resolve(undefined), ms) })
        try {
          return await Promise.race([running.result, late])
        } finally {
          clearTimeout(timer)
        }
      }
      const found = await wait(deadlineMs + DEADLINE_GRACE_MS)
      if (found !== undefined) return found
      return running.hopeful() ? await wait(FOLLOW_MS) ?? false : false
    },
    isDiscovered: (name) => discovered.has(name),
    missed: (hash) => { misses.set(hash, Date.now() + MISS_MS) },
    idle,
    stop: () => {
      abort.abort()
      for (const follower of followers.values()) follower.stop()
    }
  }
}

/** A cache of which only narinfos signed by one of `keys` are served (discovered without --trust: the local Nix's keys). */
function signedOnly (source: IndexSource, keys: PublicKey[]): IndexSource {
  return {
    recheck: () => source.recheck(),
    current: async () => {
      const index = await source.current()
      if (index === undefined) return undefined
      const filtered: ServedIndex = {
        ...index,
        narInfo: async (hash) => {
          const entry = await index.narInfo(hash)
          if (entry === undefined) return undefined
          return signersOf(entry.info, keys).length > 0 ? entry : undefined
        }
      }
      return filtered
    }
  }
}

/**
 * How long the served caches may take to answer a narinfo request before discovery is asked beside them: open
 * indexes answer in milliseconds (and caches still opening are not waited for once one has the path), so a path a
 * followed cache holds is answered before; shorter than the 250 ms that were a fifth of a discovered narinfo's time
 * on the 50-node bench. At 50 ms, a loaded gateway asked the network for followed paths too (40 lookups became 75).
 */
const HEDGE_MS = 150
const LATER = Symbol('later')
/** LATER, after `ms`. */
const later = async (ms: number): Promise<typeof LATER> => await new Promise(resolve => setTimeout(() => resolve(LATER), ms).unref())

/**
 * The served caches, with discovery asked for each narinfo they miss (and the caches asked again). `openLack(hash)`,
 * true when every served cache whose index is open lacks the path, lets discovery start at once, not after
 * HEDGE_MS: the caches still opening (a discovered cache's index on its way) held every discovered narinfo that long.
 */
export function withDiscovery (caches: () => Promise<ServedCaches | undefined>, discovery: Pick<Discovery, 'find' | 'missed'>, openLack?: (hash: string) => Promise<boolean>): () => Promise<ServedCaches | undefined> {
  return async () => {
    const current = await caches()
    return {
      cacheInfo: current?.cacheInfo ?? '',
      narInfo: async (hash) => {
        // A cache that may hold the path could not answer in time (UnavailableError): discovery may find it elsewhere,
        // and if not, the request stays a 503 (asked again), not a 404 (remembered).
        let unavailable: UnavailableError | undefined
        const asked = (current?.narInfo(hash) ?? Promise.resolve(undefined)).catch((err: unknown) => {
          if (!(err instanceof UnavailableError)) throw err
          unavailable = err
          return undefined
        })
        // Settles only when the open caches lack the path (a promise of its own: one shared that never settles would
        // keep a reaction of every request's race).
        const lacking = new Promise<typeof LATER>(resolve => { openLack?.(hash).then(lack => { if (lack) resolve(LATER) }, () => {}) })
        const first = await Promise.race([asked, later(HEDGE_MS), lacking])
        if (first !== undefined && first !== LATER) return first
        const finding = discovery.find(hash)
        // Served caches answer from memory or disk, but one whose index is still being fetched may take seconds (10 at
        // most): discovery is asked meanwhile, and whichever finds the path first answers.
        if (first === LATER) {
          const hit = await Promise.race([asked, finding.then((): typeof LATER => LATER)])
          if (hit !== undefined && hit !== LATER) return hit
        }
        // Asked again even when this lookup added nothing: a cache another lookup (or the start) was following may
        // be served by now, and a quorum refused without it may be met with it (seen: a library refused at 1 of 2).
        await finding
        const found = await (await caches())?.narInfo(hash)
        if (found === undefined && unavailable !== undefined) throw unavailable
        // A lookup that added a cache (one followed by name) is no miss by itself; this is, unless a cache was late.
        if (found === undefined) discovery.missed(hash)
        return found
      },
      nar: async (cid) => await current?.nar(cid),
      realisation: async (id) => await current?.realisation(id),
      log: async (drv) => await current?.log(drv)
    }
  }
}

/** The caches in `sources` that hold a narinfo for `hash`, with its text (what a node tells discovering peers). */
export async function cachesHolding (sources: Map<string, IndexSource>, hash: string): Promise<Holding[]> {
  const holding = await Promise.all([...sources].map(async ([name, source]) => {
    const index = await source.current().catch(() => undefined)
    const entry = await index?.narInfo(hash).catch(() => undefined)
    return entry === undefined ? [] : [{ name, narinfo: entry.text }]
  }))
  return holding.flat()
}

/** Narinfos (and the NARs they name) handed over for one discovered cache, each served until `until`. */
interface Vouched {
  narInfos: Lru<{ entry: NarInfoEntry, until: number }>
  nars: Lru<{ entry: NarEntry, until: number }>
}

/** `text` as a narinfo entry, with the names of those of `keys` that signed it, when it is one for store path hash `hash` naming its NAR by CID. */
function signedNarInfo (text: string, hash: string, keys: PublicKey[]): { entry: NarInfoEntry, signers: string[] } | undefined {
  if (text.length > MAX_NARINFO_BYTES) return undefined
  try {
    const info = parseNarInfo(text)
    const nar = narCidOfUrl(info.url)
    if (nar === undefined || parseStorePath(info.storePath).hash !== hash) return undefined
    const signers = signersOf(info, keys).map(k => k.name)
    if (signers.length === 0) return undefined
    return { entry: { text, info, cid: cidOf(RAW_CODE, new TextEncoder().encode(text)), nar }, signers: [...new Set(signers)] }
  } catch {
    return undefined // not a narinfo: a provider's word, nothing more
  }
}

/**
 * A discovered cache as served: until its index opens, the narinfos its holders handed over; then its index,
 * and what was handed over only for what the index lacks. Each is signed by a trusted key for its path, as any
 * narinfo served is, and every NAR is still checked against its NarHash, so a provider can hand over nothing a
 * trusted builder did not sign. The signature covers neither URL nor FileHash, though: a provider can hand over a
 * trusted narinfo naming a NAR of its own, so the index's entry wins once it is open, and a NAR asked for under the
 * other name (a Nix keeps the narinfos it was given) is the index's NAR of that path, if it has the same NarHash.
 */
function withVouched (source: IndexSource, handed: Vouched, following: () => Promise<unknown> | undefined): IndexSource {
  const fresh = <T>(hit: { entry: T, until: number } | undefined): T | undefined => hit !== undefined && hit.until > Date.now() ? hit.entry : undefined
  /** the cache's index opened once: its answers no longer wait for blocks from peers */
  let indexOpened = false
  return {
    recheck: () => source.recheck(),
    current: async () => {
      if (handed.narInfos.size === 0) return await source.current()
      const pending = following()
      // Not awaited here: what was handed over is served while the index is fetched. An index that cannot be opened
      // holds nothing more, as a cache that cannot be opened is left out beside others.
      const index = (pending ?? Promise.resolve()).then(async () => await source.current()).catch(() => undefined)
      index.then(opened => { if (opened !== undefined) indexOpened = true }, () => {})
      const first = async <T>(handedOver: T | undefined, own: (index: ServedIndex) => Promise<T | undefined>): Promise<T | undefined> => {
        if (handedOver !== undefined && pending !== undefined) return handedOver
        // Followed, but its index may still be on its way (seen: 11 blocks in 12 s on a loaded network), and a request
        // waited for it: what was handed over answers unless the index opens at once.
        const opened = handedOver === undefined ? await index : await Promise.race([index, later(HEDGE_MS)])
        if (opened === LATER) return handedOver
        return (opened === undefined ? undefined : await own(opened)) ?? handedOver
      }
      // Until its index opened, a question settled by other caches does not wait for this one (see isOpening).
      const served: ServedIndex = {
        cacheInfo: '',
        narInfo: async (hash) => await first(fresh(handed.narInfos.get(hash)), async index => await index.narInfo(hash)),
        nar: async (cid) => {
          const hit = handed.nars.get(cid)
          const handedOver = hit?.entry
          return await first(fresh(hit), async index => {
            const own = await index.nar(cid)
            if (own !== undefined || handedOver?.narHashFrom === undefined) return own
            const info = await index.narInfo(parseStorePath(handedOver.narHashFrom).hash)
            return info?.info.narHash === handedOver.narHash ? await index.nar(info!.nar.toString()) : undefined
          })
        },
        realisation: async (id) => await (await index)?.realisation(id),
        log: async (drv) => await (await index)?.log(drv)
      }
      return indexOpened ? served : markOpening(served)
    }
  }
}
