import type { CacheIndex, NarEntry, NarInfoEntry } from './index.js'
import { currentIndexes, type IndexSource } from './source.js'

/** What the gateway serves: one or more caches answering as one. */
export type ServedCaches = Omit<CacheIndex, 'root'>

/**
 * Serves several caches as one: the first (in the order given) that has a
 * narinfo or NAR answers; `nix-cache-info` comes from the first that is
 * servable. Each cache's entries stay signed by its own key.
 */
export async function unionOf (sources: IndexSource[]): Promise<ServedCaches | undefined> {
  const indexes = await currentIndexes(sources)
  if (indexes.length === 0) return undefined
  if (indexes.length === 1) return indexes[0]
  // A cache that fails a lookup (a refused narinfo, a corrupt block) does not hide the next one's answer.
  const first = async <T>(ask: (i: CacheIndex) => Promise<T | undefined>): Promise<T | undefined> => {
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
  return {
    cacheInfo: indexes.find(i => i.cacheInfo !== '')?.cacheInfo ?? '',
    narInfo: async (hash): Promise<NarInfoEntry | undefined> => await first(i => i.narInfo(hash)),
    nar: async (cid): Promise<NarEntry | undefined> => await first(i => i.nar(cid)),
    realisation: async (id): Promise<string | undefined> => await first(i => i.realisation(id))
  }
}
