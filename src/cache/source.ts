import { stat } from 'node:fs/promises'
import { DEFAULT_EXPIRED_GRACE_MS } from '../constants.js'
import { LateAnswerError, UnavailableError } from '../errors.js'
import type { BlockGetter } from '../ipfs/block.js'
import { openIndex, type CacheIndex, type ServedIndex } from './index.js'
import { recordPath } from '../repo-layout.js'
import { loadRecord } from './records.js'

/** Supplies the gateway with the index of the cache it serves, kept in step with the record. */
export interface IndexSource {
  /** the current index (one that refuses its paths while they may not be served), or undefined while there is none */
  current: () => Promise<ServedIndex | undefined>
  /** look at the stored record again on the next request (a newer one was just stored) */
  recheck: () => void
  /** looks at the stored record now; true when a newer one was loaded (a miss may be a path published a moment ago) */
  refresh?: () => Promise<boolean>
}

export interface SourceOptions {
  /** how long an expired record is still served, with a warning */
  expiredGraceMs?: number
  warn?: (message: string) => void
}

/** How often, at most, the record file is checked for a change. */
const RECHECK_MS = 500

/**
 * Serves the cache that the repo holds a record for under IPNS name `name`,
 * reloading the index whenever a newer record is stored. An expired record is
 * served for `expiredGraceMs` with a warning, then no longer (a frozen cache
 * must not be served for ever): its paths then answer UnavailableError.
 */
export function repoIndexSource (repo: string, blocks: BlockGetter, name: string, options: SourceOptions = {}): IndexSource {
  const grace = options.expiredGraceMs ?? DEFAULT_EXPIRED_GRACE_MS
  let index: CacheIndex | undefined
  let validUntil = Infinity
  let warned = ''
  let seenMtimeMs = -1
  let checkedAt = 0
  let loading: Promise<boolean> | undefined

  /** why the newest record's index cannot be opened (corrupt or missing blocks); tried again at each recheck */
  let failure: Error | undefined

  /** Loads the stored record if it changed; true when it did. */
  async function reload (): Promise<boolean> {
    const mtimeMs = await stat(recordPath(repo, name)).then(s => s.mtimeMs, () => 0)
    if (mtimeMs === seenMtimeMs) return false
    const before = index
    try {
      const record = await loadRecord(repo, name)
      if (record !== undefined) {
        if (record.root.toString() !== index?.root.toString()) index = await openIndex(blocks, record.root)
        validUntil = Date.parse(record.validity)
      }
      seenMtimeMs = mtimeMs
      failure = undefined
    } catch (err) {
      if (failure?.message !== (err as Error).message) {
        options.warn?.(`the cache /ipns/${name} cannot be opened: ${(err as Error).message}${index === undefined ? '' : '; serving the previous root meanwhile'}`)
      }
      failure = err as Error
    }
    return index !== before
  }

  /** A reload now (or the one under way), shared by concurrent callers. */
  async function check (): Promise<boolean> {
    checkedAt = Date.now()
    loading ??= reload().finally(() => { loading = undefined })
    return await loading
  }

  function servable (): CacheIndex | undefined {
    const now = Date.now()
    if (now <= validUntil || index === undefined) return index
    const state = now <= validUntil + grace ? 'grace' : 'stopped'
    const expired = `the record for /ipns/${name} expired at ${new Date(validUntil).toISOString()}`
    if (warned !== state) {
      warned = state
      options.warn?.(state === 'grace'
        ? `${expired}; serving it until ${new Date(validUntil + grace).toISOString()} — the publisher must run \`nixipfs republish\``
        : `${expired} and its grace period is over; serving nothing from it until a fresh record arrives`)
    }
    return state === 'grace' ? index : withheld(index, `${expired} and its grace period is over; it is served again once its publisher runs \`nixipfs republish\` and a fresh record arrives`)
  }

  return {
    current: async () => {
      // One reload at a time; concurrent requests share it.
      if (Date.now() - checkedAt >= RECHECK_MS) await check()
      // Requests that arrive while a reload runs wait for it too: before the first one ends there is no index yet.
      else if (loading !== undefined) await loading
      // Nothing older to serve: every request says why, rather than a 404 that looks like a miss.
      if (index === undefined && failure !== undefined) throw failure
      return servable()
    },
    recheck: () => { checkedAt = 0 },
    refresh: check
  }
}

