import { Lru } from '../lru.js'
import { fingerprint, signersOf } from '../nix/narinfo.js'
import { formatPublicKey, type PublicKey } from '../nix/signing.js'
import type { LogEntry, NarEntry, NarInfoEntry, ServedIndex } from './index.js'
import { AFTER_HIT_MS, currentIndexes, firstAnswer, isOpening, settledAnswers, type IndexSource } from './source.js'

/** What the gateway serves: one or more caches answering as one. */
export type ServedCaches = ServedIndex

/** What builders signed for one store path when trusted keys disagree. */
export interface Dispute {
  storePath: string
  groups: Array<{ narHash: string, narSize: number, references: string[], keys: string[] }>
}

export interface UnionOptions {
  /** keys the Nix this node serves trusts (its trusted-public-keys, --prefer): a narinfo one of them signed wins over the others */
  prefer?: PublicKey[]
  /** called when caches give one store path different NARs */
  onDispute?: (dispute: Dispute) => void
}

/** NARs remembered with the cache whose narinfo named them (a narinfo lookup, then its NAR, comes well within this many others). */
const SERVED_NARS = 50_000

/** The signers of a narinfo: `prefer` keys that verify it (name:base64), then the names of the other signatures (unchecked). */
function signers (entry: NarInfoEntry, prefer: PublicKey[]): { trusted: string[], others: string[] } {
  const trusted = signersOf(entry.info, prefer)
  const names = new Set(trusted.map(k => k.name))
  return { trusted: trusted.map(formatPublicKey), others: entry.info.sigs.map(s => s.slice(0, s.indexOf(':'))).filter(n => !names.has(n)) }
}

/** The dispute when `entries` (one store path) give more than one NAR. */
function disputeOf (entries: NarInfoEntry[], prefer: PublicKey[]): Dispute | undefined {
  const groups = new Map<string, Dispute['groups'][number]>()
  for (const entry of entries) {
    const { narHash, narSize, references } = entry.info
    const group = groups.get(fingerprint(entry.info)) ?? { narHash, narSize, references, keys: [] }
    groups.set(fingerprint(entry.info), group)
    const { trusted, others } = signers(entry, prefer)
    for (const key of [...trusted, ...others]) if (!group.keys.includes(key)) group.keys.push(key)
  }
  return groups.size > 1 ? { storePath: entries[0]!.info.storePath, groups: [...groups.values()] } : undefined
}

/**
 * Serves several caches as one, without a trust policy: every cache is asked
 * for a narinfo, and one signed by a key the local Nix trusts is served
 * before the others (else the first, in the order given), so a cache that
 * publishes its own narinfo for another builder's path cannot hide the one
 * Nix would accept. Caches giving one path different NARs are a dispute. A
 * NAR comes from the cache whose narinfo named it. `nix-cache-info` comes from
 * the first that is servable; each cache's entries stay signed by its own key.
 */
export function unionOf (sources: IndexSource[], options: UnionOptions = {}): () => Promise<ServedCaches | undefined> {
  const prefer = options.prefer ?? []
  const servedFrom = new Lru<ServedIndex>(SERVED_NARS)
  return async () => {
    const indexes = await currentIndexes(sources)
    if (indexes.length === 0) return undefined
    if (indexes.length === 1) return indexes[0]
    const first = async <T>(ask: (i: ServedIndex) => Promise<T | undefined>, among = indexes): Promise<T | undefined> => await firstAnswer(among, ask)
    return {
      cacheInfo: indexes.find(i => i.cacheInfo !== '')?.cacheInfo ?? '',
      narInfo: async (hash): Promise<NarInfoEntry | undefined> => {
        // A hit no preferred key signed waits for the caches still opening too: one may hold a narinfo such a key signed.
        let preferredHit = prefer.length === 0
        const ask = async (index: ServedIndex): Promise<NarInfoEntry | undefined> => {
          const entry = await index.narInfo(hash)
          if (entry !== undefined && !preferredHit) preferredHit = signers(entry, prefer).trusted.length > 0
          return entry
        }
        const { results, late, all } = await settledAnswers(indexes, ask, () => AFTER_HIT_MS, index => preferredHit && isOpening(index))
        const hitsOf = (answers: typeof results): Array<{ entry: NarInfoEntry, index: ServedIndex }> =>
          answers.flatMap((r, n) => r.status === 'fulfilled' && r.value !== undefined ? [{ entry: r.value, index: indexes[n]! }] : [])
        const hits = hitsOf(results)
        if (hits.length === 0) {
          const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
          if (failed !== undefined) throw failed.reason
          return undefined
        }
        const reportDispute = (among: typeof hits): void => {
          const dispute = among.length > 1 ? disputeOf(among.map(h => h.entry), prefer) : undefined
          if (dispute !== undefined) options.onDispute?.(dispute)
        }
        reportDispute(hits)
        // Caches that answered late still show the dispute they are part of.
        if (late) all().then(answers => reportDispute(hitsOf(answers)), () => {})
        const chosen = (prefer.length > 0 ? hits.find(h => signers(h.entry, prefer).trusted.length > 0) : undefined) ?? hits[0]!
        servedFrom.set(chosen.entry.nar.toString(), chosen.index)
        return chosen.entry
      },
      // Another cache may link the same NAR under a narinfo claiming another NarHash: the one whose narinfo was served answers first.
      nar: async (cid): Promise<NarEntry | undefined> => {
        const from = servedFrom.get(cid)
        return await first(i => i.nar(cid), from !== undefined && indexes.includes(from) ? [from, ...indexes.filter(i => i !== from)] : indexes)
      },
      realisation: async (id): Promise<string | undefined> => await first(i => i.realisation(id)),
      log: async (drv): Promise<LogEntry | undefined> => await first(i => i.log(drv))
    }
  }
}