/**
 * A cache that may not be served right now: what it holds is refused with
 * `reason` (UnavailableError, a 503 that Nix does not remember), what it does
 * not hold is a miss (a 404), as its last index says.
 */
function withheld (index: CacheIndex, reason: string): CacheIndex {
  const refuse = async <T>(hit: Promise<T | undefined>): Promise<T | undefined> => {
    if (await hit === undefined) return undefined
    throw new UnavailableError(reason)
  }
  return {
    root: index.root,
    cacheInfo: index.cacheInfo,
    narInfo: async hash => await refuse(index.narInfo(hash)),
    nar: async cid => await refuse(index.nar(cid)),
    realisation: async id => await refuse(index.realisation(id)),
    log: async drv => await refuse(index.log(drv))
  }
}

/** A cache still opening: each lookup waits for it until `deadline`, then fails with LateAnswerError; one that fails to open holds nothing. */
function stillOpening (opened: Promise<ServedIndex | undefined>, deadline: number): ServedIndex {
  const ask = async <T>(lookup: (index: ServedIndex) => Promise<T | undefined>): Promise<T | undefined> => {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(lateAnswer()), deadline - Date.now())
    })
    try {
      const index = await Promise.race([opened.catch(() => undefined), late])
      return index === undefined ? undefined : await lookup(index)
    } finally {
      clearTimeout(timer)
    }
  }
  return markOpening({
    cacheInfo: '',
    narInfo: async hash => await ask(i => i.narInfo(hash)),
    nar: async cid => await ask(i => i.nar(cid)),
    realisation: async id => await ask(i => i.realisation(id)),
    log: async drv => await ask(i => i.log(drv))
  })
}

/** The first answer of `indexes` to `ask`; one that fails (refused, a corrupt block) does not hide the next one's answer, and its error is thrown only when none answers. */
export async function firstAnswer<T> (indexes: ServedIndex[], ask: (i: ServedIndex) => Promise<T | undefined>): Promise<T | undefined> {
  let failure: unknown
  for (const index of indexes) {
    try {
      const hit = await ask(index)
      if (hit !== undefined) return hit
    } catch (err) {
      failure ??= err
    }
  }
  if (failure !== undefined) throw failure
  return undefined
}

/**
 * How long the other caches may still take once one has answered, even that it lacks the path: a cache whose blocks
 * cannot be had must not hold every request (seen on the 50-node discovery bench: 105 s for a narinfo, one
 * discovered cache's root unreachable; 57 s for a path no served cache held, beside indexes still being fetched).
 * Not less: a cache just discovered opens its index in seconds on a loaded machine, and at 2 s a quorum it was needed
 * for became a 503, which fails `nix copy` (e2e/discover.test under the full suite).
 */
const STRAGGLER_MS = 10_000
const lateAnswer = (): LateAnswerError => new LateAnswerError(`a cache did not answer within ${STRAGGLER_MS / 1000} s of another; not counted this time`)

/**
 * How long the other open caches may still take once enough have a path's narinfo to settle it (they are asked for
 * the dispute it may be, for their signatures, and for a preferred signer). Not the 10 s a path no cache has
 * answered for gets: on the 50-node discovery bench, a cache whose index was still being fetched held narinfos of
 * followed caches for up to 9 s. Caches still opening are not waited for at all (see `isOpening`).
 */
export const AFTER_HIT_MS = 1_000

/** Indexes whose answers wait for them to be fetched from peers (seconds, where an open index answers in milliseconds). */
const opening = new WeakSet<ServedIndex>()
/** Marks `index` as still opening: once a question is settled without it, it is not waited for (see `settledAnswers`). */
export function markOpening<T extends ServedIndex> (index: T): T {
  opening.add(index)
  return index
}
/**
 * True when `index` is still opening. Waiting a second for those was the floor under every discovered narinfo on the
 * 50-node bench; a cache that answers later is judged when it does (see `settledAnswers`' `all`).
 */
export const isOpening = (index: ServedIndex): boolean => opening.has(index)

/** True when every one of `sources` whose index is open (not still being fetched) lacks a narinfo for `hash`; one that fails counts as having it. */
export async function openIndexesLack (sources: IndexSource[], hash: string): Promise<boolean> {
  const open = (await currentIndexes(sources).catch((): ServedIndex[] => [])).filter(index => !isOpening(index))
  const answers = await Promise.all(open.map(async index => await index.narInfo(hash).catch(() => null)))
  return answers.every(answer => answer === undefined)
}

/** The answers to one question of several caches: those in time, and all of them once the late ones came. */
export interface Settled<T> {
  /** each item's answer; one still out when the question was settled is a LateAnswerError */
  results: Array<PromiseSettledResult<T | undefined>>
  /** true when some item was still out when the question was settled */
  late: boolean
  /** each item's answer once every one came, or STRAGGLER_MS after this is called (those still out then: LateAnswerError) */
  all: () => Promise<Array<PromiseSettledResult<T | undefined>>>
}

/**
 * `ask` of each of `items`, settled as Promise.allSettled settles them, except that those still out STRAGGLER_MS after
 * the first answer (or failure), or `wait(hits)` ms after the answers that are not undefined so far (`hits`) first
 * settled the question, are rejected with LateAnswerError in `results`, as a cache that cannot be read is. `wait`
 * gives undefined while the hits settle nothing; once they do, items for which `notWaitedFor(item)` is true are not
 * waited for.
 */
export async function settledAnswers<I, T> (items: I[], ask: (item: I) => Promise<T | undefined>, wait: (hits: T[]) => number | undefined, notWaitedFor: (item: I) => boolean = () => false): Promise<Settled<T>> {
  const results: Array<PromiseSettledResult<T | undefined> | undefined> = items.map(() => undefined)
  let pending = items.length
  let settled = false
  const waitedFor = (): boolean => items.some((item, n) => results[n] === undefined && !notWaitedFor(item))
  let done!: () => void
  const finished = new Promise<void>(resolve => { done = resolve })
  let timer: NodeJS.Timeout | undefined
  let hitTimer: NodeJS.Timeout | undefined
  const hits: T[] = []
  if (pending === 0) done()
  const asks = items.map(async (item, n) => {
    await ask(item).then(value => {
      results[n] = { status: 'fulfilled', value }
      if (value === undefined) return
      hits.push(value)
      const ms = settled ? undefined : wait(hits)
      if (ms === undefined) return
      settled = true
      hitTimer = setTimeout(done, ms)
    }, (reason: unknown) => { results[n] = { status: 'rejected', reason } })
      .finally(() => {
        if (--pending === 0 || (settled && !waitedFor())) done()
        else timer ??= setTimeout(done, STRAGGLER_MS)
      })
  })
  await finished
  clearTimeout(timer)
  clearTimeout(hitTimer)
  const complete = (): Array<PromiseSettledResult<T | undefined>> => results.map(r => r ?? { status: 'rejected', reason: lateAnswer() })
  // Late ones get STRAGGLER_MS more at most: a cache that never answers must not keep every question's answers alive.
  const all = async (): Promise<Array<PromiseSettledResult<T | undefined>>> => {
    let timer: NodeJS.Timeout | undefined
    await Promise.race([Promise.all(asks), new Promise<void>(resolve => { timer = setTimeout(resolve, STRAGGLER_MS).unref() })])
    clearTimeout(timer)
    return complete()
  }
  return { results: complete(), late: results.includes(undefined), all }
}

/**
 * How long the other caches may take to open once one has: those still opening then are asked as they come (see
 * `stillOpening`). An index in the repo opens in milliseconds; waiting 250 ms for one still being fetched was paid
 * twice by every discovered narinfo.
 */
const OPENING_MS = 50

/**
 * The servable indexes of several sources. One that cannot be opened is left out, unless none can be served (then
 * its error is thrown). One still opening OPENING_MS after another opened is asked once it has, for up to 10 s: an
 * index fetched from peers must not hold the paths the others have (12 s for a narinfo discovery had found in 1.2 s
 * on the 50-node bench), and what only it may hold is a 503 after that, which Nix asks again, not a 404, which Nix
 * remembers for an hour.
 */
export async function currentIndexes (sources: IndexSource[]): Promise<ServedIndex[]> {
  const opening = sources.map(s => s.current())
  const { results } = await settledAnswers(opening, async o => await o, () => OPENING_MS)
  const deadline = Date.now() + STRAGGLER_MS
  const indexes = results.flatMap((r, n) => r.status === 'fulfilled' && r.value !== undefined
    ? [r.value]
    : r.status === 'rejected' && r.reason instanceof LateAnswerError ? [stillOpening(opening[n]!, deadline)] : [])
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (indexes.length === 0 && failed !== undefined) throw failed.reason
  return indexes
}
